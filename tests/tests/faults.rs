//! Faults and hostile input: SIGHUP, SIGKILL (nothing stays loaded, attached
//! or mounted), a closed pipe, strings from user memory that try to drive the
//! terminal or break JSON, and secrets in mount data.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use mnttrace_tests::{Drive, Tracer, mnttrace_bin, syscalls_of};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// BPF programs and maps `pid` holds, from its fdinfo.
fn bpf_objects(pid: u32) -> Vec<(&'static str, u32)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for l in text.lines() {
            if let Some(id) = l.strip_prefix("prog_id:") {
                out.push(("prog", id.trim().parse().expect("prog id")));
            } else if let Some(id) = l.strip_prefix("map_id:") {
                out.push(("map", id.trim().parse().expect("map id")));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether the kernel still has this BPF program or map.
fn bpf_exists(kind: &str, id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
    let cmd = if kind == "prog" {
        BPF_PROG_GET_FD_BY_ID
    } else {
        BPF_MAP_GET_FD_BY_ID
    };
    let mut attr = [0u32; 4];
    attr[0] = id;
    // SAFETY: a zeroed bpf_attr prefix with the id, its size passed.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 16) };
    if fd >= 0 {
        // SAFETY: the fd was just returned to us.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!(errno, Some(libc::ENOENT), "bpf(GET_FD_BY_ID {id})");
    false
}

fn tracefs_mounts(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("mountinfo")
        .lines()
        .filter(|l| l.contains(" - tracefs "))
        .count()
}

#[test]
fn sigkill_leaves_nothing_loaded_attached_or_mounted() {
    let before = tracefs_mounts(std::process::id());
    let tracer = Tracer::start(&["--json"]);
    let objects = bpf_objects(tracer.pid());
    assert!(
        objects.iter().any(|(k, _)| *k == "prog") && objects.iter().any(|(k, _)| *k == "map"),
        "mnttrace holds no BPF programs or maps: {objects:?}"
    );
    assert!(objects.iter().all(|(k, id)| bpf_exists(k, *id)));
    // Its tracefs is in a namespace of its own, not the host's.
    assert_eq!(tracefs_mounts(tracer.pid()), before + 1);
    assert_eq!(tracefs_mounts(std::process::id()), before);

    tracer.signal(Signal::SIGKILL);
    let (status, _, _) = tracer.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    // The kernel frees programs after an RCU grace period: give it time.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<_> = objects
            .iter()
            .filter(|(k, id)| bpf_exists(k, *id))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still in the kernel after SIGKILL: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(tracefs_mounts(std::process::id()), before);
    let pinned = std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().contains("mnttrace"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(pinned, 0, "mnttrace pinned something");
}

#[test]
fn sighup_without_output_ends_the_run() {
    let tracer = Tracer::start(&[]);
    tracer.signal(Signal::SIGHUP);
    let (status, _, stderr) = tracer.wait();
    assert!(status.success(), "SIGHUP: {status} {stderr:?}");
    let last = stderr.last().expect("summary");
    assert!(
        last.starts_with("mnttrace: detached (SIGHUP);"),
        "{stderr:?}"
    );
}

#[test]
fn closed_pipe_is_one_line() {
    // The reader is gone before the first record; records keep coming.
    let mut child = Command::new(mnttrace_bin())
        .args(["--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    drop(stdout);
    // Calls to write about, in a namespace of their own.
    for _ in 0..20 {
        let _ = Command::new("unshare")
            .args(["-m", "--propagation", "private", "true"])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "mnttrace did not notice the closed pipe"
        );
        let _ = Command::new("unshare")
            .args(["-m", "--propagation", "private", "true"])
            .status();
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "{status}: {err}");
    let last = err.lines().last().expect("a line");
    assert!(
        last.starts_with("mnttrace: detached (output closed);"),
        "{err}"
    );
    assert!(!err.contains("panick") && !err.contains("error"), "{err}");
}

/// `\x1b[31mevil\x07` as a command name; a source with an OSC title escape
/// and bytes that are not UTF-8; a target longer than mnttrace reads;
/// mount data and an fsconfig value with a password.
fn hostile_script(long: &str) -> Value {
    json!([
        {"op": "comm", "name_hex": "1b5b33316d6576696c07"},
        {"op": "mount", "source_hex": "1b5d303b70776e65640761fffe62", "target": long,
         "fstype": "tmpfs", "flags": 0, "data": "size=1m,password=hunter2,mode=755"},
        {"op": "fsopen", "fs_name": "tmpfs", "flags": 0},
        {"op": "fsconfig", "fd": "$2", "cmd": 1, "key": "password", "value": "hunter2"},
        {"op": "close", "fd": "$2"},
    ])
}

#[test]
fn hostile_strings_and_secrets() {
    let long = format!("/{}", "d".repeat(700));
    let script = hostile_script(&long);
    let mut drive = Drive::new(script);
    let pid = drive.pid.to_string();
    let json = Tracer::start(&["--json", "--pid", &pid]);
    let human = Tracer::start(&["--pid", &pid, "--color", "always"]);
    let shown = Tracer::start(&["--json", "--pid", &pid, "--show-secrets"]);
    let results = drive.go(5);
    assert_eq!(results[1]["errno"], "ENAMETOOLONG", "{results:?}");
    assert_eq!(
        results[3]["errno"], "EINVAL",
        "tmpfs has no password option"
    );
    let wanted = |r: &[Value]| {
        syscalls_of(r, drive.pid)
            .iter()
            .any(|s| s["call"] == "fsconfig")
    };
    json.wait_for(20, wanted);
    shown.wait_for(20, wanted);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !human.stdout().iter().any(|l| l.contains("fsconfig")) {
        assert!(Instant::now() < deadline, "human: {:?}", human.stdout());
        std::thread::sleep(Duration::from_millis(50));
    }
    let pidn = drive.pid;
    drive.finish();

    // JSON: the exact strings, escaped by JSON, secrets redacted.
    let recs = syscalls_of(&json.records(), pidn);
    let mount = recs
        .iter()
        .find(|r| r["call"] == "mount")
        .expect("mount record");
    assert_eq!(mount["comm"], "\u{1b}[31mevil\u{7}");
    assert_eq!(
        mount["args"]["source"],
        "\u{1b}]0;pwned\u{7}a\u{fffd}\u{fffd}b"
    );
    let target = mount["args"]["target"].as_str().expect("target");
    assert!(
        target.len() < long.len() && long.starts_with(target),
        "{target}"
    );
    assert_eq!(mount["truncated"], json!(["target"]));
    assert_eq!(
        mount["args"]["data"],
        "size=1m,password=<redacted>,mode=755"
    );
    assert_eq!(mount["redacted"], json!(["data"]));
    let fsconfig = recs
        .iter()
        .find(|r| r["call"] == "fsconfig")
        .expect("fsconfig");
    assert_eq!(fsconfig["args"]["value"], "<redacted>");
    assert_eq!(fsconfig["args"]["key"], "password");
    let (_, raw, _) = json.stop();
    for l in &raw {
        assert!(
            !l.bytes().any(|b| b < 0x20),
            "raw control byte in JSON: {l:?}"
        );
        assert!(!l.contains("hunter2"), "secret in JSON: {l}");
    }

    // Human, even with colour on: mnttrace's own SGR codes only, every
    // byte from the process escaped, and no secret.
    let (_, lines, _) = human.stop();
    let mine: Vec<&String> = lines.iter().filter(|l| l.contains(&pid)).collect();
    assert!(mine.len() >= 3, "{lines:?}");
    for l in &mine {
        let stripped = l
            .replace("\x1b[0m", "")
            .replace("\x1b[1m", "")
            .replace("\x1b[31m", "")
            .replace("\x1b[2m", "")
            .replace("\x1b[33m", "")
            .replace("\x1b[36m", "");
        assert!(
            !stripped.bytes().any(|b| b < 0x20 || b == 0x7f),
            "raw control byte reached the terminal: {l:?}"
        );
        assert!(!l.contains("hunter2"), "secret on the terminal: {l}");
    }
    let m = mine
        .iter()
        .find(|l| l.contains("mount("))
        .expect("mount line");
    assert!(m.contains(r"\u{1b}[31mevil\u{7}"), "{m}");
    assert!(m.contains(r#"source="\u{1b}]0;pwned\u{7}a"#), "{m}");
    assert!(
        m.contains(r#"..., fstype="tmpfs""#),
        "truncation not shown: {m}"
    );
    assert!(m.contains("password=<redacted>"), "{m}");

    // --show-secrets: what the process passed.
    let recs = syscalls_of(&shown.records(), pidn);
    let mount = recs.iter().find(|r| r["call"] == "mount").expect("mount");
    assert_eq!(mount["args"]["data"], "size=1m,password=hunter2,mode=755");
    assert_eq!(mount["redacted"], json!([]));
    let fsconfig = recs
        .iter()
        .find(|r| r["call"] == "fsconfig")
        .expect("fsconfig");
    assert_eq!(fsconfig["args"]["value"], "hunter2");
}

/// Held by the tests that make a storm: every mnttrace sees every storm, and
/// one test's 2,000,000 pairs would overflow the other's ring and queues.
static STORM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The storm's calls (its mounts and umounts) among process `pid`'s records.
fn storm_calls(records: &[Value], pid: u32) -> usize {
    syscalls_of(records, pid)
        .iter()
        .filter(|s| s["args"]["source"] == "storm" || s["call"] == "umount2")
        .count()
}

/// Waits for the storm's `pairs` mounts and umounts, and `grace` more (for
/// any orphan to show), then stops mnttrace: its records.
fn storm_records(tracer: Tracer, pid: u32, pairs: usize, grace: Duration) -> Vec<Value> {
    tracer.wait_for(60, |r| storm_calls(r, pid) >= 2 * pairs);
    std::thread::sleep(grace);
    let (status, stdout, stderr) = tracer.stop();
    assert!(status.success(), "{status}: {stderr:?}");
    mnttrace_tests::parse(&stdout)
}

/// The unique ids stormgen's statx gave its mounts (`--ids FILE`), in order.
fn ids_made(file: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(file)
        .expect("stormgen's ids")
        .lines()
        .map(|l| l.parse().expect("an id"))
        .collect()
}

/// `stormgen DIR N` (built beside the tests), waiting for its go.
/// stormgen (a sibling of the test binary), spoken to: it says its pid and
/// namespace in a JSON line, storms on `go`, then says how it went.
struct Storm {
    child: std::process::Child,
    go: std::process::ChildStdin,
    said: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Storm {
    fn start(dir: &std::path::Path, pairs: usize, extra: &[&str]) -> Storm {
        use std::io::BufRead as _;
        let bin = std::env::current_exe().expect("test path");
        let storm_bin = bin
            .parent()
            .and_then(|d| d.parent())
            .expect("target dir")
            .join("stormgen");
        let mut child = Command::new(storm_bin)
            .arg(dir)
            .arg(pairs.to_string())
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("stormgen");
        let go = child.stdin.take().expect("stdin");
        let said = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        Storm { child, go, said }
    }

    /// Its next line.
    fn line(&mut self) -> Value {
        let l = self
            .said
            .next()
            .expect("a line from stormgen")
            .expect("read");
        serde_json::from_str(&l).expect("stormgen's JSON")
    }

    fn go(&mut self) {
        use std::io::Write as _;
        self.go.write_all(b"go\n").expect("go");
    }
}

#[test]
fn sigint_is_heard_while_the_ring_never_empties() {
    let _storm = STORM.lock().unwrap_or_else(|e| e.into_inner());
    let t = mnttrace_tests::tempdir();
    let tracer = Tracer::start(&["--json", "--output", "/dev/null"]);
    // A storm far longer than the test: mnttrace falls behind and stays behind.
    let mut storm = Storm::start(t.path(), 2_000_000, &[]);
    std::thread::sleep(Duration::from_millis(500));
    storm.go();
    std::thread::sleep(Duration::from_secs(3));
    let asked = Instant::now();
    tracer.signal(Signal::SIGINT);
    let (status, _, stderr) = tracer.wait();
    let took = asked.elapsed();
    let _ = storm.child.kill();
    let _ = storm.child.wait();
    assert!(status.success(), "{status}: {stderr:?}");
    assert!(
        stderr
            .last()
            .is_some_and(|l| l.starts_with("mnttrace: detached (SIGINT);")),
        "{stderr:?}"
    );
    // Generous for a loaded machine; without the batch limit it never came.
    assert!(took < Duration::from_secs(20), "SIGINT took {took:?}");
}

/// Behind by more than a second (stopped while it works through a backlog),
/// mnttrace still gives each mount event read long ago to the call that
/// caused it: a tick in between must not take them for orphans.
#[test]
fn events_wait_for_their_calls_while_behind() {
    let _storm = STORM.lock().unwrap_or_else(|e| e.into_inner());
    const PAIRS: usize = 7000;
    let t = mnttrace_tests::tempdir();
    // Room in the ring for the whole storm: nothing is lost but time.
    let tracer = Tracer::start(&["--json", "--ring-size", "16M"]);
    let mut storm = Storm::start(t.path(), PAIRS, &[]);
    let pid = storm.line()["pid"].as_u64().expect("pid");
    // A process left in its namespace keeps it alive and known after
    // stormgen exits: the namespace's end (every mount detached at once, by
    // stormgen's pid) stays out of the events being checked.
    let keeper = mnttrace_tests::Killed(
        Command::new("nsenter")
            .arg(format!("--mount=/proc/{pid}/ns/mnt"))
            .args(["sleep", "120"])
            .spawn()
            .expect("nsenter"),
    );
    // Its namespace is watched once mnttrace has handled its unshare.
    tracer.wait_for(30, |r| {
        syscalls_of(r, pid as u32)
            .iter()
            .any(|s| s["args"]["source"] == "stormbase")
    });
    // The storm runs while mnttrace is stopped: it wakes to a backlog
    // (14,000 events, within fanotify's queue of 16,384).
    tracer.signal(Signal::SIGSTOP);
    storm.go();
    let done = storm.line();
    assert_eq!(done["failed"], 0, "{done}");
    let _ = storm.child.wait();
    tracer.signal(Signal::SIGCONT);
    // Its first call reads every event; once it has written some of the
    // backlog (a debug build takes most of a second for all of it), it is
    // stopped again, for longer than an unclaimed event is kept.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tracer.stdout().len() < 3000 {
        assert!(Instant::now() < deadline, "no storm records");
        std::thread::sleep(Duration::from_millis(5));
    }
    tracer.signal(Signal::SIGSTOP);
    std::thread::sleep(Duration::from_millis(2500));
    tracer.signal(Signal::SIGCONT);
    let storm_calls = |r: &[Value]| storm_calls(r, pid as u32);
    tracer.wait_for(60, |r| storm_calls(r) >= 2 * PAIRS);
    // A tick more, for any orphan to show.
    std::thread::sleep(Duration::from_millis(1500));
    let (status, stdout, stderr) = tracer.stop();
    drop(keeper);
    assert!(status.success(), "{status}: {stderr:?}");
    let records = mnttrace_tests::parse(&stdout);
    assert_eq!(storm_calls(&records), 2 * PAIRS);
    let lost: Vec<&Value> = records.iter().filter(|r| r["kind"] == "lost").collect();
    assert!(lost.is_empty(), "{lost:?}");
    // Each call's own attach or detach, with its cause; none without.
    let ids: std::collections::BTreeSet<u64> = syscalls_of(&records, pid as u32)
        .iter()
        .filter(|s| s["args"]["source"] == "storm" || s["call"] == "umount2")
        .filter_map(|s| s["id"].as_u64())
        .collect();
    let storm_dir = format!("{}/t", t.path().display());
    let moves: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "propagation" && r["path"] == storm_dir.as_str())
        .collect();
    // (Without a cause the place may be unknown: any of stormgen's counts.)
    let orphans = records
        .iter()
        .filter(|r| r["kind"] == "propagation" && r["cause_pid"] == pid && r["cause"].is_null())
        .count();
    let caused: std::collections::BTreeSet<u64> =
        moves.iter().filter_map(|r| r["cause"].as_u64()).collect();
    assert!(!moves.is_empty(), "no mount event at {storm_dir}");
    assert_eq!(orphans, 0, "events reported without their call");
    let without: Vec<&u64> = ids.difference(&caused).collect();
    let unknown: Vec<&u64> = caused.difference(&ids).collect();
    assert!(
        without.is_empty() && unknown.is_empty(),
        "calls without their mount event: {without:?}; causes not among the calls: {unknown:?}"
    );
    assert_eq!(moves.len(), 2 * PAIRS);
}

/// A storm in a private namespace, run while mnttrace is stopped: every
/// mount is made and gone before mnttrace can look, and the namespace is
/// quiet (no shared or slave mount), so no mount event is read there
/// (fdinfo shows no mark on it). Each mount call still has its own mount,
/// by the unique id stormgen's statx gave it, and each umount2 the same
/// one: the syscall's probe read the kernel's newest mount id there as it
/// returned (and as an umount2 entered).
#[test]
fn a_private_storm_unseen_has_each_calls_mount() {
    let _storm = STORM.lock().unwrap_or_else(|e| e.into_inner());
    const PAIRS: usize = 3000;
    let t = mnttrace_tests::tempdir();
    let out = mnttrace_tests::tempdir();
    let ids_file = out.path().join("ids");
    let tracer = Tracer::start(&["--json", "--ring-size", "16M"]);
    let mut storm = Storm::start(t.path(), PAIRS, &["--ids", &ids_file.to_string_lossy()]);
    let first = storm.line();
    let pid = first["pid"].as_u64().expect("pid") as u32;
    let mntns = first["mntns"].as_u64().expect("mntns");
    // Its set-up handled: the namespace is known and read.
    tracer.wait_for(30, |r| {
        syscalls_of(r, pid)
            .iter()
            .any(|s| s["args"]["source"] == "stormbase")
    });
    let marked = tracer.marked();
    assert!(!marked.contains(&mntns), "mnt:[{mntns}] marked: {marked:?}");
    tracer.signal(Signal::SIGSTOP);
    storm.go();
    assert_eq!(storm.line()["failed"], 0);
    let _ = storm.child.wait();
    tracer.signal(Signal::SIGCONT);
    let records = storm_records(tracer, pid, PAIRS, Duration::ZERO);
    let made = ids_made(&ids_file);
    let calls: Vec<Value> = syscalls_of(&records, pid)
        .into_iter()
        .filter(|s| s["args"]["source"] == "storm" || s["call"] == "umount2")
        .collect();
    assert_eq!((calls.len(), made.len()), (2 * PAIRS, PAIRS));
    let mut theirs: std::collections::BTreeMap<u64, Vec<(String, u64, String)>> =
        Default::default();
    for r in &records {
        if r["kind"] == "propagation"
            && let Some(c) = r["cause"].as_u64()
        {
            let action = r["action"].as_str().unwrap_or_default().to_string();
            let path = r["path"].as_str().unwrap_or_default().to_string();
            theirs
                .entry(c)
                .or_default()
                .push((action, r["mnt_id"].as_u64().unwrap_or(0), path));
        }
    }
    let target = format!("{}/t", t.path().display());
    for (pair, id) in calls.chunks(2).zip(&made) {
        for (call, action) in pair.iter().zip(["attached", "detached"]) {
            let got = call["id"]
                .as_u64()
                .and_then(|c| theirs.get(&c))
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                got,
                vec![(action.to_string(), *id, target.clone())],
                "{} {} made or took mount {id}",
                call["call"],
                call["id"]
            );
        }
    }
}

/// A shared storm that starts the moment its namespaces are made, mnttrace
/// running but behind their unshares: a call made before mnttrace watched
/// its namespace made no event there and takes none, and every record's
/// mount is one its own call made (stormgen reads each mount's unique id
/// with statx). (Such a call took the next one's events, and each call after
/// it the next one's: in about one run in three, the first few hundred
/// calls of a storm each had the records of the one after.)
#[test]
fn a_storm_in_namespaces_just_made_has_each_calls_mounts() {
    let _storm = STORM.lock().unwrap_or_else(|e| e.into_inner());
    const PAIRS: usize = 5000;
    let t = mnttrace_tests::tempdir();
    // Not in DIR: stormgen mounts a tmpfs there, in its own namespace.
    let out = mnttrace_tests::tempdir();
    let ids_file = out.path().join("ids");
    let tracer = Tracer::start(&["--json", "--ring-size", "16M"]);
    let mut storm = Storm::start(
        t.path(),
        PAIRS,
        &["--shared", "--ids", &ids_file.to_string_lossy()],
    );
    let pid = storm.line()["pid"].as_u64().expect("pid") as u32;
    storm.go();
    assert_eq!(storm.line()["failed"], 0);
    let _ = storm.child.wait();
    let records = storm_records(tracer, pid, PAIRS, Duration::from_millis(1500));
    let made = ids_made(&ids_file);
    let mounts: Vec<Value> = syscalls_of(&records, pid)
        .into_iter()
        .filter(|s| s["call"] == "mount" && s["args"]["source"] == "storm")
        .collect();
    assert_eq!((mounts.len(), made.len()), (PAIRS, PAIRS));
    let all: std::collections::BTreeSet<u64> = made.iter().copied().collect();
    let mut attached: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    for r in &records {
        if r["kind"] == "propagation"
            && r["action"] == "attached"
            && let (Some(c), Some(id)) = (r["cause"].as_u64(), r["mnt_id"].as_u64())
        {
            attached.entry(c).or_default().push(id);
        }
    }
    let mut complete = 0;
    for (call, id) in mounts.iter().zip(&made) {
        let got = call["id"]
            .as_u64()
            .and_then(|c| attached.get(&c))
            .cloned()
            .unwrap_or_default();
        // Its own mount (or nothing, made before the watch), and no other
        // call's: the copy in the peer has an id of its own.
        let others: Vec<&u64> = got.iter().filter(|g| *g != id && all.contains(g)).collect();
        assert!(
            (got.is_empty() || got.contains(id)) && others.is_empty(),
            "call {} made mount {id}; its records: {got:?}",
            call["id"]
        );
        complete += usize::from(got.len() == 2);
    }
    // Not vacuous: most of the storm came after the watch.
    assert!(
        complete >= PAIRS / 2,
        "{complete} of {PAIRS} with both copies"
    );
}
