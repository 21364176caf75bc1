//! Predicts where the kernel propagates a mount made at a path, and why it
//! does not reach the other namespaces (the rules of
//! Documentation/filesystems/sharedsubtree.rst, as the model sees them).
use std::collections::{BTreeMap, BTreeSet};

use super::{
    Model, Mount, MountRef, Side,
    mount::{below, join, join_parts},
};

/// How a copy is reached from the mount made by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Relation {
    /// The mount the syscall itself makes.
    Own,
    /// A copy on a peer of the parent mount (same peer group).
    Peer,
    /// A copy received by a slave of the parent's peer group (or of a slave's group).
    Slave,
}

impl Relation {
    pub fn name(self) -> &'static str {
        match self {
            Relation::Own => "own",
            Relation::Peer => "peer",
            Relation::Slave => "slave",
        }
    }
}

/// One place the new mount appears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub ns: u32,
    pub path: String,
    pub relation: Relation,
    /// The mount the copy is attached under.
    pub parent: MountRef,
    /// The group the copy is received from (the parent's peer group, or the master).
    pub group: Option<u64>,
}

/// Why a namespace gets no copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub ns: u32,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct Prediction {
    pub ns: u32,
    pub path: String,
    /// The mount the new one would be attached under, in `ns`.
    pub parent: Mount,
    pub targets: Vec<Target>,
    pub blocked: Vec<Blocked>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    #[error("mount namespace mnt:[{0}] is not known")]
    UnknownNamespace(u32),
    #[error("{path} is not an absolute path")]
    Relative { path: String },
    #[error("no mount covers {path} in mnt:[{ns}]")]
    Uncovered { ns: u32, path: String },
}

/// Where a mount made at `path` in namespace `ns` would appear, and why the
/// other namespaces get no copy.
pub fn predict(model: &Model, ns: u32, path: &str) -> Result<Prediction, ReachError> {
    let Placed {
        path,
        parent,
        fs_path,
        targets,
    } = place(model, covering(model, ns, path, &|_| false)?);
    let reached: BTreeSet<u32> = targets.iter().map(|t| t.ns).collect();
    let blocked = model
        .namespaces()
        .filter(|o| !reached.contains(&o.found.inode))
        .map(|o| Blocked {
            ns: o.found.inode,
            reason: why_not(&parent, &fs_path, o.found.inode, model),
        })
        .collect();
    Ok(Prediction {
        ns,
        path,
        parent,
        targets,
        blocked,
    })
}

/// Where a mount made at `path` in `ns` lands, as if the mounts `skip` says
/// (the ones just made) were not there yet. The reasons [`predict`] gives
/// for the namespaces it does not reach (a string each) were most of a mount
/// storm's cost of it.
pub fn targets_except(
    model: &Model,
    ns: u32,
    path: &str,
    skip: &dyn Fn(u64) -> bool,
) -> Result<Vec<Target>, ReachError> {
    Ok(place(model, covering(model, ns, path, skip)?).targets)
}

/// How many places [`targets_except`] names: the correlator's question for
/// every mount call, answered without a path string for each place (at a
/// thousand namespaces, building and sorting them was a third of the
/// answer's cost, ~0.3 ms a mount).
pub fn count_except(
    model: &Model,
    ns: u32,
    path: &str,
    skip: &dyn Fn(u64) -> bool,
) -> Result<usize, ReachError> {
    let c = covering(model, ns, path, skip)?;
    Ok(distinct(c.landings(model)).count())
}

struct Placed {
    path: String,
    parent: Mount,
    /// The mount point's path inside the parent's filesystem.
    fs_path: String,
    targets: Vec<Target>,
}

/// Where in namespace `ns` a mount made at a path goes.
struct Covered<'m> {
    ns: u32,
    /// The path, normalized.
    path: String,
    /// The mount it would be attached under.
    parent: &'m Mount,
    /// The mount point's path inside the parent's filesystem.
    fs_path: String,
}

fn covering<'m>(
    model: &'m Model,
    ns: u32,
    path: &str,
    skip: &dyn Fn(u64) -> bool,
) -> Result<Covered<'m>, ReachError> {
    if !path.starts_with('/') {
        return Err(ReachError::Relative { path: path.into() });
    }
    let path = normalize(path);
    let n = model.get(ns).ok_or(ReachError::UnknownNamespace(ns))?;
    let parent = n
        .table
        .covering_except(&path, skip)
        .ok_or_else(|| ReachError::Uncovered {
            ns,
            path: path.clone(),
        })?;
    let fs_path = join(
        &parent.root,
        below(&parent.mount_point, &path).unwrap_or(""),
    );
    Ok(Covered {
        ns,
        path,
        parent,
        fs_path,
    })
}

