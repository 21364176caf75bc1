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

/// The scan's nice value, where SCHED_IDLE cannot be had. At 1,000
/// namespaces a scan reads a thousand /proc entries, some milliseconds of
/// CPU once a second.
const SCAN_NICE: libc::c_int = 19;

fn scan_loop(source: Source, skip: u32, every: Duration, tx: SyncSender<Scan>) {
    // SCHED_IDLE: the scheduler preempts it as soon as any other thread
    // wants its CPU. At nice 19 it still ran out its slice first: the
    // placement worker, woken for a propagation's copies, waited 3.5-4 ms
    // for it (sched_switch traced), four times in 300 mounts into 1,000
    // namespaces, and those mounts were the slowest. A thread's policy and
    // nice value are its own on Linux; lowering them needs no privilege.
    // SAFETY: plain syscalls on this thread, param a valid sched_param.
    let idle = unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param)
    };
    if idle != 0 {
        log::debug!(
            "the namespace scan is not SCHED_IDLE: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: as above.
        let r = unsafe {
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, SCAN_NICE)
        };
        if r != 0 {
            log::debug!(
                "the namespace scan stays at default priority: {}",
                std::io::Error::last_os_error()
            );
        }
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

    /// The scan thread runs at the lowest priority, as the kernel sees it:
    /// SCHED_IDLE (policy 5 in its stat).
    #[test]
    fn scan_runs_at_lowest_priority() {
        let d = Discovery::start(Source::detect(), 0, Duration::from_secs(60)).expect("thread");
        let policy_of_scan = || -> Option<u32> {
            procfs::process::Process::myself()
                .ok()?
                .tasks()
                .ok()?
                .flatten()
                .filter_map(|t| t.stat().ok())
                .find(|s| s.comm == "mnttrace-scan")
                .and_then(|s| s.policy)
        };
        let before = Instant::now();
        loop {
            if policy_of_scan() == Some(libc::SCHED_IDLE as u32) {
                break;
            }
            assert!(
                before.elapsed() < Duration::from_secs(10),
                "scan thread's policy: {:?}",
                policy_of_scan()
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
