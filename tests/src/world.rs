//! Propagation scenarios against the real kernel: drivers serving steps in
//! namespaces of their own, mnttrace watching the whole machine, and every
//! step's records held against the difference of each namespace's
//! /proc/PID/mountinfo before and after it.
use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{Tracer, link::Link, mntdrive_bin, mnttrace_bin};

/// A driver serving steps, one JSON line each, in a mount namespace of its own.
pub struct Ns {
    child: Child,
    link: Link,
    pub pid: u32,
    pub mntns: u64,
}

impl Ns {
    fn spawn(args: &[String]) -> Ns {
        let mut child = Command::new(mntdrive_bin())
            .arg("--serve")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mntdrive --serve");
        let (link, hello) = Link::open(&mut child, "mntdrive --serve").expect("hello");
        Ns {
            child,
            link,
            pid: hello["pid"].as_u64().expect("pid") as u32,
            mntns: hello["mntns"].as_u64().expect("mntns"),
        }
    }

    /// A fresh namespace, private throughout (ns1 of SCENARIOS.md).
    pub fn fresh() -> Ns {
        Ns::spawn(&[])
    }

    /// `unshare(CLONE_NEWNS)` from `other`'s namespace, propagation unchanged.
    pub fn clone_of(other: &Ns) -> Ns {
        Ns::spawn(&["--join".into(), other.pid.to_string()])
    }

    /// Runs one step (or a `batch`) and returns the driver's answer.
    pub fn run(&mut self, step: &Value) -> Value {
        self.link.ask(&step.to_string()).expect("an answer")
    }

    /// Runs `steps` back to back and exits right after the last one (no
    /// answer comes), then waits until the driver is gone.
    pub fn run_then_exit(mut self, mut steps: Vec<Value>) {
        steps.push(json!({"op": "exit"}));
        let batch = json!({"op": "batch", "steps": steps});
        self.link.send(&batch.to_string()).expect("send steps");
        let _ = self.child.wait();
    }

    /// The namespace's mount table, from the kernel.
    pub fn table(&self) -> Vec<MountLine> {
        mountinfo(self.pid)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a test reads of one line of /proc/PID/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MountLine {
    pub id: u64,
    pub mount_point: String,
    pub shared: Option<u64>,
    pub master: Option<u64>,
    pub unbindable: bool,
}

/// Parsed here, independently of mnttrace (which reads statmount(2)).
pub fn mountinfo(pid: u32) -> Vec<MountLine> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/mountinfo: {e}"));
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mut m = MountLine {
                id: f[0].parse().expect("mount id"),
                mount_point: unescape(f[4]),
                shared: None,
                master: None,
                unbindable: false,
            };
            for opt in f[6..].iter().take_while(|o| **o != "-") {
                if let Some(g) = opt.strip_prefix("shared:") {
                    m.shared = g.parse().ok();
                } else if let Some(g) = opt.strip_prefix("master:") {
                    m.master = g.parse().ok();
                } else if *opt == "unbindable" {
                    m.unbindable = true;
                }
            }
            m
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(n);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One mount attached or detached in one namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub mntns: u64,
    pub path: String,
    pub action: &'static str,
    pub shared: Option<u64>,
    pub master: Option<u64>,
}

/// The line for the mount on top at `path`, if any.
pub fn line_at(table: &[MountLine], path: &str) -> Option<MountLine> {
    table.iter().rev().find(|m| m.mount_point == path).cloned()
}

/// The kernel's answer to a step: each namespace's table after minus before.
pub fn diff(mntns: u64, before: &[MountLine], after: &[MountLine]) -> Vec<Change> {
    let key = |m: &MountLine| (m.id, m.mount_point.clone());
    let b: BTreeSet<_> = before.iter().map(key).collect();
    let a: BTreeSet<_> = after.iter().map(key).collect();
    let mut out = Vec::new();
    for m in after.iter().filter(|m| !b.contains(&key(m))) {
        out.push(Change {
            mntns,
            path: m.mount_point.clone(),
            action: "attached",
            shared: m.shared,
            master: m.master,
        });
    }
    for m in before.iter().filter(|m| !a.contains(&key(m))) {
        out.push(Change {
            mntns,
            path: m.mount_point.clone(),
            action: "detached",
            shared: m.shared,
            master: m.master,
        });
    }
    out
}

/// mnttrace's propagation records as changes (a move is a detach plus an attach).
pub fn changes_of(records: &[&Value]) -> Vec<Change> {
    let mut out = Vec::new();
    for r in records {
        let ns = r["mntns"].as_u64().expect("mntns");
        let path = r["path"].as_str().unwrap_or("<none>").to_string();
        let shared = r["shared"].as_u64();
        let master = r["master"].as_u64();
        let action = match r["action"].as_str() {
            Some("attached") => "attached",
            Some("detached") => "detached",
            Some("moved") => {
                out.push(Change {
                    mntns: ns,
                    path: r["from_path"].as_str().unwrap_or("<none>").to_string(),
                    action: "detached",
                    shared,
                    master,
                });
                "attached"
            }
            other => panic!("unknown action {other:?} in {r}"),
        };
        out.push(Change {
            mntns: ns,
            path,
            action,
            shared,
            master,
        });
    }
    out
}

/// Namespaces, mnttrace, and the bookkeeping between them.
pub struct World {
    pub tracer: Option<Tracer>,
    pub nss: Vec<Ns>,
    pub mode: &'static str,
    /// Namespaces of processes the test did not start as drivers (a
    /// container's init): (pid, mntns), diffed with the drivers'.
    pub watched: Vec<(u32, u64)>,
    /// Syscall record ids already matched to steps.
    used: BTreeSet<u64>,
    /// mnttrace sees one process's calls only (`--pid`): it reads every
    /// namespace's mount events, quiet or not.
    one_pid: bool,
}

/// What one step did, as the kernel and mnttrace tell it.
pub struct Outcome {
    pub result: Value,
    pub syscall: Option<Value>,
    pub records: Vec<Value>,
    pub kernel: Vec<Change>,
}

impl World {
    pub fn new(mode: &'static str) -> World {
        World {
            tracer: None,
            nss: Vec::new(),
            mode,
            watched: Vec::new(),
            used: BTreeSet::new(),
            one_pid: false,
        }
    }

