//! Part 1, storm overhead: `stormgen` makes N mount+umount pairs of a tmpfs
//! as fast as it can, alone or under one tracer at a time, in rounds that
//! interleave every configuration (A B C D A B C D …) so the machine's drift
//! falls on all alike. Per run: the storm's elapsed time, and how many of its
//! 2N calls the tracer delivered.
use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::{
    peers::{self, ALL, Tracer},
    proc::{self, Guard},
    stats,
};

pub const MODES: [&str; 2] = ["private", "shared"];

pub struct Config {
    pub n: u64,
    pub rounds: usize,
    /// Only these configurations (by name; empty: all), for development.
    pub tracers: Vec<String>,
}

/// The generator, set up in its namespace and waiting for "go".
struct Storm {
    guard: Guard,
    stdin: std::process::ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    pid: u32,
}

fn next_json(lines: &mut std::io::Lines<BufReader<std::process::ChildStdout>>) -> Result<Value> {
    let l = lines.next().context("stormgen ended")??;
    serde_json::from_str(&l).with_context(|| format!("stormgen said {l:?}"))
}

impl Storm {
    fn new(dir: &Path, n: u64, mode: &str) -> Result<Storm> {
        let mut cmd = Command::new(crate::beside("stormgen"));
        cmd.arg(dir).arg(n.to_string());
        if mode == "shared" {
            cmd.arg("--shared");
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut guard = Guard::spawn(&mut cmd)?;
        let stdin = guard.child().stdin.take().context("stdin")?;
        let mut lines = BufReader::new(guard.child().stdout.take().context("stdout")?).lines();
        let hello = next_json(&mut lines)?;
        let pid = hello["pid"].as_u64().context("pid")? as u32;
        Ok(Storm {
            guard,
            stdin,
            lines,
            pid,
        })
    }

    /// Runs the storm; what it reports of itself.
    fn go(&mut self) -> Result<Value> {
        writeln!(self.stdin, "go")?;
        self.stdin.flush()?;
        let done = next_json(&mut self.lines)?;
        anyhow::ensure!(done["failed"] == 0, "storm calls failed: {done}");
        let e = self.guard.wait(Duration::from_secs(30));
        anyhow::ensure!(
            e.is_some_and(|e| e.code == Some(0)),
            "stormgen did not exit cleanly"
        );
        anyhow::ensure!(done["elapsed_ns"].is_u64(), "stormgen said {done}");
        Ok(done)
    }
}

/// After the storm, a tracer may still be working through what it was
/// handed: wait until it idles (under 10 % of a CPU over 300 ms, its output
/// no longer growing) before SIGINT, at most a minute. Returns the ms it took.
fn drain(r: &peers::Running) -> f64 {
    let t0 = Instant::now();
    let size = || std::fs::metadata(&r.out).map_or(0, |m| m.len());
    loop {
        let (c0, s0) = (proc::cpu_ms(r.guard.pid).unwrap_or(0.0), size());
        std::thread::sleep(Duration::from_millis(300));
        let (c1, s1) = (proc::cpu_ms(r.guard.pid).unwrap_or(0.0), size());
        if (c1 - c0 < 30.0 && s1 == s0) || t0.elapsed() > Duration::from_secs(60) {
            return (t0.elapsed().as_secs_f64() * 1e3 - 300.0).max(0.0);
        }
    }
}

/// Someone else's storm (other people's tests run `stormgen` too) would be
/// traced by every tracer and slow ours: wait for it to end, two minutes at
/// most. Returns the seconds waited.
fn wait_for_quiet() -> f64 {
    let t0 = Instant::now();
    while !proc::pids_named("stormgen").is_empty() && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(500));
    }
    t0.elapsed().as_secs_f64()
}

