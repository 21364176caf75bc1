//! The join: syscall records from the ring buffer on one side, mount events
//! (fanotify) or re-read mount tables (diff) on the other, the model between.
//!
//! A fanotify event carries no timestamp, so each gets a window: it was
//! queued after the previous read of the group began and before the read that
//! returned it ended. It belongs to the syscall of the same process whose
//! [enter, exit] overlaps that window; the kernel queues mount events before
//! the syscall returns, so reading the group after a syscall's exit record
//! finds all of its events.
use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fs::File,
    os::fd::AsFd,
    time::{Duration, SystemTime},
};

use foldhash::HashMap;

use super::{
    Effect, Mode, Unsettled, effect,
    fanotify::{self, FAN_MNT_ATTACH, FAN_MNT_DETACH, Watcher},
    lineage::{self, Lineages},
    placement::{Candidates, Placer},
    target,
};
use crate::{
    model::{
        Change, Found, Model, Mount, Source,
        discovery::{Discovery, Scan},
        mount::shared,
        reach::{self, Relation},
        sys::Detail,
    },
    record::{Action, Ended, Evidence, LossReason, Lost, Propagated, Syscall, Via},
};

/// How long an event may wait for its syscall once the ring buffer is idle.
const ORPHAN_AFTER: Duration = Duration::from_secs(1);
/// How often /proc is scanned for namespaces made or ended unseen.
const RESCAN: Duration = Duration::from_secs(1);
/// Recently detached mounts kept for late lookups.
const GRAVEYARD: usize = 4096;
/// Allowance between the probe's clock (bpf_ktime_get_ns) and ours
/// (CLOCK_MONOTONIC through the vDSO): one timekeeper, read two ways.
const CLOCK_SLACK_NS: u64 = 10_000;
/// Mount events waiting for their syscall. When mnttrace falls this far
/// behind, the oldest are dropped (counted, reported as `backlog`), so memory
/// stays bounded on a host that mounts faster than it can follow.
const MAX_PENDING: usize = 32_768;
/// Processes whose namespace is remembered from their latest call.
const MAX_SEEN: usize = 65_536;
/// Namespaces whose propagations' order is remembered.
const MAX_TRAILS: usize = 4096;
/// How far below a mount id `locate` looks for a placed one to count from.
const NEAR: u64 = 4096;
/// Placed copies remembered per namespace to count from.
const PLACED: usize = 4096;

pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// A mount event read from fanotify, not yet joined to its syscall.
struct Pending {
    pid: u32,
    mnt_id: u64,
    mask: u64,
    /// Queued within (lo, hi], CLOCK_MONOTONIC ns.
    lo: u64,
    hi: u64,
    /// Where it is now (attach, move), looked up when the event was read.
    now: Option<(u32, Mount)>,
    /// Where it was (detach, move), from the model.
    was: Option<(u32, Mount)>,
    via: Via,
}

/// The order in which a namespace's propagations reached others: for each
/// namespace, the one whose copy came next, and that chain from the
/// namespace itself as a sequence.
#[derive(Default)]
struct Trail {
    next: HashMap<u32, u32>,
    seq: Vec<u32>,
    at: HashMap<u32, usize>,
    /// Copies placed lately: id → namespace and parent, to count from.
    placed: BTreeMap<u64, (u32, u64)>,
}

impl Trail {
    /// The nearest copy placed below `id`, close enough to be of the same
    /// propagation: its id, namespace and parent.
    fn below(&self, id: u64) -> Option<(u64, u32, u64)> {
        self.placed
            .range(id.saturating_sub(NEAR)..id)
            .next_back()
            .map(|(id, (ns, parent))| (*id, *ns, *parent))
    }

    fn place(&mut self, placed: Vec<(u64, (u32, u64))>) {
        self.placed.extend(placed);
        while self.placed.len() > PLACED {
            self.placed.pop_first();
        }
    }

    fn learn(&mut self, home: u32, links: Vec<(u32, u32)>) {
        let mut changed = false;
        for (a, b) in links {
            changed |= self.next.insert(a, b) != Some(b);
        }
        if !changed {
            return;
        }
        self.seq.clear();
        self.at.clear();
        let mut cur = Some(home);
        while let Some(ns) = cur {
            if self.at.insert(ns, self.seq.len()).is_some() {
                break;
            }
            self.seq.push(ns);
            cur = self.next.get(&ns).copied();
        }
    }

    /// The namespace `steps` copies after `ns`'s.
    #[cfg(test)]
    fn step(&self, ns: u32, steps: usize) -> Option<u32> {
        self.nth(*self.at.get(&ns)?, steps)
    }

    /// Where `ns` is in the sequence.
    fn index(&self, ns: u32) -> Option<usize> {
        self.at.get(&ns).copied()
    }

    /// The namespace `steps` after the `i`th.
    fn nth(&self, i: usize, steps: usize) -> Option<u32> {
        self.seq.get((i + steps) % self.seq.len()).copied()
    }
}

/// A copy `locate` placed: its id, namespace and parent.
type PlacedCopy = (u64, u32, u64);

/// Peer rings as the model guesses them, built once per batch: members by
/// id, newest first (a clone joins the ring right after the mount it copies).
#[derive(Default)]
struct Rings {
    /// Peer group → its members' namespaces in guessed ring order, and each
    /// member mount's place in it.
    rings: HashMap<u64, (Vec<u32>, HashMap<u64, usize>)>,
}

impl Rings {
    /// `parent`'s peer group and its place in the group's ring.
    fn index(&mut self, model: &Model, ns: u32, parent: u64) -> Option<(u64, usize)> {
        let group = model.get(ns)?.table.get(parent)?.propagation.shared?;
        let (_, at) = self.rings.entry(group).or_insert_with(|| {
            let mut members: Vec<_> = model.peers().peers(group).copied().collect();
            members.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
            let at = members.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
            (members.into_iter().map(|r| r.ns).collect(), at)
        });
        Some((group, *at.get(&parent)?))
    }

    /// The namespace `steps` members after the `i`th of `group`'s ring.
    fn nth(&self, (group, i): (u64, usize), steps: usize) -> Option<u32> {
        let (order, _) = self.rings.get(&group)?;
        order.get((i + steps) % order.len()).copied()
    }
}

pub struct Correlator {
    pub model: Model,
    /// Scans of /proc for namespaces, on a thread of their own.
    discovery: Option<Discovery>,
    mode: Mode,
    watcher: Option<Watcher>,
    pending: VecDeque<Pending>,
    /// Events queued before the latest call began, which no call has
    /// claimed: in front of `pending`, in order. They wait there to become
    /// orphans, out of the way of the calls that follow (when calls are
    /// lost in a storm their events pile up, and a call's search and its
    /// removals walked and shifted them all). Empty while `listings` > 0.
    aged: VecDeque<Pending>,
    /// Entries of `pending` from listings: the only ones whose `lo` is out of
    /// order (fanotify reads queue in time order), so while there are none a
    /// call's search can stop at the first event queued after it.
    listings: usize,
    read_started: u64,
    /// How far the ring has been read (CLOCK_MONOTONIC ns): the exit of the
    /// latest call handled, or the last tick that found mnttrace caught up.
    /// Every call that ended before it has been handled, so it is the clock
    /// by which unclaimed events age (behind, their calls are still in the
    /// ring, however long ago they were read).
    ring_at: u64,
    /// Only this process's syscalls reach us (kernel-side --pid); its events alone matter.
    kernel_tgid: u32,
    graveyard: HashMap<u64, (u32, Mount)>,
    /// Mounts the kernel attached, not in the model until the records of
    /// the calls that made them are out ([`Correlator::settle`]).
    unsettled: Vec<Unsettled>,
    /// Per namespace: where the propagations its processes caused went.
    trails: HashMap<u32, Trail>,
    /// Copies placed by the latest `locate`, by the namespace of the
    /// process that caused them, in id order (id, namespace, parent): its
    /// trails learn them once the records are out (see `learn`).
    unlearnt: Vec<(u32, Vec<PlacedCopy>)>,
    placer: Placer,
    /// Propagations whose copies are read without strings.
    lineages: Lineages,
    /// Process → the namespace its latest call ended in.
    seen_in: HashMap<u32, u32>,
    /// When each namespace followed since start was watched
    /// (CLOCK_MONOTONIC ns): a call that ended before made no event there.
    watched_at: HashMap<u32, u64>,
    /// Namespaces no mount event is read from, and since when
    /// (CLOCK_MONOTONIC ns): none of their mounts is shared or a slave, so
    /// nothing propagates into or out of them, and each change there is a
    /// traced call made there, re-read when handled (as in diff mode). The
    /// kernel's fanotify event per mount, charged to the mounting process,
    /// was most of what a storm in a private namespace paid for being traced
    /// (docs/design.md, *Benchmarks*).
    quiet: HashMap<u32, Quiet>,
    /// Quiet namespaces watched since (a mount there became shared or a
    /// slave), with the time of the mark: calls there that ended before it
    /// made no event, and are re-read.
    woke: HashMap<u32, u64>,
    grave_order: VecDeque<u64>,
    /// Namespaces torn down since the last tick.
    ended: Vec<Ended>,
    /// Namespaces found dead, with the time of the read that found them:
    /// still in the model, with the mounts their end took, for the calls
    /// made before it that mnttrace has yet to handle ([`Self::bury_dead`]).
    dying: Vec<(u32, u64)>,
    overflows: u64,
    /// Events dropped from a full `pending` since the last tick, and in all.
    backlog: u64,
    backlog_total: u64,
    backlog_since: SystemTime,
    overflows_total: u64,
    overflow_since: SystemTime,
}

