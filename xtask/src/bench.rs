//! `cargo xtask bench [storm|latency|startup] [--quick]`: builds release
//! binaries and runs `mntbench` (tests/src/bin/mntbench/), which measures
//! and writes docs/benchmarks.md and docs/benchmarks.json (a quick run:
//! target/bench/), printing the change from the previous figures.
use std::process::Command;

use anyhow::Result;

use crate::{build_mnttrace, cargo, run, workspace_root};

pub fn run_bench(part: Option<&str>, quick: bool) -> Result<()> {
    let bin = build_mnttrace(true)?;
    // mntbench, and stormgen and nsfarm beside it.
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "mnttrace-tests",
        "--bins",
    ]))?;
    let root = workspace_root();
    let mut c = Command::new(root.join("target/release/mntbench"));
    c.current_dir(&root).env("MNTTRACE_BIN", &bin);
    if let Some(p) = part {
        c.arg(p);
    }
    if quick {
        c.arg("--quick");
    }
    let started = std::time::Instant::now();
    let result = run(&mut c);
    eprintln!("xtask: bench took {:.0} s", started.elapsed().as_secs_f64());
    result
}
