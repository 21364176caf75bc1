//! The mounts of one mount namespace, by id, with lookups by path.
use std::collections::BTreeMap;

use super::mount::Mount;

#[derive(Clone, Debug, Default)]
pub struct MountTable {
    mounts: BTreeMap<u64, Mount>,
}

impl MountTable {
    pub fn new(mounts: impl IntoIterator<Item = Mount>) -> MountTable {
        MountTable {
            mounts: mounts.into_iter().map(|m| (m.id, m)).collect(),
        }
    }

    pub fn get(&self, id: u64) -> Option<&Mount> {
        self.mounts.get(&id)
    }

    pub fn insert(&mut self, m: Mount) -> Option<Mount> {
        self.mounts.insert(m.id, m)
    }

    pub fn remove(&mut self, id: u64) -> Option<Mount> {
        self.mounts.remove(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Mount> {
        self.mounts.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Mount> {
        self.mounts.values_mut()
    }

    pub fn len(&self) -> usize {
        self.mounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }

    /// The mount a lookup of `path` lands on: the deepest mount point at or
    /// above it, and of mounts stacked there the top one.
    /// As if the mounts `skip` says were not there.
    pub fn covering_except(&self, path: &str, skip: &dyn Fn(u64) -> bool) -> Option<&Mount> {
        self.mounts
            .values()
            .filter(|m| m.contains(path) && !skip(m.id))
            .max_by_key(|m| (m.mount_point.len(), self.depth(m)))
    }

    /// How many mounts lie under `m` at its own mount point (stacking order).
    fn depth(&self, m: &Mount) -> usize {
        let mut d = 0;
        let mut cur = m;
        while let Some(p) = self.mounts.get(&cur.parent) {
            if p.id == cur.id || p.mount_point != m.mount_point {
                break;
            }
            d += 1;
            cur = p;
        }
        d
    }

    /// Mounts in tree order (parents before children), for display.
    pub fn tree(&self) -> Vec<(usize, &Mount)> {
        let mut out = Vec::new();
        let roots = self
            .mounts
            .values()
            .filter(|m| m.parent == m.id || !self.mounts.contains_key(&m.parent));
        for r in roots {
            self.walk(r, 0, &mut out);
        }
        out
    }

    fn walk<'a>(&'a self, m: &'a Mount, depth: usize, out: &mut Vec<(usize, &'a Mount)>) {
        out.push((depth, m));
        for c in self
            .mounts
            .values()
            .filter(|c| c.parent == m.id && c.id != m.id)
        {
            self.walk(c, depth + 1, out);
        }
    }
}