impl Correlator {
    /// Reads every namespace (none with `Mode::Off`), each watched first.
    pub fn new(
        source: Source,
        skip: u32,
        mode: Mode,
        watcher: Option<Watcher>,
        kernel_tgid: u32,
    ) -> Correlator {
        let model = match (mode, &watcher) {
            (Mode::Off, _) => Model::new(source, skip),
            (_, Some(w)) => Model::load(source, skip, |f| mark(w, f, true)),
            (_, None) => Model::load(source, skip, |_| {}),
        };
        // Without propagation no table is read, so no namespace is looked for.
        let discovery = match mode {
            Mode::Off => None,
            _ => Discovery::start(source, skip, RESCAN)
                .inspect_err(|e| {
                    log::warn!("no rescan of /proc for namespaces (thread: {e}); only followed calls add them")
                })
                .ok(),
        };
        let mut c = Correlator {
            model,
            discovery,
            mode,
            watcher,
            pending: VecDeque::new(),
            aged: VecDeque::new(),
            listings: 0,
            read_started: monotonic_ns(),
            ring_at: 0,
            kernel_tgid,
            graveyard: HashMap::default(),
            unsettled: Vec::new(),
            trails: HashMap::default(),
            unlearnt: Vec::new(),
            placer: Placer::default(),
            lineages: Lineages::default(),
            seen_in: HashMap::default(),
            watched_at: HashMap::default(),
            quiet: HashMap::default(),
            woke: HashMap::default(),
            grave_order: VecDeque::new(),
            ended: Vec::new(),
            dying: Vec::new(),
            overflows: 0,
            backlog: 0,
            backlog_total: 0,
            backlog_since: SystemTime::now(),
            overflows_total: 0,
            overflow_since: SystemTime::now(),
        };
        let all: Vec<u32> = c.model.namespaces().map(|n| n.found.inode).collect();
        for ns in all {
            c.hush(ns);
        }
        c
    }

    /// Whether no mount of `ns` is shared or a slave: it can neither
    /// receive nor give propagation.
    fn is_quiet(&self, ns: u32) -> bool {
        self.model.get(ns).is_some_and(|n| {
            n.table
                .iter()
                .all(|m| m.propagation.shared.is_none() && m.propagation.master.is_none())
        })
    }

    /// Stops reading mount events of `ns` if it is quiet (fanotify mode).
    /// Not while only one process's calls reach mnttrace (`--pid`): the
    /// others' change quiet namespaces unseen.
    fn hush(&mut self, ns: u32) {
        let Some(w) = &self.watcher else { return };
        if self.kernel_tgid != 0 || self.quiet.contains_key(&ns) || !self.is_quiet(ns) {
            return;
        }
        let Some(f) = self.model.get(ns).map(|n| n.found) else {
            return;
        };
        // (Both maps hold namespaces of the model only: each entry goes when
        // its namespace does.)
        // Before the mark goes: a call that ended before this made its
        // events, and takes them; one that ended after is re-read.
        let since = monotonic_ns();
        self.quiet.insert(
            ns,
            Quiet {
                since,
                alive_at: SystemTime::now(),
            },
        );
        self.woke.remove(&ns);
        mark(w, &f, false);
    }

    /// Reads mount events of quiet `ns` from now on: one of its mounts is
    /// shared or a slave now (made so, or moved in so).
    fn wake(&mut self, ns: u32) {
        let Some(w) = &self.watcher else { return };
        if !self.quiet.contains_key(&ns) || self.is_quiet(ns) {
            return;
        }
        self.quiet.remove(&ns);
        let Some(f) = self.model.get(ns).map(|n| n.found) else {
            return;
        };
        mark(w, &f, true);
        log::debug!("mnt:[{ns}] has a shared or slave mount now: its mount events are read");
        self.woke.insert(ns, monotonic_ns());
    }

    /// The end of `gone`, if it was quiet: no event told of it, so this is
    /// its record (found by the rescan of /proc, or by a new namespace on
    /// its inode number).
    fn end_quiet(&mut self, gone: crate::model::Namespace) {
        let (ns, pid) = (gone.found.inode, gone.found.pid);
        if let Some(q) = self.quiet.remove(&ns)
            && (self.kernel_tgid == 0 || pid == self.kernel_tgid)
        {
            self.ended.push(Ended {
                container: None,
                time: SystemTime::now(),
                mntns: ns,
                pid: (pid != 0).then_some(pid),
                mounts: gone.table.len(),
                alive_at: Some(q.alive_at),
            });
        }
    }

    /// Quiet namespace `ns` is alive now, with `pid` in it: found there by
    /// a scan of /proc (`scanned`), or the caller of a call there. Its end
    /// names the process last known in it: the one a scan found, else the
    /// one it was found by while that lives, else the latest caller (the
    /// runtime process that made a container's namespace is gone by the
    /// time its init mounts).
    fn alive(&mut self, ns: u32, pid: u32, scanned: bool) {
        let Some(q) = self.quiet.get_mut(&ns) else {
            return;
        };
        q.alive_at = SystemTime::now();
        let Some(n) = self.model.get(ns) else { return };
        if n.found.pid != pid
            && (scanned || !std::path::Path::new(&format!("/proc/{}", n.found.pid)).exists())
        {
            self.model.set_member(ns, pid);
        }
    }

    /// Whether `s` made no mount event that can be read: its namespace was
    /// quiet when it ended.
    fn unwatched(&self, s: &Syscall) -> bool {
        let ns = s.mntns_before;
        self.quiet.get(&ns).is_some_and(|q| q.since <= s.ktime_ns)
            || self.woke.get(&ns).is_some_and(|&at| s.ktime_ns < at)
    }

    /// fanotify queue overflows so far (each lost an unknown number of
    /// events), and mount events dropped from a full backlog.
    pub fn overflows(&self) -> u64 {
        self.overflows_total + self.overflows + self.backlog_total + self.backlog
    }

    /// No more mount events: the programs are detached, and events read
    /// from now on would belong to syscalls mnttrace will never see.
    pub fn stop_watching(&mut self) {
        self.ingest();
        self.watcher = None;
    }

    pub fn watcher(&self) -> Option<&Watcher> {
        self.watcher.as_ref()
    }

    /// Watches `f` (fanotify mode), then reads it into the model.
    fn add(&mut self, f: Found) -> Result<(), crate::model::SourceError> {
        // A new namespace on a dead one's inode number.
        if let Some(i) = self.dying.iter().position(|(ns, _)| *ns == f.inode) {
            self.dying.swap_remove(i);
            self.model.forget(f.inode);
        }
        // A quiet one's: its end had no record yet.
        if self.quiet.contains_key(&f.inode)
            && !self.model.is_current(&f)
            && let Some(gone) = self.model.forget(f.inode)
        {
            self.end_quiet(gone);
        }
        if let Some(w) = &self.watcher {
            if self.watched_at.len() >= MAX_SEEN {
                self.watched_at.clear();
            }
            mark(w, &f, true);
            // After the mark: a call that ended before it made no event
            // there (one that ended while it was placed may have: if so,
            // it is reported without its call, not given to the next).
            self.watched_at.insert(f.inode, monotonic_ns());
        }
        self.quiet.remove(&f.inode);
        self.woke.remove(&f.inode);
        self.model.add(f)?;
        self.hush(f.inode);
        Ok(())
    }

    /// Reads every queued mount event, looks each mount up while it exists and
    /// applies it to the model.
    pub fn ingest(&mut self) {
        self.read(None);
    }

    /// Puts in the model the mounts read attached. A mount call's records
    /// need only their lookups, so the agent writes them first: at a
    /// thousand namespaces the thousand inserts (a cache miss or more each)
    /// came between the call's exit and its copies on the output, and so
    /// did those of a part read before its exit. Every other way into the
    /// correlator settles first, but for the mounts of the processes whose
    /// attaches it reads (and of the process whose mount call it handles),
    /// and a claim puts in at once whatever is not the claiming call's own.
    /// The trails learn the latest read's copies then too (see `learn`).
    pub fn settle(&mut self) {
        self.settle_except(&[]);
        self.learn();
    }

    /// Puts in the model the unsettled mounts `now` picks.
    fn settle_if(&mut self, now: impl Fn(&Unsettled) -> bool) {
        let model = &mut self.model;
        for u in self.unsettled.extract_if(.., |u| now(u)) {
            model.attach(u.ns, u.mount);
        }
    }

    /// Settles every unsettled mount but those of `keep` (sorted ids).
    fn settle_except(&mut self, keep: &[u64]) {
        self.settle_if(|u| keep.binary_search(&u.mount.id).is_err());
    }

    /// Settles every unsettled mount but those of the processes `keep`
    /// (sorted).
    fn settle_others(&mut self, keep: &[u32]) {
        self.settle_if(|u| keep.binary_search(&u.pid).is_err());
    }

