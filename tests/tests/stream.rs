//! The agent's behaviour as a user meets it: the human stream, limits,
//! signals, a closed pipe, loss accounting, and start-up failures.
use std::{
    process::{Command, Stdio},
    time::Duration,
};

use mnttrace_tests::{Drive, Tracer, mnttrace_bin, syscalls_of, tempdir};
use serde_json::{Value, json};

/// A burst far past a tiny ring: every syscall is delivered or counted as
/// lost, exactly (the --pid filter runs in the kernel, so only the driver's
/// calls are counted). Then the default ring holds the same burst whole.
#[test]
fn burst_delivered_plus_lost_equals_made() {
    const PAIRS: usize = 2000;
    // None: the default ring.
    for (ring, expect_loss) in [(Some("4K"), true), (None, false)] {
        let t = tempdir();
        let d = t.path().display().to_string();
        let mut script = Vec::new();
        for _ in 0..PAIRS {
            script.push(json!({"op": "mount", "source": "tmpfs", "target": d, "fstype": "tmpfs"}));
            script.push(json!({"op": "umount", "target": d, "flags": 0}));
        }
        let mut drive = Drive::new(Value::Array(script));
        let pid = drive.pid;
        let pid_arg = pid.to_string();
        let mut args = vec!["--json", "--pid", &pid_arg];
        args.extend(ring.iter().flat_map(|r| ["--ring-size", *r]));
        let tracer = Tracer::start(&args);
        let ring = ring.unwrap_or("default");
        let results = drive.go(2 * PAIRS);
        assert!(
            results.iter().all(|r| r["ret"] == 0),
            "the kernel refused a step"
        );
        drive.finish();
        // On SIGINT mnttrace drains the ring and reports the last losses:
        // its whole output then is what it delivered, however far behind
        // it was.
        let (status, stdout, stderr) = tracer.stop();
        assert!(status.success());
        let records = mnttrace_tests::parse(&stdout);
        let delivered = syscalls_of(&records, pid).len() as u64;
        let lost: u64 = records
            .iter()
            .filter(|r| r["kind"] == "lost")
            .map(|r| r["count"].as_u64().expect("count"))
            .sum();
        assert_eq!(
            delivered + lost,
            2 * PAIRS as u64,
            "ring {ring}: delivered {delivered} + lost {lost} != made; stderr {stderr:?}"
        );
        assert_eq!(lost > 0, expect_loss, "ring {ring}: lost {lost}");
        let summary = stderr.last().expect("summary line");
        assert!(
            summary.ends_with(&format!("{lost} events lost")),
            "{summary}"
        );
    }
}

/// Human stream: per-call flag tables, errno names, no colour without a
/// terminal, and the namespace change of unshare.
#[test]
fn human_stream() {
    let t = tempdir();
    let d = t.path().display().to_string();
    let script = json!([
        {"op": "mount", "source": "tmpfs", "target": d, "fstype": "tmpfs", "data": "size=1m"},
        {"op": "mkdir", "path": format!("{d}/a")},
        {"op": "mount", "source": format!("{d}/a"), "target": format!("{d}/a"), "flags": 4096 | 16384},
        {"op": "umount", "target": format!("{d}/a"), "flags": 2},
        {"op": "umount", "target": "/nonexistent-mnttrace", "flags": 0},
        {"op": "unshare", "flags": 0x20000},
    ]);
    let mut drive = Drive::new(script);
    let tracer = Tracer::start(&["--pid", &drive.pid.to_string()]);
    drive.go(6);
    let lines = || tracer.stdout();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lines().iter().filter(|l| l.contains("mntdrive")).count() < 5 {
        assert!(std::time::Instant::now() < deadline, "{:?}", lines());
        std::thread::sleep(Duration::from_millis(50));
    }
    drive.finish();
    let (status, out, _) = tracer.stop();
    assert!(status.success());
    let text = out.join("\n");
    assert!(out[0].starts_with("TIME"), "header first: {text}");
    assert!(
        !text.contains('\x1b'),
        "no colour without a terminal: {text}"
    );
    let want = [
        format!(
            "mount(source=\"tmpfs\", target=\"{d}\", fstype=\"tmpfs\", flags=0, data=\"size=1m\") = 0"
        ),
        format!(
            "mount(source=\"{d}/a\", target=\"{d}/a\", fstype=NULL, flags=MS_BIND|MS_REC, data=NULL) = 0"
        ),
        format!("umount2(target=\"{d}/a\", flags=MNT_DETACH) = 0"),
        "umount2(target=\"/nonexistent-mnttrace\", flags=0) = -1 ENOENT".to_string(),
        "unshare(flags=CLONE_NEWNS) = 0  mnt:[".to_string(),
    ];
    for w in want {
        assert!(text.contains(&w), "missing {w:?} in:\n{text}");
    }
}