/// One storm under one tracer (or none).
fn run_one(work: &Path, cfg: &Config, mode: &str, t: Tracer, mnttrace: &str) -> Result<Value> {
    let waited = wait_for_quiet();
    let dir = tempfile::Builder::new().prefix("storm-").tempdir_in(work)?;
    let mut storm = Storm::new(dir.path(), cfg.n, mode)?;
    let out = work.join(format!("{}.out", t.name()));
    let running = match t {
        Tracer::None => None,
        t => Some(peers::start(t, &out, work, mnttrace)?),
    };
    let mine: Vec<i32> = running.iter().map(|r| r.guard.pid).collect();
    let foreign = proc::foreign_tracers(&mine);
    let cpu0 = running
        .as_ref()
        .and_then(|r| proc::cpu_ms(r.guard.pid))
        .unwrap_or(0.0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let done = storm.go()?;
    let mut rec = json!({
        "mode": mode, "tracer": t.name(), "elapsed_ns": done["elapsed_ns"],
        "cpu_ns": done["cpu_ns"], "vcsw": done["vcsw"], "ivcsw": done["ivcsw"],
        "made": 2 * cfg.n,
        "loadavg1": load.split_whitespace().next().and_then(|l| l.parse::<f64>().ok()),
        "foreign_tracers": foreign,
        "waited_for_foreign_storm_s": waited,
    });
    if let Some(mut r) = running {
        let drain_ms = drain(&r);
        let cpu = proc::cpu_ms(r.guard.pid).unwrap_or(cpu0) - cpu0;
        let exit = r.guard.stop(Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(50));
        let stderr = r.stderr.lock().expect("stderr").clone();
        let c = peers::count(t, &r.out, &stderr, storm.pid)?;
        rec["attach_ms"] = json!(r.attach_ms);
        rec["drain_ms"] = json!(drain_ms);
        rec["cpu_ms"] = json!(cpu);
        rec["seen_mount"] = json!(c.mounts);
        rec["seen_umount"] = json!(c.umounts);
        rec["delivered"] = json!(c.mounts + c.umounts);
        rec["lost"] = json!(c.lost);
        rec["propagation"] = json!(c.propagation);
        rec["exit"] = json!(exit.describe());
        rec["stderr_tail"] = json!(stderr.iter().rev().take(3).rev().collect::<Vec<_>>());
        if exit.killed {
            eprintln!("mntbench: {} did not stop on SIGINT", t.name());
        }
        let _ = std::fs::remove_file(&r.out);
    }
    Ok(rec)
}

pub fn measure(cfg: &Config, mnttrace: &str) -> Result<Value> {
    let work = tempfile::Builder::new()
        .prefix("mntbench-storm-")
        .tempdir()?;
    let started = Instant::now();
    // One untimed run per mode: the first storm after a while pays for cold caches.
    for mode in MODES {
        run_one(work.path(), cfg, mode, Tracer::None, mnttrace)?;
    }
    let mut runs = Vec::new();
    for round in 0..cfg.rounds {
        for mode in MODES {
            for t in ALL {
                if !cfg.tracers.is_empty() && !cfg.tracers.iter().any(|n| n == t.name()) {
                    continue;
                }
                let what = format!("round {round}, {mode}, {}", t.name());
                // Once more after a failure: on this shared machine a
                // process of ours can be killed by someone's cleanup.
                let mut r = match run_one(work.path(), cfg, mode, t, mnttrace) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("mntbench: {what}: {e:#}; once more");
                        std::thread::sleep(Duration::from_secs(1));
                        run_one(work.path(), cfg, mode, t, mnttrace).context(what)?
                    }
                };
                r["round"] = json!(round);
                eprintln!("mntbench: storm {}", line(&r));
                runs.push(r);
            }
        }
    }
    Ok(json!({
        "config": {
            "n": cfg.n, "rounds": cfg.rounds, "modes": MODES,
            "mnttrace_output": if peers::mnttrace_has_output(mnttrace) { "--output FILE" } else { "stdout > FILE" },
            "bpftrace_script": peers::BPFTRACE_SCRIPT,
        },
        "seconds": started.elapsed().as_secs_f64(),
        "runs": runs,
        "summary": summarize(&runs),
    }))
}

