//! The capabilities README.md documents ("Capabilities") are the ones
//! mnttrace needs, no more: the real binary, run as uid 0 with exactly that
//! set (every other capability out of the bounding set, as a container with
//! `drop: [ALL]` has it), traces a mount made in another process's private
//! namespace and sees that namespace; with any one member dropped it refuses
//! to start, in one line naming that capability alone.
use std::{
    collections::BTreeSet,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use mnttrace_tests::{Tracer, mnttrace_bin, mount_in_private_namespace};
use serde_json::Value;

const README: &str = include_str!("../../README.md");

/// Argument of `--bounding-set` in the README's `setpriv` line.
fn readme_bounding_set() -> String {
    let section = README
        .split("\n## ")
        .find(|s| s.starts_with("Capabilities\n"))
        .expect("README.md has a Capabilities section");
    let line = section
        .lines()
        .find(|l| l.starts_with("setpriv "))
        .expect("a setpriv line in README's Capabilities section");
    let mut words = line.split_whitespace();
    words
        .find(|w| *w == "--bounding-set")
        .expect("setpriv --bounding-set");
    words.next().expect("the set after --bounding-set").into()
}

/// The documented set, as capabilities(7) names them (CAP_SYS_ADMIN, …).
fn documented() -> BTreeSet<String> {
    let set: BTreeSet<String> = readme_bounding_set()
        .split(',')
        .filter_map(|w| w.strip_prefix('+'))
        .map(|c| format!("CAP_{}", c.to_uppercase()))
        .collect();
    assert!(!set.is_empty(), "README documents no capability");
    set
}

/// Every capability this kernel has, lower case as capsh spells them.
fn all_caps() -> Vec<String> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .expect("cap_last_cap")
        .trim()
        .parse()
        .expect("cap_last_cap is a number");
    let mask = (1u64 << (last + 1)) - 1;
    decode(&format!("{mask:x}"))
}

/// Names of the capabilities in a hex mask (`capsh --decode`).
fn decode(hex: &str) -> Vec<String> {
    let out = Command::new("capsh")
        .arg(format!("--decode={hex}"))
        .output()
        .expect("capsh (libcap2-bin)");
    assert!(out.status.success(), "capsh --decode={hex}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let names = text.trim().split_once('=').map(|(_, n)| n).unwrap_or("");
    names
        .split(',')
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

fn set_of(caps: &[&str]) -> BTreeSet<String> {
    caps.iter().map(|c| c.to_string()).collect()
}

/// `program args…` as uid 0 with exactly `caps`: capsh drops every other
/// capability from the bounding set, so the exec leaves root only these.
fn capsh(caps: &BTreeSet<String>, program: &str, args: &[&str]) -> Command {
    let drop: Vec<String> = all_caps()
        .into_iter()
        .filter(|c| !caps.contains(&c.to_uppercase()))
        .collect();
    let mut cmd = Command::new("capsh");
    cmd.arg(format!("--drop={}", drop.join(",")))
        .arg(format!("--shell={program}"))
        .arg("--")
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// The same, inside a private mount namespace where tracefs is mounted
/// (the host's mount table is not touched).
fn capsh_with_tracefs(caps: &BTreeSet<String>, args: &[&str]) -> Command {
    let inner = capsh(caps, &mnttrace_bin(), args);
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tracefs tracefs /sys/kernel/tracing && exec \"$@\"")
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// A running mnttrace started by `cmd` (capsh execs it: same pid); killed
/// on drop.
struct Run(Tracer);

impl Run {
    /// Starts it and waits for "mnttrace: tracing".
    fn start(cmd: Command) -> Run {
        Run(Tracer::spawn(cmd))
    }

    /// Waits until `done` finds what it wants in the records.
    fn wait_for<T>(&self, what: &str, done: impl Fn(&[Value]) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(t) = done(&self.0.records()) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "no {what}; stderr {:?}; records {:#?}",
                self.0.stderr(),
                self.0.records()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// /proc/PID/status of the running mnttrace: its uid and capability sets.
    fn status(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.pid())).expect("status")
    }

    /// SIGINT; mnttrace must detach and exit 0.
    fn stop(self) {
        let (status, _, stderr) = self.0.stop();
        assert!(status.success(), "mnttrace exit {status}: {stderr:?}");
    }
}

/// A process's capability set `field` (CapEff, CapBnd, …), by name.
fn caps_in(status: &str, field: &str) -> BTreeSet<String> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {status}"))
        .trim();
    decode(hex).iter().map(|c| c.to_uppercase()).collect()
}

fn mount_record(records: &[Value], source: &str) -> Option<Value> {
    records
        .iter()
        .find(|r| r["kind"] == "syscall" && r["call"] == "mount" && r["args"]["source"] == source)
        .cloned()
}

/// What a refusal names: the capabilities before "; this run needs", and
/// the set after it.
fn refusal(out: &Output) -> (BTreeSet<String>, String) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!out.status.success(), "mnttrace started: {stderr}");
    assert!(out.stdout.is_empty(), "records from a refused run");
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    let line = lines[0];
    let rest = line
        .strip_prefix("mnttrace: error: missing ")
        .unwrap_or_else(|| panic!("not a refusal: {line}"));
    let (missing, needed) = rest
        .split_once("; this run needs ")
        .unwrap_or_else(|| panic!("no needed set: {line}"));
    let named = missing
        .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .filter(|w| w.starts_with("CAP_"))
        .map(str::to_string)
        .collect();
    (named, needed.to_string())
}

