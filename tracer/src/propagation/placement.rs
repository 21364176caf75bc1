//! Checking where copies of a mount landed: each mount id with the
//! namespaces it is guessed to be in, in order, asked with statmount(2) until
//! one holds it. The kernel's answer, not the guess, is what is kept.
//!
//! A propagation into a thousand namespaces is a thousand statmount calls
//! (~3 µs each, most of the time from a syscall's exit to its copies on the
//! output), so a large batch is checked on two threads. Diff mode, which has
//! no ids to ask for, asks each namespace for its new mounts the same way.
use std::{
    sync::{
        Arc, Condvar, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
        mpsc::{Sender, channel, sync_channel},
    },
    time::Duration,
};

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

/// One question of a batch.
#[derive(Clone, Copy, Debug)]
enum Ask {
    /// Which of the candidates holds mount `id`.
    Where(u64, Candidates),
    /// Every mount of the namespace with an id above the one given.
    Newer(Found, u64),
    /// The ids of every mount of the namespace.
    Ids(Found),
}

/// What was found: a mount and its namespace, or a namespace's ids.
enum Answer {
    Mount(u64, (u32, Mount)),
    Ids(u32, Vec<u64>),
}

/// A thread's answers to the parts it took, each by where the part starts.
type Parts = Vec<(usize, Vec<Answer>)>;

fn run((source, detail): How, part: &[Ask]) -> Vec<Answer> {
    let mut out = Vec::new();
    for ask in part {
        match ask {
            Ask::Where(id, c) => out.extend(
                c.check(source, *id, detail)
                    .map(|hit| Answer::Mount(*id, hit)),
            ),
            Ask::Newer(f, after) => match source.ids_after(f, *after) {
                Ok(ids) => out.extend(
                    ids.into_iter()
                        .flatten()
                        .filter_map(|id| source.stat_in(f, id, detail))
                        .map(|m| Answer::Mount(m.id, (f.inode, m))),
                ),
                Err(e) => log::debug!("listing new mounts: {e}"),
            },
            Ask::Ids(f) => match source.ids(f) {
                Ok(Some(ids)) => out.push(Answer::Ids(f.inode, ids)),
                Ok(None) => {}
                Err(e) => log::debug!("listing mounts: {e}"),
            },
        }
    }
    out
}

/// The mounts among `answers`.
fn mounts(answers: Vec<Answer>) -> Placed {
    answers
        .into_iter()
        .filter_map(|a| match a {
            Answer::Mount(id, hit) => Some((id, hit)),
            Answer::Ids(..) => None,
        })
        .collect()
}

/// Guesses taken this many at a time: small enough that the thread that
/// runs out first waits little for the other's last part (~50 µs).
const PART: usize = 32;

/// A large batch, its parts taken in turn by both threads. Shared rather
/// than split in halves: a worker woken late (its CPU busy with another
/// process) held the caller up until its whole half was done; now the
/// caller takes the parts it has not started.
struct Job {
    how: How,
    guesses: Vec<Ask>,
    /// The first guess no thread has taken yet.
    next: AtomicUsize,
    /// The worker's share: how many guesses it checked, and its parts'
    /// results by where they start.
    theirs: Mutex<(usize, Parts)>,
    finished: Condvar,
}

impl Job {
    fn new(how: How, guesses: Vec<Ask>) -> Job {
        Job {
            how,
            guesses,
            next: AtomicUsize::new(0),
            theirs: Mutex::new((0, Vec::new())),
            finished: Condvar::new(),
        }
    }

    /// Checks parts until none is left: how many guesses, and what was found.
    fn work(&self) -> (usize, Parts) {
        let mut checked = 0;
        let mut parts = Vec::new();
        loop {
            let at = self.next.fetch_add(PART, Ordering::Relaxed);
            let Some(part) = self.guesses.get(at..(at + PART).min(self.guesses.len())) else {
                break;
            };
            if part.is_empty() {
                break;
            }
            checked += part.len();
            parts.push((at, run(self.how, part)));
        }
        (checked, parts)
    }
}

/// Checks guesses, a large batch on two threads at once: the caller's and a
/// worker that is started on first use and then sleeps between batches.
#[derive(Default)]
pub struct Placer {
    worker: Option<Worker>,
}

struct Worker {
    jobs: Sender<Arc<Job>>,
    thread: std::thread::JoinHandle<()>,
    tid: Pid,
    /// The CPU the worker was last kept off.
    off: Option<usize>,
}