/// One place a copy lands, its path still in two parts (joined only for
/// the places kept).
struct Landing<'a> {
    ns: u32,
    base: &'a str,
    rest: &'a str,
    relation: Relation,
    parent: MountRef,
    group: Option<u64>,
}

impl Landing<'_> {
    /// The path's bytes, as [`join`] would write them.
    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        join_parts(self.base, self.rest)
            .into_iter()
            .flat_map(str::bytes)
    }

    fn key_cmp(&self, other: &Landing) -> std::cmp::Ordering {
        self.ns
            .cmp(&other.ns)
            .then_with(|| self.bytes().cmp(other.bytes()))
    }
}

impl Covered<'_> {
    /// Every place the mount lands: its own, then the peers of the parent's
    /// group and (transitively) the slaves, where the directory is visible.
    /// Unsorted, with repeats.
    fn landings<'a>(&'a self, model: &'a Model) -> Vec<Landing<'a>> {
        let (ns, path, parent, fs_path) = (
            self.ns,
            self.path.as_str(),
            self.parent,
            self.fs_path.as_str(),
        );
        let own = MountRef { ns, id: parent.id };
        let mut out = vec![Landing {
            ns,
            base: path,
            rest: "",
            relation: Relation::Own,
            parent: own,
            group: parent.propagation.shared,
        }];
        let Some(g) = parent.propagation.shared else {
            return out;
        };
        let mut groups = vec![(g, Relation::Peer)];
        let mut done = BTreeSet::new();
        while let Some((g, rel)) = groups.pop() {
            if !done.insert(g) {
                continue;
            }
            // Peers all at one place (namespaces cloned from one): where
            // the mount lands on each is known without looking each up, a
            // cache miss or more apiece at a thousand namespaces.
            let one_place = match model.peers().place(g, Side::Peers) {
                Some(Some(p)) if rel == Relation::Peer => Some(p),
                _ => None,
            };
            if let Some(p) = one_place
                && let Some(inside) = below(&p.root, fs_path)
            {
                out.extend(
                    model
                        .peers()
                        .peers(g)
                        .filter(|r| **r != own)
                        .map(|r| Landing {
                            ns: r.ns,
                            base: &p.mount_point,
                            rest: inside,
                            relation: rel,
                            parent: *r,
                            group: Some(g),
                        }),
                );
            }
            let peers = model
                .peers()
                .peers(g)
                .filter(|_| one_place.is_none())
                .map(|r| (*r, rel));
            let receivers = peers.chain(model.peers().slaves(g).map(|r| (*r, Relation::Slave)));
            for (r, rel) in receivers {
                if r == own {
                    continue;
                }
                let Some(m) = model.mount(r) else { continue };
                if rel == Relation::Slave
                    && let Some(g2) = m.propagation.shared
                {
                    groups.push((g2, Relation::Slave));
                }
                let Some(inside) = below(&m.root, fs_path) else {
                    continue;
                };
                out.push(Landing {
                    ns: r.ns,
                    base: &m.mount_point,
                    rest: inside,
                    relation: rel,
                    parent: r,
                    group: if rel == Relation::Peer {
                        Some(g)
                    } else {
                        m.propagation.master
                    },
                });
            }
        }
        out
    }
}

