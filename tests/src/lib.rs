//! Harness for mnttrace's privileged integration tests: runs the real
//! `mnttrace` against the real kernel and the `mntdrive` driver, whose
//! syscalls happen in a private mount namespace of its own.
use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod docker;
pub mod link;
pub mod oci;
pub mod raw;
pub mod world;

pub const SCHEMA: &str = include_str!("../../docs/mnttrace-v1.schema.json");

/// Path of the mnttrace binary under test (set by `cargo xtask test`).
pub fn mnttrace_bin() -> String {
    std::env::var("MNTTRACE_BIN")
        .expect("MNTTRACE_BIN: run the integration tests with `cargo xtask test`")
}

/// The driver, built beside the test binaries (target/<profile>/mntdrive;
/// tests run from target/<profile>/deps/, the benchmark from beside it).
pub fn mntdrive_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let here = exe.parent().expect("target/<profile>[/deps]");
    let beside = here.join("mntdrive");
    if beside.exists() {
        return beside;
    }
    here.parent().expect("target/<profile>").join("mntdrive")
}

/// A running mnttrace; killed on drop whatever happens in the test.
pub struct Tracer {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// The lines of `r` (a child's stdout or stderr), collected as they come.
pub fn collect(r: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            sink.lock().expect("lines").push(line);
        }
    });
    lines
}

impl Tracer {
    /// Starts mnttrace with `args` and waits until it says it is tracing.
    pub fn start(args: &[&str]) -> Tracer {
        let mut cmd = Command::new(mnttrace_bin());
        cmd.args(args);
        Tracer::spawn(cmd)
    }