    /// `--propagation` and `--mount-tables` for this world's mode
    /// (`diff-mountinfo`: diff over /proc/PID/mountinfo).
    fn args(&self) -> (&'static str, &'static str) {
        match self.mode {
            "diff-mountinfo" => ("diff", "mountinfo"),
            m => (m, "auto"),
        }
    }

    /// Starts mnttrace on the whole machine (`--json --propagation MODE`).
    pub fn trace(&mut self) {
        self.trace_with(&[]);
    }

    pub fn trace_with(&mut self, extra: &[&str]) {
        let (prop, tables) = self.args();
        let mut args = vec!["--json", "--propagation", prop, "--mount-tables", tables];
        args.extend_from_slice(extra);
        self.one_pid = extra.contains(&"--pid");
        let t = Tracer::start(&args);
        let want = format!("mnttrace: propagation: {prop}");
        assert!(
            t.stderr().iter().any(|l| l.starts_with(&want)),
            "mnttrace did not say {want:?}: {:?}",
            t.stderr()
        );
        self.tracer = Some(t);
    }

    pub fn fresh(&mut self) -> usize {
        let ns = Ns::fresh();
        self.followed(ns)
    }

    pub fn clone_of(&mut self, i: usize) -> usize {
        let ns = Ns::clone_of(&self.nss[i]);
        self.followed(ns)
    }

    /// Once mnttrace has reported the driver's unshare it follows the new
    /// namespace; steps in it may start.
    fn followed(&mut self, ns: Ns) -> usize {
        if let Some(t) = &self.tracer {
            let pid = ns.pid;
            t.wait_for(20, |rs| {
                rs.iter().any(|r| {
                    r["kind"] == "syscall"
                        && r["pid"] == pid
                        && r["call"] == "unshare"
                        && r["mntns_after"] == ns.mntns
                })
            });
        }
        self.nss.push(ns);
        self.nss.len() - 1
    }

    /// Also diffs the namespace of `pid` (a process the test did not start
    /// as a driver) in every later step.
    pub fn watch(&mut self, pid: u32) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        let mntns = std::fs::metadata(format!("/proc/{pid}/ns/mnt"))
            .expect("watched process's namespace")
            .ino();
        self.watched.push((pid, mntns));
        mntns
    }