    /// Reads the mount events queued so far. The mounts they attached wait
    /// in `unsettled`; the model takes those of other processes first (but
    /// `defer`'s: the process whose mount call is being handled).
    fn read(&mut self, defer: Option<u32>) {
        let Some(w) = &self.watcher else {
            self.settle();
            return;
        };
        let started = monotonic_ns();
        let events = match w.read() {
            Ok(e) => e,
            Err(e) => {
                log::warn!("reading fanotify mount events: {e}");
                self.settle();
                return;
            }
        };
        // The processes whose attaches this read holds (and `defer`): their
        // earlier ones stay out too. Sorted: a namespace-death storm is a
        // thousand processes.
        let mut keep: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                fanotify::Event::Mount { mask, pid, .. } if mask & FAN_MNT_ATTACH != 0 => {
                    Some(*pid)
                }
                _ => None,
            })
            .chain(defer)
            .collect();
        keep.sort_unstable();
        keep.dedup();
        self.settle_others(&keep);
        let hi = monotonic_ns();
        let lo = self.read_started;
        self.read_started = started;
        let batch = self.aged.len() + self.pending.len();
        // A mount detached again in the same read (mnttrace is behind a
        // storm) is not looked for: no namespace has it any more, and the
        // search for it would ask every one.
        let gone: BTreeSet<u64> = events
            .iter()
            .filter_map(|e| match e {
                fanotify::Event::Mount { mask, mnt_id, .. } if *mask == FAN_MNT_DETACH => {
                    Some(*mnt_id)
                }
                _ => None,
            })
            .collect();
        let attached: Vec<(u64, u32)> = events
            .iter()
            .filter_map(|e| match e {
                fanotify::Event::Mount { mask, pid, mnt_id }
                    if mask & FAN_MNT_ATTACH != 0 && !gone.contains(mnt_id) =>
                {
                    Some((*mnt_id, *pid))
                }
                _ => None,
            })
            .collect();
        let mut whereabouts = self.locate(&attached);
        let mut uses: HashMap<u64, usize> = HashMap::default();
        for (id, _) in &attached {
            *uses.entry(*id).or_default() += 1;
        }
        self.drop_listed(&events);
        let mut emptied: BTreeMap<u32, u32> = BTreeMap::new();
        for ev in events {
            let fanotify::Event::Mount { mask, pid, mnt_id } = ev else {
                self.overflows += 1;
                continue;
            };
            let was = if mask & FAN_MNT_DETACH != 0 {
                // It may be a mount this read attached.
                self.settle();
                let ns = self.model.find(mnt_id).map(|(ns, _)| ns);
                let was = ns.and_then(|ns| Some((ns, self.model.detach(ns, mnt_id)?)));
                if let Some((ns, _)) = &was
                    && self.model.get(*ns).is_some_and(|n| n.table.is_empty())
                {
                    emptied.insert(*ns, pid);
                }
                was.or_else(|| self.graveyard.get(&mnt_id).cloned())
            } else {
                None
            };
            if let Some((ns, m)) = &was {
                self.bury(*ns, m.clone());
            }
            // Taken by an id's last event, copied for earlier ones (a mount
            // moved twice within one read).
            let now = match uses.get_mut(&mnt_id) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    whereabouts.get(&mnt_id).cloned()
                }
                _ => whereabouts.remove(&mnt_id),
            };
            if let Some((ns, m)) = &now {
                // A move (its detach read here or earlier): what is beneath
                // it moved too, and the kernel says nothing of that.
                let before = was.as_ref().or_else(|| self.graveyard.get(&mnt_id));
                if let Some((_, old)) =
                    before.filter(|(b_ns, old)| b_ns == ns && old.mount_point != m.mount_point)
                {
                    // The mounts beneath it must be in the model to move
                    // with it: all but those of the call being handled, as
                    // when every read settled first.
                    let from = old.mount_point.clone();
                    self.settle_others(defer.as_slice());
                    self.model.rebase(*ns, m.id, &from, &m.mount_point);
                }
                self.unsettled.push(Unsettled {
                    ns: *ns,
                    mount: m.clone(),
                    pid,
                    read_at: hi,
                });
            }
            self.pending.push_back(Pending {
                pid,
                mnt_id,
                mask,
                lo,
                hi,
                now,
                was,
                via: Via::Fanotify,
            });
        }
        while self.aged.len() + self.pending.len() > MAX_PENDING {
            if let Some(p) = self.aged.pop_front().or_else(|| self.pending.pop_front()) {
                self.backlog += 1;
                self.listings -= usize::from(p.via == Via::Listing).min(self.listings);
            }
        }
        if !emptied.is_empty() {
            self.settle();
        }
        for (ns, pid) in emptied {
            self.teardown(ns, pid, batch, hi);
        }
    }

    /// A new namespace is watched before its first listing, so a mount made
    /// in between is both in that listing and a fanotify event. The event is
    /// the truth (it names the process whose call made the mount): the
    /// listing's guess of the same change goes. Kept, the copy was left over
    /// for the process's next call to claim (a pivot_root, as a slave).
    fn drop_listed(&mut self, events: &[fanotify::Event]) {
        if self.listings == 0 {
            return;
        }
        let seen: BTreeSet<(u64, u64)> = events
            .iter()
            .filter_map(|e| match e {
                fanotify::Event::Mount { mask, mnt_id, .. } => Some((*mnt_id, *mask)),
                _ => None,
            })
            .collect();
        let before = self.pending.len();
        self.pending
            .retain(|p| p.via != Via::Listing || !seen.contains(&(p.mnt_id, p.mask)));
        self.listings -= (before - self.pending.len()).min(self.listings);
    }

    /// Forgets the dead namespaces no call still to come can have seen
    /// alive: those found dead before `enter` (`None`: all).
    fn bury_dead(&mut self, enter: Option<u64>) {
        let (model, woke) = (&mut self.model, &mut self.woke);
        self.dying.retain(|&(ns, at)| {
            let alive = enter.is_some_and(|enter| enter <= at);
            if !alive {
                model.forget(ns);
                woke.remove(&ns);
            }
            alive
        });
    }

    /// A namespace all of whose mounts were detached by one process at once
    /// died with its last process: one record, not one per mount. (A process
    /// still inside it only unmounted everything, `umount -l /`.)
    fn teardown(&mut self, ns: u32, pid: u32, batch: usize, read_at: u64) {
        if self
            .model
            .source
            .identify(pid)
            .is_some_and(|f| f.inode == ns)
        {
            return;
        }
        log::debug!("mnt:[{ns}] emptied by pid {pid}, which is not in it: ended");
        self.unage();
        // Its detaches may span reads; those of mounts no table listed
        // (below the root) are taken from this read only.
        let part = |i: usize, p: &Pending| {
            let here = p.was.as_ref().map(|(n, _)| *n);
            p.pid == pid
                && p.mask == FAN_MNT_DETACH
                && (here == Some(ns) || (here.is_none() && i >= batch))
        };
        // The kernel detaches a dying namespace's mounts in a walk of its
        // tree: what is below its root (a mount no table lists, older than
        // the root), the root, the rest. The process's detaches before that
        // are its own calls' (an umount2 just before it exited, read in the
        // same batch, was taken for the end half the time), left for them to
        // claim; so are those of mounts the model never had, newer than the
        // root (a storm's last umounts, their mounts made and gone between
        // two reads, were taken for the end).
        let root = self.pending.iter().enumerate().position(|(i, p)| {
            part(i, p) && p.was.as_ref().is_some_and(|(_, m)| m.mount_point == "/")
        });
        let start = match root {
            Some(mut start) => {
                let root_id = self.pending[start].mnt_id;
                while start > 0
                    && self.pending.get(start - 1).is_some_and(|p| {
                        part(start - 1, p) && p.was.is_none() && p.mnt_id < root_id
                    })
                {
                    start -= 1;
                }
                start
            }
            None => 0,
        };
        // The mounts its table had (what mountinfo showed); detaches of mounts
        // no table lists go with them uncounted.
        let mut mounts = 0;
        let mut table = Vec::new();
        let mut keep = VecDeque::with_capacity(self.pending.len());
        for (i, p) in self.pending.drain(..).enumerate() {
            if i >= start && part(i, &p) {
                mounts += usize::from(p.was.is_some());
                table.extend(p.was.filter(|(n, _)| *n == ns).map(|(_, m)| m));
            } else {
                keep.push_back(p);
            }
        }
        self.pending = keep;
        // Calls made before the end may still be in the ring (mnttrace is
        // behind): they count and place their copies in the namespace as it
        // was. Forgotten at once, a shared storm's last calls lost the copies
        // made there, each given to the next call.
        for m in table {
            self.model.attach(ns, m);
        }
        self.dying.push((ns, read_at));
        self.listings = self
            .pending
            .iter()
            .filter(|p| p.via == Via::Listing)
            .count();
        if self.kernel_tgid == 0 || pid == self.kernel_tgid {
            self.ended.push(Ended {
                container: None,
                time: SystemTime::now(),
                mntns: ns,
                pid: (pid != 0).then_some(pid),
                mounts,
                alive_at: None,
            });
        }
    }

    fn bury(&mut self, ns: u32, m: Mount) {
        if self.graveyard.insert(m.id, (ns, m.clone())).is_none() {
            self.grave_order.push_back(m.id);
        }
        while self.grave_order.len() > GRAVEYARD {
            if let Some(id) = self.grave_order.pop_front() {
                self.graveyard.remove(&id);
            }
        }
    }

    /// Where each attached mount is now: its namespace and what statmount(2)
    /// says of it. statmount needs the namespace and a fanotify event does not
    /// say which mark fired, so the namespace is guessed and each guess
    /// checked by the statmount the record needs anyway (a wrong one fails
    /// with ENOENT). The kernel makes a propagation's copies in the same
    /// order every time (the peer ring from the mount it was made at, then
    /// the slaves), and unique ids grow in that order: so the guess for a
    /// copy is the namespace that followed the previous copy's last time
    /// ([`Trail`]), else the next member of the parent's peer ring as clones
    /// join it (right after the mount they copy: newest first), else the
    /// causing process's own namespace (a new call's own mount). What is
    /// still unplaced is searched: each candidate namespace is asked once per
    /// batch with listmount(2) for the ids from the smallest wanted on (its
    /// newest mounts), the causing process's namespace and those it can
    /// reach first, the others only if needed.
    fn locate(&mut self, wanted: &[(u64, u32)]) -> HashMap<u64, (u32, Mount)> {
        use std::os::unix::fs::MetadataExt as _;
        let mut found: HashMap<u64, (u32, Mount)> = HashMap::default();
        if wanted.is_empty() {
            return found;
        }
        // The previous read's copies first: this one may hold the rest of
        // its propagation, counted from them.
        self.learn();
        let mut by_home: BTreeMap<Option<u32>, Vec<u64>> = BTreeMap::new();
        let mut homes: HashMap<u32, Option<u32>> = HashMap::default();
        for &(id, pid) in wanted {
            let home = *homes.entry(pid).or_insert_with(|| {
                // Where its latest call left it saves a stat of /proc per
                // read (a storm's calls come one or two a read); a stale
                // answer only costs the search below.
                self.seen_in
                    .get(&pid)
                    .copied()
                    .or_else(|| {
                        std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
                            .map(|m| m.ino() as u32)
                            .ok()
                    })
                    .filter(|ns| self.model.get(*ns).is_some())
            });
            by_home.entry(home).or_default().push(id);
        }
        let mut rings = Rings::default();
        // Read without strings, to be completed from the mount they copy.
        let mut bare: foldhash::HashSet<u64> = foldhash::HashSet::default();
        for (home, ids) in &mut by_home {
            ids.sort_unstable();
            ids.dedup();
            let Some(home) = *home else { continue };
            let trail = self.trails.get(&home);
            // The nearest placed copy below: the id gap says how many steps
            // along the ring each one is. Until one of this batch is placed,
            // one at a time; from it, the rest are guessed at once and checked
            // together.
            let mut anchor: Option<(u64, u32, u64)> = None;
            let mut guesses = Vec::with_capacity(ids.len());
            // Where the copy counted from sits in the trail and in its
            // parent's ring, looked up once for all the ids counted from it.
            type Places = ((u64, u32, u64), Option<usize>, Option<(u64, usize)>);
            let mut places: Option<Places> = None;
            for &id in ids.iter() {
                let near = anchor.or_else(|| trail.and_then(|t| t.below(id)));
                let mut tries = Candidates::default();
                if let Some(n @ (at, ns, parent)) = near {
                    let (_, in_trail, in_ring) = match places {
                        Some(p) if p.0 == n => p,
                        _ => *places.insert((
                            n,
                            trail.and_then(|t| t.index(ns)),
                            rings.index(&self.model, ns, parent),
                        )),
                    };
                    let steps = (id - at) as usize;
                    let by_trail = in_trail.and_then(|i| trail.and_then(|t| t.nth(i, steps)));
                    let by_ring = in_ring.and_then(|r| rings.nth(r, steps));
                    // Mostly the same namespace: looked up once.
                    for ns in [by_trail, by_ring.filter(|r| Some(*r) != by_trail)] {
                        if let Some(n) = ns.and_then(|ns| self.model.get(ns)) {
                            tries.push(n.found);
                        }
                    }
                }
                if let Some(n) = self.model.get(home) {
                    tries.push(n.found);
                }
                if anchor.is_some() {
                    guesses.push((id, tries));
                } else if let Some((ns, m)) = tries.check(self.model.source, id, Detail::Full) {
                    anchor = Some((id, ns, m.parent));
                    found.insert(id, (ns, m));
                }
            }
            // Many copies of a mount made shared just now: read in numbers
            // (see lineage).
            let detail = match anchor.and_then(|(id, _, _)| found.get(&id)) {
                Some((_, m))
                    if guesses.len() >= lineage::NUMBERS_MIN
                        && self.lineages.open(&self.model, &self.unsettled, m) =>
                {
                    Detail::Numbers
                }
                _ => Detail::Full,
            };
            let placed = self.placer.check_all((self.model.source, detail), guesses);
            if detail == Detail::Numbers {
                bare.extend(placed.iter().map(|(id, _)| *id));
            }
            found.extend(placed);
        }
        let missing: BTreeSet<u64> = wanted
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !found.contains_key(id))
            .collect();
        log::debug!(
            "locate: {} mounts, {} where guessed",
            found.len() + missing.len(),
            found.len()
        );
        if let Some(&first) = missing.first() {
            let mut order: Vec<u32> = Vec::new();
            for home in by_home.keys().flatten() {
                order.extend(self.model.reach(*home));
            }
            // Rarely needed (the process left, or its namespace was not known yet).
            order.extend(self.model.namespaces().map(|n| n.found.inode));
            let mut asked = BTreeSet::new();
            let mut placed = 0;
            for ns in order {
                if placed == missing.len() {
                    break;
                }
                if !asked.insert(ns) {
                    continue;
                }
                let Some(n) = self.model.get(ns) else {
                    continue;
                };
                // Statmount only (fanotify implies it): an error or no id
                // lists leaves these to be derived.
                let ids = self
                    .model
                    .source
                    .ids_after(&n.found, first.saturating_sub(1));
                for id in ids.ok().flatten().unwrap_or_default() {
                    if missing.contains(&id)
                        && let Some(m) = self.model.source.stat(&n.found, id)
                    {
                        found.insert(id, (ns, m));
                        placed += 1;
                    }
                }
            }
        }
        // Every batch teaches lineages: the next read may hold the rest of
        // this one's copies.
        self.complete_bare(&mut found, &bare, "locate");
        // Learnt for next time, once the records are out: at 1,000
        // namespaces this was 0.17 ms of the ~3 ms from a propagation's exit
        // to its copies on the output.
        for (home, ids) in by_home {
            let Some(home) = home else { continue };
            let placed = ids
                .iter()
                .filter_map(|id| found.get(id).map(|(ns, m)| (*id, *ns, m.parent)))
                .collect();
            self.unlearnt.push((home, placed));
        }
        found
    }

    /// Teaches each trail the copies `locate` placed last: which
    /// namespace's copy followed which (ids are made in the order the
    /// kernel walks a propagation), and where they are, to count from.
    fn learn(&mut self) {
        if self.unlearnt.is_empty() {
            return;
        }
        if self.trails.len() >= MAX_TRAILS {
            self.trails.clear();
        }
        let batch = std::mem::take(&mut self.unlearnt);
        // Where the read placed mount `id` (each list is in id order).
        let in_batch = |id: u64| {
            batch.iter().find_map(|(_, placed)| {
                let i = placed.binary_search_by_key(&id, |p| p.0).ok()?;
                Some(placed[i].1)
            })
        };
        for (home, placed) in &batch {
            let trail = self.trails.entry(*home).or_default();
            let mut links = Vec::with_capacity(placed.len());
            for (i, &(id, ns, _)) in placed.iter().enumerate() {
                let Some(prev) = id.checked_sub(1) else {
                    continue;
                };
                // Mostly the copy just before it in the same list.
                let before = match i.checked_sub(1).and_then(|j| placed.get(j)) {
                    Some(&(p, p_ns, _)) if p == prev => Some(p_ns),
                    _ => in_batch(prev)
                        .or_else(|| trail.placed.get(&prev).map(|(ns, _)| *ns))
                        .or_else(|| self.model.find(prev).map(|(ns, _)| ns)),
                };
                if let Some(b) = before {
                    links.push((b, ns));
                }
            }
            // Links of namespaces long gone: the chain is learnt again.
            if trail.next.len() > MAX_TRAILS {
                trail.next.clear();
            }
            trail.learn(*home, links);
            trail.place(
                placed
                    .iter()
                    .map(|&(id, ns, parent)| (id, (ns, parent)))
                    .collect(),
            );
        }
    }

    /// Completes the mounts of `found` read without strings (`bare`) from
    /// the mount they copy (see lineage), and reads whole those it cannot.
    fn complete_bare(
        &mut self,
        found: &mut HashMap<u64, (u32, Mount)>,
        bare: &foldhash::HashSet<u64>,
        what: &str,
    ) {
        let left = self
            .lineages
            .complete(&mut self.model, &self.unsettled, found, bare);
        if !bare.is_empty() {
            log::debug!(
                "{what}: {} read without strings, {} completed from the mount they copy",
                bare.len(),
                bare.len() - left.len()
            );
            self.read_whole(found, &left);
        }
    }

    /// Reads `ids` whole, each in the namespace it was found in (on two
    /// threads if many); those gone meanwhile are dropped from `found`, as
    /// if never found.
    fn read_whole(&mut self, found: &mut HashMap<u64, (u32, Mount)>, ids: &[u64]) {
        let again: Vec<(u64, Candidates)> = ids
            .iter()
            .filter_map(|id| {
                let (ns, _) = found.remove(id)?;
                let mut c = Candidates::default();
                c.push(self.model.get(ns)?.found);
                Some((*id, c))
            })
            .collect();
        found.extend(
            self.placer
                .check_all((self.model.source, Detail::Full), again),
        );
    }

    /// The propagation records of one syscall, the model brought up to date.
    pub fn on_syscall(&mut self, s: &Syscall) -> Vec<Propagated> {
        // Only a mount call's claim may run before the model has its mounts
        // (namespace calls and diff mode read the tables): those read before
        // its exit stay out too.
        let claims = self.mode == Mode::Fanotify && matches!(effect(s), Effect::Mounts);
        if !self.dying.is_empty() {
            self.bury_dead(Some(s.ktime_ns.saturating_sub(s.latency_ns)));
        }
        if claims {
            self.settle_others(&[s.pid]);
        } else {
            self.settle();
        }
        if self.seen_in.len() >= MAX_SEEN {
            self.seen_in.clear();
        }
        // A clone's `mntns_after` is its child's; the caller stays.
        let stays = matches!(
            s.call,
            crate::decode::Call::Clone | crate::decode::Call::Clone3
        );
        let now_in = if stays { s.mntns_before } else { s.mntns_after };
        self.seen_in.insert(s.pid, now_in);
        // Not for a call that made or entered a namespace: the model may
        // still hold a dead one on its inode number until it is followed.
        if !matches!(effect(s), Effect::Namespace(_)) {
            self.alive(s.mntns_before, s.pid, false);
        }
        self.ring_at = self.ring_at.max(s.ktime_ns);
        // The call's events were queued before it returned: a read begun
        // since has them all. (In a storm a batch of calls needs one read,
        // not one each.)
        if self.read_started <= s.ktime_ns.saturating_add(CLOCK_SLACK_NS) {
            self.read(claims.then_some(s.pid));
        }
        if !claims {
            self.settle();
        }
        let mut out = Vec::new();
        match effect(s) {
            Effect::None => {}
            Effect::Namespace(pid) => self.follow(pid, s),
            Effect::Propagation => {
                for ns in self.model.reach(s.mntns_before) {
                    // Types changed, not mounts: the model learns, nothing is reported.
                    if let Err(e) = self.model.retype(ns) {
                        log::debug!("re-reading the types of mnt:[{ns}]: {e}");
                    }
                }
                // One of its mounts is shared or a slave now, or none is.
                self.wake(s.mntns_before);
                self.hush(s.mntns_before);
            }
            Effect::Mounts => match self.mode {
                Mode::Fanotify if self.unwatched(s) => {
                    // What a listing found, or events of a call that ended
                    // as the mark went, in the model before the re-read.
                    out.extend(self.claim(s));
                    self.settle();
                    out.extend(self.reread(s));
                    // A tree with shared or slave mounts moved in (a move
                    // re-reads the table whole); a plain mount under private
                    // ones is private.
                    if moves(s) {
                        self.wake(s.mntns_before);
                    }
                }
                Mode::Fanotify => out.extend(self.claim(s)),
                Mode::Diff => {
                    // Only what a new namespace's first listing found is pending here.
                    out.extend(self.claim(s));
                    out.extend(self.reread(s));
                }
                Mode::Off => {}
            },
        }
        out
    }

    /// Moves the events queued before `enter` to `aged`, and back those
    /// queued since (a call that began earlier than the one before it, in
    /// another thread). The queues stay one sequence, sorted by `hi` while
    /// there are no listings; each event moves only when the boundary
    /// passes it.
    fn age(&mut self, enter: u64) {
        let from = self.aged.partition_point(|p| p.hi < enter);
        for p in self.aged.drain(from..).rev() {
            self.pending.push_front(p);
        }
        let to = self.pending.partition_point(|p| p.hi < enter);
        self.aged.extend(self.pending.drain(..to));
    }

    /// Puts `aged` back in front of `pending`: for the rare walks of the
    /// whole queue, and before a listing's events (out of order) join it.
    fn unage(&mut self) {
        if !self.aged.is_empty() {
            let mut all = std::mem::take(&mut self.aged);
            all.append(&mut self.pending);
            self.pending = all;
        }
    }

    /// The pending events this syscall caused (fanotify events, and what a
    /// new namespace's first listing found).
    fn claim(&mut self, s: &Syscall) -> Vec<Propagated> {
        let enter = s.ktime_ns.saturating_sub(s.latency_ns);
        let exit = s.ktime_ns;
        let kinds = kinds(s);
        // The process's events in the kernel's order: this call's are the
        // first ones, up to one it cannot have caused. Only indices are
        // collected: when mnttrace falls behind the queue is long, and
        // rebuilding it for every call made catching up quadratic.
        let mut taken = Vec::new();
        // A call that ended before its namespace was watched (a process that
        // made one and went on mounting there before mnttrace handled its
        // unshare) made no event there: what it can have made is in a
        // namespace watched in time. A copy gone before its lookup has no
        // known namespace: not this call's. (Each such call took the next
        // one's events, and a storm's first few hundred calls each had the
        // records of the one after.)
        let sorted = self.listings == 0;
        if sorted {
            self.age(enter);
        }
        let watched_at = &self.watched_at;
        let watched = |ns: u32| watched_at.get(&ns).is_none_or(|&at| at <= exit);
        let late = !watched(s.mntns_before);
        for (i, p) in self.pending.iter().enumerate() {
            if sorted && p.lo > exit {
                break;
            }
            if p.pid != s.pid || p.hi < enter || p.lo > exit {
                continue;
            }
            let unseen = late
                && p.via == Via::Fanotify
                && !p
                    .now
                    .as_ref()
                    .or(p.was.as_ref())
                    .is_some_and(|(ns, _)| watched(*ns));
            if !kinds.contains(&p.mask) || unseen {
                // Nothing after it is this call's: stop, or a queue long
                // from falling behind is walked whole for every call.
                break;
            }
            taken.push(i);
        }
        if taken.is_empty() {
            self.settle();
            return Vec::new();
        }
        // A call's events are usually one run: taken out at once (a
        // propagation into a thousand namespaces is a thousand of them).
        // Otherwise removed back to front, so the indices still hold; cheap
        // when they sit near either end of the queue, as a call's events do.
        let (first, last) = (taken[0], taken[taken.len() - 1]);
        let mut mine: Vec<Pending> = if last - first + 1 == taken.len() {
            self.pending.drain(first..=last).collect()
        } else {
            let mut back: Vec<Pending> = taken
                .iter()
                .rev()
                .filter_map(|&i| self.pending.remove(i))
                .collect();
            back.reverse();
            back
        };
        self.listings = self
            .listings
            .saturating_sub(mine.iter().filter(|p| p.via == Via::Listing).count());
        // The rules below read the model: what the process attached that is
        // not this call's (a later call's, another thread's) goes in now, as
        // it always did; this call's own mounts are left out of its count.
        self.settle_except(&ids(&mine));
        // More attaches than one mount makes: later calls' events were read
        // with this one's (mnttrace fell behind); the rules say how many are its.
        if let Some(n) = self.copies(s, &mine)
            && mine.len() > n
        {
            // The rules were applied to the model, which may lag behind a
            // namespace made moments ago: a copy of a new filesystem's mount
            // carries its new peer group (shared:N, or master:N in a slave),
            // and the kernel's lookup of it says so.
            let group = new_group(s, &mine[..n]);
            let positions = taken.split_off(n);
            let mut kept = Vec::new();
            let mut kept_at = Vec::new();
            let mut back = Vec::new();
            // A propagation puts one copy on each mount it reaches: a second
            // child of one parent in the group is a later call's (a bind of a
            // subdirectory of this call's mount joins its group).
            let mut parents: foldhash::HashSet<u64> = mine[..n]
                .iter()
                .filter_map(|p| p.now.as_ref().map(|(_, m)| m.parent))
                .collect();
            for (p, at) in mine.split_off(n).into_iter().zip(positions) {
                let copy = group.is_some()
                    && p.mask == FAN_MNT_ATTACH
                    && p.now.as_ref().is_some_and(|(_, m)| {
                        (m.propagation.shared == group || m.propagation.master == group)
                            && parents.insert(m.parent)
                    });
                if copy {
                    kept.push(p);
                    kept_at.push(at);
                } else {
                    back.push((at, p));
                }
            }
            mine.extend(kept);
            // The rest go back where they were, in order (the queue's times
            // stay sorted): each original index less the taken ones before it.
            for (at, p) in back {
                let gone = taken.iter().chain(&kept_at).filter(|&&t| t < at).count();
                let at = (at - gone).min(self.pending.len());
                self.listings += usize::from(p.via == Via::Listing);
                self.pending.insert(at, p);
            }
            // Those given back are later calls': in the model now.
            self.settle_except(&ids(&mine));
        }
        // One time for the call's records: they are made together.
        let now = SystemTime::now();
        let mut out: Vec<Propagated> = mine
            .into_iter()
            .map(|p| self.record(p, Some(s), now))
            .collect();
        own_first(s, &mut out);
        self.derive(s, &mut out);
        out
    }

    /// How many mounts a mount(2) that does not move attaches: one per place
    /// the propagation rules name, times the mounts a recursive bind copies
    /// (its source's subtree, as the model had it before the call).
    fn copies(&self, s: &Syscall, mine: &[Pending]) -> Option<usize> {
        let flags = match s.arg("flags") {
            Some(crate::record::Value::Flags { raw, .. }) => *raw,
            _ => return None,
        };
        if s.call != crate::decode::Call::Mount || flags & libc::MS_MOVE != 0 {
            return None;
        }
        let path = target(s)?;
        let new: BTreeSet<u64> = mine.iter().map(|p| p.mnt_id).collect();
        // What the call copied existed before its first new mount, and no
        // later mount is where it mounted (`later_than_place`).
        let first = later_than_place(s, &new);
        let places =
            reach::count_except(&self.model, s.mntns_before, &path, &|id| id >= first).ok()?;
        let per_place = if flags & libc::MS_REC != 0 {
            if flags & libc::MS_BIND == 0 {
                return None;
            }
            let source = super::source(s)?;
            let table = &self.model.get(s.mntns_before)?.table;
            table
                .iter()
                .filter(|m| m.id < first && !m.propagation.unbindable)
                .filter(|m| crate::model::mount::below(&source, &m.mount_point).is_some())
                .count()
                .max(1)
        } else {
            1
        };
        Some(places * per_place)
    }

    /// Takes the pending event's mount apart rather than copying its strings.
    fn record(&self, p: Pending, cause: Option<&Syscall>, time: SystemTime) -> Propagated {
        let action = match (p.mask & FAN_MNT_ATTACH != 0, p.mask & FAN_MNT_DETACH != 0) {
            (true, true) => Action::Moved,
            (true, false) => Action::Attached,
            _ => Action::Detached,
        };
        let from_path = match action {
            Action::Moved => p.was.as_ref().map(|(_, m)| m.mount_point.clone()),
            _ => None,
        };
        let (ns, m) = match p.now.or(p.was) {
            Some((ns, m)) => (ns, Some(m)),
            None => (0, None),
        };
        let relation = match (cause, &m) {
            (Some(s), Some(m)) => Some(relation(s, ns, &m.mount_point, m)),
            _ => None,
        };
        let evidence = if m.is_some() {
            Evidence::Observed
        } else {
            Evidence::Derived
        };
        let (path, propagation, fstype, source) = match m {
            Some(m) => (Some(m.mount_point), m.propagation, m.fstype, m.source),
            None => (
                None,
                Default::default(),
                shared(String::new()),
                shared(String::new()),
            ),
        };
        Propagated {
            container: None,
            time,
            cause: cause.map(|s| s.id),
            cause_pid: (p.pid != 0).then_some(p.pid),
            mntns: ns,
            mnt_id: p.mnt_id,
            relation,
            from_path,
            path,
            action,
            propagation,
            fstype,
            source,
            evidence,
            via: p.via,
        }
    }

    /// Places mounts that were gone before they could be looked up where the
    /// propagation rules put a mount made at the syscall's target.
    fn derive(&self, s: &Syscall, out: &mut [Propagated]) {
        if out.iter().all(|p| p.path.is_some()) {
            return;
        }
        let Some(path) = target(s) else { return };
        let new: BTreeSet<u64> = out.iter().map(|p| p.mnt_id).collect();
        let later = later_than_place(s, &new);
        let Ok(targets) = reach::targets_except(&self.model, s.mntns_before, &path, &|id| {
            id >= later || new.contains(&id)
        }) else {
            return;
        };
        let taken: BTreeSet<(u32, String)> = out
            .iter()
            .filter_map(|p| Some((p.mntns, p.path.clone()?)))
            .collect();
        let mut free = targets
            .iter()
            .filter(|t| !taken.contains(&(t.ns, t.path.clone())));
        let mut placed: BTreeMap<u64, (u32, String, Relation)> = BTreeMap::new();
        for p in out.iter_mut().filter(|p| p.path.is_none()) {
            let spot = match placed.get(&p.mnt_id) {
                Some(spot) => Some(spot.clone()),
                None => free.next().map(|t| (t.ns, t.path.clone(), t.relation)),
            };
            if let Some((ns, path, rel)) = spot {
                placed.insert(p.mnt_id, (ns, path.clone(), rel));
                p.mntns = ns;
                p.path = Some(path);
                p.relation = Some(rel);
            }
        }
    }

    /// Re-reads what the call can have changed ([`Self::diff`]), and adds
    /// what the call's probe read of the newest mount in a quiet namespace
    /// tells of mounts made and gone before the re-read: a mount call's own
    /// mount (newer than the table's newest, the newest at its exit) and a
    /// mount an umount2 took away (the newest at its entry, older at its
    /// exit). Ids only grow, and in a quiet namespace nothing but its own
    /// calls mounts there, so neither can be another's but a concurrent
    /// call's in the same namespace. (A storm's every pair was made and gone
    /// between two reads.)
    fn reread(&mut self, s: &Syscall) -> Vec<Propagated> {
        let ns = s.mntns_before;
        // Unique ids are statmount's (mountinfo's are reused).
        let quiet = self.is_quiet(ns) && self.model.source.lists_ids();
        let newest = self
            .model
            .get(ns)
            .and_then(|n| n.table.newest())
            .unwrap_or(0);
        use crate::decode::Call;
        // Nothing newer than a mount call's newest at its exit is its own: a
        // later call's, re-read while mnttrace is behind, is left to it.
        // Nor was a mount newer than an umount2's newest at its entry there
        // for it to take.
        let bound = match s.call {
            Call::Mount if quiet && !moves(s) => s.newest_after,
            Call::Umount if quiet => s.newest_before,
            _ => 0,
        };
        let bound = (bound != 0).then_some(bound);
        let mut out = self.diff(s, bound);
        if !quiet {
            return out;
        }
        let (id, action) = match s.call {
            Call::Umount if s.newest_after < s.newest_before => (s.newest_before, Action::Detached),
            Call::Mount if !moves(s) && s.newest_after > newest => {
                (s.newest_after, Action::Attached)
            }
            _ => return out,
        };
        if out.iter().any(|r| r.mnt_id == id) {
            return out;
        }
        // An umount2's mount the model had, in a namespace whose listing
        // failed (its last process left): where the table said.
        let had = match action {
            Action::Detached => self.model.detach(ns, id),
            _ => None,
        };
        if had.is_none() && self.model.find(id).is_some() {
            return out;
        }
        let arg = |name| match s.arg(name) {
            Some(crate::record::Value::Str { bytes, .. }) => {
                shared(String::from_utf8_lossy(bytes).into_owned())
            }
            _ => shared(String::new()),
        };
        // A detach beside others re-read is below one of them, not at the
        // target.
        let alone = !out.iter().any(|r| r.mntns == ns && r.action == action);
        let (path, fstype, source, propagation) = match had {
            Some(m) => (Some(m.mount_point), m.fstype, m.source, m.propagation),
            None => (
                target(s).filter(|_| alone),
                arg("fstype"),
                arg("source"),
                Default::default(),
            ),
        };
        out.push(Propagated {
            container: None,
            time: SystemTime::now(),
            cause: Some(s.id),
            cause_pid: Some(s.pid),
            mntns: ns,
            mnt_id: id,
            relation: path.as_ref().map(|_| Relation::Own),
            from_path: None,
            path,
            action,
            propagation,
            fstype,
            source,
            evidence: Evidence::Derived,
            via: Via::Probe,
        });
        out
    }

    /// Diff mode: re-reads the namespaces the call can reach. A mount or
    /// umount2 leaves mounts newer than `bound` to later calls.
    fn diff(&mut self, s: &Syscall, bound: Option<u64>) -> Vec<Propagated> {
        let reach = self.model.reach(s.mntns_before);
        // Moves change places: each table read whole (so too without id
        // lists: mountinfo). Unmounts take ids away, seen by comparing id
        // lists (one listmount(2) a namespace, on two threads when there are
        // many). The rest only add mounts.
        let source = self.model.source;
        if moves(s) || !source.lists_ids() {
            let mut out = Vec::new();
            for ns in reach {
                match self.model.refresh(ns) {
                    Ok(change) => out.extend(Self::changes(ns, &change, Some(s), Via::Diff)),
                    Err(e) => log::debug!("refreshing mnt:[{ns}]: {e}"),
                }
            }
            return out;
        }
        if s.call != crate::decode::Call::Umount {
            return self.diff_new(s, reach, bound);
        }
        let mut out = Vec::new();
        let found = reach
            .iter()
            .filter_map(|ns| Some(self.model.get(*ns)?.found))
            .collect();
        for (ns, ids) in self.placer.ids_all(source, found) {
            let change = self.model.apply_ids(ns, &ids, bound.unwrap_or(u64::MAX));
            out.extend(Self::changes(ns, &change, Some(s), Via::Diff));
        }
        out
    }

    /// Diff mode for a call that only adds mounts: each namespace's mounts
    /// above the newest its table has, read on two threads when there are
    /// many namespaces. Unique ids only grow, and a table holds every mount
    /// older than its newest that is still there (a listing holds all older
    /// than what it lists), so what the call added is above it. The kernel
    /// finds the first such id with a tree search, where a whole listing
    /// walks every mount: at 1,000 namespaces reached, most of a diff's time.
    fn diff_new(&mut self, s: &Syscall, reach: Vec<u32>, bound: Option<u64>) -> Vec<Propagated> {
        let source = self.model.source;
        let mut mine = Vec::new();
        let mut asks = Vec::new();
        for ns in reach {
            let Some(n) = self.model.get(ns) else {
                continue;
            };
            let ask = (n.found, n.table.newest().unwrap_or(0));
            match ns == s.mntns_before {
                true => mine.push(ask),
                false => asks.push(ask),
            }
        }
        // The caller's namespace first and whole: its oldest new mount, the
        // call's own, is what copies of a mount made shared just now are
        // completed from when many are read without strings (see lineage).
        let mine = self.placer.newer_all((source, Detail::Full), mine);
        let detail = match mine.first() {
            Some((_, (_, m)))
                if asks.len() >= lineage::NUMBERS_MIN
                    && self.lineages.open(&self.model, &self.unsettled, m) =>
            {
                Detail::Numbers
            }
            _ => Detail::Full,
        };
        let theirs = self.placer.newer_all((source, detail), asks);
        let bare: foldhash::HashSet<u64> = match detail {
            Detail::Numbers => theirs.iter().map(|(id, _)| *id).collect(),
            Detail::Full => Default::default(),
        };
        let mut found: HashMap<u64, (u32, Mount)> = mine.into_iter().chain(theirs).collect();
        if let Some(bound) = bound {
            found.retain(|id, _| *id <= bound);
        }
        self.complete_bare(&mut found, &bare, "diff");
        // Records straight from the mounts, in namespace then id order (a
        // change set per namespace was three allocations a copy).
        let mut placed: Vec<(u32, Mount)> = found.into_values().collect();
        placed.sort_unstable_by_key(|(ns, m)| (*ns, m.id));
        let time = SystemTime::now();
        let out: Vec<Propagated> = placed
            .iter()
            .map(|(ns, m)| observed(*ns, m, Action::Attached, None, Some(s), Via::Diff, time))
            .collect();
        // Into the model once the records are out, as fanotify's: a thousand
        // attaches were a millisecond between the call and its copies.
        let read_at = monotonic_ns();
        self.unsettled
            .extend(placed.into_iter().map(|(ns, mount)| Unsettled {
                ns,
                mount,
                pid: s.pid,
                read_at,
            }));
        out
    }

    fn changes(ns: u32, c: &Change, cause: Option<&Syscall>, via: Via) -> Vec<Propagated> {
        let time = SystemTime::now();
        let rec = |m: &Mount, action, from| observed(ns, m, action, from, cause, via, time);
        let mut out: Vec<Propagated> = Vec::new();
        out.extend(c.detached.iter().map(|m| rec(m, Action::Detached, None)));
        out.extend(
            c.moved
                .iter()
                .map(|(o, m)| rec(m, Action::Moved, Some(o.mount_point.clone()))),
        );
        out.extend(c.attached.iter().map(|m| rec(m, Action::Attached, None)));
        out
    }

    /// A namespace the syscall moved into or created: watched at once, read,
    /// and what happened in it before the watch reconciled against its parent.
    fn follow(&mut self, pid: u32, s: &Syscall) {
        // The process may be gone already (runc's, which made the namespace
        // and forked the container's init): any process still in it will do.
        // It may have moved on already (setns, then unshare): only the
        // namespace the call entered counts.
        let Some(f) = self
            .model
            .source
            .identify(pid)
            .filter(|f| f.inode == s.mntns_after)
            .or_else(|| {
                let other = crate::model::source::member_of(s.mntns_after)?;
                self.model.source.identify(other)
            })
        else {
            log::debug!("mnt:[{}] emptied before it could be read", s.mntns_after);
            return;
        };
        if self.model.is_current(&f) || f.inode == self.model.skipped() {
            return;
        }
        if let Err(e) = self.add(f) {
            log::debug!("reading new mnt:[{}]: {e}", f.inode);
            return;
        }
        if s.call == crate::decode::Call::Setns {
            return;
        }
        let Some(extra) = self.reconcile(s.mntns_before, f.inode) else {
            return;
        };
        // Most likely the next calls of the process in it did it (the caller
        // of unshare, the child of clone): they claim these like fanotify
        // events; unclaimed, they are reported as such.
        let hi = monotonic_ns();
        self.unage();
        let mounts = extra
            .attached
            .into_iter()
            .map(|m| (FAN_MNT_ATTACH, Some((f.inode, m)), None))
            .chain(
                extra
                    .detached
                    .into_iter()
                    .map(|m| (FAN_MNT_DETACH, None, Some((f.inode, m)))),
            );
        for (mask, now, was) in mounts {
            let mnt_id = now.as_ref().or(was.as_ref()).map_or(0, |(_, m)| m.id);
            self.pending.push_back(Pending {
                pid,
                mnt_id,
                mask,
                lo: s.ktime_ns,
                hi,
                now,
                was,
                via: Via::Listing,
            });
            self.listings += 1;
        }
    }

    /// A new namespace starts as a copy of its parent; anything else in its
    /// first listing happened before mnttrace watched it.
    fn reconcile(&self, parent: u32, child: u32) -> Option<Change> {
        let (p, c) = (self.model.get(parent)?, self.model.get(child)?);
        fn key(m: &Mount) -> (&str, &str, (u32, u32)) {
            (&m.mount_point, &m.root, m.dev)
        }
        // Unique ids only grow: the copies got theirs when the namespace was
        // made, so a parent mount with a larger id came later and was never
        // copied (mountinfo's reused ids tell nothing).
        let made = match self.model.source {
            crate::model::Source::Statmount => c.table.iter().map(|m| m.id).min(),
            crate::model::Source::Mountinfo => None,
        };
        let parent_then: Vec<&Mount> = p
            .table
            .iter()
            .filter(|m| made.is_none_or(|made| m.id < made))
            .collect();
        let mut copies: BTreeMap<(&str, &str, (u32, u32)), usize> = BTreeMap::new();
        for m in &parent_then {
            *copies.entry(key(m)).or_default() += 1;
        }
        let mut extra = Change::default();
        for m in c.table.iter() {
            match copies.get_mut(&key(m)) {
                Some(n) if *n > 0 => *n -= 1,
                _ => extra.attached.push(m.clone()),
            }
        }
        for m in parent_then {
            if let Some(n) = copies.get_mut(&key(m))
                && *n > 0
            {
                *n -= 1;
                extra.detached.push(m.clone());
            }
        }
        Some(extra)
    }

    /// Periodic work: mount events no syscall claimed, dead and newly found
    /// namespaces, fanotify queue overflows.
    ///
    /// `caught_up`: the ring was read to its end, and mnttrace waits for more.
    pub fn tick(&mut self, caught_up: bool) -> (Vec<Propagated>, Vec<Ended>, Vec<Lost>) {
        self.ingest();
        // Mounts of calls never handled (a process --pid does not follow)
        // go in once they are a tick old: every handled call settles them.
        let old = monotonic_ns().saturating_sub(ORPHAN_AFTER.as_nanos() as u64);
        self.settle_if(|u| u.read_at < old);
        if caught_up {
            self.ring_at = monotonic_ns();
            self.bury_dead(None);
        }
        let mut out = Vec::new();
        let limit = self.ring_at.saturating_sub(ORPHAN_AFTER.as_nanos() as u64);
        loop {
            let queue = if self.aged.is_empty() {
                &mut self.pending
            } else {
                &mut self.aged
            };
            if queue.front().is_none_or(|p| p.hi >= limit) {
                break;
            }
            if let Some(p) = queue.pop_front()
                && (self.kernel_tgid == 0 || p.pid == self.kernel_tgid)
            {
                out.push(self.record(p, None, SystemTime::now()));
            }
        }
        self.listings = self
            .pending
            .iter()
            .filter(|p| p.via == Via::Listing)
            .count();
        self.rescan();
        let ended = std::mem::take(&mut self.ended);
        let lost = (self.overflows > 0).then(|| {
            // Events were dropped, in namespaces fanotify does not name:
            // every table is read again, so the model is exact from here on.
            let all: Vec<u32> = self.model.namespaces().map(|n| n.found.inode).collect();
            // What the lost events said comes out as changes with no syscall.
            let mut reread = 0;
            for ns in all {
                if let Ok(change) = self.model.refresh(ns) {
                    reread += 1;
                    out.extend(Self::changes(ns, &change, None, Via::Diff));
                }
            }
            self.overflows_total += self.overflows;
            let l = Lost {
                time: SystemTime::now(),
                since: self.overflow_since,
                reason: LossReason::FanotifyOverflow,
                count: self.overflows,
                total: self.overflows_total,
                calls: None,
                reread: Some(reread),
            };
            self.overflows = 0;
            l
        });
        self.overflow_since = SystemTime::now();
        let mut lost: Vec<Lost> = lost.into_iter().collect();
        if self.backlog > 0 {
            self.backlog_total += self.backlog;
            lost.push(Lost {
                time: SystemTime::now(),
                since: self.backlog_since,
                reason: LossReason::Backlog,
                count: std::mem::take(&mut self.backlog),
                total: self.backlog_total,
                calls: None,
                reread: None,
            });
        }
        self.backlog_since = SystemTime::now();
        (out, ended, lost)
    }

    /// Everything still pending, at exit.
    pub fn finish(&mut self) -> (Vec<Propagated>, Vec<Ended>) {
        self.ingest();
        let ended = std::mem::take(&mut self.ended);
        self.unage();
        let pending: Vec<Pending> = self.pending.drain(..).collect();
        self.listings = 0;
        let out = pending
            .into_iter()
            .filter(|p| self.kernel_tgid == 0 || p.pid == self.kernel_tgid)
            .map(|p| self.record(p, None, SystemTime::now()))
            .collect();
        (out, ended)
    }

    /// Applies the newest scan of /proc: namespaces no process is in any
    /// more are dropped, ones no followed call made are read.
    fn rescan(&mut self) {
        let Some(Scan { started, found }) = self.discovery.as_ref().and_then(Discovery::latest)
        else {
            return;
        };
        let alive: BTreeSet<u32> = found.iter().map(|f| f.inode).collect();
        // One read after the scan began may be of a namespace it missed.
        let dead: Vec<u32> = self
            .model
            .namespaces()
            .filter(|n| n.since < started && !alive.contains(&n.found.inode))
            .map(|n| n.found.inode)
            // Those found dead by their end go once no call can need them.
            .filter(|ns| !self.dying.iter().any(|(d, _)| d == ns))
            .collect();
        for ns in dead {
            log::debug!("mnt:[{ns}] is gone");
            self.woke.remove(&ns);
            if let Some(gone) = self.model.forget(ns) {
                self.end_quiet(gone);
            }
        }
        for f in found {
            if !self.model.is_current(&f) {
                if self.add(f).is_ok() {
                    log::debug!("mnt:[{}] found by rescan", f.inode);
                }
            } else {
                self.alive(f.inode, f.pid, true);
            }
        }
    }
}

