//! `mnttrace volumes`: each container's mounts, the host path each one
//! shows, and whether mounts propagate between it and the host.
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::mount_json;
use crate::{
    container::Container,
    model::{
        Model, Mount,
        mount::{below, join},
        reach::{self, Prediction},
    },
};

pub const SCHEMA: &str = "mnttrace/volumes/v1";

/// One container mount, seen from the host.
pub struct Volume<'a> {
    pub mount: &'a Mount,
    /// Where the host shows the same directory or file, as one would type it there.
    pub host_path: Option<String>,
    /// The propagation the runtime's bundle asked for this mount.
    pub asked: Option<String>,
    pub from_host: Crossing,
    pub to_host: Crossing,
}

/// Whether a mount made on one side at this path would appear on the other, and why not.
pub struct Crossing {
    pub yes: bool,
    pub why_not: Option<String>,
}

pub struct ContainerVolumes<'a> {
    pub container: &'a Container,
    pub mntns: u32,
    pub volumes: Vec<Volume<'a>>,
}

/// The host path showing `m`'s directory: a host mount of the same
/// filesystem whose root holds `m`'s root (the most specific one).
pub fn host_path(model: &Model, host: u32, m: &Mount) -> Option<String> {
    let h = model.get(host)?;
    h.table
        .iter()
        .filter(|hm| hm.dev == m.dev)
        .filter_map(|hm| Some((hm, below(&hm.root, &m.root)?)))
        .max_by_key(|(hm, _)| (hm.root.len(), std::cmp::Reverse(hm.mount_point.len())))
        .map(|(hm, rest)| join(&hm.mount_point, rest))
}

pub fn of<'a>(
    model: &'a Model,
    host: u32,
    container: &'a Container,
    mntns: u32,
) -> ContainerVolumes<'a> {
    let mut volumes = Vec::new();
    if let Some(ns) = model.get(mntns) {
        for (_, m) in ns.table.tree() {
            let host_path = host_path(model, host, m);
            let asked = container
                .config
                .as_ref()
                .and_then(|c| c.mount_at(&m.mount_point))
                .and_then(|b| b.propagation())
                .map(String::from);
            let from_host = match &host_path {
                None => Crossing {
                    yes: false,
                    why_not: Some("the host shows no such directory".into()),
                },
                Some(hp) => crossing(reach::predict(model, host, hp), mntns, Some(m.id)),
            };
            let to_host = crossing(reach::predict(model, mntns, &m.mount_point), host, None);
            volumes.push(Volume {
                mount: m,
                host_path,
                asked,
                from_host,
                to_host,
            });
        }
    }
    ContainerVolumes {
        container,
        mntns,
        volumes,
    }
}

/// Whether prediction `p` reaches namespace `to` (on mount `via`, if given).
fn crossing(p: Result<Prediction, reach::ReachError>, to: u32, via: Option<u64>) -> Crossing {
    let p = match p {
        Ok(p) => p,
        Err(e) => {
            return Crossing {
                yes: false,
                why_not: Some(e.to_string()),
            };
        }
    };
    let yes = p
        .targets
        .iter()
        .any(|t| t.ns == to && via.is_none_or(|id| t.parent.id == id));
    let why_not = (!yes).then(|| {
        p.blocked
            .iter()
            .find(|b| b.ns == to)
            .map(|b| b.reason.clone())
            .unwrap_or_else(|| "a copy would land on another mount there, not this one".to_string())
    });
    Crossing { yes, why_not }
}

pub fn human(all: &[ContainerVolumes<'_>], host: u32) -> String {
    let mut s = String::new();
    for cv in all {
        let c = cv.container;
        let _ = writeln!(
            s,
            "{} ({}, id {}{}) mnt:[{}], compared with host mnt:[{host}]",
            c.label(),
            c.runtime,
            c.id,
            c.init_pid
                .map(|p| format!(", init pid {p}"))
                .unwrap_or_default(),
            cv.mntns
        );
        let rows: Vec<[String; 7]> = cv
            .volumes
            .iter()
            .map(|v| {
                [
                    v.mount.mount_point.clone(),
                    v.host_path.clone().unwrap_or_else(|| "-".into()),
                    v.mount.fstype.to_string(),
                    v.mount.propagation.to_string(),
                    v.asked.clone().unwrap_or_else(|| "-".into()),
                    yes_no(v.from_host.yes).into(),
                    yes_no(v.to_host.yes).into(),
                ]
            })
            .collect();
        let head = [
            "INSIDE",
            "HOST PATH",
            "FSTYPE",
            "PROPAGATION",
            "ASKED",
            "FROM HOST",
            "TO HOST",
        ]
        .map(String::from);
        let mut width = head.clone().map(|h| h.len());
        for r in &rows {
            for (w, cell) in width.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for r in std::iter::once(&head).chain(&rows) {
            let mut line = String::from(" ");
            for (cell, w) in r.iter().zip(width) {
                let _ = write!(line, " {cell:<w$}");
            }
            let _ = writeln!(s, "{}", line.trim_end());
        }
        s.push('\n');
    }
    if all.is_empty() {
        s.push_str("no running container found\n");
    }
    s.trim_end().to_string()
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

pub fn json(all: &[ContainerVolumes<'_>], host: u32) -> Value {
    json!({
        "schema": SCHEMA,
        "host_mntns": host,
        "containers": all.iter().map(|cv| json!({
            "container": cv.container.json(),
            "mntns": cv.mntns,
            "rootfs_propagation": cv.container.config.as_ref()
                .and_then(|c| c.linux.rootfs_propagation.clone()),
            "mounts": cv.volumes.iter().map(|v| {
                let mut j = mount_json(v.mount);
                if let Some(o) = j.as_object_mut() {
                    o.insert("host_path".into(), json!(v.host_path));
                    o.insert("asked".into(), json!(v.asked));
                    o.insert("from_host".into(), json!(v.from_host.yes));
                    o.insert("from_host_why_not".into(), json!(v.from_host.why_not));
                    o.insert("to_host".into(), json!(v.to_host.yes));
                    o.insert("to_host_why_not".into(), json!(v.to_host.why_not));
                }
                j
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
