//! Propagation latency benchmark (`cargo xtask bench`): how long after a
//! mount(2) returns its last propagated copy is on mnttrace's output, with 1,
//! 50 and 200 namespaces receiving it, in fanotify and diff mode.
//!
//! Latency = the monotonic time the bench reads the last `propagation` line of
//! a call minus the call's exit (`ktime_ns`, the same clock). The machines are
//! shared and noisy: compare ratios within one run, not absolute numbers.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use mnttrace_tests::world::{Ns, make, mkdir, tmpfs, umount};
use serde_json::Value;

const MOUNTS: usize = 30;

fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// mnttrace --json, each line stamped when it arrives.
struct Stamped {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<(u64, Value)>>>,
}

impl Stamped {
    fn start(mode: &str, pid: u32) -> Stamped {
        let mut child = Command::new(mnttrace_tests::mnttrace_bin())
            .args(["--json", "--propagation", mode, "--pid", &pid.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_default())
            .spawn()
            .expect("spawn mnttrace");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                let at = monotonic_ns();
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    sink.lock().expect("lines").push((at, v));
                }
            }
        });
        let err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut err = err.lines();
        for l in err.by_ref() {
            let l = l.expect("stderr");
            if l.starts_with("mnttrace: tracing") {
                break;
            }
        }
        std::thread::spawn(move || {
            for l in err.map_while(Result::ok) {
                if l.contains("error") || l.contains("warn") {
                    eprintln!("{l}");
                }
            }
        });
        Stamped { child, lines }
    }

    fn stop(mut self) -> Vec<(u64, Value)> {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(200));
        self.lines.lock().expect("lines").clone()
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Latencies (ns) of `MOUNTS` mounts in ns1 under X, shared with `n - 1` clones.
fn run(n: usize, mode: &str) -> Vec<u64> {
    let tmp = mnttrace_tests::tempdir();
    let x = format!("{}/X", tmp.path().display());
    let mut a = Ns::fresh();
    a.run(&mkdir(&x));
    a.run(&tmpfs("X", &x));
    a.run(&make(&x, "shared", false));
    for i in 0..MOUNTS {
        a.run(&mkdir(&format!("{x}/{i}")));
    }
    let clones: Vec<Ns> = (1..n).map(|_| Ns::clone_of(&a)).collect();
    let tracer = Stamped::start(mode, a.pid);
    for i in 0..MOUNTS {
        let p = format!("{x}/{i}");
        a.run(&tmpfs("b", &p));
        std::thread::sleep(Duration::from_millis(20));
        a.run(&umount(&p, 0));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let lines = tracer.stop();
    drop(clones);
    let mut lat = Vec::new();
    for (_, s) in lines.iter().filter(|(_, v)| {
        v["kind"] == "syscall" && v["call"] == "mount" && v["args"]["source"] == "b"
    }) {
        let id = &s["id"];
        let copies: Vec<u64> = lines
            .iter()
            .filter(|(_, v)| v["kind"] == "propagation" && &v["cause"] == id)
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(copies.len(), n, "every namespace's copy reported: {s}");
        let exit = s["ktime_ns"].as_u64().expect("ktime_ns");
        lat.push(copies.iter().max().expect("copies").saturating_sub(exit));
    }
    assert_eq!(lat.len(), MOUNTS, "one record per mount");
    lat.sort_unstable();
    lat
}

fn main() {
    println!(
        "propagation latency: syscall exit -> last copy on mnttrace's output ({MOUNTS} mounts each)"
    );
    println!(
        "{:<10} {:>11} {:>12} {:>12} {:>14}",
        "mode", "namespaces", "p50 (ms)", "p99 (ms)", "p50 vs 1 ns"
    );
    let only: Option<usize> = std::env::var("PROPBENCH_N")
        .ok()
        .and_then(|n| n.parse().ok());
    for mode in ["fanotify", "diff"] {
        let mut base = 0;
        for n in [1, 50, 200]
            .into_iter()
            .filter(|n| only.is_none_or(|o| o == *n))
        {
            let lat = run(n, mode);
            let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
            if n == 1 {
                base = p50.max(1);
            }
            println!(
                "{mode:<10} {n:>11} {:>12.3} {:>12.3} {:>13.1}x",
                p50 as f64 / 1e6,
                p99 as f64 / 1e6,
                p50 as f64 / base as f64
            );
        }
    }
}
