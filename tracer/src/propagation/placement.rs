//! Checking where copies of a mount landed: each mount id with the
//! namespaces it is guessed to be in, in order, asked with statmount(2) until
//! one holds it. The kernel's answer, not the guess, is what is kept.
//!
//! A propagation into a thousand namespaces is a thousand statmount calls
//! (~3 µs each, most of the time from a syscall's exit to its copies on the
//! output), so a large batch is split in two and checked on two threads.
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use nix::{
    sched::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity},
    unistd::Pid,
};

use crate::model::{Found, Mount, Source, sys::Detail};

/// Below this many guesses a second thread costs more than it saves.
const PARALLEL_MIN: usize = 128;

/// The namespaces a mount may be in, most likely first (no repeats).
#[derive(Clone, Copy, Debug, Default)]
pub struct Candidates([Option<Found>; 3]);

impl Candidates {
    /// Adds `f` after those already there, unless it is one of them.
    pub fn push(&mut self, f: Found) {
        for slot in &mut self.0 {
            match slot {
                Some(g) if g.inode == f.inode => return,
                Some(_) => {}
                None => {
                    *slot = Some(f);
                    return;
                }
            }
        }
    }

    /// The first candidate namespace that holds mount `id`, and the mount
    /// read in `detail`.
    pub fn check(&self, source: Source, id: u64, detail: Detail) -> Option<(u32, Mount)> {
        self.0
            .iter()
            .flatten()
            .find_map(|f| source.stat_in(f, id, detail).map(|m| (f.inode, m)))
    }
}

type Placed = Vec<(u64, (u32, Mount))>;

/// What a batch is checked with: where the mounts are read from, and how much of each.
type How = (Source, Detail);

fn run((source, detail): How, part: &[(u64, Candidates)]) -> Placed {
    part.iter()
        .filter_map(|(id, c)| c.check(source, *id, detail).map(|hit| (*id, hit)))
        .collect()
}

/// Checks guesses, a large batch in two halves at once: one on the caller's
/// thread, one on a worker that is started on first use and then sleeps
/// between batches.
#[derive(Default)]
pub struct Placer {
    worker: Option<Worker>,
}

struct Worker {
    jobs: SyncSender<(How, Vec<(u64, Candidates)>)>,
    done: Receiver<Placed>,
    tid: Pid,
    /// The CPU the worker was last kept off.
    off: Option<usize>,
}

impl Worker {
    fn start() -> std::io::Result<Worker> {
        let (jobs, inbox) = sync_channel::<(How, Vec<(u64, Candidates)>)>(1);
        let (outbox, done) = sync_channel(1);
        let (tell, tid) = sync_channel(1);
        std::thread::Builder::new()
            .name("mnttrace-place".into())
            .spawn(move || {
                let _ = tell.send(nix::unistd::gettid());
                // Ends when the Placer, and with it `jobs`, is dropped.
                while let Ok((how, part)) = inbox.recv() {
                    if outbox.send(run(how, &part)).is_err() {
                        break;
                    }
                }
            })?;
        let tid = tid.recv().map_err(std::io::Error::other)?;
        Ok(Worker {
            jobs,
            done,
            tid,
            off: None,
        })
    }

    /// Keeps the worker off the caller's CPU. Woken there, it waited for the
    /// caller's half to end while the other CPU sat idle: the scheduler
    /// placed one wake-up in three that way on this 2-CPU machine (sched
    /// traces), doubling the time to place a thousand copies.
    fn steer(&mut self) {
        let Ok(here) = sched_getcpu() else { return };
        if self.off == Some(here) {
            return;
        }
        let Ok(mut allowed) = sched_getaffinity(Pid::from_raw(0)) else {
            return;
        };
        if allowed.unset(here).is_err() {
            return;
        }
        let elsewhere = (0..CpuSet::count()).any(|c| allowed.is_set(c).unwrap_or(false));
        if elsewhere && sched_setaffinity(self.tid, &allowed).is_ok() {
            self.off = Some(here);
        }
    }
}

