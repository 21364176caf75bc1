//! `cargo xtask test`: lint, unit tests, then the privileged integration
//! tests against the real kernel, checking that the host's mount table and
//! /sys/fs/bpf are left exactly as they were, whatever the tests did.
use std::collections::BTreeSet;

use anyhow::{Result, bail};

use crate::{build_mnttrace, cargo, run};

/// The host's mounts, by mount point, root, type and source.
fn host_mounts() -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-").unwrap_or(f.len());
            format!(
                "{} {} {} {}",
                f.get(4).unwrap_or(&""),
                f.get(3).unwrap_or(&""),
                f.get(sep + 1).unwrap_or(&""),
                f.get(sep + 2).unwrap_or(&"")
            )
        })
        .collect())
}

fn pinned() -> BTreeSet<String> {
    std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn all() -> Result<()> {
    let (mounts, bpf) = (host_mounts()?, pinned());
    let result = suite();
    let (mounts_after, bpf_after) = (host_mounts()?, pinned());
    let mut problems = Vec::new();
    for m in mounts_after.difference(&mounts) {
        problems.push(format!("mount left on the host: {m}"));
    }
    for m in mounts.difference(&mounts_after) {
        problems.push(format!("host mount gone: {m}"));
    }
    for p in bpf_after.symmetric_difference(&bpf) {
        problems.push(format!("/sys/fs/bpf changed: {p}"));
    }
    result?;
    if !problems.is_empty() {
        bail!("the tests changed the host:\n{}", problems.join("\n"));
    }
    eprintln!("xtask: host mount table and /sys/fs/bpf unchanged");
    Ok(())
}

fn suite() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--package",
        "tracer",
        "--package",
        "xtask",
        "--package",
        "mnttrace-tests",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Unit tests of the agent and xtask.
    run(cargo().args(["test", "--package", "tracer", "--package", "xtask"]))?;
    crate::fuzz::all()?;
    // Privileged tests: the real program in the real kernel.
    let bin = build_mnttrace(false)?;
    run(cargo()
        .args([
            "test",
            "--package",
            "mnttrace-tests",
            "--",
            "--test-threads=2",
        ])
        .env("MNTTRACE_BIN", bin))
}