    fn tables(&self) -> Vec<Vec<MountLine>> {
        self.nss
            .iter()
            .map(Ns::table)
            .chain(self.watched.iter().map(|(pid, _)| mountinfo(*pid)))
            .collect()
    }

    fn kernel_diff(&self, before: &[Vec<MountLine>], after: &[Vec<MountLine>]) -> Vec<Change> {
        let mut out = Vec::new();
        let all = self
            .nss
            .iter()
            .map(|n| n.mntns)
            .chain(self.watched.iter().map(|w| w.1));
        for (i, mntns) in all.enumerate() {
            out.extend(diff(mntns, &before[i], &after[i]));
        }
        out.sort();
        out
    }

    /// Runs a command the test does not drive step by step (`runc exec …`),
    /// finds the one syscall record `find` picks, and checks its propagation
    /// records equal the kernel's changes in every namespace, as [`World::step`] does.
    pub fn external(&mut self, cmd: &mut Command, find: impl Fn(&Value) -> bool) -> Outcome {
        let before = self.tables();
        let out = cmd.output().expect("run command");
        let after = self.tables();
        let kernel = self.kernel_diff(&before, &after);
        let ctx = format!("[{}] {cmd:?}: {out:?}", self.mode);
        assert!(out.status.success(), "{ctx}");
        let tracer = self.tracer.as_ref().expect("tracer");
        let used = &self.used;
        let matches = |r: &Value| {
            r["kind"] == "syscall" && !used.contains(&r["id"].as_u64().unwrap_or(0)) && find(r)
        };
        let records = tracer.wait_for(20, |rs| rs.iter().any(matches));
        let syscall = records.iter().find(|r| matches(r)).cloned().expect("found");
        let mine = self.linked(&syscall, &kernel, &ctx);
        Outcome {
            result: Value::Null,
            syscall: Some(syscall),
            records: mine,
            kernel,
        }
    }

    /// The propagation records linked to `syscall`, which must equal the
    /// kernel's changes.
    fn linked(&mut self, syscall: &Value, kernel: &[Change], ctx: &str) -> Vec<Value> {
        let id = syscall["id"].as_u64().expect("id");
        self.used.insert(id);
        // Records of one syscall are written together with it; a short grace
        // lets a wrongly late one show up as an extra.
        std::thread::sleep(Duration::from_millis(150));
        let tracer = self.tracer.as_ref().expect("tracer");
        let mine: Vec<Value> = tracer
            .records()
            .into_iter()
            .filter(|r| r["kind"] == "propagation" && r["cause"] == id)
            .collect();
        let mut got = changes_of(&mine.iter().collect::<Vec<_>>());
        got.sort();
        assert_eq!(
            got, kernel,
            "{ctx}\nmnttrace's propagation records (left) differ from the kernel's mountinfo changes (right)\nsyscall: {syscall}\nrecords: {mine:#?}"
        );
        mine
    }

    /// Runs `step` in namespace `who`; checks the step succeeded (or failed
    /// with `expect_errno`) and that mnttrace's propagation records equal the
    /// kernel's changes in every namespace, each naming this syscall.
    pub fn step(&mut self, who: usize, step: Value) -> Outcome {
        let before = self.tables();
        let result = self.nss[who].run(&step);
        let after = self.tables();
        let kernel = self.kernel_diff(&before, &after);
        let ctx = format!("[{}] step {step} in ns{} -> {result}", self.mode, who + 1);
        match step.get("expect_errno") {
            Some(e) => assert_eq!(&result["errno"], e, "{ctx}"),
            None if step["any_result"] == true => {}
            None => assert!(
                result["ret"].as_i64().unwrap_or(-1) >= 0,
                "step failed: {ctx}"
            ),
        }
        let op = step["op"].as_str().expect("op");
        if !crate::traced(op) || self.tracer.is_none() {
            return Outcome {
                result,
                syscall: None,
                records: Vec::new(),
                kernel,
            };
        }
        let pid = self.nss[who].pid;
        let call = if op == "umount" { "umount2" } else { op };
        let tracer = self.tracer.as_ref().expect("tracer");
        let used = &self.used;
        let target = step.get("target").cloned();
        let matches = |r: &Value| {
            r["kind"] == "syscall"
                && r["pid"] == pid
                && r["call"] == call
                && r["ret"] == result["ret"]
                && !used.contains(&r["id"].as_u64().unwrap_or(0))
                && target.as_ref().is_none_or(|t| &r["args"]["target"] == t)
        };
        let records = tracer.wait_for(20, |rs| rs.iter().any(matches));
        let syscall = records.iter().find(|r| matches(r)).cloned().expect("found");
        let mine = self.linked(&syscall, &kernel, &ctx);
        // mnttrace reads no mount event of a namespace none of whose mounts
        // is shared or a slave: a call there is re-read, in every mode.
        let quiet = !self.one_pid
            && before[who]
                .iter()
                .all(|m| m.shared.is_none() && m.master.is_none());
        for r in &mine {
            assert_eq!(r["cause_pid"], pid, "{ctx}: {r}");
            assert_eq!(
                r["via"],
                if self.args().0 == "diff" || quiet {
                    "diff"
                } else {
                    "fanotify"
                },
                "{ctx}: {r}"
            );
            assert_eq!(r["evidence"], "observed", "{ctx}: {r}");
        }
        Outcome {
            result,
            syscall: Some(syscall),
            records: mine,
            kernel,
        }
    }