/// --count and --duration end the stream by themselves with status 0.
#[test]
fn count_and_duration_exit_cleanly() {
    let t = tempdir();
    let d = t.path().display().to_string();
    let mut drive = Drive::new(json!([
        {"op": "mount", "source": "tmpfs", "target": d, "fstype": "tmpfs"},
        {"op": "umount", "target": d, "flags": 0},
        {"op": "mount", "source": "tmpfs", "target": d, "fstype": "tmpfs"},
    ]));
    let tracer = Tracer::start(&["--json", "--pid", &drive.pid.to_string(), "--count", "2"]);
    drive.go(3);
    let (status, out, _) = tracer.wait();
    drive.finish();
    assert!(status.success(), "{status}");
    let calls = out
        .iter()
        .filter(|l| l.contains(r#""kind":"syscall""#))
        .count();
    assert_eq!(calls, 2, "exactly --count syscall records: {out:?}");

    let start = std::time::Instant::now();
    let (status, _, stderr) = Tracer::start(&["--duration", "1s"]).wait();
    assert!(status.success(), "{status} {stderr:?}");
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert!(
        stderr.iter().any(|l| l.contains("events lost")),
        "{stderr:?}"
    );
}

/// SIGTERM detaches and reports; a closed pipe exits quietly; tracefs, when
/// mnttrace has to mount it, never appears in the host's mount table.
#[test]
fn signals_pipe_and_no_host_mount() {
    let host_tracefs = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .expect("mountinfo")
            .lines()
            .filter(|l| l.contains(" - tracefs "))
            .count()
    };
    let before = host_tracefs(std::process::id());
    let tracer = Tracer::start(&[]);
    assert_eq!(
        host_tracefs(std::process::id()),
        before,
        "tracefs leaked onto the host"
    );
    let (status, _, stderr) = {
        let pid = nix::unistd::Pid::from_raw(tracer.pid() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("kill");
        tracer.wait()
    };
    assert!(status.success(), "SIGTERM: {status}");
    assert!(
        stderr.last().expect("summary").contains("events lost"),
        "{stderr:?}"
    );

    // `mnttrace | head -0`: the reader is gone before anything is written.
    let mut child = Command::new(mnttrace_bin())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "closed pipe: {:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("error") && !err.contains("panick"), "{err}");
}

/// Start-up failures: one line, non-zero status, no panic.
#[test]
fn startup_failures_are_one_line() {
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err)
    };
    let cases: Vec<(Command, i32, &str)> = vec![
        (cmd(&["--call", "mountt"]), 2, "invalid value 'mountt'"),
        (cmd(&["--pid", "0"]), 2, "--pid"),
        (cmd(&["--ring-size", "3M"]), 2, "power of two"),
        (cmd(&["--duration", "soon"]), 2, "--duration"),
        (cmd(&["--duration", "0s"]), 2, "longer than zero"),
        (
            cmd(&["--pid", "4194305"]),
            1,
            "--pid 4194305: no such process",
        ),
        (cmd(&["--rotate-size", "1M"]), 2, "--output"),
        (
            cmd(&["--output", "/x", "--rotate-size", "1Q"]),
            2,
            "unknown unit",
        ),
        (cmd(&["--node-name", "a b"]), 2, "not a node name"),
        (cmd(&["--json", "--comm"]), 2, "a value is required"),
        (
            cmd(&["--output", "/nonexistent-dir/trace.json"]),
            1,
            "--output /nonexistent-dir/trace.json: No such file or directory",
        ),
        (
            cmd(&["--output", "/tmp"]),
            1,
            "--output /tmp: Is a directory",
        ),
        (
            cmd(&["--btf", "/nonexistent-btf"]),
            1,
            "no kernel BTF at /nonexistent-btf",
        ),
        (
            {
                let mut c = Command::new("setpriv");
                c.args(["--bounding-set", "-sys_ptrace", &mnttrace_bin()]);
                c
            },
            1,
            "missing CAP_SYS_PTRACE",
        ),
    ];
    for (mut c, code, text) in cases {
        let (got, err) = run(&mut c);
        assert_eq!(got, Some(code), "{c:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{c:?} one line: {err}");
        assert!(err.contains(text), "{c:?}: {err}");
        assert!(!err.contains("panick"), "{err}");
    }
}

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(mnttrace_bin());
    c.args(args);
    c
}

/// --comm, --mntns, --uid, --call and --failed together: only the driver's
/// failed umount2 calls in its own namespace pass.
#[test]
fn filters_combine() {
    let t = tempdir();
    let d = t.path().display().to_string();
    let mut drive = Drive::new(json!([
        {"op": "mount", "source": "tmpfs", "target": d, "fstype": "tmpfs"},
        {"op": "umount", "target": "/nonexistent-mnttrace", "flags": 0},
        {"op": "umount", "target": d, "flags": 0},
        {"op": "mount", "source": "tmpfs", "target": "/nonexistent-mnttrace", "fstype": "tmpfs"},
        {"op": "umount", "target": "/nonexistent-mnttrace-2", "flags": 0},
    ]));
    let (ns, want_ns) = (drive.mntns.to_string(), drive.mntns);
    let tracer = Tracer::start(&[
        "--json", "--comm", "mntdrive", "--mntns", &ns, "--uid", "0", "--call", "umount2",
        "--failed",
    ]);
    drive.go(5);
    let records = tracer.wait_for(30, |r| syscalls_of(r, drive.pid).len() >= 2);
    drive.finish();
    let (status, out, _) = tracer.stop();
    assert!(status.success());
    let got: Vec<&Value> = records.iter().filter(|r| r["kind"] == "syscall").collect();
    assert_eq!(got.len(), 2, "{out:?}");
    for (r, target) in got
        .iter()
        .zip(["/nonexistent-mnttrace", "/nonexistent-mnttrace-2"])
    {
        assert_eq!(r["call"], "umount2");
        assert_eq!(r["errno"], "ENOENT");
        assert_eq!(r["args"]["target"], target);
        assert_eq!(r["mntns_before"], want_ns);
    }
}
