//! The machine's mount namespaces, found by a scan of /proc on a thread of
//! its own. At a thousand namespaces a scan takes tens of milliseconds (a
//! stat of every process's ns/mnt, an open of one per namespace): on the
//! event loop, every mount that arrived meanwhile waited for it.
use std::{
    sync::mpsc::{self, Receiver, SyncSender, TryRecvError},
    thread,
    time::{Duration, Instant},
};

use super::source::{Found, Source};

/// One scan: when it started, and what it found.
pub struct Scan {
    pub started: Instant,
    pub found: Vec<Found>,
}

/// Scans every `every`, for as long as this value lives.
pub struct Discovery {
    rx: Receiver<Scan>,
}

impl Discovery {
    pub fn start(source: Source, skip: u32, every: Duration) -> std::io::Result<Discovery> {
        // One scan in flight at most: a loop that falls behind gets the
        // next one, not a queue of stale ones.
        let (tx, rx) = mpsc::sync_channel(1);
        thread::Builder::new()
            .name("mnttrace-scan".into())
            .spawn(move || scan_loop(source, skip, every, tx))?;
        Ok(Discovery { rx })
    }

    /// The newest finished scan, if one finished since the last call.
    pub fn latest(&self) -> Option<Scan> {
        let mut last = None;
        loop {
            match self.rx.try_recv() {
                Ok(s) => last = Some(s),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return last,
            }
        }
    }
}

/// The scan's nice value. At 1,000 namespaces a scan reads a thousand
/// /proc entries, some milliseconds of CPU once a second: at the lowest
/// priority it takes a CPU only when the agent's event path does not want
/// it (on two CPUs the main thread and the placement worker are enough to
/// fill them while a propagation's copies are handled).
const SCAN_NICE: libc::c_int = 19;

fn scan_loop(source: Source, skip: u32, every: Duration, tx: SyncSender<Scan>) {
    // SAFETY: plain syscalls on this thread (a thread's nice value is its
    // own on Linux). Raising nice needs no privilege; if it fails anyway the
    // scan only runs at the default priority.
    let r =
        unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, SCAN_NICE) };
    if r != 0 {
        log::debug!(
            "the namespace scan stays at default priority: {}",
            std::io::Error::last_os_error()
        );
    }
    loop {
        thread::sleep(every);
        let started = Instant::now();
        let found = source.discover(skip);
        // Gone: the agent stopped.
        if tx.send(Scan { started, found }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    /// The scan thread runs at the lowest priority, as the kernel sees it.
    #[test]
    fn scan_runs_at_lowest_priority() {
        let d = Discovery::start(Source::detect(), 0, Duration::from_secs(60)).expect("thread");
        let nice_of_scan = || -> Option<i64> {
            procfs::process::Process::myself()
                .ok()?
                .tasks()
                .ok()?
                .flatten()
                .filter_map(|t| t.stat().ok())
                .find(|s| s.comm == "mnttrace-scan")
                .map(|s| s.nice)
        };
        let before = Instant::now();
        loop {
            if nice_of_scan() == Some(i64::from(SCAN_NICE)) {
                break;
            }
            assert!(
                before.elapsed() < Duration::from_secs(10),
                "scan thread's nice: {:?}",
                nice_of_scan()
            );
            thread::sleep(Duration::from_millis(5));
        }
        drop(d);
    }

    #[test]
    fn scans_arrive_and_find_our_namespace() {
        let ours = std::fs::metadata("/proc/self/ns/mnt")
            .expect("own namespace")
            .ino() as u32;
        let source = Source::detect();
        let d = Discovery::start(source, 0, Duration::from_millis(10)).expect("thread");
        let before = Instant::now();
        let scan = loop {
            if let Some(s) = d.latest() {
                break s;
            }
            assert!(before.elapsed() < Duration::from_secs(10), "no scan came");
            thread::sleep(Duration::from_millis(5));
        };
        assert!(scan.started >= before);
        assert!(
            scan.found.iter().any(|f| f.inode == ours),
            "mnt:[{ours}] not among {:?}",
            scan.found
        );
    }
}