/// A namespace no mount event is read from (see `Correlator::quiet`).
struct Quiet {
    /// When its mark went (CLOCK_MONOTONIC ns).
    since: u64,
    /// When it was last known alive: the time its end, found later, is
    /// placed before.
    alive_at: SystemTime,
}

/// Marks namespace `f` (through its process's /proc entry) for mount
/// events, or (`add` false) takes the mark off.
fn mark(w: &Watcher, f: &Found, add: bool) {
    use std::os::unix::fs::MetadataExt as _;
    // Through the process it was found by, or, if that one left already
    // (runc's, which made it), any other still in it.
    let open = |pid: u32| {
        File::open(format!("/proc/{pid}/ns/mnt"))
            .ok()
            .filter(|fd| fd.metadata().is_ok_and(|m| m.ino() as u32 == f.inode))
    };
    let nsfd = open(f.pid).or_else(|| crate::model::source::member_of(f.inode).and_then(open));
    let r = match nsfd {
        Some(fd) if add => w.watch(fd.as_fd()),
        Some(fd) => w.unwatch(fd.as_fd()),
        None => Err(nix::errno::Errno::ESRCH),
    };
    use nix::errno::Errno;
    let what = if add { "watch" } else { "stop watching" };
    match r {
        Ok(()) => {}
        // A namespace whose last process left before it could be watched
        // is an ordinary race (its end is reported), not a fault; so is a
        // mark gone with its namespace, or never placed for that reason
        // (ENOENT on removal: namespaces that die young, by the thousand).
        Err(Errno::ESRCH) => {
            log::debug!("mnt:[{}] was gone before mnttrace could {what} it", f.inode)
        }
        Err(Errno::ENOENT) if !add => {
            log::debug!("mnt:[{}] had no mark left to take off", f.inode)
        }
        Err(e) => log::warn!("cannot {what} mnt:[{}]: {e}", f.inode),
    }
}

