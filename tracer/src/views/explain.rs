//! Where a mount made at a path would propagate, and why not elsewhere.
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::mount_json;
use crate::model::{
    Model,
    reach::{Prediction, Relation},
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
        let how = match (t.relation, t.group) {
            (Relation::Own, _) => "the mount itself".to_string(),
            (Relation::Peer, Some(g)) => format!("peer copy, via shared:{g}"),
            (Relation::Slave, Some(g)) => format!("slave copy, received from master:{g}"),
            (r, None) => r.name().to_string(),
        };
        let _ = writeln!(s, "  mnt:[{}] {}  ({how})", t.ns, t.path);
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
    })
}
