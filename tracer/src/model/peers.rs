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

/// The members of a group, or the direct slaves of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Peers,
    Slaves,
}

/// Where every mount of one side of a group is: the same file system,
/// mounted at the same path with the same root (the namespaces of a
/// container farm, cloned from one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub dev: (u32, u32),
    pub mount_point: String,
    pub root: std::sync::Arc<str>,
}

#[derive(Debug, Default)]
pub struct PeerIndex {
    /// shared:N → its members.
    groups: HashMap<u64, BTreeSet<MountRef>>,
    /// master:N → the mounts receiving from peer group N.
    slaves: HashMap<u64, BTreeSet<MountRef>>,
    /// A side's one place (None: more than one), as last worked out; dropped
    /// when a mount joins or leaves that side, or moves.
    places: HashMap<(u64, Side), Option<Place>>,
}

impl PeerIndex {
    pub fn add(&mut self, ns: u32, m: &Mount) {
        let r = MountRef { ns, id: m.id };
        if let Some(g) = m.propagation.shared {
            self.groups.entry(g).or_default().insert(r);
            self.places.remove(&(g, Side::Peers));
        }
        if let Some(g) = m.propagation.master {
            self.slaves.entry(g).or_default().insert(r);
            self.places.remove(&(g, Side::Slaves));
        }
    }

    fn side(&self, side: Side) -> &HashMap<u64, BTreeSet<MountRef>> {
        match side {
            Side::Peers => &self.groups,
            Side::Slaves => &self.slaves,
        }
    }

    /// The mounts on `side` of group `group`.
    pub fn on(&self, group: u64, side: Side) -> impl Iterator<Item = &MountRef> {
        self.side(side).get(&group).into_iter().flatten()
    }

    /// Whether `r` is on `side` of group `group`.
    pub fn holds(&self, group: u64, side: Side, r: MountRef) -> bool {
        self.side(side)
            .get(&group)
            .is_some_and(|set| set.contains(&r))
    }

    pub fn place(&self, group: u64, side: Side) -> Option<&Option<Place>> {
        self.places.get(&(group, side))
    }

    pub fn set_place(&mut self, group: u64, side: Side, place: Option<Place>) {
        self.places.insert((group, side), place);
    }

    /// Mount points changed under the index (a move): every place is
    /// worked out again.
    pub fn forget_places(&mut self) {
        self.places.clear();
    }

    pub fn remove(&mut self, ns: u32, m: &Mount) {
        let r = MountRef { ns, id: m.id };
        if let Some(g) = m.propagation.shared {
            self.places.remove(&(g, Side::Peers));
        }
        if let Some(g) = m.propagation.master {
            self.places.remove(&(g, Side::Slaves));
        }
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
        self.on(group, Side::Peers)
    }

    pub fn slaves(&self, group: u64) -> impl Iterator<Item = &MountRef> {
        self.on(group, Side::Slaves)
    }

    pub fn groups(&self) -> impl Iterator<Item = (&u64, &BTreeSet<MountRef>)> {
        self.groups.iter()
    }

    pub fn slave_edges(&self) -> impl Iterator<Item = (&u64, &BTreeSet<MountRef>)> {
        self.slaves.iter()
    }
}