/// The mount ids of `events`, sorted.
fn ids(events: &[Pending]) -> Vec<u64> {
    let mut ids: Vec<u64> = events.iter().map(|p| p.mnt_id).collect();
    ids.sort_unstable();
    ids
}

/// The event masks a syscall can cause: a new mount only attaches, an
/// unmount only detaches (a mount below it may fall onto its parent: a move),
/// a move does all three. Keeps a burst of one process's calls apart when
/// their events are read together.
fn kinds(s: &Syscall) -> &'static [u64] {
    const ATTACH: u64 = FAN_MNT_ATTACH;
    const DETACH: u64 = FAN_MNT_DETACH;
    const MOVE: u64 = FAN_MNT_ATTACH | FAN_MNT_DETACH;
    match s.call {
        _ if moves(s) => &[ATTACH, DETACH, MOVE],
        crate::decode::Call::Mount => &[ATTACH],
        _ => &[DETACH, MOVE],
    }
}

/// The first mount id that cannot be where call `s` mounted or unmounted
/// `new`, its records' mounts. Unique ids only grow: a mount call's mounts
/// are all made after its first new one, and an umount's were there before
/// anything made after them. A later call's mount on the same target, read
/// in the same batch and in the model before this call's records, covered
/// the target: the count was that mount's copies (in a shared storm, a call
/// one copy short, the copy given to the next call). A move takes an old
/// mount anywhere: only its own are left out.
fn later_than_place(s: &Syscall, new: &BTreeSet<u64>) -> u64 {
    use crate::decode::Call;
    match (s.call, moves(s)) {
        (Call::Mount, false) => new.first().copied(),
        (Call::Umount, _) => new.last().map(|id| id.saturating_add(1)),
        _ => None,
    }
    .unwrap_or(u64::MAX)
}

