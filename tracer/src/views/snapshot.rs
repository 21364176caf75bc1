//! Every namespace's mount tree, and the peer-group graph across them.
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::comm;
use crate::model::{Model, MountRef};

pub const SCHEMA: &str = "mnttrace/snapshot/v1";

/// Each namespace's container, if it belongs to one.
pub type Owners = std::collections::BTreeMap<u32, std::sync::Arc<crate::container::Container>>;

pub fn human(model: &Model, owners: &Owners) -> String {
    let mut s = String::new();
    for ns in model.namespaces() {
        let f = &ns.found;
        let _ = writeln!(
            s,
            "mnt:[{}]  pid {} ({})  {} mounts{}",
            f.inode,
            f.pid,
            comm(f.pid),
            ns.table.len(),
            owners
                .get(&f.inode)
                .map(|c| format!("  container {} ({}, id {})", c.label(), c.runtime, c.id))
                .unwrap_or_default()
        );
        for (depth, m) in ns.table.tree() {
            let _ = writeln!(
                s,
                "  {:indent$}{}  {} {}  [{}]  {}",
                "",
                m.mount_point,
                m.fstype,
                m.source,
                m.id,
                m.propagation,
                indent = depth * 2
            );
        }
        s.push('\n');
    }
    s.push_str("peer groups:\n");
    let mut groups: Vec<_> = model.peers().groups().collect();
    groups.sort_by_key(|(g, _)| **g);
    for (g, members) in groups {
        let _ = writeln!(s, "  shared:{g}  {}", refs(model, members.iter()));
        let slaves: Vec<&MountRef> = model.peers().slaves(*g).collect();
        if !slaves.is_empty() {
            let _ = writeln!(s, "    slaves: {}", refs(model, slaves.into_iter()));
        }
    }
    s.trim_end().to_string()
}

fn refs<'a>(model: &Model, it: impl Iterator<Item = &'a MountRef>) -> String {
    it.map(|r| {
        let at = model.mount(*r).map_or("?", |m| m.mount_point.as_str());
        format!("mnt:[{}] {at}", r.ns)
    })
    .collect::<Vec<_>>()
    .join(", ")
}

pub fn json(model: &Model, owners: &Owners) -> Value {
    let namespaces: Vec<Value> = model
        .namespaces()
        .map(|ns| {
            json!({
                "mntns": ns.found.inode,
                "ns_id": ns.found.ns_id,
                "pid": ns.found.pid,
                "comm": comm(ns.found.pid),
                "container": owners.get(&ns.found.inode).map(|c| c.json()),
                "mounts": ns.table.iter().map(super::mount_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let at = |r: &MountRef| {
        json!({
            "mntns": r.ns,
            "mnt_id": r.id,
            "mount_point": model.mount(*r).map(|m| m.mount_point.clone()),
        })
    };
    let mut groups: Vec<_> = model.peers().groups().collect();
    groups.sort_by_key(|(g, _)| **g);
    let peer_groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, members)| {
            json!({
                "group": g,
                "members": members.iter().map(at).collect::<Vec<_>>(),
                "slaves": model.peers().slaves(*g).map(at).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "schema": SCHEMA,
        "source": model.source.name(),
        "namespaces": namespaces,
        "peer_groups": peer_groups,
    })
}

/// Graphviz: a cluster per namespace holding its mounts that take part in
/// propagation, a node per peer group, edges for membership and slavery.
pub fn dot(model: &Model) -> String {
    let mut s = String::from(
        "digraph mounts {\n  rankdir=LR;\n  node [fontname=\"monospace\", fontsize=10];\n",
    );
    for ns in model.namespaces() {
        let linked: Vec<_> = ns
            .table
            .iter()
            .filter(|m| m.propagation.shared.is_some() || m.propagation.master.is_some())
            .collect();
        if linked.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "  subgraph cluster_{0} {{\n    label=\"mnt:[{0}] pid {1} {2}\";",
            ns.found.inode,
            ns.found.pid,
            escape(&comm(ns.found.pid))
        );
        for m in linked {
            let _ = writeln!(
                s,
                "    m{} [shape=box, label=\"{}\\n{} {}\"];",
                m.id,
                escape(&m.mount_point),
                escape(&m.fstype),
                m.id
            );
        }
        s.push_str("  }\n");
    }
    let mut groups: Vec<_> = model.peers().groups().map(|(g, _)| *g).collect();
    groups.extend(model.peers().slave_edges().map(|(g, _)| *g));
    groups.sort_unstable();
    groups.dedup();
    for g in groups {
        let _ = writeln!(
            s,
            "  g{g} [shape=ellipse, style=filled, fillcolor=lightblue, label=\"shared:{g}\"];"
        );
        for r in model.peers().peers(g) {
            let _ = writeln!(s, "  g{g} -> m{} [dir=both, label=\"peer\"];", r.id);
        }
        for r in model.peers().slaves(g) {
            let _ = writeln!(s, "  g{g} -> m{} [style=dashed, label=\"slave\"];", r.id);
        }
    }
    s.push('}');
    s
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