fn joined(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

fn without(set: &BTreeSet<String>, cap: &str) -> BTreeSet<String> {
    set.iter().filter(|c| *c != cap).cloned().collect()
}

/// The live stream with exactly the documented set: the capabilities it
/// holds are those, and it records the syscall and the mount the kernel
/// attached in the other namespace (read and watched through that process's
/// /proc entries, which takes the set's members).
#[test]
fn documented_set_traces() {
    let set = documented();
    let run = Run::start(capsh(
        &set,
        &mnttrace_bin(),
        &["--json", "--duration", "120s"],
    ));
    let status = run.status();
    for field in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(caps_in(&status, field), set, "{field}: {status}");
    }
    assert!(caps_in(&status, "CapAmb").is_empty(), "{status}");
    assert!(
        status.lines().any(|l| l == "Uid:\t0\t0\t0\t0"),
        "not uid 0: {status}"
    );

    let source = format!("mnttrace-caps-{}", std::process::id());
    mount_in_private_namespace(&source);
    let call = run.wait_for("mount record", |r| mount_record(r, &source));
    assert_eq!(call["ret"], 0, "{call}");
    assert_eq!(call["uid"], 0, "{call}");
    let ns = call["mntns_before"].clone();
    let attached = run.wait_for("propagation record of the mount", |r| {
        r.iter()
            .find(|p| {
                p["kind"] == "propagation"
                    && p["source"] == source.as_str()
                    && p["action"] == "attached"
            })
            .cloned()
    });
    // Watched (fanotify) or found in the namespace's first listing: either
    // way read through the other process's /proc entries.
    assert_eq!(attached["mntns"], ns, "{attached}");
    run.stop();
}

/// With any one of the set missing, the live stream refuses before loading
/// anything, in one line naming that capability and no other.
#[test]
fn each_missing_capability_is_named() {
    let set = documented();
    for cap in &set {
        let out = capsh(
            &without(&set, cap),
            &mnttrace_bin(),
            &["--json", "--duration", "5s"],
        )
        .output()
        .expect("run mnttrace");
        let (named, needed) = refusal(&out);
        assert_eq!(named, set_of(&[cap]), "without {cap}: {out:?}");
        assert_eq!(needed, joined(&set), "without {cap}: {out:?}");
    }
}

