//! `mnttrace snapshot` and `mnttrace explain`: the model, read once, shown.
mod explain;
mod snapshot;
mod volumes;

use anyhow::Context as _;

use crate::{
    cli::View,
    container::Containers,
    model::{Model, Mount},
};

pub fn run(
    view: &View,
    tables: crate::cli::Tables,
    runtime_roots: &[std::path::PathBuf],
    show_secrets: bool,
) -> anyhow::Result<()> {
    let source = tables.source()?;
    let mut containers = Containers::new(runtime_roots);
    let namespaces = |model: &Model| -> Vec<(u32, u32)> {
        model
            .namespaces()
            .map(|n| (n.found.inode, n.found.pid))
            .collect()
    };
    let mut model = Model::load(source, 0, |_| {});
    if !show_secrets {
        model.mounts_mut().for_each(crate::decode::secrets::mount);
    }
    if model.namespaces().next().is_none() {
        anyhow::bail!("no mount namespace could be read (is /proc mounted?)");
    }
    let text = match view {
        View::Snapshot { json, dot } => {
            if *dot {
                snapshot::dot(&model)
            } else if *json {
                let owners = containers.running(namespaces(&model)).into_iter().collect();
                serde_json::to_string_pretty(&snapshot::json(&model, &owners))?
            } else {
                let owners = containers.running(namespaces(&model)).into_iter().collect();
                snapshot::human(&model, &owners)
            }
        }
        View::Volumes {
            container,
            host_pid,
            json,
        } => {
            let host_pid = host_pid.unwrap_or(1);
            let host = source
                .identify(host_pid)
                .with_context(|| format!("no process {host_pid}"))?
                .inode;
            let mut found = match container {
                Some(q) => vec![containers.find(q, namespaces(&model))?],
                None => containers.running(namespaces(&model)),
            };
            found.retain(|(ns, _)| *ns != host);
            found.sort_by(|a, b| a.1.label().cmp(b.1.label()));
            found.dedup_by(|a, b| a.1.id == b.1.id);
            let all: Vec<_> = found
                .iter()
                .map(|(ns, c)| volumes::of(&model, host, c, *ns))
                .collect();
            if *json {
                serde_json::to_string_pretty(&volumes::json(&all, host))?
            } else {
                volumes::human(&all, host)
            }
        }
        View::Explain {
            path,
            pid,
            mntns,
            container,
            json,
        } => {
            let ns = match (pid, mntns) {
                (_, Some(ns)) => *ns,
                (pid, None) => {
                    let pid = pid.unwrap_or(std::process::id());
                    source
                        .identify(pid)
                        .with_context(|| format!("no process {pid}"))?
                        .inode
                }
            };
            let p = crate::model::reach::predict(&model, ns, path)?;
            let target = match container {
                Some(q) => Some(containers.find(q, namespaces(&model))?),
                None => None,
            };
            let answer = target
                .as_ref()
                .map(|(cns, c)| explain::for_container(&p, &model, c, *cns));
            if *json {
                let mut j = explain::json(&p);
                if let (Some(a), Some(o)) = (&answer, j.as_object_mut()) {
                    o.insert("for_container".into(), explain::container_json(a));
                }
                serde_json::to_string_pretty(&j)?
            } else {
                let mut text = explain::human(&p, &model);
                if let Some(a) = &answer {
                    text.push('\n');
                    text.push_str(&explain::container_human(a));
                }
                text
            }
        }
    };
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing output"),
    }
}

fn mount_json(m: &Mount) -> serde_json::Value {
    serde_json::json!({
        "mnt_id": m.id,
        "parent_id": m.parent,
        "mount_point": m.mount_point,
        "root": &*m.root,
        "fstype": &*m.fstype,
        "source": &*m.source,
        "options": &*m.options,
        "shared": m.propagation.shared,
        "master": m.propagation.master,
        "propagate_from": m.propagation.propagate_from,
        "unbindable": m.propagation.unbindable,
    })
}

/// The command name of `pid`, for labels.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}
