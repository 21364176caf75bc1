//! Predicts where the kernel propagates a mount made at a path, and why it
//! does not reach the other namespaces (the rules of
//! Documentation/filesystems/sharedsubtree.rst, as the model sees them).
use std::collections::{BTreeMap, BTreeSet};

use super::{
    Model, Mount, MountRef,
    mount::{below, join},
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
    } = place(model, ns, path, &|_| false)?;
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
/// (the ones just made) were not there yet: the correlator's question, asked
/// for every mount call. The reasons [`predict`] gives for the namespaces it
/// does not reach (a string each) were most of a mount storm's cost of it.
pub fn targets_except(
    model: &Model,
    ns: u32,
    path: &str,
    skip: &dyn Fn(u64) -> bool,
) -> Result<Vec<Target>, ReachError> {
    place(model, ns, path, skip).map(|p| p.targets)
}

struct Placed {
    path: String,
    parent: Mount,
    /// The mount point's path inside the parent's filesystem.
    fs_path: String,
    targets: Vec<Target>,
}

fn place(
    model: &Model,
    ns: u32,
    path: &str,
    skip: &dyn Fn(u64) -> bool,
) -> Result<Placed, ReachError> {
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
        })?
        .clone();
    let rel = below(&parent.mount_point, &path).unwrap_or("");
    let fs_path = join(&parent.root, rel);
    let mut targets = vec![Target {
        ns,
        path: path.clone(),
        relation: Relation::Own,
        parent: MountRef { ns, id: parent.id },
        group: parent.propagation.shared,
    }];
    if let Some(g) = parent.propagation.shared {
        let own = MountRef { ns, id: parent.id };
        let mut groups = vec![(g, Relation::Peer)];
        let mut done = BTreeSet::new();
        while let Some((g, rel)) = groups.pop() {
            if !done.insert(g) {
                continue;
            }
            let mut receivers: Vec<(MountRef, Relation)> =
                model.peers().peers(g).map(|r| (*r, rel)).collect();
            receivers.extend(model.peers().slaves(g).map(|r| (*r, Relation::Slave)));
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
                let Some(inside) = below(&m.root, &fs_path) else {
                    continue;
                };
                targets.push(Target {
                    ns: r.ns,
                    path: join(&m.mount_point, inside),
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
    }
    targets.sort_by(|a, b| (a.ns, &a.path).cmp(&(b.ns, &b.path)));
    targets.dedup_by(|a, b| a.ns == b.ns && a.path == b.path);
    Ok(Placed {
        path,
        parent,
        fs_path,
        targets,
    })
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