impl Worker {
    fn start() -> std::io::Result<Worker> {
        // Unbounded: the caller never waits to hand a batch over, even to a
        // worker still asleep over one the caller finished alone.
        let (jobs, inbox) = channel::<Arc<Job>>();
        let (tell, tid) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("mnttrace-place".into())
            .spawn(move || {
                let _ = tell.send(nix::unistd::gettid());
                // Ends when the Placer, and with it `jobs`, is dropped.
                while let Ok(job) = inbox.recv() {
                    let (checked, parts) = job.work();
                    if checked > 0 {
                        let mut theirs = job.theirs.lock().unwrap_or_else(PoisonError::into_inner);
                        theirs.0 += checked;
                        theirs.1.extend(parts);
                        job.finished.notify_one();
                    }
                }
            })?;
        let tid = tid.recv().map_err(std::io::Error::other)?;
        Ok(Worker {
            jobs,
            thread,
            tid,
            off: None,
        })
    }

    /// Keeps the worker off the caller's CPU. Woken there, it waited for the
    /// caller's part to end while the other CPU sat idle: the scheduler
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

    /// The worker's parts of `job`, of `owed` guesses in all, once it has
    /// checked them; `None` if it died first.
    fn collect(&self, job: &Job, owed: usize) -> Option<Parts> {
        let mut theirs = job.theirs.lock().unwrap_or_else(PoisonError::into_inner);
        while theirs.0 < owed {
            if self.thread.is_finished() {
                return None;
            }
            theirs = job
                .finished
                .wait_timeout(theirs, Duration::from_millis(10))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Some(std::mem::take(&mut theirs.1))
    }
}

impl Placer {
    /// Every guess checked; those found, in the guesses' order, with their
    /// namespace and mount read in `detail`.
    pub fn check_all(&mut self, how: How, guesses: Vec<(u64, Candidates)>) -> Placed {
        let asks = guesses.into_iter().map(|(id, c)| Ask::Where(id, c));
        mounts(self.ask_all(how, asks.collect()))
    }

    /// Each namespace's mount ids, in id order, where the source lists ids
    /// (statmount); namespaces that cannot be read are left out.
    pub fn ids_all(&mut self, source: Source, namespaces: Vec<Found>) -> Vec<(u32, Vec<u64>)> {
        let asks = namespaces.into_iter().map(Ask::Ids).collect();
        self.ask_all((source, Detail::Numbers), asks)
            .into_iter()
            .filter_map(|a| match a {
                Answer::Ids(ns, ids) => Some((ns, ids)),
                Answer::Mount(..) => None,
            })
            .collect()
    }

    /// The mounts of each namespace with ids above the one given, read in
    /// `detail`, with their namespace: in the order asked, each namespace's in
    /// id order. Mounts of a namespace that cannot be read are left out.
    pub fn newer_all(&mut self, how: How, asks: Vec<(Found, u64)>) -> Placed {
        let asks = asks.into_iter().map(|(f, after)| Ask::Newer(f, after));
        mounts(self.ask_all(how, asks.collect()))
    }

