//! Part 2, propagation latency at scale: one mount made in a farm of N
//! namespaces reaches all N; how long after the syscall's exit (the
//! record's `ktime_ns`) each of its N `propagation` records is on mnttrace's
//! output (stamped on arrival, same clock). Mounts go one at a time, each
//! waited for (and its umount too), so each latency is a single mount's, not
//! a queue's.
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::{agent, farm::Farm, proc, stats};

/// What arrived so far: the farm's syscall records and every propagation
/// record's arrival by cause.
#[derive(Default)]
struct Seen {
    calls: Vec<Value>,
    copies: HashMap<u64, Vec<u64>>,
    lost: serde_json::Map<String, Value>,
}

impl Seen {
    fn take(&mut self, at: u64, line: &str, pid: u32) {
        // Two fields, found without parsing the line: this thread shares
        // the two CPUs with mnttrace and with the thread that stamps the
        // lines, and at 1,000 namespaces a thousand lines come at once.
        match raw(line, "kind") {
            Some("\"propagation\"") => {
                if let Some(c) = raw(line, "cause").and_then(|c| c.parse().ok()) {
                    self.copies.entry(c).or_default().push(at);
                }
            }
            Some("\"syscall\"" | "\"lost\"") => {
                let Ok(v) = serde_json::from_str::<Value>(line) else {
                    return;
                };
                if v["kind"] == "syscall" && v["pid"] == pid {
                    self.calls.push(v);
                } else if let Some(r) = v["reason"].as_str() {
                    self.lost.insert(r.into(), v["total"].clone());
                }
            }
            _ => {}
        }
    }

    fn call(&self, call: &str, target: &str, after: u64) -> Option<(u64, u64)> {
        self.calls.iter().find_map(|c| {
            let (id, k) = (c["id"].as_u64()?, c["ktime_ns"].as_u64()?);
            (c["call"] == call && c["args"]["target"] == target && k >= after).then_some((id, k))
        })
    }
}

/// Waits for `call` on `target` and its `n` copies; the copies' latencies (ns).
fn collect(
    rx: &std::sync::mpsc::Receiver<(u64, Vec<String>)>,
    seen: &mut Seen,
    pid: u32,
    (call, target, after, n): (&str, &str, u64, usize),
) -> Vec<f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((id, exit)) = seen.call(call, target, after) {
            let got = seen.copies.get(&id).map_or(0, Vec::len);
            if got >= n || Instant::now() > deadline {
                return seen
                    .copies
                    .get(&id)
                    .map(|v| v.iter().map(|at| at.saturating_sub(exit) as f64).collect())
                    .unwrap_or_default();
            }
        } else if Instant::now() > deadline {
            return Vec::new();
        }
        if let Ok((at, lines)) = rx.recv_timeout(Duration::from_millis(50)) {
            for l in &lines {
                seen.take(at, l, pid);
            }
        }
    }
}

/// The raw value of the first `"key":` in one of mnttrace's lines: a
/// top-level field when it comes before any object (`kind` and `cause` do).
/// Inside a JSON string every quote is escaped, so `"key":` is a key.
fn raw<'l>(line: &'l str, key: &str) -> Option<&'l str> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[at..];
    let end = match rest.strip_prefix('"') {
        Some(string) => string.find('"')? + 2,
        None => rest.find([',', '}'])?,
    };
    Some(&rest[..end])
}

/// The issue's target for a copy: p99 ≤ 5 ms.
pub const TARGET_MS: f64 = 5.0;

fn ms(ns: f64) -> f64 {
    ns / 1e6
}