/// The views need the same set: with it they read the namespace of a root
/// process in a private namespace (run through the README's own setpriv
/// line); with any one dropped they refuse, naming it.
#[test]
fn views_with_the_documented_set() {
    let holder = Holder(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sleep", "120"])
            .spawn()
            .expect("unshare sleep"),
    );
    let holder_pid = holder.0.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let own = std::fs::read_link("/proc/self/ns/mnt").expect("own ns");
    let ns = loop {
        let ns = std::fs::read_link(format!("/proc/{holder_pid}/ns/mnt")).expect("holder ns");
        if ns != own {
            break ns;
        }
        assert!(Instant::now() < deadline, "unshare did not exec sleep");
        std::thread::sleep(Duration::from_millis(20));
    };
    let inode: u64 = ns
        .to_string_lossy()
        .trim_start_matches("mnt:[")
        .trim_end_matches(']')
        .parse()
        .expect("ns inode");
    let set = documented();
    let pid = holder_pid.to_string();
    // The host's namespace through the test's own process (pid 1 may be
    // out of reach of any caller in a sandbox, as on the project's machines).
    let me = std::process::id().to_string();
    let readme = readme_bounding_set();
    let views: [&[&str]; 3] = [
        &["snapshot", "--json"],
        &["explain", "/tmp", "--pid", &pid, "--json"],
        &["volumes", "--host-pid", &me, "--json"],
    ];
    for args in views {
        let out = Command::new("setpriv")
            .args(["--bounding-set", &readme, "--", &mnttrace_bin()])
            .args(args)
            .output()
            .expect("setpriv mnttrace");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).expect("a JSON document");
        if args[0] == "snapshot" {
            let seen: Vec<&Value> = doc["namespaces"]
                .as_array()
                .expect("namespaces")
                .iter()
                .map(|n| &n["mntns"])
                .collect();
            assert!(
                seen.iter().any(|n| n.as_u64() == Some(inode)),
                "mnt:[{inode}] of pid {pid} not in the snapshot: {seen:?}"
            );
        }
        for cap in &set {
            let out = capsh(&without(&set, cap), &mnttrace_bin(), args)
                .output()
                .expect("run mnttrace");
            let (named, needed) = refusal(&out);
            assert_eq!(named, set_of(&[cap]), "{args:?} without {cap}: {out:?}");
            assert_eq!(needed, joined(&set), "{args:?} without {cap}: {out:?}");
        }
    }
    // Tables from mountinfo take only the ptrace check.
    let ptrace = set_of(&["CAP_SYS_PTRACE"]);
    let args = ["snapshot", "--json", "--mount-tables", "mountinfo"];
    let out = capsh(&ptrace, &mnttrace_bin(), &args)
        .output()
        .expect("run mnttrace");
    assert!(out.status.success(), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("a JSON document");
    assert!(
        doc["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .any(|n| n["mntns"].as_u64() == Some(inode)),
        "mnt:[{inode}] not in the mountinfo snapshot"
    );
    let (named, _) = refusal(
        &capsh(&BTreeSet::new(), &mnttrace_bin(), &args)
            .output()
            .expect("run mnttrace"),
    );
    assert_eq!(named, ptrace);
}

/// A process holding a namespace; killed when the test ends, however.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where tracefs is mounted and tables come from mountinfo, CAP_SYS_ADMIN
/// is not needed: CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE trace, and each
/// of those missing is named. With statmount tables CAP_SYS_ADMIN is asked
/// for again (other namespaces are read with it).
#[test]
fn bpf_and_perfmon_stand_in_where_sys_admin_is_not_needed() {
    let set = set_of(&["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"]);
    let tables = ["--mount-tables", "mountinfo"];
    let mut args = vec!["--json", "--duration", "120s"];
    args.extend(tables);
    let run = Run::start(capsh_with_tracefs(&set, &args));
    assert_eq!(caps_in(&run.status(), "CapEff"), set);
    let source = format!("mnttrace-caps-bpf-{}", std::process::id());
    mount_in_private_namespace(&source);
    let call = run.wait_for("mount record", |r| mount_record(r, &source));
    assert_eq!(call["ret"], 0, "{call}");
    run.stop();

    let needed = "CAP_BPF, CAP_PERFMON (or CAP_SYS_ADMIN), CAP_SYS_PTRACE";
    for cap in &set {
        let out = capsh_with_tracefs(&without(&set, cap), &args)
            .output()
            .expect("run mnttrace");
        let (named, got) = refusal(&out);
        assert_eq!(named, set_of(&[cap]), "without {cap}: {out:?}");
        assert_eq!(got, needed, "without {cap}: {out:?}");
    }
    // Tables default to statmount on this kernel (6.11+; the propagation
    // tests need 6.15 for fanotify anyway).
    let auto = capsh_with_tracefs(&set, &["--json", "--duration", "5s"])
        .output()
        .expect("run mnttrace");
    let (named, _) = refusal(&auto);
    assert_eq!(named, set_of(&["CAP_SYS_ADMIN"]), "{auto:?}");
}