    /// Starts `cmd` (mnttrace, or a wrapper that execs it) and waits until
    /// mnttrace says it is tracing.
    pub fn spawn(mut cmd: Command) -> Tracer {
        let mut child = cmd
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mnttrace");
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        let mut t = Tracer {
            child,
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !t
            .stderr()
            .iter()
            .any(|l| l.starts_with("mnttrace: tracing"))
        {
            if let Ok(Some(status)) = t.child.try_wait() {
                panic!(
                    "mnttrace exited before tracing ({status}): {:?}",
                    t.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mnttrace did not start: {:?}",
                t.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The mount namespaces (inodes) mnttrace's fanotify group has a mark
    /// on, as the kernel lists them in the group's fdinfo.
    pub fn marked(&self) -> std::collections::BTreeSet<u64> {
        let pid = self.pid();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("mnttrace's fds");
        let group = fds
            .flatten()
            .find(|e| {
                std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:[fanotify]")
            })
            .expect("mnttrace's fanotify group");
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            group.file_name().display()
        ))
        .expect("its fdinfo");
        info.lines()
            .filter_map(|l| l.strip_prefix("fanotify mnt_ns:"))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().expect("stdout").clone()
    }

    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr").clone()
    }

    /// Parsed JSON records so far, each validated against the shipped schema.
    pub fn records(&self) -> Vec<Value> {
        parse(&self.stdout())
    }

    /// Waits until `done(records)` holds; panics after `secs` with what was seen.
    pub fn wait_for(&self, secs: u64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.records();
            if done(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; mnttrace printed:\n{}\nstderr: {:?}",
                self.stdout().join("\n"),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGINT, then the exit status, stdout and stderr.
    pub fn stop(mut self) -> (std::process::ExitStatus, Vec<String>, Vec<String>) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let status = self.child.wait().expect("wait mnttrace");
        // Let the reader threads see EOF.
        std::thread::sleep(Duration::from_millis(100));
        (status, self.stdout(), self.stderr())
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal mnttrace");
    }

    /// Stops mnttrace (SIGSTOP) until the returned guard is dropped
    /// (SIGCONT, also when the test fails meanwhile): what happens in the
    /// meantime is read in one batch.
    pub fn pause(&self) -> Paused {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP mnttrace");
        Paused(pid)
    }

    pub fn wait(mut self) -> (std::process::ExitStatus, Vec<String>, Vec<String>) {
        let status = self.child.wait().expect("wait mnttrace");
        std::thread::sleep(Duration::from_millis(100));
        (status, self.stdout(), self.stderr())
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// mnttrace stopped by [`Tracer::pause`]; continued when dropped.
pub struct Paused(nix::unistd::Pid);

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// A child killed when the test ends, however it ends.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// NDJSON lines, each validated against docs/mnttrace-v1.schema.json.
pub fn parse(lines: &[String]) -> Vec<Value> {
    let validator = validator();
    lines
        .iter()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            if let Err(e) = validator.validate(&v) {
                panic!("record does not match docs/mnttrace-v1.schema.json: {e}\n{l}");
            }
            v
        })
        .collect()
}

pub fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

/// The driver: started, paused before its script, so a tracer can be started
/// with its pid.
pub struct Drive {
    _script: tempfile::NamedTempFile,
    child: Child,
    link: Option<link::Link>,
    pub pid: u32,
    pub mntns: u64,
}

impl Drive {
    pub fn new(script: Value) -> Drive {
        let mut file = tempfile::NamedTempFile::new().expect("script file");
        file.write_all(script.to_string().as_bytes())
            .expect("write script");
        let mut child = Command::new(mntdrive_bin())
            .arg(file.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mntdrive");
        let (link, hello) = link::Link::open(&mut child, "mntdrive").expect("hello");
        Drive {
            _script: file,
            child,
            link: Some(link),
            pid: hello["pid"].as_u64().expect("pid") as u32,
            mntns: hello["mntns"].as_u64().expect("mntns"),
        }
    }

    /// Runs the script; returns one result per step. The driver then stays
    /// alive (its /proc entries readable) until [`Drive::finish`].
    pub fn go(&mut self, steps: usize) -> Vec<Value> {
        let link = self.link.as_mut().expect("running");
        link.send("go").expect("go");
        (0..steps)
            .map(|_| link.line().expect("a result per step"))
            .collect()
    }

    pub fn finish(mut self) {
        drop(self.link.take());
        let status = self.child.wait().expect("wait mntdrive");
        assert!(status.success(), "mntdrive failed: {status}");
    }
}

impl Drop for Drive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Syscall records of `pid`, in order.
pub fn syscalls_of(records: &[Value], pid: u32) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["kind"] == "syscall" && r["pid"] == pid)
        .cloned()
        .collect()
}

/// Runs `script` in the driver with mnttrace (`--json --pid <driver>`)
/// watching; returns the driver's results and mnttrace's records of it.
pub fn trace_script(script: Value, extra: &[&str]) -> (Drive, Tracer) {
    let drive = Drive::new(script);
    let pid = drive.pid.to_string();
    let mut args = vec!["--json", "--pid", &pid];
    args.extend_from_slice(extra);
    let tracer = Tracer::start(&args);
    (drive, tracer)
}

/// Steps of the driver that mnttrace does not trace.
pub fn traced(op: &str) -> bool {
    !matches!(op, "open" | "mkdir")
}

/// Holds every traced step against its record: call, pid, tid, ppid, comm,
/// uid, both namespace inodes (read by the driver from /proc/thread-self/ns/mnt),
/// return value, errno, and each argument the step names under "expect".
pub fn assert_script(script: &Value, results: &[Value], records: &[Value], pid: u32) {
    let steps = script.as_array().expect("script array");
    let mut recs = syscalls_of(records, pid).into_iter();
    for (step, res) in steps.iter().zip(results) {
        let op = step["op"].as_str().expect("op");
        if !traced(op) {
            assert!(
                res["ret"].as_i64().expect("ret") >= 0,
                "helper step failed: {res}"
            );
            continue;
        }
        let rec = recs
            .next()
            .unwrap_or_else(|| panic!("no record for step {res}; records: {records:#?}"));
        let want_call = if op == "umount" { "umount2" } else { op };
        let ctx = format!("step {step}\nresult {res}\nrecord {rec}");
        assert_eq!(rec["call"], want_call, "{ctx}");
        assert_eq!(rec["pid"], pid, "{ctx}");
        assert_eq!(rec["tid"], res["tid"], "{ctx}");
        assert_eq!(rec["ppid"], std::process::id(), "{ctx}");
        assert_eq!(rec["comm"], "mntdrive", "{ctx}");
        assert_eq!(rec["uid"], 0, "{ctx}");
        assert_eq!(rec["ret"], res["ret"], "{ctx}");
        assert_eq!(rec["errno"], res["errno"], "{ctx}");
        assert_eq!(rec["mntns_before"], res["mntns_before"], "{ctx}");
        assert_eq!(rec["mntns_after"], res["mntns_after"], "{ctx}");
        if let Some(want) = step.get("expect").and_then(Value::as_object) {
            for (k, v) in want {
                assert_eq!(&rec["args"][k], v, "argument {k}: {ctx}");
            }
        }
        if let Some(want) = step.get("expect_errno") {
            assert_eq!(
                &res["errno"], want,
                "the kernel did not answer as the test expects: {ctx}"
            );
        }
    }
    let extra: Vec<Value> = recs.collect();
    assert!(extra.is_empty(), "records with no step: {extra:#?}");
}

/// Runs a script under mnttrace and checks every record; returns them.
pub fn check_script(script: Value) -> Vec<Value> {
    let (mut drive, tracer) = trace_script(script.clone(), &[]);
    let pid = drive.pid;
    let results = drive.go(script.as_array().expect("array").len());
    let want = results
        .iter()
        .zip(script.as_array().expect("array"))
        .filter(|(_, s)| traced(s["op"].as_str().unwrap_or("")))
        .count();
    let records = tracer.wait_for(30, |r| syscalls_of(r, pid).len() >= want);
    drive.finish();
    let (status, _, stderr) = tracer.stop();
    assert!(status.success(), "mnttrace exit {status}: {stderr:?}");
    assert_script(&script, &results, &records, pid);
    records
}

/// `{"raw": n, "names": [...]}` as mnttrace writes flags.
pub fn flags(raw: u64, names: &[&str]) -> Value {
    serde_json::json!({ "raw": raw, "names": names })
}

/// A temp dir for a test's mount points (mounted on only inside the driver's
/// own namespace); removed when dropped.
/// A view's JSON document (`mnttrace snapshot|explain|volumes … --json`);
/// the command must succeed.
pub fn mnttrace_json(args: &[&str]) -> Value {
    let out = Command::new(mnttrace_bin())
        .args(args)
        .output()
        .expect("run mnttrace");
    assert!(
        out.status.success(),
        "mnttrace {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mnttrace-test-")
        .tempdir()
        .expect("temp dir")
}

/// A tmpfs mounted (and, a second later, unmounted) by a root shell in a
/// private mount namespace of its own: the source name marks its records.
pub fn mount_in_private_namespace(source: &str) {
    let dir = tempdir();
    let st = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs \"$0\" \"$1\" && sleep 1 && umount \"$1\"")
        .arg(source)
        .arg(dir.path())
        .status()
        .expect("unshare");
    assert!(st.success(), "the test's own mount failed: {st}");
}