    /// Runs batches of steps in several namespaces at once. Each batch works
    /// under its own `prefix`: every propagation record must name a syscall of
    /// the driver whose prefix its path has, and together the records must
    /// equal the kernel's changes.
    pub fn concurrently(&mut self, batches: Vec<(usize, String, Vec<Value>)>) {
        let before = self.tables();
        let mut refs: Vec<Option<&mut Ns>> = self.nss.iter_mut().map(Some).collect();
        let mut jobs = Vec::new();
        for (who, _, steps) in &batches {
            let ns = refs[*who].take().expect("one batch per namespace");
            jobs.push((ns, json!({"op": "batch", "steps": steps})));
        }
        let results: Vec<Value> = std::thread::scope(|sc| {
            let handles: Vec<_> = jobs
                .into_iter()
                .map(|(ns, batch)| sc.spawn(move || ns.run(&batch)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("batch thread"))
                .collect()
        });
        for r in results
            .iter()
            .flat_map(|r| r.as_array().expect("batch answer"))
        {
            assert!(r["ret"].as_i64().unwrap_or(-1) >= 0, "step failed: {r}");
        }
        let after = self.tables();
        let kernel = self.kernel_diff(&before, &after);
        let owners: Vec<(u32, String)> = batches
            .iter()
            .map(|(who, prefix, _)| (self.nss[*who].pid, prefix.clone()))
            .collect();
        let total: usize = batches.iter().map(|(_, _, s)| s.len()).sum();
        let tracer = self.tracer.as_ref().expect("tracer");
        let used = &self.used;
        let is_ours = |r: &Value| {
            r["kind"] == "syscall"
                && r["call"] == "mount"
                && owners.iter().any(|(pid, prefix)| {
                    r["pid"] == *pid
                        && r["args"]["target"]
                            .as_str()
                            .is_some_and(|t| t.starts_with(prefix.as_str()))
                })
                && !used.contains(&r["id"].as_u64().unwrap_or(0))
        };
        let records = tracer.wait_for(30, |rs| rs.iter().filter(|r| is_ours(r)).count() >= total);
        std::thread::sleep(Duration::from_millis(150));
        let records = {
            let _ = records;
            tracer.records()
        };
        let calls: Vec<&Value> = records.iter().filter(|r| is_ours(r)).collect();
        assert_eq!(calls.len(), total, "one syscall record per step");
        let pid_of = |id: &Value| {
            calls
                .iter()
                .find(|c| &c["id"] == id)
                .map(|c| c["pid"].as_u64().unwrap_or(0) as u32)
        };
        let mine: Vec<&Value> = records
            .iter()
            .filter(|r| r["kind"] == "propagation" && pid_of(&r["cause"]).is_some())
            .collect();
        for r in &mine {
            let pid = pid_of(&r["cause"]).expect("cause");
            let path = r["path"].as_str().unwrap_or("");
            let (_, prefix) = owners.iter().find(|(p, _)| *p == pid).expect("owner");
            assert!(
                path.starts_with(prefix.as_str()),
                "[{}] {r} is linked to pid {pid}, which works under {prefix}",
                self.mode
            );
        }
        let mut got = changes_of(&mine);
        got.sort();
        assert_eq!(
            got, kernel,
            "[{}] concurrent records (left) vs the kernel (right)",
            self.mode
        );
        for c in calls {
            self.used.insert(c["id"].as_u64().unwrap_or(0));
        }
    }

    /// `mnttrace explain PATH --pid P --json` for namespace `who`: the
    /// (namespace, path) pairs it predicts.
    pub fn explain(&self, who: usize, path: &str) -> Vec<(u64, String)> {
        let out = Command::new(mnttrace_bin())
            .args([
                "explain",
                path,
                "--pid",
                &self.nss[who].pid.to_string(),
                "--json",
                "--mount-tables",
                self.args().1,
            ])
            .output()
            .expect("run mnttrace explain");
        assert!(
            out.status.success(),
            "mnttrace explain failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("explain --json is JSON");
        let mut t: Vec<(u64, String)> = v["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| {
                (
                    t["mntns"].as_u64().expect("mntns"),
                    t["path"].as_str().expect("path").to_string(),
                )
            })
            .collect();
        t.sort();
        t
    }

    /// Runs a mount step after asking `explain` where it would go, and holds
    /// the prediction against where the kernel then put it.
    pub fn predicted_step(&mut self, who: usize, step: Value) -> Outcome {
        let path = step["target"].as_str().expect("a mount step with a target");
        let predicted = self.explain(who, path);
        let out = self.step(who, step.clone());
        let mut actual: Vec<(u64, String)> = out
            .kernel
            .iter()
            .filter(|c| c.action == "attached")
            .map(|c| (c.mntns, c.path.clone()))
            .collect();
        actual.sort();
        assert_eq!(
            predicted, actual,
            "explain's prediction (left) differs from what the kernel did (right) for {step}"
        );
        out
    }

    /// Stops mnttrace; no mount change in the test's namespaces may be left
    /// without its syscall.
    pub fn finish(mut self) -> Vec<Value> {
        let Some(t) = self.tracer.take() else {
            return Vec::new();
        };
        let (status, stdout, stderr) = t.stop();
        assert!(status.success(), "mnttrace exit {status}: {stderr:?}");
        let records = crate::parse(&stdout);
        let ours: BTreeSet<u64> = self.nss.iter().map(|n| n.mntns).collect();
        let pids: BTreeSet<u64> = self.nss.iter().map(|n| n.pid as u64).collect();
        let orphans: Vec<&Value> = records
            .iter()
            .filter(|r| {
                r["kind"] == "propagation"
                    && r["cause"].is_null()
                    && (ours.contains(&r["mntns"].as_u64().unwrap_or(0))
                        || pids.contains(&r["cause_pid"].as_u64().unwrap_or(0)))
            })
            .collect();
        let who: Vec<(u32, u64)> = self.nss.iter().map(|n| (n.pid, n.mntns)).collect();
        assert!(
            orphans.is_empty(),
            "mount changes with no syscall: {orphans:#?}\nthe test's (pid, mntns): {who:?}"
        );
        records
    }
}

/// `{"op":"mount", ...}` for a tmpfs.
pub fn tmpfs(source: &str, target: &str) -> Value {
    json!({"op": "mount", "source": source, "target": target, "fstype": "tmpfs", "flags": 0})
}

pub fn bind(source: &str, target: &str) -> Value {
    json!({"op": "mount", "source": source, "target": target, "flags": libc::MS_BIND})
}

/// mount --make-{shared,slave,private,unbindable} (MS_REC with `rec`).
pub fn make(target: &str, kind: &str, rec: bool) -> Value {
    let f = match kind {
        "shared" => libc::MS_SHARED,
        "slave" => libc::MS_SLAVE,
        "private" => libc::MS_PRIVATE,
        "unbindable" => libc::MS_UNBINDABLE,
        other => panic!("unknown propagation {other}"),
    };
    let f = if rec { f | libc::MS_REC } else { f };
    json!({"op": "mount", "source": "none", "target": target, "flags": f})
}

pub fn umount(target: &str, flags: i32) -> Value {
    json!({"op": "umount", "target": target, "flags": flags})
}

pub fn mkdir(path: &str) -> Value {
    json!({"op": "mkdir", "path": path})
}

/// Waits until `cond` holds or panics with `what`.
pub fn eventually(secs: u64, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
