//! Where a mount made at a path would propagate, and why not elsewhere.
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::mount_json;
use crate::{
    container::Container,
    model::{
        Model, Mount,
        mount::{below, join},
        reach::{Prediction, Relation, Target},
    },
};

pub const SCHEMA: &str = "mnttrace/explain/v1";

pub fn human(p: &Prediction, model: &Model) -> String {
    let mut s = String::new();
    let par = &p.parent;
    let _ = writeln!(
        s,
        "A mount at {} in mnt:[{}] goes under the mount at {} ({} {}, {}).",
        p.path, p.ns, par.mount_point, par.fstype, par.source, par.propagation
    );
    s.push_str("It would appear at:\n");
    for t in &p.targets {
        let _ = writeln!(s, "  mnt:[{}] {}  ({})", t.ns, t.path, how(t));
    }
    if !p.blocked.is_empty() {
        s.push_str("It would not appear in:\n");
        // One line per reason, naming every namespace it holds for.
        let mut by_reason: Vec<(&str, Vec<String>)> = Vec::new();
        for b in &p.blocked {
            let pid = model.get(b.ns).map(|n| n.found.pid).unwrap_or_default();
            let who = format!("mnt:[{}] (pid {pid})", b.ns);
            match by_reason.iter_mut().find(|(r, _)| *r == b.reason) {
                Some((_, list)) => list.push(who),
                None => by_reason.push((&b.reason, vec![who])),
            }
        }
        for (reason, who) in by_reason {
            let _ = writeln!(s, "  {}: {reason}", who.join(", "));
        }
    }
    if let Some(note) = bind_note(par) {
        let _ = writeln!(s, "Note: {note}.");
    }
    s.trim_end().to_string()
}

pub fn json(p: &Prediction) -> Value {
    json!({
        "schema": SCHEMA,
        "mntns": p.ns,
        "path": p.path,
        "parent": mount_json(&p.parent),
        "targets": p.targets.iter().map(|t| json!({
            "mntns": t.ns,
            "path": t.path,
            "relation": t.relation.name(),
            "group": t.group,
            "parent_id": t.parent.id,
        })).collect::<Vec<_>>(),
        "blocked": p.blocked.iter().map(|b| json!({
            "mntns": b.ns,
            "reason": b.reason,
        })).collect::<Vec<_>>(),
        "bind_propagation": bind_note(&p.parent),
    })
}

/// What `explain --container` answers: would the container see the mount,
/// where, and if not, where the chain breaks and why.
pub struct ForContainer<'a> {
    pub container: &'a Container,
    pub mntns: u32,
    /// Where it would appear, with how.
    pub seen: Option<&'a Target>,
    /// The first place the chain from the host to the container breaks.
    pub breaks: Option<String>,
    /// What in the runtime's configuration made it break, when that is known.
    pub cause: Option<String>,
}