/// Whether a mount-changing call moves mounts (MS_MOVE, move_mount,
/// pivot_root) rather than only adding or removing them.
fn moves(s: &Syscall) -> bool {
    use crate::decode::Call;
    match s.call {
        Call::Mount => matches!(
            s.arg("flags"),
            Some(crate::record::Value::Flags { raw, .. }) if raw & libc::MS_MOVE != 0
        ),
        Call::MoveMount | Call::PivotRoot => true,
        _ => false,
    }
}

/// The peer group a mount(2) of a new filesystem (not a bind, not a move)
/// gave its own mount, the lowest new id in its namespace: no other call's
/// mount can be in it.
fn new_group(s: &Syscall, mine: &[Pending]) -> Option<u64> {
    let flags = match s.arg("flags") {
        Some(crate::record::Value::Flags { raw, .. }) => *raw,
        _ => return None,
    };
    if s.call != crate::decode::Call::Mount || flags & (libc::MS_BIND | libc::MS_MOVE) != 0 {
        return None;
    }
    let home = |ns: u32| ns == s.mntns_before || ns == s.mntns_after;
    mine.iter()
        .filter_map(|p| p.now.as_ref())
        .filter(|(ns, _)| home(*ns))
        .min_by_key(|(_, m)| m.id)
        .and_then(|(_, m)| m.propagation.shared)
}

