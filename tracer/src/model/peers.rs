//! Peer groups and master/slave edges across all namespaces, kept as mounts
//! come and go, so what a change can reach is found without a full scan.
use std::collections::BTreeSet;

use foldhash::HashMap;

use super::mount::Mount;

/// A mount in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MountRef {
    pub ns: u32,
    pub id: u64,
}

#[derive(Debug, Default)]
pub struct PeerIndex {
    /// shared:N → its members.
    groups: HashMap<u64, BTreeSet<MountRef>>,
    /// master:N → the mounts receiving from peer group N.
    slaves: HashMap<u64, BTreeSet<MountRef>>,
}

impl PeerIndex {
    pub fn add(&mut self, ns: u32, m: &Mount) {
        let r = MountRef { ns, id: m.id };
        if let Some(g) = m.propagation.shared {
            self.groups.entry(g).or_default().insert(r);
        }
        if let Some(g) = m.propagation.master {
            self.slaves.entry(g).or_default().insert(r);
        }
    }

    pub fn remove(&mut self, ns: u32, m: &Mount) {
        let r = MountRef { ns, id: m.id };
        for (map, g) in [
            (&mut self.groups, m.propagation.shared),
            (&mut self.slaves, m.propagation.master),
        ] {
            if let Some(g) = g
                && let Some(set) = map.get_mut(&g)
            {
                set.remove(&r);
                if set.is_empty() {
                    map.remove(&g);
                }
            }
        }
    }

    pub fn peers(&self, group: u64) -> impl Iterator<Item = &MountRef> {
        self.groups.get(&group).into_iter().flatten()
    }

    pub fn slaves(&self, group: u64) -> impl Iterator<Item = &MountRef> {
        self.slaves.get(&group).into_iter().flatten()
    }

    pub fn groups(&self) -> impl Iterator<Item = (&u64, &BTreeSet<MountRef>)> {
        self.groups.iter()
    }

    pub fn slave_edges(&self) -> impl Iterator<Item = (&u64, &BTreeSet<MountRef>)> {
        self.slaves.iter()
    }
}