/// Sorted by namespace and path, the first of each (namespace, path) kept.
fn distinct(mut all: Vec<Landing<'_>>) -> impl Iterator<Item = Landing<'_>> {
    all.sort_by(|a, b| a.key_cmp(b));
    all.dedup_by(|a, b| a.key_cmp(b).is_eq());
    all.into_iter()
}

fn place(model: &Model, c: Covered<'_>) -> Placed {
    let targets = distinct(c.landings(model))
        .map(|l| Target {
            ns: l.ns,
            path: join(l.base, l.rest),
            relation: l.relation,
            parent: l.parent,
            group: l.group,
        })
        .collect();
    Placed {
        path: c.path,
        parent: c.parent.clone(),
        fs_path: c.fs_path,
        targets,
    }
}

/// The reason namespace `other` gets no copy of a mount under `parent`.
fn why_not(parent: &Mount, fs_path: &str, other: u32, model: &Model) -> String {
    let origin = match (parent.propagation.shared, parent.propagation.unbindable) {
        (_, true) => Some(format!(
            "the mount at {} is unbindable: nothing propagates from it",
            parent.mount_point
        )),
        (None, _) if parent.propagation.master.is_some() => Some(format!(
            "the mount at {} is a slave (master:{}) but not shared: it receives, it does not send",
            parent.mount_point,
            parent.propagation.master.unwrap_or_default()
        )),
        (None, _) => Some(format!(
            "the mount at {} is private: mounts under it stay where they are made",
            parent.mount_point
        )),
        (Some(_), _) => None,
    };
    if let Some(reason) = origin {
        return reason;
    }
    let group = parent.propagation.shared.unwrap_or_default();
    let Some(n) = model.get(other) else {
        return "namespace no longer known".into();
    };
    // The same directory of the same filesystem, seen from `other`.
    let same: Vec<&Mount> = n
        .table
        .iter()
        .filter(|m| m.dev == parent.dev && below(&m.root, fs_path).is_some())
        .collect();
    let Some(m) = same.first() else {
        return format!(
            "no mount there shows that directory ({fs_path} of {} {})",
            parent.fstype, parent.source
        );
    };
    let at = &m.mount_point;
    let mut reasons = BTreeMap::new();
    for m in &same {
        let p = &m.propagation;
        let r = if p.unbindable {
            format!("{at} there is unbindable")
        } else if p.is_private() {
            format!("{at} there is private")
        } else if p.master.is_some() && p.master != Some(group) && p.shared.is_none() {
            format!(
                "{at} there is a slave of master:{}, not of shared:{group}",
                p.master.unwrap_or_default()
            )
        } else if let Some(g) = p.shared {
            if model.peers().slaves(g).any(|r| {
                model
                    .mount(*r)
                    .is_some_and(|s| s.propagation.shared == Some(group))
            }) {
                format!(
                    "{at} there is shared:{g}, the master of shared:{group}: propagation does not go back up to a master"
                )
            } else {
                format!("{at} there is in another peer group (shared:{g})")
            }
        } else {
            format!("{at} there is {p}")
        };
        reasons.insert(r, ());
    }
    reasons.into_keys().collect::<Vec<_>>().join("; ")
}

/// Collapses `//`, `.` and trailing slashes (no symlinks are followed).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Found, Propagation, Source};

    fn mount(id: u64, at: &str, root: &str, shared: Option<u64>, master: Option<u64>) -> Mount {
        Mount {
            id,
            parent: 1,
            old_id: id as u32,
            mount_point: at.into(),
            root: root.into(),
            fstype: "tmpfs".into(),
            source: "t".into(),
            options: "".into(),
            dev: (0, 42),
            propagation: Propagation {
                shared,
                master,
                ..Default::default()
            },
        }
    }

    /// Namespace `inode`: its root (id inode * 10) and `more` (id, mount
    /// point, root, shared, master).
    type Spec<'a> = (u64, &'a str, &'a str, Option<u64>, Option<u64>);

    fn ns(model: &mut Model, inode: u32, more: &[Spec]) {
        let f = Found {
            inode,
            ns_id: 0,
            pid: 1,
        };
        let root = mount(u64::from(inode) * 10, "/", "/", None, None);
        let rest = more.iter().map(|&(id, at, r, s, m)| mount(id, at, r, s, m));
        model.install(f, std::iter::once(root).chain(rest).collect());
    }

    /// The count is the length of the list, repeats and all: a peer whose
    /// root hides the directory, two peers at one path in one namespace, a
    /// slave that is itself shared (its peers receive too), and a namespace
    /// reached twice at different paths.
    #[test]
    fn count_is_the_number_of_targets() {
        let mut model = Model::new(Source::Mountinfo, 0);
        ns(&mut model, 1, &[(11, "/s", "/", Some(7), None)]);
        // Two peers in one namespace at the same place: one target.
        let at_p = [
            (21, "/p", "/", Some(7), None),
            (22, "/p", "/", Some(7), None),
        ];
        ns(&mut model, 2, &at_p);
        // A peer whose root is a directory the new mount is not under.
        ns(&mut model, 3, &[(31, "/q", "/other", Some(7), None)]);
        // A slave, shared with a peer of its own in namespace 5.
        ns(&mut model, 4, &[(41, "/r", "/", Some(8), Some(7))]);
        ns(&mut model, 5, &[(51, "/u", "/", Some(8), None)]);
        // Reached twice, at two paths.
        let twice = [
            (61, "/a", "/", Some(7), None),
            (62, "/b", "/", Some(7), None),
        ];
        ns(&mut model, 6, &twice);
        let skip = |_: u64| false;
        let targets = targets_except(&model, 1, "/s/x/", &skip).expect("placed");
        let at: Vec<(u32, &str, Relation)> = targets
            .iter()
            .map(|t| (t.ns, t.path.as_str(), t.relation))
            .collect();
        assert_eq!(
            at,
            [
                (1, "/s/x", Relation::Own),
                (2, "/p/x", Relation::Peer),
                (4, "/r/x", Relation::Slave),
                (5, "/u/x", Relation::Slave),
                (6, "/a/x", Relation::Peer),
                (6, "/b/x", Relation::Peer),
            ]
        );
        assert_eq!(count_except(&model, 1, "/s/x/", &skip).expect("counted"), 6);
        // Where nothing propagates, only the call's own mount.
        assert_eq!(count_except(&model, 2, "/x", &skip).expect("counted"), 1);
        assert!(count_except(&model, 9, "/x", &skip).is_err());
    }
}
