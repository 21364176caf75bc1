//! Bounded memory: mnttrace's resident set stays flat while thousands of
//! mount namespaces are made and destroyed under it, and it loses nothing.
use std::{path::PathBuf, process::Command, time::Duration};

use mnttrace_tests::{Tracer, tempdir};

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn churn_bin() -> PathBuf {
    let dir = std::env::current_exe().expect("test path");
    dir.parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("nschurn")
}

#[test]
fn rss_is_flat_over_many_namespaces() {
    const ROUNDS: usize = 6;
    const PER_ROUND: usize = 2000;
    let t = tempdir();
    let tracer = Tracer::start(&["--json", "--output", "/dev/null"]);
    let mut rss = Vec::new();
    for _ in 0..ROUNDS {
        let status = Command::new(churn_bin())
            .arg(PER_ROUND.to_string())
            .arg(t.path())
            .status()
            .expect("run nschurn");
        assert!(status.success(), "nschurn: {status}");
        // Past the 1 s tick that reports ended namespaces and trims caches.
        std::thread::sleep(Duration::from_millis(2500));
        rss.push(rss_kb(tracer.pid()));
    }
    let (status, _, stderr) = tracer.stop();
    assert!(status.success(), "{stderr:?}");
    // The first round warms allocator pools and caches up to their caps.
    let warm = rss[1];
    let last = *rss.last().expect("rounds");
    assert!(
        last <= warm + 2048,
        "RSS grew from {warm} kB to {last} kB over {} namespaces: {rss:?}",
        PER_ROUND * (ROUNDS - 2)
    );
    let summary = stderr.last().expect("summary");
    assert!(summary.ends_with(", 0 events lost"), "{summary}");
    let reported: usize = summary
        .split("; ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("calls reported");
    assert!(reported >= 4 * ROUNDS * PER_ROUND, "{summary}");
    assert!(
        !stderr.iter().any(|l| l.contains("WARN")),
        "namespaces that die young are not warnings: {stderr:?}"
    );
}
