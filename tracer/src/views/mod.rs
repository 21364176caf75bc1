//! `mnttrace snapshot` and `mnttrace explain`: the model, read once, shown.
mod explain;
mod snapshot;

use anyhow::Context as _;

use crate::{
    cli::View,
    model::{Model, Mount},
};

pub fn run(view: &View, tables: crate::cli::Tables) -> anyhow::Result<()> {
    let source = tables.source()?;
    let model = Model::load(source, 0, |_| {});
    if model.namespaces().next().is_none() {
        anyhow::bail!("no mount namespace could be read (is /proc mounted?)");
    }
    let text = match view {
        View::Snapshot { json, dot } => {
            if *dot {
                snapshot::dot(&model)
            } else if *json {
                serde_json::to_string_pretty(&snapshot::json(&model))?
            } else {
                snapshot::human(&model)
            }
        }
        View::Explain {
            path,
            pid,
            mntns,
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
            if *json {
                serde_json::to_string_pretty(&explain::json(&p))?
            } else {
                explain::human(&p, &model)
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
        "root": m.root,
        "fstype": m.fstype,
        "source": m.source,
        "options": m.options,
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
