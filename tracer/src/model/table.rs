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

    /// The highest id in the table: unique ids grow, so its newest mount.
    pub fn newest(&self) -> Option<u64> {
        self.mounts.last_key_value().map(|(id, _)| *id)
    }

    /// The ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.mounts.keys().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Mount> {
        self.mounts.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Mount> {
        self.mounts.values_mut()
    }

    /// Mount `top` moved from `from` to `to`: the mount points of the mounts
    /// beneath it follow (the kernel says nothing of them; their paths are
    /// their ancestors', and `top` is the one that moved).
    pub fn rebase(&mut self, top: u64, from: &str, to: &str) {
        let mut beneath = std::collections::BTreeSet::from([top]);
        // Parents need not have smaller ids (a mount moved under a newer
        // one): until nothing more joins.
        loop {
            let more: Vec<u64> = self
                .mounts
                .values()
                .filter(|m| !beneath.contains(&m.id) && beneath.contains(&m.parent))
                .map(|m| m.id)
                .collect();
            if more.is_empty() {
                break;
            }
            beneath.extend(more);
        }
        beneath.remove(&top);
        for id in beneath {
            if let Some(m) = self.mounts.get_mut(&id)
                && let Some(rest) = super::mount::below(from, &m.mount_point)
            {
                m.mount_point = super::mount::join(to, rest);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: u64, parent: u64, mount_point: &str) -> Mount {
        Mount {
            id,
            parent,
            old_id: id as u32,
            mount_point: mount_point.into(),
            root: "/".into(),
            fstype: "tmpfs".into(),
            source: "t".into(),
            options: "".into(),
            dev: (0, id as u32),
            propagation: Default::default(),
        }
    }

    #[test]
    fn a_move_takes_the_mounts_beneath_along() {
        // 5 was moved under 2 before 2 itself moved: a child with a smaller id.
        let mut t = MountTable::new([
            at(1, 0, "/"),
            at(2, 1, "/a"),
            at(3, 2, "/a/b"),
            at(4, 3, "/a/b/c"),
            at(5, 9, "/a/d"),
            at(9, 2, "/a"),
            at(6, 1, "/ab"),
        ]);
        t.insert(at(2, 1, "/x/y"));
        t.rebase(2, "/a", "/x/y");
        let got: Vec<(u64, &str)> = t.iter().map(|m| (m.id, m.mount_point.as_str())).collect();
        assert_eq!(
            got,
            [
                (1, "/"),
                (2, "/x/y"),
                (3, "/x/y/b"),
                (4, "/x/y/b/c"),
                (5, "/x/y/d"),
                (6, "/ab"),
                (9, "/x/y")
            ]
        );
    }
}