impl Placer {
    /// Every guess checked; those found, with their namespace and mount
    /// read in `detail`.
    pub fn check_all(&mut self, how: How, guesses: &[(u64, Candidates)]) -> Placed {
        if guesses.len() < PARALLEL_MIN {
            return run(how, guesses);
        }
        if self.worker.is_none() {
            match Worker::start() {
                Ok(w) => self.worker = Some(w),
                Err(e) => log::debug!("no second thread for placement ({e}): one does both halves"),
            }
        }
        let (a, b) = guesses.split_at(guesses.len() / 2);
        let sent = self.worker.as_mut().is_some_and(|w| {
            w.steer();
            w.jobs.send((how, b.to_vec())).is_ok()
        });
        let mut out = run(how, a);
        let theirs = if sent {
            self.worker.as_ref().and_then(|w| w.done.recv().ok())
        } else {
            None
        };
        match theirs {
            Some(found) => out.extend(found),
            None => {
                // The worker is gone (it cannot fail otherwise): this thread
                // does its half, and the next large batch starts another.
                self.worker = None;
                out.extend(run(how, b));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    fn own() -> Option<Found> {
        let source = Source::detect();
        if source != Source::Statmount {
            return None;
        }
        let ino = std::fs::metadata("/proc/self/ns/mnt").ok()?.ino() as u32;
        source.discover(0).into_iter().find(|f| f.inode == ino)
    }

    #[test]
    fn candidates_skip_repeats() {
        let f = |inode| Found {
            inode,
            ns_id: 0,
            pid: 1,
        };
        let mut c = Candidates::default();
        for i in [7, 7, 8, 7, 9, 10] {
            c.push(f(i));
        }
        let got: Vec<u32> = c.0.iter().flatten().map(|f| f.inode).collect();
        assert_eq!(got, [7, 8, 9]);
    }

    /// Both halves of a large batch come back, each mount found where the
    /// kernel says it is (our own namespace's mounts, asked many times over).
    #[test]
    fn large_batch_is_checked_whole() {
        let Some(me) = own() else {
            eprintln!("skipped: no statmount here");
            return;
        };
        let ids = Source::Statmount
            .ids(&me)
            .ok()
            .flatten()
            .unwrap_or_default();
        assert!(!ids.is_empty(), "our namespace lists no mounts");
        let mut c = Candidates::default();
        c.push(me);
        let guesses: Vec<(u64, Candidates)> = ids
            .iter()
            .cycle()
            .take(PARALLEL_MIN * 2)
            .map(|id| (*id, c))
            .collect();
        let mut placer = Placer::default();
        // Twice: the second batch goes to the worker the first one started,
        // and is read without strings.
        for detail in [Detail::Full, Detail::Numbers] {
            let got = placer.check_all((Source::Statmount, detail), &guesses);
            assert_eq!(got.len(), guesses.len());
            for ((want, _), (id, (ns, m))) in guesses.iter().zip(&got) {
                assert_eq!((id, *ns, m.id), (want, me.inode, *want));
                assert_eq!(m.mount_point.is_empty(), detail == Detail::Numbers, "{m:?}");
            }
        }
        let w = placer
            .worker
            .as_ref()
            .expect("the worker stays for the next batch");
        // The kernel's view of the worker: off the CPU it was steered from
        // (with one CPU allowed there is nowhere else, and nothing to check).
        if let Some(off) = w.off {
            let mask = sched_getaffinity(w.tid).expect("the worker's affinity");
            assert_eq!(
                mask.is_set(off),
                Ok(false),
                "the worker may run on CPU {off}"
            );
        }
        // An id no namespace holds is not found.
        let none = placer.check_all((Source::Statmount, Detail::Full), &[(u64::MAX, c)]);
        assert!(none.is_empty());
    }
}
