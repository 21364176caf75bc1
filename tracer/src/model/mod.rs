//! mnttrace's model of the machine's mounts: every mount namespace, its mount
//! table and the peer groups linking them, kept current as events arrive.
pub mod discovery;
pub mod mount;
pub mod peers;
pub mod reach;
pub mod source;
pub mod sys;
pub mod table;

use std::collections::BTreeSet;

use foldhash::HashMap;

pub use mount::{Mount, Propagation};
pub use peers::{MountRef, PeerIndex, Place, Side};
pub use source::{Found, Source, SourceError};
pub use table::MountTable;

#[derive(Debug)]
pub struct Namespace {
    pub found: Found,
    pub table: MountTable,
    /// When it was read: a scan of /proc that began before cannot have seen it.
    pub since: std::time::Instant,
}

/// What a fresh listing of a namespace changed in the model.
#[derive(Debug, Default)]
pub struct Change {
    pub attached: Vec<Mount>,
    pub detached: Vec<Mount>,
    /// Same id, new mount point or parent.
    pub moved: Vec<(Mount, Mount)>,
}

pub struct Model {
    pub source: Source,
    /// mnttrace's own namespace (made for tracefs), left out of the model.
    skip: u32,
    /// By inode. Hashed, not ordered: a propagation into a thousand
    /// namespaces looks up a thousand of them, and a B-tree of 1,000 was a
    /// chain of cache misses each time.
    namespaces: HashMap<u32, Namespace>,
    /// Mount id → the namespace holding it (ids are unique machine-wide).
    owner: HashMap<u64, u32>,
    peers: PeerIndex,
}

/// Namespaces read at a time by each of the two threads of
/// [`Model::read_in`].
const READ_CHUNK: usize = 16;

impl Model {
    pub fn new(source: Source, skip: u32) -> Model {
        Model {
            source,
            skip,
            namespaces: HashMap::default(),
            owner: HashMap::default(),
            peers: PeerIndex::default(),
        }
    }

    /// Every namespace on the machine, with its mounts; `before` sees each
    /// one before it is read (to watch it: nothing falls between the two).
    pub fn load(source: Source, skip: u32, mut before: impl FnMut(&Found)) -> Model {
        let mut m = Model::new(source, skip);
        let found = source.discover(skip);
        for f in &found {
            before(f);
        }
        m.read_in(&found);
        m
    }

    /// Reads and puts in every namespace of `found`. At a thousand
    /// namespaces the reads (a listmount(2) and a statmount(2) per mount)
    /// were most of start-up, on one thread while the kernel verified the
    /// programs on the other and then sat idle: two threads take the next
    /// few namespaces each until none is left. The other thread's tables are
    /// put in as they come (a few chunks in flight), not all at the end,
    /// which held every table twice at the peak.
    fn read_in(&mut self, found: &[Found]) {
        use std::sync::{
            atomic::{AtomicUsize, Ordering},
            mpsc::sync_channel,
        };
        type Read = (Found, Result<Vec<Mount>, SourceError>);
        let source = self.source;
        let next = AtomicUsize::new(0);
        let take = || {
            let at = next.fetch_add(READ_CHUNK, Ordering::Relaxed);
            found
                .get(at..(at + READ_CHUNK).min(found.len()))
                .filter(|part| !part.is_empty())
        };
        let read =
            |part: &[Found]| -> Vec<Read> { part.iter().map(|f| (*f, source.list(f))).collect() };
        let panicked = std::thread::scope(|s| {
            let (tx, rx) = sync_channel::<Vec<Read>>(4);
            let other = std::thread::Builder::new().spawn_scoped(s, move || {
                while let Some(part) = take() {
                    if tx.send(read(part)).is_err() {
                        return;
                    }
                }
            });
            while let Some(part) = take() {
                for r in read(part).into_iter().chain(rx.try_iter().flatten()) {
                    self.put(r);
                }
            }
            // Ends when the other thread does (or never started).
            for r in rx.into_iter().flatten() {
                self.put(r);
            }
            other.is_ok_and(|h| h.join().is_err())
        });
        if panicked {
            // What the other thread took and did not hand back.
            let missing: Vec<Found> = found
                .iter()
                .filter(|f| self.get(f.inode).is_none())
                .copied()
                .collect();
            for f in missing {
                self.put((f, source.list(&f)));
            }
        }
    }