/// `mounts` mounts (and umounts) on the farm under `mnttrace --json
/// --propagation MODE`.
pub fn measure(farm: &mut Farm, mounts: usize, mode: &str, bin: &str) -> Result<Value> {
    let machine_ns = proc::namespaces_on_machine();
    let mut a = agent::start(bin, &["--json", "--propagation", mode], true)?;
    let rx = a.lines.take().context("stamped output")?;
    let cpu0 = proc::cpu_ms(a.guard.pid).unwrap_or(0.0);
    // The machine's own work meanwhile (this VM's kdamond, say): not the
    // bench's processes, mnttrace or the farm.
    let mine = [a.guard.pid, std::process::id() as i32];
    let skip = ["nsfarm"];
    let others0 = proc::others_cpu_ns(&skip, &mine);
    let mut seen = Seen::default();
    let (mut per_copy, mut last, mut first, mut um) = (vec![], vec![], vec![], vec![]);
    for i in 0..mounts {
        // Each slot is free again after its umount.
        let k = i % crate::farm::SLOTS;
        let target = farm.target(k);
        let t = proc::monotonic_ns();
        anyhow::ensure!(farm.mount(k)? == 0, "mount on {target} failed");
        let lat = collect(&rx, &mut seen, farm.pid, ("mount", &target, t, farm.n));
        last.push(stats::max(&lat));
        first.push(stats::min(&lat));
        per_copy.extend(lat);
        let t = proc::monotonic_ns();
        anyhow::ensure!(farm.umount(k)? == 0, "umount of {target} failed");
        um.extend(collect(
            &rx,
            &mut seen,
            farm.pid,
            ("umount2", &target, t, farm.n),
        ));
        std::thread::sleep(Duration::from_millis(20));
    }
    let hwm = proc::status_kib(a.guard.pid, "VmHWM").unwrap_or(0);
    let cpu = proc::cpu_ms(a.guard.pid).unwrap_or(cpu0) - cpu0;
    let (others_ms, top) = proc::others_cpu_delta(&others0, &proc::others_cpu_ns(&skip, &mine));
    let exit = a.guard.stop(Duration::from_secs(30));
    let r = json!({
        "mode": mode,
        "namespaces": farm.n,
        "machine_namespaces": machine_ns,
        "mounts_per_ns": farm.mounts,
        "mounts": mounts,
        "copies_expected": mounts * farm.n,
        "copies_delivered": per_copy.len(),
        "umount_copies_delivered": um.len(),
        "p50_ms": ms(stats::percentile(&per_copy, 0.5)),
        "p99_ms": ms(stats::percentile(&per_copy, 0.99)),
        "max_ms": ms(stats::max(&per_copy)),
        "first_copy_p50_ms": ms(stats::median(&first)),
        "last_copy_p50_ms": ms(stats::median(&last)),
        "last_copy_max_ms": ms(stats::max(&last)),
        "mounts_past_target": last.iter().filter(|&&v| ms(v) > TARGET_MS).count(),
        // Each mount's earliest and latest copy, in the order made.
        "first_copy_ms": first.iter().map(|&v| ms(v)).collect::<Vec<_>>(),
        "last_copy_ms": last.iter().map(|&v| ms(v)).collect::<Vec<_>>(),
        "umount_p50_ms": ms(stats::percentile(&um, 0.5)),
        "umount_p99_ms": ms(stats::percentile(&um, 0.99)),
        "vmhwm_kib": hwm,
        "cpu_ms": cpu,
        "others_cpu_ms": others_ms,
        "others_top": top.as_ref().map(|(n, _)| n.clone()),
        "others_top_cpu_ms": top.as_ref().map(|(_, ms)| *ms),
        "startup_ms": a.startup_ms,
        "lost": seen.lost,
        "exit": exit.describe(),
        "stderr_tail": a.stderr.lock().expect("stderr").iter().rev().take(2).rev().cloned().collect::<Vec<_>>(),
    });
    eprintln!(
        "mntbench: latency {mode} {:>5} ns: copies {}/{}  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  last-copy p50 {:.2} ms",
        farm.n,
        r["copies_delivered"],
        r["copies_expected"],
        r["p50_ms"].as_f64().unwrap_or(0.0),
        r["p99_ms"].as_f64().unwrap_or(0.0),
        r["max_ms"].as_f64().unwrap_or(0.0),
        r["last_copy_p50_ms"].as_f64().unwrap_or(0.0),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::raw;

    /// Read as serde_json reads them, including past a string that holds
    /// the key's text (escaped, so not a key).
    #[test]
    fn raw_fields_are_the_parsed_ones() {
        let line = r#"{"schema":"mnttrace/v1","kind":"propagation","time":"t","cause":42,"source":"x\"cause\":7","container":{"kind":"k"}}"#;
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(raw(line, "kind"), Some("\"propagation\""));
        assert_eq!(v["kind"], "propagation");
        assert_eq!(
            raw(line, "cause").and_then(|c| c.parse::<u64>().ok()),
            v["cause"].as_u64()
        );
        let late = r#"{"source":"a\"cause\":1","cause":null}"#;
        assert_eq!(raw(late, "cause"), Some("null"));
        assert_eq!(raw(r#"{"kind":"lost"}"#, "kind"), Some("\"lost\""));
        assert_eq!(raw(r#"{"kind":"lost"}"#, "cause"), None);
    }
}