/// A mount(2) that attaches makes its own mount before any copy, so the
/// lowest new id in its namespace is its own even when the path no longer
/// tells (looked up after a pivot_root or a move, or mounted through
/// /proc/self/fd/N).
fn own_first(s: &Syscall, out: &mut [Propagated]) {
    if s.call != crate::decode::Call::Mount
        || moves(s)
        || out.iter().any(|p| p.relation == Some(Relation::Own))
    {
        return;
    }
    let home = |ns: u32| ns == s.mntns_before || ns == s.mntns_after;
    if let Some(first) = out
        .iter_mut()
        .filter(|p| home(p.mntns) && p.action == Action::Attached && p.cause.is_some())
        .min_by_key(|p| p.mnt_id)
    {
        first.relation = Some(Relation::Own);
    }
}

/// The record of mount `m` of namespace `ns`, as read from the kernel.
fn observed(
    ns: u32,
    m: &Mount,
    action: Action,
    from_path: Option<String>,
    cause: Option<&Syscall>,
    via: Via,
    time: SystemTime,
) -> Propagated {
    Propagated {
        container: None,
        time,
        cause: cause.map(|s| s.id),
        cause_pid: cause.map(|s| s.pid),
        mntns: ns,
        mnt_id: m.id,
        path: Some(m.mount_point.clone()),
        from_path,
        action,
        relation: cause.map(|s| relation(s, ns, &m.mount_point, m)),
        propagation: m.propagation,
        fstype: m.fstype.clone(),
        source: m.source.clone(),
        evidence: Evidence::Observed,
        via,
    }
}