    fn put(&mut self, (f, read): (Found, Result<Vec<Mount>, SourceError>)) {
        match read {
            Ok(mounts) => self.install(f, mounts),
            Err(e) => log::debug!("mnt:[{}] not loaded: {e}", f.inode),
        }
    }

    /// Every mount of every namespace, to change in place (redaction).
    pub fn mounts_mut(&mut self) -> impl Iterator<Item = &mut Mount> {
        self.peers.forget_places();
        self.namespaces
            .values_mut()
            .flat_map(|n| n.table.iter_mut())
    }

    /// In inode order.
    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        let mut all: Vec<&Namespace> = self.namespaces.values().collect();
        all.sort_unstable_by_key(|n| n.found.inode);
        all.into_iter()
    }

    pub fn get(&self, inode: u32) -> Option<&Namespace> {
        self.namespaces.get(&inode)
    }

    /// Whether the model holds namespace `f` itself, not an earlier one that
    /// died and whose inode number the kernel reused (the 64-bit id tells;
    /// without one, whether the process it was read through is still in it).
    pub fn is_current(&self, f: &Found) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        self.namespaces.get(&f.inode).is_some_and(|n| {
            if n.found.ns_id != 0 {
                n.found.ns_id == f.ns_id
            } else {
                std::fs::metadata(format!("/proc/{}/ns/mnt", n.found.pid))
                    .is_ok_and(|m| m.ino() as u32 == f.inode)
            }
        })
    }

    pub fn skipped(&self) -> u32 {
        self.skip
    }

    pub fn peers(&self) -> &PeerIndex {
        &self.peers
    }

    /// Reads namespace `f` and puts it in the model (replacing what was known).
    pub fn add(&mut self, f: Found) -> Result<(), SourceError> {
        let mounts = self.source.list(&f)?;
        self.install(f, mounts);
        Ok(())
    }

    /// Puts `mounts` in as namespace `f`'s whole table, indexed.
    fn install(&mut self, f: Found, mounts: Vec<Mount>) {
        self.forget(f.inode);
        for m in &mounts {
            self.owner.insert(m.id, f.inode);
            self.peers.add(f.inode, m);
        }
        let ns = Namespace {
            found: f,
            table: MountTable::new(mounts),
            since: std::time::Instant::now(),
        };
        self.namespaces.insert(f.inode, ns);
    }

    /// Namespace `inode` is reached through process `pid` from now on (one
    /// found in it by a scan of /proc, or its latest caller).
    pub fn set_member(&mut self, inode: u32, pid: u32) {
        if let Some(n) = self.namespaces.get_mut(&inode) {
            n.found.pid = pid;
        }
    }

    /// Drops a namespace that no longer exists.
    pub fn forget(&mut self, inode: u32) -> Option<Namespace> {
        let ns = self.namespaces.remove(&inode)?;
        for m in ns.table.iter() {
            self.owner.remove(&m.id);
            self.peers.remove(inode, m);
        }
        Some(ns)
    }

    /// Re-reads namespace `inode` and returns what changed since the model's copy.
    pub fn refresh(&mut self, inode: u32) -> Result<Change, SourceError> {
        let Some(old) = self.namespaces.get(&inode) else {
            return Ok(Change::default());
        };
        let f = old.found;
        let fresh = self.source.list(&f)?;
        let mut change = Change::default();
        let mut seen = BTreeSet::new();
        for m in &fresh {
            seen.insert(m.id);
            match old.table.get(m.id) {
                None => change.attached.push(m.clone()),
                Some(o) if o.mount_point != m.mount_point || o.parent != m.parent => {
                    change.moved.push((o.clone(), m.clone()))
                }
                Some(_) => {}
            }
        }
        change.detached = old
            .table
            .iter()
            .filter(|m| !seen.contains(&m.id))
            .cloned()
            .collect();
        self.install(f, fresh);
        Ok(change)
    }

    /// After a call changed propagation types (MS_SHARED, MS_PRIVATE…): the
    /// mounts the model holds take what the kernel says of them now. Mounts
    /// that came or went meanwhile are left to the calls that made them: read
    /// in whole here, a mount made right after the change was in the table
    /// before its own call was handled, and diff mode never reported it.
    pub fn retype(&mut self, inode: u32) -> Result<(), SourceError> {
        let Model {
            source,
            namespaces,
            peers,
            ..
        } = self;
        let Some(n) = namespaces.get_mut(&inode) else {
            return Ok(());
        };
        for m in source.list(&n.found)? {
            let Some(o) = n.table.get(m.id) else {
                continue;
            };
            if o.propagation != m.propagation {
                peers.remove(inode, o);
                peers.add(inode, &m);
            }
            n.table.insert(m);
        }
        Ok(())
    }

    /// [`refresh`](Self::refresh) from a listing of namespace `inode`'s ids
    /// (in id order): mounts not listed are gone, and only those the table
    /// does not have are looked up. Ids above `bound` are left alone on both
    /// sides: later calls' (the caller knows where its call's mounts end).
    pub fn apply_ids(&mut self, inode: u32, ids: &[u64], bound: u64) -> Change {
        let Some(old) = self.namespaces.get(&inode) else {
            return Change::default();
        };
        let f = old.found;
        let mut change = Change::default();
        let ids = &ids[..ids.partition_point(|id| *id <= bound)];
        for id in ids.iter().filter(|id| old.table.get(**id).is_none()) {
            if let Some(m) = self.source.stat(&f, *id) {
                change.attached.push(m);
            }
        }
        // Both in id order: one walk, no set; over the table's ids, not its
        // mounts (a walk of a thousand tables is cache misses more than work).
        let mut listed = ids.iter().peekable();
        for id in old.table.ids().take_while(|id| *id <= bound) {
            while listed.next_if(|l| **l < id).is_some() {}
            if listed.peek() != Some(&&id)
                && let Some(m) = old.table.get(id)
            {
                change.detached.push(m.clone());
            }
        }
        for m in &change.detached {
            self.detach(inode, m.id);
        }
        for m in &change.attached {
            self.attach(inode, m.clone());
        }
        change
    }

    /// Where mount `id` is, if the model has it.
    pub fn find(&self, id: u64) -> Option<(u32, &Mount)> {
        let ns = *self.owner.get(&id)?;
        Some((ns, self.namespaces.get(&ns)?.table.get(id)?))
    }

    /// Records a mount the kernel attached (or moved) in namespace `ns`.
    pub fn attach(&mut self, ns: u32, m: Mount) {
        if let Some((old_ns, _)) = self.find(m.id) {
            self.detach(old_ns, m.id);
        }
        let Some(n) = self.namespaces.get_mut(&ns) else {
            return;
        };
        self.owner.insert(m.id, ns);
        self.peers.add(ns, &m);
        n.table.insert(m);
    }

    /// Mount `top` of namespace `ns` moved from `from` to `to`: the mounts
    /// beneath it follow (the kernel reports only the one that moved).
    pub fn rebase(&mut self, ns: u32, top: u64, from: &str, to: &str) {
        if let Some(n) = self.namespaces.get_mut(&ns) {
            n.table.rebase(top, from, to);
            self.peers.forget_places();
        }
    }

    /// Where every mount on `side` of `group` is, if that is one place.
    /// Worked out once (a lookup of each) and kept until one of them changes.
    pub fn place(&mut self, group: u64, side: Side) -> Option<Place> {
        if let Some(p) = self.peers.place(group, side) {
            return p.clone();
        }
        let place = {
            let mut mounts = self.peers.on(group, side).map(|r| self.mount(*r));
            match mounts.next() {
                Some(Some(first)) => mounts
                    .all(|m| {
                        m.is_some_and(|m| {
                            (m.dev, &m.mount_point, &m.root)
                                == (first.dev, &first.mount_point, &first.root)
                        })
                    })
                    .then(|| Place {
                        dev: first.dev,
                        mount_point: first.mount_point.clone(),
                        root: first.root.clone(),
                    }),
                _ => None,
            }
        };
        self.peers.set_place(group, side, place.clone());
        place
    }

    /// Records that mount `id` left namespace `ns`; returns what it was.
    pub fn detach(&mut self, ns: u32, id: u64) -> Option<Mount> {
        let m = self.namespaces.get_mut(&ns)?.table.remove(id)?;
        self.owner.remove(&id);
        self.peers.remove(ns, &m);
        Some(m)
    }

    /// Namespaces a mount change in `ns` can reach: `ns` itself and every
    /// namespace holding a peer or (transitive) slave of one of its shared
    /// mounts; sorted, each once. (Collected, then sorted once: a set insert
    /// per member was a tenth of a diff at 1,000 namespaces.)
    pub fn reach(&self, ns: u32) -> Vec<u32> {
        let mut out = vec![ns];
        let Some(n) = self.namespaces.get(&ns) else {
            return out;
        };
        let mut todo: Vec<u64> = n
            .table
            .iter()
            .filter_map(|m| m.propagation.shared)
            .collect();
        let mut done = BTreeSet::new();
        while let Some(g) = todo.pop() {
            if !done.insert(g) {
                continue;
            }
            out.extend(self.peers.peers(g).map(|r| r.ns));
            for r in self.peers.slaves(g) {
                out.push(r.ns);
                if let Some(m) = self.find(r.id).map(|(_, m)| m)
                    && let Some(g2) = m.propagation.shared
                {
                    todo.push(g2);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn mount(&self, r: MountRef) -> Option<&Mount> {
        self.namespaces.get(&r.ns)?.table.get(r.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    /// Read on two threads, every namespace asked for is put in whole: our
    /// own (no other test mounts in it) and fresh ids for it, with some ids
    /// the kernel does not know, which fail alone.
    #[test]
    fn tables_read_on_two_threads_are_put_in_whole() {
        let source = Source::detect();
        if source != Source::Statmount {
            eprintln!("skipped: no statmount here");
            return;
        }
        let ino = std::fs::metadata("/proc/self/ns/mnt")
            .expect("our namespace")
            .ino() as u32;
        let Some(me) = source.discover(0).into_iter().find(|f| f.inode == ino) else {
            panic!("our namespace mnt:[{ino}] not found");
        };
        let once = source.list(&me).expect("our table");
        assert!(!once.is_empty());
        // Our namespace under many inode numbers, every seventh id unknown.
        let found: Vec<Found> = (0..READ_CHUNK as u32 * 5 + 3)
            .map(|i| Found {
                inode: i + 1,
                ns_id: if i % 7 == 0 { u64::MAX } else { me.ns_id },
                ..me
            })
            .collect();
        let mut m = Model::new(source, 0);
        m.read_in(&found);
        for f in &found {
            let got = m
                .get(f.inode)
                .map(|n| n.table.iter().cloned().collect::<Vec<_>>());
            if f.ns_id == u64::MAX {
                assert!(got.is_none(), "mnt:[{}] from an unknown id", f.inode);
            } else {
                assert_eq!(got.as_ref(), Some(&once), "mnt:[{}]", f.inode);
            }
        }
    }
}
