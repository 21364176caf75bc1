//! `mntbench [all|storm|latency|startup]... [--quick] [--docs DIR] [--n N]
//! [--rounds R] [--tracers none,mnttrace,...] [--scales 10,100,1000]
//! [--mounts M] [--reps R] [--modes fanotify,diff]`: mnttrace's benchmark figures, run by `cargo
//! xtask bench` (release binaries, MNTTRACE_BIN set).
//!
//! 1. storm: the overhead a mount storm pays under mnttrace, libbpf-tools
//!    mountsnoop and a bpftrace script, and how much of it each delivers;
//! 2. latency: from a mount's exit to each of its propagated copies on
//!    mnttrace's output, with 10, 100 and 1,000 namespaces receiving it, in
//!    R rounds of M mounts with the modes interleaved;
//! 3. startup: mnttrace's time to attach and its peak memory at those scales
//!    (R repetitions).
//!
//! `mntbench render` measures nothing and rewrites benchmarks.md from
//! docs/benchmarks.json.
//!
//! Figures, not tests: nothing here asserts a time. Writes DIR/benchmarks.md
//! and DIR/benchmarks.json (parts not run are kept from the previous JSON)
//! and prints the change from the previous figures. The machine is shared and
//! noisy: the storm is reported as ratios within one run, interleaved.
mod agent;
mod farm;
mod latency;
mod peers;
mod proc;
mod report;
mod startup;
mod stats;
mod storm;

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

/// A binary built beside this one (target/release/).
pub fn beside(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.with_file_name(name)
}

struct Opts {
    parts: Vec<&'static str>,
    quick: bool,
    docs: PathBuf,
    storm: storm::Config,
    scales: Vec<usize>,
    mounts: usize,
    reps: usize,
    modes: Vec<String>,
}

/// Mounts in each farm namespace's table.
const MOUNTS_PER_NS: usize = 30;

fn parse() -> Result<Opts> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var("MNTBENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut o = Opts {
        parts: vec!["storm", "latency", "startup"],
        quick,
        docs: PathBuf::from(if quick { "target/bench" } else { "docs" }),
        storm: storm::Config {
            n: if quick { 2_000 } else { 20_000 },
            rounds: if quick { 2 } else { 11 },
            tracers: Vec::new(),
        },
        scales: vec![10, 100, 1000],
        // Mounts per latency round: with few, the p99 of the copies was the
        // worst mount's, a stall of the machine as often as not.
        mounts: if quick { 5 } else { 300 },
        // Start-up repetitions, and latency rounds (the headline p99 is the
        // median of the rounds', as the issue asks: medians of at least 5).
        reps: if quick { 2 } else { 5 },
        modes: if quick {
            vec!["fanotify".into()]
        } else {
            vec!["fanotify".into(), "diff".into()]
        },
    };
    let mut parts = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        let list = |v: &str| -> Result<Vec<usize>> {
            v.split(',')
                .map(|s| s.parse().with_context(|| format!("bad number {s:?}")))
                .collect()
        };
        match a.as_str() {
            "all" => parts.extend(["storm", "latency", "startup"]),
            // Measures nothing: benchmarks.md written anew from the JSON.
            "render" => parts.push("render"),
            "storm" => parts.push("storm"),
            "latency" => parts.push("latency"),
            "startup" => parts.push("startup"),
            "--quick" => {}
            "--docs" => o.docs = val()?.into(),
            "--n" => o.storm.n = val()?.parse()?,
            "--rounds" => o.storm.rounds = val()?.parse()?,
            "--scales" => o.scales = list(val()?)?,
            "--mounts" => o.mounts = val()?.parse()?,
            "--reps" => o.reps = val()?.parse()?,
            "--modes" => o.modes = val()?.split(',').map(String::from).collect(),
            "--tracers" => o.storm.tracers = val()?.split(',').map(String::from).collect(),
            other => bail!("unknown argument {other:?} (see the head of mntbench/main.rs)"),
        }
    }
    if !parts.is_empty() {
        o.parts = parts;
    }
    Ok(o)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("mntbench: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let o = parse()?;
    let bin = std::env::var("MNTTRACE_BIN").context("MNTTRACE_BIN: run `cargo xtask bench`")?;
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "the bench needs root");
    let prev_path = PathBuf::from("docs/benchmarks.json");
    let prev: Option<Value> = std::fs::read_to_string(&prev_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let run = report::provenance(&bin, o.quick);
    let mut new = serde_json::Map::new();

    if o.parts.contains(&"storm") {
        let mut s = storm::measure(&o.storm, &bin)?;
        s["run"] = run.clone();
        new.insert("storm".into(), s);
    }
    let (lat, up) = (o.parts.contains(&"latency"), o.parts.contains(&"startup"));
    if lat || up {
        let (mut lres, mut sres) = (Vec::new(), Vec::new());
        for &n in &o.scales {
            let mut farm = farm::Farm::start(n, MOUNTS_PER_NS)?;
            eprintln!(
                "mntbench: {n} namespaces of {} mounts made in {:.0} ms",
                farm.mounts, farm.setup_ms
            );
            if up {
                sres.push(startup::measure(&farm, o.reps, &bin)?);
            }
            if lat {
                lres.extend(latency::measure(
                    &mut farm, o.reps, o.mounts, &o.modes, &bin,
                )?);
            }
        }
        let config = json!({"scales": o.scales, "mounts_per_ns": MOUNTS_PER_NS});
        if lat {
            new.insert(
                "latency".into(),
                json!({"run": run, "config": {"scales": o.scales, "mounts_per_ns": MOUNTS_PER_NS, "mounts": o.mounts, "rounds": o.reps, "modes": o.modes}, "results": lres}),
            );
        }
        if up {
            new.insert(
                "startup".into(),
                json!({"run": run, "config": config, "reps": o.reps, "results": sres}),
            );
        }
    }

    // Parts not run now keep their last figures (only into docs/, never
    // from a quick run).
    let measured = !new.is_empty();
    let mut doc = json!({"schema": "mnttrace-bench/v1"});
    for part in ["storm", "latency", "startup"] {
        let old = prev.as_ref().filter(|_| !o.quick).map(|p| p[part].clone());
        match new.remove(part).or(old) {
            Some(v) if !v.is_null() => doc[part] = v,
            _ => {}
        }
    }
    // The summary is a function of the runs: recomputed, so a render
    // shows what this version summarizes.
    if let Some(runs) = doc["storm"]["runs"].as_array() {
        doc["storm"]["summary"] = json!(storm::summarize(runs));
    }
    doc["figures"] = report::figures(&doc);
    if let Some(p) = prev.as_ref().filter(|_| measured) {
        println!("{}", report::compare(&p["figures"], &doc["figures"]));
    }
    std::fs::create_dir_all(&o.docs)?;
    let (json_path, md_path) = (o.docs.join("benchmarks.json"), o.docs.join("benchmarks.md"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    let md = report::markdown(&doc);
    std::fs::write(&md_path, &md)?;
    println!("{md}");
    eprintln!(
        "mntbench: wrote {} and {}",
        md_path.display(),
        json_path.display()
    );
    Ok(())
}
