//! Checking where copies of a mount landed: each mount id with the
//! namespaces it is guessed to be in, in order, asked with statmount(2) until
//! one holds it. The kernel's answer, not the guess, is what is kept.
//!
//! A propagation into a thousand namespaces is a thousand statmount calls
//! (~3 µs each, most of the time from a syscall's exit to its copies on the
//! output), so a large batch is split in two and checked on two threads.
use crate::model::{Found, Mount, Source};

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

    /// The first candidate namespace that holds mount `id`, and the mount.
    pub fn check(&self, source: Source, id: u64) -> Option<(u32, Mount)> {
        self.0
            .iter()
            .flatten()
            .find_map(|f| source.stat(f, id).map(|m| (f.inode, m)))
    }
}

/// Every guess checked; those found, with their namespace and mount.
pub fn check_all(source: Source, guesses: &[(u64, Candidates)]) -> Vec<(u64, (u32, Mount))> {
    let run = |part: &[(u64, Candidates)]| -> Vec<(u64, (u32, Mount))> {
        part.iter()
            .filter_map(|(id, c)| c.check(source, *id).map(|hit| (*id, hit)))
            .collect()
    };
    if guesses.len() < PARALLEL_MIN {
        return run(guesses);
    }
    let (a, b) = guesses.split_at(guesses.len() / 2);
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("mnttrace-place".into())
            .spawn_scoped(s, || run(b));
        let mut out = run(a);
        match other {
            // A half whose thread failed is simply not found here: the
            // caller searches for what is missing.
            Ok(h) => out.extend(h.join().unwrap_or_default()),
            Err(e) => {
                log::debug!("no second thread for placement ({e}): one does both halves");
                out.extend(run(b));
            }
        }
        out
    })
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
        let got = check_all(Source::Statmount, &guesses);
        assert_eq!(got.len(), guesses.len());
        for ((want, _), (id, (ns, m))) in guesses.iter().zip(&got) {
            assert_eq!((id, *ns, m.id), (want, me.inode, *want));
        }
        // An id no namespace holds is not found.
        let none = check_all(Source::Statmount, &[(u64::MAX, c)]);
        assert!(none.is_empty());
    }
}
