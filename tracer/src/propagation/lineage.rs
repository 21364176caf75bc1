//! Copies of a mount read without their strings (`Detail::Numbers`, half
//! the cost of a whole statmount), completed from the mount they copy.
//!
//! A propagation's copies share their source's root, type, source and
//! options (clone_mnt copies them); only the mount point differs, and it
//! follows from where the copy's parent is. The numbers do not say which
//! mount a copy copies, so a copy is completed only where what was seen
//! proves it, and read whole otherwise:
//!
//! - Its peer group (or its master's, for a slave copy; a shared slave's own
//!   group joins its master's) had no member the model knew when the
//!   lineage was first seen, so every member came from one mount made
//!   shared then. A bind of an older group's member (a volume bound out of
//!   a shared tree) joins that group, and is read whole.
//! - Of the lineage's mounts seen, the ones read whole agree, and no two
//!   have the same parent: a propagation puts at most one copy of a mount
//!   on each mount it reaches, so a second child of one parent is a second
//!   source (a bind of a subdirectory of the new mount, say).
//! - Its parent is a peer, or a (transitive) slave, of the parent of the
//!   lineage's oldest mount read whole (the call's own, made before its
//!   copies): the only mounts that propagation reaches. A member bound
//!   elsewhere is read whole.
//! - Its parent is in the model, and not in the batch (moved or new).
//!
//! A lineage is remembered across reads (the copies of a propagation into a
//! thousand namespaces are often read in two parts) while its oldest mount
//! is in the model as it was read.
//!
//! Mount points come from the model's parents; the model follows moves
//! (descendants included), but a directory renamed above a mount point
//! makes no mount event: a copy's path is then the path before the rename,
//! as the model's own is.
use foldhash::{HashMap, HashSet};

use super::Unsettled;
use crate::model::{
    Model, Mount, MountRef, Propagation, Side,
    mount::{below, join},
};

/// Below this many copies of one process's batch every mount is read whole:
/// the savings are small, and the exact read is the simpler story.
pub const NUMBERS_MIN: usize = 64;

/// Slave chains followed this deep at most (the kernel has no limit, but a
/// chain is a namespace per step).
const MAX_HOPS: usize = 64;

/// Lineages remembered across reads: a propagation into a thousand
/// namespaces is often read in two parts (the first read starts while the
/// kernel is still making copies), and the second part's group is no longer
/// new to the model, whose first part is in it.
#[derive(Default)]
pub struct Lineages {
    /// A group → the group its lineage is named by.
    up: HashMap<u64, u64>,
    /// By name: what was seen of each lineage.
    lines: HashMap<u64, Line>,
}

/// What was seen of one lineage.
#[derive(Default)]
struct Line {
    /// A member read whole, and its namespace.
    template: Option<(u32, Mount)>,
    /// Two whole members differ, or two members share a parent.
    mixed: bool,
    parents: HashSet<u64>,
}

/// Whether group `g` has a member in the model, or waiting to go in.
fn in_model(model: &Model, unsettled: &[Unsettled], g: u64) -> bool {
    let peers = model.peers();
    peers.peers(g).next().is_some()
        || peers.slaves(g).next().is_some()
        || unsettled.iter().any(|u| {
            let p = u.mount.propagation;
            p.shared == Some(g) || p.master == Some(g)
        })
}

/// Lineages remembered at most (they are needed for one call's reads).
const MAX_LINES: usize = 64;

/// Batches smaller than this, with nothing to complete, teach nothing: a
/// storm's reads hold a mount or two each, and the first part of a large
/// propagation read in two is larger.
const LEARN_MIN: usize = 8;

fn same_source(a: &Mount, b: &Mount) -> bool {
    (a.dev, &a.root, &a.fstype, &a.source, &a.options)
        == (b.dev, &b.root, &b.fstype, &b.source, &b.options)
}

impl Lineages {
    /// Whether copies of `m` would be of a lineage that can be completed
    /// (the first condition above): a batch whose first mount is not is
    /// read whole.
    pub fn open(&self, model: &Model, unsettled: &[Unsettled], m: &Mount) -> bool {
        let p = &m.propagation;
        [p.shared, p.master]
            .into_iter()
            .flatten()
            .any(|g| self.eligible(model, unsettled, g))
    }

    /// A group new to the model, or one of a lineage seen from its start.
    fn eligible(&self, model: &Model, unsettled: &[Unsettled], g: u64) -> bool {
        !in_model(model, unsettled, g) || self.up.contains_key(&g)
    }