pub fn for_container<'a>(
    p: &'a Prediction,
    model: &Model,
    container: &'a Container,
    mntns: u32,
) -> ForContainer<'a> {
    let seen = p.targets.iter().find(|t| t.ns == mntns);
    let mut answer = ForContainer {
        container,
        mntns,
        seen,
        breaks: None,
        cause: None,
    };
    if seen.is_some() {
        return answer;
    }
    answer.breaks = p
        .blocked
        .iter()
        .find(|b| b.ns == mntns)
        .map(|b| b.reason.clone());
    let par = &p.parent;
    if par.propagation.shared.is_none() {
        answer.cause = bind_note(par);
        return answer;
    }
    // The container's mount showing the same directory.
    let fs_path = join(&par.root, below(&par.mount_point, &p.path).unwrap_or(""));
    let Some(m) = model.get(mntns).and_then(|n| {
        n.table
            .iter()
            .filter(|m| m.dev == par.dev && below(&m.root, &fs_path).is_some())
            .max_by_key(|m| m.root.len())
    }) else {
        answer.breaks = Some(format!(
            "no mount in the container shows that directory ({fs_path} of {} {}): no volume maps it",
            par.fstype, par.source
        ));
        return answer;
    };
    let cfg = container.config.as_ref();
    let asked = cfg
        .and_then(|c| c.mount_at(&m.mount_point))
        .and_then(|b| b.propagation());
    let rootfs = cfg.and_then(|c| c.linux.rootfs_propagation.as_deref());
    let receiving = |a: &str| matches!(a, "rslave" | "slave" | "rshared" | "shared");
    answer.cause = match (asked, m.propagation.master, m.propagation.shared) {
        (Some(a), None, _) if receiving(a) => Some(match rootfs {
            None if container.runtime == "crun" => format!(
                "the bundle asks for {a} on {mp}, but sets no linux.rootfsPropagation, and crun then makes the container's mounts rprivate (runc makes them rslave): {mp} was bound from a private copy of the host mount and has no master to receive from. Set \"rootfsPropagation\": \"rslave\" (or \"rshared\") under \"linux\" in {bundle}",
                mp = m.mount_point,
                bundle = bundle_config(container),
            ),
            Some(r) if r.ends_with("private") => format!(
                "the bundle asks for {a} on {mp}, but its linux.rootfsPropagation is {r}: {mp} was bound from a private copy of the host mount and has no master to receive from. Set \"rootfsPropagation\" to \"rslave\" (or \"rshared\") in {bundle}",
                mp = m.mount_point,
                bundle = bundle_config(container),
            ),
            _ => format!(
                "the bundle asks for {a} on {mp}, but the source it was bound from was private in the container's namespace when it was made, so it has no master to receive from",
                mp = m.mount_point
            ),
        }),
        (a, None, None) => Some(format!(
            "{mp} is private in the container{}: it receives nothing from the host by design. Ask for rslave (Kubernetes mountPropagation: HostToContainer) to receive host mounts",
            match a {
                Some(a) => format!(" (the bundle asks for {a})"),
                None => " (no propagation asked for: the runtime's default, rprivate)".into(),
            },
            mp = m.mount_point
        )),
        _ => None,
    };
    answer
}

/// Why a bind asking for rslave/rshared propagation from under `parent` gets
/// nothing: the note Docker's refusal ("… is mounted on … but it is not a
/// shared or slave mount") needs, in words.
pub fn bind_note(parent: &Mount) -> Option<String> {
    let p = &parent.propagation;
    let mp = &parent.mount_point;
    if p.shared.is_some() {
        return None;
    }
    Some(if p.master.is_some() {
        format!(
            "{mp} is a slave but not shared: a bind from under it can be rslave (it receives host mounts) but not rshared (nothing it makes would go back); `mount --make-rshared {mp}` on the host makes both possible"
        )
    } else {
        format!(
            "{mp} is private: a bind from under it receives nothing, whatever propagation it asks for, so Docker refuses rslave and rshared binds from there (\"not a shared or slave mount\") and crun or runc give the container a mount that silently stays empty. `mount --make-rshared {mp}` on the host makes it shared"
        )
    })
}

fn bundle_config(c: &Container) -> String {
    c.bundle
        .as_ref()
        .map(|b| b.join("config.json").display().to_string())
        .unwrap_or_else(|| "the bundle's config.json".into())
}

pub fn container_human(a: &ForContainer<'_>) -> String {
    let c = a.container;
    let who = format!("{} ({}, mnt:[{}])", c.label(), c.runtime, a.mntns);
    let mut s = String::new();
    match a.seen {
        Some(t) => {
            let _ = write!(
                s,
                "Container {who} would see it at {} ({}).",
                t.path,
                how(t)
            );
        }
        None => {
            let _ = write!(s, "Container {who} would not see it.");
            if let Some(b) = &a.breaks {
                let _ = write!(s, "\nWhere the chain breaks: {b}.");
            }
            if let Some(c) = &a.cause {
                let _ = write!(s, "\nWhy: {c}.");
            }
        }
    }
    s
}

pub fn container_json(a: &ForContainer<'_>) -> Value {
    json!({
        "container": a.container.json(),
        "mntns": a.mntns,
        "seen": a.seen.is_some(),
        "path": a.seen.map(|t| t.path.clone()),
        "relation": a.seen.map(|t| t.relation.name()),
        "breaks": a.breaks,
        "cause": a.cause,
    })
}

fn how(t: &Target) -> String {
    match (t.relation, t.group) {
        (Relation::Own, _) => "the mount itself".to_string(),
        (Relation::Peer, Some(g)) => format!("peer copy, via shared:{g}"),
        (Relation::Slave, Some(g)) => format!("slave copy, received from master:{g}"),
        (r, None) => r.name().to_string(),
    }
}