    fn ask_all(&mut self, how: How, guesses: Vec<Ask>) -> Vec<Answer> {
        if guesses.len() < PARALLEL_MIN {
            return run(how, &guesses);
        }
        if self.worker.is_none() {
            match Worker::start() {
                Ok(w) => self.worker = Some(w),
                Err(e) => log::debug!("no second thread for placement ({e}): one does it all"),
            }
        }
        let job = Arc::new(Job::new(how, guesses));
        let sent = self.worker.as_mut().is_some_and(|w| {
            w.steer();
            w.jobs.send(job.clone()).is_ok()
        });
        let (checked, mut parts) = job.work();
        let owed = job.guesses.len() - checked;
        if owed > 0 {
            match self
                .worker
                .as_ref()
                .filter(|_| sent)
                .and_then(|w| w.collect(&job, owed))
            {
                Some(theirs) => parts.extend(theirs),
                None => {
                    // The worker is gone (it cannot fail otherwise), and with
                    // it what it was checking: this thread does the batch
                    // again, and the next large one starts another worker.
                    self.worker = None;
                    return run(how, &job.guesses);
                }
            }
        }
        parts.sort_unstable_by_key(|(at, _)| *at);
        parts.into_iter().flat_map(|(_, placed)| placed).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    /// Our own namespace and its mount ids, where the kernel has statmount.
    fn own() -> Option<(Found, Vec<u64>)> {
        let source = Source::detect();
        if source != Source::Statmount {
            eprintln!("skipped: no statmount here");
            return None;
        }
        let ino = std::fs::metadata("/proc/self/ns/mnt").ok()?.ino() as u32;
        let me = source.discover(0).into_iter().find(|f| f.inode == ino)?;
        let ids = source.ids(&me).ok().flatten().unwrap_or_default();
        Some((me, ids))
    }

    /// Threads taking parts of one job in turn check every guess once.
    #[test]
    fn shared_parts_cover_the_batch_once() {
        let Some((me, ids)) = own() else {
            return;
        };
        let mut c = Candidates::default();
        c.push(me);
        let guesses: Vec<(u64, Candidates)> = ids
            .iter()
            .cycle()
            .take(PART * 7 + 5)
            .map(|id| (*id, c))
            .collect();
        let asks = guesses.iter().map(|(id, c)| Ask::Where(*id, *c)).collect();
        let job = Job::new((Source::Statmount, Detail::Numbers), asks);
        let shares: Vec<(usize, Parts)> = std::thread::scope(|s| {
            let t: Vec<_> = (0..3).map(|_| s.spawn(|| job.work())).collect();
            t.into_iter().map(|t| t.join().expect("a share")).collect()
        });
        assert_eq!(shares.iter().map(|s| s.0).sum::<usize>(), guesses.len());
        let mut parts: Parts = shares.into_iter().flat_map(|s| s.1).collect();
        parts.sort_unstable_by_key(|(at, _)| *at);
        let got: Vec<u64> = mounts(parts.into_iter().flat_map(|p| p.1).collect())
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let want: Vec<u64> = guesses.iter().map(|(id, _)| *id).collect();
        assert_eq!(got, want);
    }

    /// A namespace asked for its mounts above an id gives those, in id
    /// order, each read in the detail asked, and asked for its ids gives
    /// them all; many namespaces (here our own, asked many times) are asked
    /// on two threads, in the order asked.
    #[test]
    fn namespaces_give_their_newer_mounts_and_id_lists() {
        let Some((me, ids)) = own() else {
            return;
        };
        let Some(&after) = ids.iter().rev().nth(2) else {
            eprintln!("skipped: fewer than 3 mounts here");
            return;
        };
        let want: Vec<u64> = ids.iter().copied().filter(|id| *id > after).collect();
        let mut placer = Placer::default();
        for (n, detail) in [(1, Detail::Full), (PARALLEL_MIN * 2, Detail::Numbers)] {
            let got = placer.newer_all((Source::Statmount, detail), vec![(me, after); n]);
            let got_ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
            assert_eq!(got_ids, want.repeat(n));
            for (id, (ns, m)) in &got {
                assert_eq!((*ns, m.id), (me.inode, *id));
                assert_eq!(m.mount_point.is_empty(), detail == Detail::Numbers, "{m:?}");
            }
        }
        // Whole id lists, one per namespace asked, in the order asked.
        for n in [1, PARALLEL_MIN * 2] {
            let got = placer.ids_all(Source::Statmount, vec![me; n]);
            assert_eq!(got, vec![(me.inode, ids.clone()); n]);
        }
        // Nothing above the newest.
        let last = *ids.last().expect("a mount");
        assert!(
            placer
                .newer_all((Source::Statmount, Detail::Full), vec![(me, last)])
                .is_empty()
        );
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
        let Some((me, ids)) = own() else {
            return;
        };
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
            let got = placer.check_all((Source::Statmount, detail), guesses.clone());
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
        // A batch the caller finishes alone while the worker is still busy
        // (with the batch before, here) is whole all the same, and the
        // worker, coming to it late, leaves the next batch whole too.
        let first = placer.check_all((Source::Statmount, Detail::Numbers), guesses.clone());
        let second = placer.check_all((Source::Statmount, Detail::Numbers), guesses.clone());
        assert_eq!(first.len(), guesses.len());
        assert_eq!(second.len(), guesses.len());
        // An id no namespace holds is not found.
        let none = placer.check_all((Source::Statmount, Detail::Full), vec![(u64::MAX, c)]);
        assert!(none.is_empty());
    }
}
