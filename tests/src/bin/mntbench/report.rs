//! docs/benchmarks.md and .json: where and with what the figures were
//! measured, the flat figures a later run compares itself with, and the
//! tables.
use std::{collections::BTreeMap, fmt::Write as _, process::Command};

use serde_json::{Value, json};

fn cmd_out(prog: &str, args: &[&str]) -> String {
    Command::new(prog)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Date, machine, and which mnttrace and peers were measured.
pub fn provenance(bin: &str, quick: bool) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // --no-optional-locks: reading the tree's state must not touch the index.
    let dirty = !cmd_out(
        "git",
        &[
            "--no-optional-locks",
            "status",
            "--porcelain",
            "--",
            "tracer",
            "tracer-ebpf",
        ],
    )
    .is_empty();
    json!({
        "date": cmd_out("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "machine": {
            "cpu": cpu,
            "cores": cores,
            "kernel": kernel.trim(),
            "loadavg_at_start": load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        },
        "mnttrace": {
            "version": cmd_out(bin, &["--version"]),
            // Tells two builds of one commit (an uncommitted tree) apart.
            "sha256": cmd_out("sha256sum", &[bin]).get(..16).unwrap_or("?"),
            "commit": cmd_out("git", &["rev-parse", "--short", "HEAD"]),
            "uncommitted_tracer_changes": dirty,
        },
        "peers": {
            "mountsnoop": format!("libbpf-tools {}", cmd_out("dpkg-query", &["-W", "-f", "${Version}", "libbpf-tools"])),
            "bpftrace": cmd_out("bpftrace", &["--version"]),
        },
        "quick": quick,
    })
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Every headline number under a stable key, for comparing runs.
pub fn figures(doc: &Value) -> Value {
    let mut m = BTreeMap::new();
    for s in doc["storm"]["summary"].as_array().into_iter().flatten() {
        let k = format!(
            "storm.{}.{}",
            s["mode"].as_str().unwrap_or("?"),
            s["tracer"].as_str().unwrap_or("?")
        );
        m.insert(format!("{k}.ratio"), f(&s["ratio"]));
        m.insert(format!("{k}.median_s"), f(&s["median_s"]));
        m.insert(format!("{k}.cpu_ratio"), f(&s["cpu_ratio"]));
        m.insert(format!("{k}.ratio_paired"), f(&s["ratio_paired_median"]));
        if let Some(d) = s["delivered"].as_f64() {
            m.insert(format!("{k}.delivered_pct"), 100.0 * d / f(&s["made"]));
        }
    }
    for r in doc["latency"]["results"].as_array().into_iter().flatten() {
        let k = format!(
            "latency.{}.{}",
            r["mode"].as_str().unwrap_or("?"),
            r["namespaces"]
        );
        for x in [
            "p50_ms",
            "p99_ms",
            "p99_round_median_ms",
            "max_ms",
            "last_copy_p50_ms",
        ] {
            m.insert(format!("{k}.{x}"), f(&r[x]));
        }
        m.insert(
            format!("{k}.delivered_pct"),
            100.0 * f(&r["copies_delivered"]) / f(&r["copies_expected"]),
        );
    }
    for r in doc["startup"]["results"].as_array().into_iter().flatten() {
        let k = format!("startup.{}", r["namespaces"]);
        m.insert(format!("{k}.ms"), f(&r["startup_ms_median"]));
        m.insert(format!("{k}.vmhwm_mb"), mb(f(&r["vmhwm_mib_median"])));
    }
    json!(m)
}

/// MiB (as /proc counts) to MB (10^6 bytes, as the targets are set).
fn mb(mib: f64) -> f64 {
    mib * 1024.0 * 1024.0 / 1e6
}

/// The previous run's figures against this one's.
pub fn compare(prev: &Value, now: &Value) -> String {
    let (Some(p), Some(n)) = (prev.as_object(), now.as_object()) else {
        return String::new();
    };
    let mut out = String::from("Change from the previous docs/benchmarks.json:\n");
    for (k, v) in n {
        let (Some(a), Some(b)) = (p.get(k).and_then(Value::as_f64), v.as_f64()) else {
            continue;
        };
        let rel = if a != 0.0 {
            format!("x{:.2}", b / a)
        } else {
            "-".into()
        };
        let _ = writeln!(out, "  {k:<48} {a:>10.3} -> {b:>10.3}  {rel}");
    }
    out
}

fn verdict(ok: bool, by: String) -> String {
    if ok {
        "met".into()
    } else {
        format!("**missed** ({by})")
    }
}

/// A storm ratio against its limit, on both estimates (headline, per
/// round): met or missed only when they agree; otherwise this run's noise
/// does not decide.
fn storm_verdict((m, lim): (f64, f64), (pm, plim): (f64, f64), what: &str) -> String {
    let over = |v: f64, l: f64| format!("{:+.0} %", (v / l - 1.0) * 100.0);
    match (m <= lim, pm <= plim) {
        (true, true) => "met".into(),
        (false, false) => format!("**missed** ({} against {what})", over(m, lim)),
        _ => format!(
            "**not settled**: the two estimates fall on either side ({} and {} against {what})",
            over(m, lim),
            over(pm, plim)
        ),
    }
}

fn targets(doc: &Value, out: &mut String) {
    let fig = &doc["figures"];
    let get = |k: &str| fig[k].as_f64();
    out.push_str("| target | measured | |\n|---|---|---|\n");
    for mode in ["private", "shared"] {
        let Some(m) = get(&format!("storm.{mode}.mnttrace.ratio")) else {
            continue;
        };
        // Each storm target is judged on both estimates: median over median,
        // and the median of the per-round ratios.
        let pr = |t: &str| get(&format!("storm.{mode}.{t}.ratio_paired"));
        let pm = pr("mnttrace").unwrap_or(m);
        if mode == "private" {
            let _ = writeln!(
                out,
                "| storm, private: mnttrace's ratio to no tracer ≤ 1.05 | {m:.2} (per round {pm:.2}) | {} |",
                storm_verdict((m, 1.05), (pm, 1.05), "the limit")
            );
        }
        let best = |k: &dyn Fn(&str) -> Option<f64>| {
            ["mountsnoop", "bpftrace"]
                .into_iter()
                .filter_map(|p| Some((p, k(p)?)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
        };
        let headline = best(&|p: &str| get(&format!("storm.{mode}.{p}.ratio")));
        let per_round = best(&|p: &str| pr(p));
        if let (Some((p, b)), Some((q, c))) = (headline, per_round) {
            let _ = writeln!(
                out,
                "| storm, {mode}: mnttrace no worse than the best peer | {m:.2} vs {p} {b:.2}; per round {pm:.2} vs {q} {c:.2} | {} |",
                storm_verdict((m, b), (pm, c), "the best peer")
            );
        }
        if let Some(d) = get(&format!("storm.{mode}.mnttrace.delivered_pct")) {
            let _ = writeln!(
                out,
                "| storm, {mode}: every event delivered (default ring) | {d:.1} % | {} |",
                verdict(d >= 100.0, format!("{:.1} % lost", 100.0 - d))
            );
        }
    }
    for r in doc["latency"]["results"].as_array().into_iter().flatten() {
        let p99 = headline_p99(r);
        let rounds = round_p99s(r);
        let how = if rounds.is_empty() {
            String::new()
        } else {
            format!(
                " (median of {} rounds: {rounds}; every copy pooled: {:.2} ms)",
                r["rounds"],
                f(&r["p99_ms"])
            )
        };
        let _ = writeln!(
            out,
            "| latency ({}), {} namespaces: p99 ≤ 5 ms | {p99:.2} ms{how} | {} |",
            r["mode"].as_str().unwrap_or("?"),
            r["namespaces"],
            verdict(
                p99 <= crate::latency::TARGET_MS,
                format!("{:.2}x", p99 / crate::latency::TARGET_MS),
            )
        );
    }
    for r in doc["startup"]["results"].as_array().into_iter().flatten() {
        if r["namespaces"] != 1000 {
            continue;
        }
        let (ms, m) = (f(&r["startup_ms_median"]), mb(f(&r["vmhwm_mib_median"])));
        let _ = writeln!(
            out,
            "| start-up, 1,000 namespaces: ≤ 300 ms | {ms:.0} ms | {} |",
            verdict(ms <= 300.0, format!("{:.2}x", ms / 300.0))
        );
        let _ = writeln!(
            out,
            "| peak RSS, 1,000 namespaces: ≤ 50 MB | {m:.1} MB | {} |",
            verdict(m <= 50.0, format!("{:.2}x", m / 50.0))
        );
    }
}

fn run_row(part: &str, run: &Value) -> String {
    let m = &run["machine"];
    let t = &run["mnttrace"];
    format!(
        "| {part} | {} | {} | {} | {} | {} {}{}{} | {}; {} | {}{} |\n",
        run["date"].as_str().unwrap_or("?"),
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["kernel"].as_str().unwrap_or("?"),
        t["version"].as_str().unwrap_or("?"),
        t["commit"].as_str().unwrap_or("?"),
        if t["uncommitted_tracer_changes"] == true {
            " + uncommitted tracer/ changes"
        } else {
            ""
        },
        t["sha256"]
            .as_str()
            .map(|s| format!(", binary sha256 {s}…"))
            .unwrap_or_default(),
        run["peers"]["mountsnoop"].as_str().unwrap_or("?"),
        run["peers"]["bpftrace"].as_str().unwrap_or("?"),
        m["loadavg_at_start"].as_str().unwrap_or("?"),
        if run["quick"] == true {
            " (quick run)"
        } else {
            ""
        },
    )
}

fn storm(doc: &Value, out: &mut String) {
    let s = &doc["storm"];
    let c = &s["config"];
    let runs = s["runs"].as_array().map_or(0, Vec::len);
    let waited: f64 = s["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["waited_for_foreign_storm_s"].as_f64())
        .sum();
    let noisy = s["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["foreign_tracers"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .count();
    let _ = write!(
        out,
        "\n## 1. Storm overhead\n\n\
`stormgen` (tests/src/bin/stormgen.rs) makes N = {} mount+umount2 pairs of a tmpfs on one directory, as tight as it can, \
in a private mount namespace of its own. *private*: nothing else sees them. *shared*: the directory sits under a shared \
mount whose peer lives in a second namespace (held by a forked child), so every mount and umount propagates there too. \
Each round runs every mode × configuration in turn (none, mnttrace, mnttrace-propagation-off, mnttrace-propagation-diff, mountsnoop, bpftrace), {} rounds after one untimed \
warm-up per mode ({:.0} s in all). A tracer is started before the storm and counted as attached: mnttrace at its \
`mnttrace: tracing` line; mountsnoop once blocked in its poll loop (epoll_wait in /proc/PID/syscall: its header line is \
block-buffered in a file); bpftrace after `Attaching N probes...` and its poll loop. After the storm the bench waits until \
the tracer idles (under 10 % of a CPU for 300 ms, output no longer growing: *drain*), stops it with SIGINT, and counts the \
storm process's mount and umount records in its output. mnttrace: `--json` with {}, default ring buffer (4M). mountsnoop \
(Debian's libbpf-tools) and the bpftrace script (`storm.config.bpftrace_script` in benchmarks.json: sys_enter/sys_exit of \
mount and umount, one line per call with pid, comm, arguments and return value; the mount line takes two printf \
calls, as one with five strings exceeds the BPF stack in bpftrace 0.17) write stdout to a file, each in a private \
mount namespace with tracefs mounted there. *ratio*: median storm time over the median without a tracer; *per round*: each \
run against the no-tracer run of its own round, median [min–max]. *tracer CPU*: the tracer's user+system time from the storm's start to the \
end of its drain. *storm CPU*: the storm process's own user+system time (getrusage), which holds the probes every \
tracer runs in its syscalls and, unlike elapsed time, does not grow while other processes hold the CPU; its ratio is \
the same median-over-median. *mnttrace-propagation-off* and *mnttrace-propagation-diff* are diagnostics, not \
configurations the targets name: `--propagation off` reads no mount table and watches no namespace, so it separates \
the cost of capture and output from that of following propagation; `--propagation diff` follows propagation without \
fanotify (re-reading the namespaces a call can reach), so it separates the cost of the fanotify marks, which the \
kernel pays in the storm's own syscalls (an event queued for every attach and detach in a watched namespace), from \
that of mnttrace's work. (The default mode marks only namespaces with a shared or slave mount: in the private storm, \
none; in the shared one, both.) Other tracers (someone else's) were running on the machine during {noisy} of these {runs} runs; \
before each run the bench waits for anyone else's `stormgen` to end (it waited {waited:.0} s in all).\n\n",
        c["n"],
        c["rounds"],
        f(&s["seconds"]),
        c["mnttrace_output"].as_str().unwrap_or("?"),
    );
    out.push_str(
        "| mode | tracer | median (s) | ratio | per round | storm CPU ratio | storm calls delivered | complete runs | lost (its own count) | drain (s) | tracer CPU (s) |\n\
|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in s["summary"].as_array().into_iter().flatten() {
        let none = r["tracer"] == "none";
        let delivered = if none {
            "-".to_string()
        } else {
            let d = f(&r["delivered"]);
            let m = f(&r["made"]);
            format!("{d:.0} / {m:.0} ({:.1} %)", 100.0 * d / m)
        };
        let lost = match r["lost"].as_object() {
            Some(l) if !l.is_empty() => l
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            _ if none => "-".into(),
            _ => "none".into(),
        };
        let dash = |v: String| if none { "-".to_string() } else { v };
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.2} | {} | {:.2} | {delivered} | {} | {lost} | {} | {} |",
            r["mode"].as_str().unwrap_or("?"),
            r["tracer"].as_str().unwrap_or("?"),
            f(&r["median_s"]),
            f(&r["ratio"]),
            dash(format!(
                "{:.2} [{:.2}–{:.2}]",
                f(&r["ratio_paired_median"]),
                f(&r["ratio_min"]),
                f(&r["ratio_max"])
            )),
            f(&r["cpu_ratio"]),
            dash(format!("{} / {}", r["runs_complete"], r["runs"])),
            dash(format!("{:.1}", f(&r["drain_ms_median"]) / 1e3)),
            dash(format!("{:.1}", f(&r["cpu_ms_median"]) / 1e3)),
        );
    }
}

/// The p99 a latency target is checked against (ms): the median of the
/// rounds' p99s (a JSON from before rounds: the one run's p99).
fn headline_p99(r: &Value) -> f64 {
    f(r.get("p99_round_median_ms").unwrap_or(&r["p99_ms"]))
}

/// Each round's p99 (ms), in the order run.
fn round_p99s(r: &Value) -> String {
    r["round_p99_ms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| format!("{:.2}", f(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn latency(doc: &Value, out: &mut String) {
    let l = &doc["latency"];
    let rounds = l["config"]["rounds"].as_u64().unwrap_or(1);
    let _ = write!(
        out,
        "\n## 2. Propagation latency at scale\n\n\
`nsfarm` (tests/src/bin/nsfarm.rs) builds, in a private namespace tree of its own, N mount namespaces of {} mounts \
each: the first holds a shared tmpfs, the other N-1 are forked children that each unshare a copy of it (so all N hold a \
peer of it) and wait; they are killed with the farm. mnttrace runs on the whole machine (`--json --propagation MODE`, \
stdout a pipe read by the bench, each line stamped with CLOCK_MONOTONIC when the read(2) that returns it returns). In \
each round a fresh mnttrace is started and the farm's first namespace makes \
{} mounts of a tmpfs under the shared mount, one at a time (on 64 directories in turn): each reaches all N namespaces, so mnttrace writes N \
`propagation` records for it (its own mount and N-1 peer copies). There are {rounds} rounds per mode, the modes taking \
turns (A B A B …). Latency: a record's arrival minus its syscall \
record's `ktime_ns` (the syscall's exit, CLOCK_MONOTONIC). The bench waits for all N (30 s at most) and for the N \
records of the matching umount before the next mount, so every latency is one mount's, not a queue's. \
*p99, median of rounds*: each round's p99 over its copies, the median of those (the figure the target is checked \
against: medians of at least 5, as the issue asks of every figure); *per round*: each round's, in the order run. \
p50/p99/max: over every copy of every round; *first/last copy*: median over the mounts of their earliest and latest copy. A mount's copies are \
written together, so they arrive within a fraction of a millisecond of each other: a round's p99 over copies is, in effect, the \
slowest 1 % of its mounts (the slowest {} of the {} here), and *past 5 ms* counts the mounts (of all rounds) whose last copy came later \
than the target. The bench's reader shares \
the machine's 2 cores with mnttrace; it finds two fields of each line (`kind`, `cause`) without parsing it, and parses \
the whole line only for syscall and `lost` records. *Others' CPU*: what every other process on the machine (kernel \
threads included, the bench's own and the farm's not) ran meanwhile, from each thread's schedstat, and the largest \
of them (per round: the median total, and the largest user's mean): their CPU is not mnttrace's, and a mount whose handling they take a CPU from is among the slowest. \
*mnttrace CPU*: a round's median; *VmHWM*: the largest round's.\n\n\
| propagation | namespaces (on machine) | copies delivered | p99, median of rounds (ms) | p99 per round (ms) | p50 (ms) | p99 (ms) | max (ms) | first copy p50 (ms) | last copy p50 / max (ms) | past 5 ms (mounts) | umount p50 / p99 (ms) | mnttrace VmHWM (MB) | mnttrace CPU (s) | others' CPU (s): largest |\n\
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        l["config"]["mounts_per_ns"],
        l["config"]["mounts"],
        (l["config"]["mounts"].as_u64().unwrap_or(0) / 100).max(1),
        l["config"]["mounts"],
    );
    for r in l["results"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "| {} | {} ({}) | {} / {} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} | {} | {:.2} / {:.2} | {:.1} | {:.2} | {} |",
            r["mode"].as_str().unwrap_or("?"),
            r["namespaces"],
            r["machine_namespaces"],
            r["copies_delivered"],
            r["copies_expected"],
            headline_p99(r),
            round_p99s(r),
            f(&r["p50_ms"]),
            f(&r["p99_ms"]),
            f(&r["max_ms"]),
            f(&r["first_copy_p50_ms"]),
            f(&r["last_copy_p50_ms"]),
            f(&r["last_copy_max_ms"]),
            match &r["mounts_past_target"] {
                Value::Null => "-".to_string(),
                n => format!("{n} / {}", r["mounts"]),
            },
            f(&r["umount_p50_ms"]),
            f(&r["umount_p99_ms"]),
            mb(f(&r["vmhwm_kib"]) / 1024.0),
            f(&r["cpu_ms"]) / 1e3,
            match (&r["others_cpu_ms"], r["others_top"].as_str()) {
                (Value::Null, _) => "-".to_string(),
                (_, Some(top)) => format!(
                    "{:.2}: {top} {:.2}",
                    f(&r["others_cpu_ms"]) / 1e3,
                    f(&r["others_top_cpu_ms"]) / 1e3
                ),
                (v, None) => format!("{:.2}", f(v) / 1e3),
            },
        );
    }
}

fn startup(doc: &Value, out: &mut String) {
    let s = &doc["startup"];
    let _ = write!(
        out,
        "\n## 3. Start-up and memory\n\n\
With the farm of part 2 on the machine ({} mounts per namespace), `mnttrace --json` (stdout discarded) is started {} \
times per scale. *Start-up*: from just before exec to its `mnttrace: tracing` line on stderr (attached, every \
namespace's table read; polled every 2 ms). *VmHWM*: /proc/PID/status, read 0.5 s after that line, just before SIGINT; \
*ru_maxrss* from wait4 after it exits. Medians; MB = 10^6 bytes.\n\n\
| namespaces (on machine) | start-up median (ms) | runs (ms) | vs 10 namespaces | VmHWM (MB) | ru_maxrss (MB) |\n\
|---|---|---|---|---|---|\n",
        s["config"]["mounts_per_ns"], s["reps"],
    );
    let rs: Vec<&Value> = s["results"].as_array().into_iter().flatten().collect();
    let base = rs.first().map_or(f64::NAN, |r| f(&r["startup_ms_median"]));
    for r in rs {
        let runs: Vec<String> = r["startup_ms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| format!("{:.0}", f(v)))
            .collect();
        let _ = writeln!(
            out,
            "| {} ({}) | {:.0} | {} | {:.2}x | {:.1} | {:.1} |",
            r["namespaces"],
            r["machine_namespaces"],
            f(&r["startup_ms_median"]),
            runs.join(", "),
            f(&r["startup_ms_median"]) / base,
            mb(f(&r["vmhwm_mib_median"])),
            mb(f(&r["maxrss_mib_median"])),
        );
    }
}

pub fn markdown(doc: &Value) -> String {
    let mut out = String::from(
        "# mnttrace benchmarks\n\n\
Written by `cargo xtask bench` (`cargo xtask bench storm|latency|startup` for one part, `--quick` for a short \
development run into target/bench/); the next run rewrites this file, and [benchmarks.json](benchmarks.json) holds \
the same figures (and every storm run) for comparing runs: the bench prints the change from the previous one. Code: \
tests/src/bin/mntbench/, stormgen.rs (the storm), nsfarm.rs (the namespaces). These are figures, not tests: nothing \
asserts a time. The machine is shared and noisy: compare the ratios measured within one run, not absolute times \
across runs.\n\n## Where and what\n\n\
| part | date (UTC) | CPU | cores | kernel | mnttrace | peers | load at start |\n|---|---|---|---|---|---|---|---|\n",
    );
    // Parts measured in one run share a row.
    let mut rows: Vec<(Vec<&str>, &Value)> = Vec::new();
    for part in ["storm", "latency", "startup"] {
        let run = &doc[part]["run"];
        if doc[part].is_null() {
            continue;
        }
        match rows.iter_mut().find(|(_, r)| *r == run) {
            Some((parts, _)) => parts.push(part),
            None => rows.push((vec![part], run)),
        }
    }
    for (parts, run) in rows {
        out.push_str(&run_row(&parts.join(", "), run));
    }
    out.push_str("\n## Targets\n\n");
    targets(doc, &mut out);
    if !doc["storm"].is_null() {
        storm(doc, &mut out);
    }
    if !doc["latency"].is_null() {
        latency(doc, &mut out);
    }
    if !doc["startup"].is_null() {
        startup(doc, &mut out);
    }
    out
}