    /// What was remembered holds while each lineage's template is in the
    /// model as it was read: once a lineage's mounts are all gone, its group
    /// id may come back (the kernel frees the ids of empty groups) for
    /// another mount, and a slave keeps its master's group alive. Otherwise
    /// all of it is forgotten (a lineage is several groups).
    fn forget_stale(&mut self, model: &Model, unsettled: &[Unsettled]) {
        let stale = self.lines.len() > MAX_LINES
            || self.lines.values().any(|l| match &l.template {
                Some((ns, t)) => model
                    .find(t.id)
                    .or_else(|| {
                        unsettled
                            .iter()
                            .find(|u| u.mount.id == t.id)
                            .map(|u| (u.ns, &u.mount))
                    })
                    .is_none_or(|(n, m)| n != *ns || m.propagation != t.propagation),
                None => true,
            });
        if stale {
            self.up.clear();
            self.lines.clear();
        }
    }

    fn name(&mut self, g: u64) -> u64 {
        let mut r = g;
        while let Some(&up) = self.up.get(&r) {
            if up == r {
                break;
            }
            r = up;
        }
        self.up.insert(g, r);
        r
    }

    fn join(&mut self, a: u64, b: u64) {
        let (a, b) = (self.name(a), self.name(b));
        if a != b {
            self.up.insert(a, b);
            if let Some(old) = self.lines.remove(&a) {
                let into = self.lines.entry(b).or_default();
                into.mixed |= old.mixed || !old.parents.is_disjoint(&into.parents);
                into.parents.extend(old.parents);
                match (&into.template, old.template) {
                    (None, t) => into.template = t,
                    (Some((_, t)), Some((_, o))) if !same_source(t, &o) => into.mixed = true,
                    _ => {}
                }
            }
        }
    }

    /// The lineage of `m`, if it has an open one.
    fn of(&mut self, model: &Model, unsettled: &[Unsettled], m: &Mount) -> Option<u64> {
        let p = m.propagation;
        [p.shared, p.master]
            .into_iter()
            .flatten()
            .find(|g| self.eligible(model, unsettled, *g))
            .map(|g| self.name(g))
    }

    /// Fills in the strings of the mounts `bare` names (in `found`, read
    /// without strings) where what was seen proves what they copy; returns
    /// the ids it could not, to be read whole. Learns the batch's lineages.
    pub fn complete(
        &mut self,
        model: &mut Model,
        unsettled: &[Unsettled],
        found: &mut HashMap<u64, (u32, Mount)>,
        bare: &HashSet<u64>,
    ) -> Vec<u64> {
        if bare.is_empty() && found.len() < LEARN_MIN {
            return Vec::new();
        }
        self.forget_stale(model, unsettled);
        for (_, m) in found.values() {
            let p = m.propagation;
            if let (Some(s), Some(ma)) = (p.shared, p.master)
                && self.eligible(model, unsettled, s)
                && self.eligible(model, unsettled, ma)
            {
                self.join(s, ma);
            }
        }
        // A thousand copies mostly have one propagation: asked once.
        let mut last: Option<(Propagation, Option<u64>)> = None;
        let mut keyed: Vec<(u64, u64)> = Vec::with_capacity(bare.len());
        let mut left = Vec::new();
        for (id, (ns, m)) in found.iter() {
            let k = match last {
                Some((p, k)) if p == m.propagation => k,
                _ => {
                    let k = self.of(model, unsettled, m);
                    last = Some((m.propagation, k));
                    k
                }
            };
            let is_bare = bare.contains(id);
            let Some(k) = k else {
                if is_bare {
                    left.push(*id);
                }
                continue;
            };
            let line = self.lines.entry(k).or_default();
            if !line.parents.insert(m.parent) {
                line.mixed = true;
            }
            if is_bare {
                keyed.push((*id, k));
            } else {
                // The oldest member read whole: the call's own mount when it
                // is in the batch (made before its copies), whose parent is
                // the one every copy's parent is downstream of.
                match &line.template {
                    None => line.template = Some((*ns, m.clone())),
                    Some((_, t)) if !same_source(t, m) => line.mixed = true,
                    Some((_, t)) if m.id < t.id => line.template = Some((*ns, m.clone())),
                    Some(_) => {}
                }
            }
        }
        // A lineage none of whose mounts was read whole (a later call's in
        // the same batch: only a batch's first mount is): its oldest, the
        // call's own when it is there, is read whole to stand for it.
        let mut oldest: HashMap<u64, u64> = HashMap::default();
        for &(id, k) in &keyed {
            if self
                .lines
                .get(&k)
                .is_some_and(|l| l.template.is_none() && !l.mixed)
            {
                let o = oldest.entry(k).or_insert(id);
                *o = (*o).min(id);
            }
        }
        for (k, id) in oldest {
            let Some(&(ns, _)) = found.get(&id) else {
                continue;
            };
            let Some(m) = model.get(ns).and_then(|n| model.source.stat(&n.found, id)) else {
                continue;
            };
            keyed.retain(|(i, _)| *i != id);
            found.insert(id, (ns, m.clone()));
            if let Some(line) = self.lines.get_mut(&k) {
                line.template = Some((ns, m));
            }
        }
        // Once per lineage: its template, and where it sits.
        let mut origins: HashMap<u64, Option<Origin>> = HashMap::default();
        for (_, k) in &keyed {
            if origins.contains_key(k) {
                continue;
            }
            let origin = self
                .lines
                .get(k)
                .filter(|l| !l.mixed)
                .and_then(|l| l.template.as_ref())
                .and_then(|(t_ns, t)| Origin::of(model, found, *t_ns, t));
            origins.insert(*k, origin);
        }
        let model = &*model;
        let mut filled = Vec::with_capacity(keyed.len());
        for (id, k) in keyed {
            let mount_point = match (origins.get(&k), found.get(&id)) {
                (Some(Some(o)), Some((c_ns, c))) => o.landing(model, found, *c_ns, c),
                _ => None,
            };
            match mount_point {
                Some(mp) => filled.push((id, k, mp)),
                None => left.push(id),
            }
        }
        for (id, k, mount_point) in filled {
            if let (Some(Some(o)), Some((_, c))) = (origins.get(&k), found.get_mut(&id)) {
                let t = &o.template;
                c.mount_point = mount_point;
                c.root.clone_from(&t.root);
                c.fstype.clone_from(&t.fstype);
                c.source.clone_from(&t.source);
                c.options.clone_from(&t.options);
            }
        }
        left
    }
}