/// How a mount at `path` in `ns` relates to the syscall that caused it.
fn relation(s: &Syscall, ns: u32, path: &str, m: &Mount) -> Relation {
    let home = ns == s.mntns_before || ns == s.mntns_after;
    // Runtimes mount through /proc/self/fd/N (an O_PATH fd on the target):
    // in the caller's namespace that is the call's own mount.
    let magic = |t: &str| t.starts_with("/proc/") && t.contains("/fd/");
    if home && target(s).is_some_and(|t| t == path || magic(&t)) {
        Relation::Own
    } else if m.propagation.master.is_some() {
        Relation::Slave
    } else {
        Relation::Peer
    }
}

#[cfg(test)]
mod tests {
    use super::Trail;

    #[test]
    fn trail_steps_along_what_it_learnt() {
        let mut t = Trail::default();
        // Copies of one mount: home 1, then 5, 4, 3 (newest first).
        t.learn(1, vec![(1, 5), (5, 4), (4, 3)]);
        assert_eq!(t.step(1, 0), Some(1));
        assert_eq!(t.step(1, 1), Some(5));
        assert_eq!(t.step(5, 2), Some(3));
        // Past the end it wraps: the next call's own mount comes first again.
        assert_eq!(t.step(3, 1), Some(1));
        // A namespace it never saw gives no guess.
        assert_eq!(t.step(9, 1), None);
        // A new order replaces the old links.
        t.learn(1, vec![(1, 3), (3, 4), (4, 5)]);
        assert_eq!(t.step(1, 1), Some(3));
        assert_eq!(t.step(1, 3), Some(5));
    }
}
