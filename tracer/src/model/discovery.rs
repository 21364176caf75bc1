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

fn scan_loop(source: Source, skip: u32, every: Duration, tx: SyncSender<Scan>) {
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