/// A lineage's template and where it sits: its parent's peer group (what
/// the propagation reaches) and file system, the template's place in it,
/// and, where every peer (or direct slave) of that parent is mounted at one
/// place, where the copies on them land.
struct Origin {
    template: Mount,
    group: u64,
    dev: (u32, u32),
    at: String,
    on_peers: Option<String>,
    on_slaves: Option<String>,
}

impl Origin {
    /// None where the template's parent is not in the model (or is in the
    /// batch, moved or new), or not shared (then it made no copies).
    fn of(
        model: &mut Model,
        found: &HashMap<u64, (u32, Mount)>,
        t_ns: u32,
        t: &Mount,
    ) -> Option<Origin> {
        if found.contains_key(&t.parent) {
            return None;
        }
        let p = model.get(t_ns)?.table.get(t.parent)?;
        let (group, dev) = (p.propagation.shared?, p.dev);
        let at = join(&p.root, below(&p.mount_point, &t.mount_point)?);
        let mut land = |side| {
            let place = model.place(group, side).filter(|p| p.dev == dev)?;
            Some(join(&place.mount_point, below(&place.root, &at)?))
        };
        let (on_peers, on_slaves) = (land(Side::Peers), land(Side::Slaves));
        Some(Origin {
            template: t.clone(),
            group,
            dev,
            at,
            on_peers,
            on_slaves,
        })
    }

    /// Where copy `c`, in namespace `c_ns`, is mounted: the template's place
    /// seen from its parent's root. None where the copy is not of this
    /// file system, its parent is not in the model (or is in the batch), is
    /// not one the propagation reaches, or the place lies outside its root.
    fn landing(
        &self,
        model: &Model,
        found: &HashMap<u64, (u32, Mount)>,
        c_ns: u32,
        c: &Mount,
    ) -> Option<String> {
        if c.dev != self.template.dev || found.contains_key(&c.parent) {
            return None;
        }
        let r = MountRef {
            ns: c_ns,
            id: c.parent,
        };
        let peers = model.peers();
        // On a side with one place: no lookup of the parent.
        for (side, land) in [
            (Side::Peers, &self.on_peers),
            (Side::Slaves, &self.on_slaves),
        ] {
            if let Some(land) = land
                && peers.holds(self.group, side, r)
            {
                return Some(land.clone());
            }
        }
        let d = model.get(c_ns)?.table.get(c.parent)?;
        if d.dev != self.dev || !downstream(model, self.group, d) {
            return None;
        }
        Some(join(&d.mount_point, below(&d.root, &self.at)?))
    }
}

/// Whether `d` is a peer of group `g` or a slave of it, directly or down a
/// chain of slave groups.
fn downstream(model: &Model, g: u64, d: &Mount) -> bool {
    if d.propagation.shared == Some(g) {
        return true;
    }
    let mut master = d.propagation.master;
    for _ in 0..MAX_HOPS {
        let Some(m) = master else { return false };
        if m == g {
            return true;
        }
        // A group's members all receive from the same master.
        master = model
            .peers()
            .peers(m)
            .next()
            .and_then(|r| model.mount(*r))
            .and_then(|x| x.propagation.master);
    }
    false
}