fn line(r: &Value) -> String {
    let mut s = format!(
        "{} {:<10} {:>7.3} s",
        r["mode"].as_str().unwrap_or(""),
        r["tracer"].as_str().unwrap_or(""),
        r["elapsed_ns"].as_f64().unwrap_or(0.0) / 1e9
    );
    if let Some(d) = r["delivered"].as_u64() {
        s += &format!(
            "  delivered {d}/{}  lost {}  drain {:.0} ms  {}",
            r["made"],
            r["lost"],
            r["drain_ms"].as_f64().unwrap_or(0.0),
            r["exit"].as_str().unwrap_or("")
        );
    }
    s
}

/// Per mode and tracer: median time, its ratio to the median without a
/// tracer, the spread of the per-round ratios, and delivery.
pub fn summarize(runs: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for mode in MODES {
        let of = |t: &str| -> Vec<&Value> {
            runs.iter()
                .filter(|r| r["mode"] == mode && r["tracer"] == t)
                .collect()
        };
        let base_runs = of("none");
        let col =
            |rs: &[&Value], k: &str| rs.iter().filter_map(|r| r[k].as_f64()).collect::<Vec<_>>();
        let base = stats::median(&col(&base_runs, "elapsed_ns"));
        let base_cpu = stats::median(&col(&base_runs, "cpu_ns"));
        for t in ALL {
            let rs = of(t.name());
            if rs.is_empty() {
                continue;
            }
            let times = col(&rs, "elapsed_ns");
            let cpu = stats::median(&col(&rs, "cpu_ns"));
            // Each run against the no-tracer run of its own round.
            let paired: Vec<f64> = rs
                .iter()
                .filter_map(|r| {
                    let b = base_runs.iter().find(|b| b["round"] == r["round"])?;
                    Some(r["elapsed_ns"].as_f64()? / b["elapsed_ns"].as_f64()?)
                })
                .collect();
            let sum = |k: &str| rs.iter().filter_map(|r| r[k].as_u64()).sum::<u64>();
            let made = sum("made");
            let mut lost = serde_json::Map::new();
            for r in &rs {
                for (k, v) in r["lost"].as_object().into_iter().flatten() {
                    let e = lost.entry(k.clone()).or_insert(json!(0));
                    *e = json!(e.as_u64().unwrap_or(0) + v.as_u64().unwrap_or(0));
                }
            }
            let floats = |k: &str| rs.iter().filter_map(|r| r[k].as_f64()).collect::<Vec<_>>();
            let median = stats::median(&times);
            out.push(json!({
                "mode": mode,
                "tracer": t.name(),
                "runs": rs.len(),
                "median_s": median / 1e9,
                "ratio": if base > 0.0 { median / base } else { 0.0 },
                "ratio_min": stats::min(&paired),
                "ratio_max": stats::max(&paired),
                "ratio_paired_median": stats::median(&paired),
                "vcsw_median": stats::median(&col(&rs, "vcsw")),
                "ivcsw_median": stats::median(&col(&rs, "ivcsw")),
                "storm_cpu_s": cpu / 1e9,
                "cpu_ratio": if base_cpu > 0.0 { cpu / base_cpu } else { 0.0 },
                "made": made,
                "delivered": if t == Tracer::None { Value::Null } else { json!(sum("delivered")) },
                "runs_complete": rs.iter().filter(|r| r["delivered"] == r["made"]).count(),
                "lost": lost,
                "drain_ms_median": stats::median(&floats("drain_ms")),
                "cpu_ms_median": stats::median(&floats("cpu_ms")),
                "attach_ms_median": stats::median(&floats("attach_ms")),
            }));
        }
    }
    out
}
