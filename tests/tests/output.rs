//! `--output FILE`: whole lines only, mode 0600, size rotation, SIGHUP
//! reopening, and a full disk: records that do not fit are counted and
//! reported, never torn, and delivered + lost equals the calls made.
use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use mnttrace_tests::{Drive, Tracer, mnttrace_bin, parse, syscalls_of, tempdir};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// A script of `pairs` tmpfs mount+umount pairs on `dir`.
fn storm(dir: &str, pairs: usize) -> Value {
    let mut s = Vec::new();
    for _ in 0..pairs {
        s.push(json!({"op": "mount", "source": "tmpfs", "target": dir, "fstype": "tmpfs"}));
        s.push(json!({"op": "umount", "target": dir, "flags": 0}));
    }
    Value::Array(s)
}

/// Every line of `path`, each a whole record valid against the schema.
fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read output");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{}: torn last line",
        path.display()
    );
    let lines: Vec<String> = text.lines().map(String::from).collect();
    parse(&lines)
}

/// `pid`'s umount2 records: the storm's alone (the driver's set-up mounts too).
fn umounts(records: &[Value], pid: u32) -> usize {
    syscalls_of(records, pid)
        .iter()
        .filter(|r| r["call"] == "umount2")
        .count()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn wait_until(secs: u64, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a driver's storm of `pairs` to its end.
fn go(mut d: Drive, pairs: usize) {
    let results = d.go(2 * pairs);
    assert!(results.iter().all(|r| r["ret"] == 0), "the kernel refused");
    d.finish();
}

#[test]
fn rotation_keeps_whole_lines_and_mode_0600() {
    let t = tempdir();
    let out = t.path().join("trace.json");
    let work = t.path().join("m");
    std::fs::create_dir(&work).expect("mkdir");
    let drive = Drive::new(storm(work.to_str().expect("utf-8"), 400));
    let pid = drive.pid;
    let tracer = Tracer::start(&[
        "--json",
        "--pid",
        &pid.to_string(),
        "--output",
        out.to_str().expect("utf-8 path"),
        "--rotate-size",
        "64K",
        "--rotate-keep",
        "3",
    ]);
    go(drive, 400);
    let (status, stdout, stderr) = tracer.stop();
    assert!(status.success(), "{stderr:?}");
    assert!(stdout.is_empty(), "--output, yet stdout got {stdout:?}");

    let mut files: Vec<PathBuf> = (1..=3)
        .rev()
        .map(|n| t.path().join(format!("trace.json.{n}")))
        .collect();
    files.push(out.clone());
    assert!(
        !t.path().join("trace.json.4").exists(),
        "more than --rotate-keep files"
    );
    let mut all = Vec::new();
    for f in &files {
        assert!(
            f.exists(),
            "{} missing: 800 calls fill more than 4 × 64K",
            f.display()
        );
        assert_eq!(mode(f), 0o600, "{}", f.display());
        let len = std::fs::metadata(f).expect("stat").len();
        assert!(len <= 64 << 10, "{} is {len} bytes", f.display());
        all.extend(records(f));
    }
    // The newest records, in order, no gap at the file boundaries.
    let ids: Vec<u64> = syscalls_of(&all, pid)
        .iter()
        .map(|r| r["id"].as_u64().expect("id"))
        .collect();
    assert!(ids.len() > 100, "only {} calls kept", ids.len());
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order");
    let last = syscalls_of(&all, pid).last().cloned().expect("a call");
    assert_eq!(last["call"], "umount2", "the last call is the storm's last");
}

#[test]
fn sighup_reopens_the_output() {
    let t = tempdir();
    let out = t.path().join("trace.json");
    let moved = t.path().join("trace.json.old");
    let work = t.path().join("m");
    std::fs::create_dir(&work).expect("mkdir");
    let w = work.to_str().expect("utf-8");
    // A file left world-readable by someone else becomes 0600.
    std::fs::write(&out, "").expect("create");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (d1, d2) = (Drive::new(storm(w, 5)), Drive::new(storm(w, 5)));
    let (first, second) = (d1.pid, d2.pid);
    let tracer = Tracer::start(&[
        "--json",
        "--pid",
        &first.to_string(),
        "--pid",
        &second.to_string(),
        "--output",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(mode(&out), 0o600);
    go(d1, 5);
    wait_until(20, "the first calls in the file", || {
        umounts(&records(&out), first) == 5
    });
    // What logrotate does: move the file, then SIGHUP.
    std::fs::rename(&out, &moved).expect("rename");
    tracer.signal(Signal::SIGHUP);
    wait_until(20, "a new file", || out.exists());
    go(d2, 5);
    let (status, _, stderr) = tracer.stop();
    assert!(status.success(), "{stderr:?}");
    assert_eq!(umounts(&records(&moved), first), 5);
    assert_eq!(umounts(&records(&moved), second), 0);
    assert_eq!(umounts(&records(&out), second), 5);
    assert_eq!(mode(&out), 0o600);
}

#[test]
fn full_disk_drops_whole_records_counted() {
    const PAIRS: usize = 300;
    let t = tempdir();
    let disk = t.path().join("disk");
    let work = t.path().join("m");
    std::fs::create_dir(&disk).expect("mkdir");
    std::fs::create_dir(&work).expect("mkdir");
    let d = disk.display().to_string();
    // The driver first, so that mnttrace filters on its pid alone.
    let drive = Drive::new(storm(work.to_str().expect("utf-8"), PAIRS));
    let pid = drive.pid;
    // A 128K tmpfs, mostly filled, in a namespace of the test's own; a
    // `sleep` keeps that namespace (and the file) readable after mnttrace.
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=128k mnttrace-full {d} && \
         head -c 96k /dev/zero > {d}/filler && \
         {{ sleep 600 & echo holder=$! >&2; }} && \
         exec {} --json --pid {pid} --output {d}/out.json",
            mnttrace_bin()
        ));
    let tracer = Tracer::spawn(cmd);
    let holder: u32 = tracer
        .stderr()
        .iter()
        .find_map(|l| l.strip_prefix("holder=")?.parse().ok())
        .expect("holder pid");
    let _kill_holder = KillOnDrop(holder);
    let inside = |name: &str| PathBuf::from(format!("/proc/{holder}/root{d}/{name}"));

    go(drive, PAIRS);
    wait_until(30, "the full-disk line", || {
        tracer
            .stderr()
            .iter()
            .any(|l| l.contains("cannot write to"))
    });
    // Let the stream catch up while the disk is still full, then free it.
    std::thread::sleep(Duration::from_secs(2));
    std::fs::remove_file(inside("filler")).expect("free the disk");
    let (status, _, stderr) = tracer.stop();
    assert!(status.success(), "{stderr:?}");

    let full: Vec<&String> = stderr
        .iter()
        .filter(|l| l.contains("cannot write"))
        .collect();
    assert_eq!(full.len(), 1, "one line for the failure: {stderr:?}");
    assert!(full[0].contains("No space left on device"), "{}", full[0]);
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("writing to") && l.contains("again")),
        "{stderr:?}"
    );
    let recs = records(&inside("out.json"));
    let delivered = syscalls_of(&recs, pid).len() as u64;
    let lost: Vec<&Value> = recs
        .iter()
        .filter(|r| r["kind"] == "lost" && r["reason"] == "output_failed")
        .collect();
    assert!(!lost.is_empty(), "no output_failed record");
    let lost_calls: u64 = lost
        .iter()
        .map(|r| r["calls"].as_u64().expect("calls"))
        .sum();
    let other_lost: Vec<&Value> = recs
        .iter()
        .filter(|r| r["kind"] == "lost" && r["reason"] != "output_failed")
        .collect();
    assert!(other_lost.is_empty(), "{other_lost:?}");
    assert!(delivered > 0 && lost_calls > 0, "{delivered} {lost_calls}");
    assert_eq!(
        delivered + lost_calls,
        2 * PAIRS as u64,
        "delivered {delivered} + lost {lost_calls} != made"
    );
    let summary = stderr.last().expect("summary");
    let total: u64 = lost
        .iter()
        .map(|r| r["count"].as_u64().expect("count"))
        .sum();
    assert!(
        summary.ends_with(&format!("{total} events lost")),
        "{summary}"
    );
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0 as i32), Signal::SIGKILL);
    }
}
