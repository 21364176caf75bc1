//! `mnttrace snapshot` and `mnttrace explain`, held against the kernel's
//! mountinfo of namespaces the test makes.
use std::process::{Command, Output};

use mnttrace_tests::{
    mnttrace_bin, tempdir,
    world::{MountLine, World, make, mkdir, tmpfs},
};
use serde_json::Value;

fn mnttrace(args: &[&str]) -> Output {
    Command::new(mnttrace_bin())
        .args(args)
        .output()
        .expect("run mnttrace")
}

fn ok(args: &[&str]) -> String {
    let out = mnttrace(args);
    assert!(
        out.status.success(),
        "mnttrace {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// ns1 with tmpfs X (shared) holding B and C; ns2 cloned from it, X a slave there.
fn two_namespaces(x: &str) -> World {
    let mut w = World::new("off");
    let a = w.fresh();
    w.step(a, mkdir(x));
    w.step(a, tmpfs("X", x));
    w.step(a, mkdir(&format!("{x}/B")));
    w.step(a, mkdir(&format!("{x}/C")));
    w.step(a, make(x, "shared", false));
    let b = w.clone_of(a);
    w.step(b, make(x, "slave", false));
    w
}

fn group_of(table: &[MountLine], path: &str) -> MountLine {
    table
        .iter()
        .find(|m| m.mount_point == path)
        .cloned()
        .unwrap_or_else(|| panic!("{path} not mounted"))
}

#[test]
fn snapshot_json_equals_each_namespace_mountinfo() {
    let t = tempdir();
    let x = format!("{}/X", t.path().display());
    let w = two_namespaces(&x);
    let snap: Value = serde_json::from_str(&ok(&["snapshot", "--json"])).expect("JSON");
    assert_eq!(snap["schema"], "mnttrace/snapshot/v1");
    for ns in &w.nss {
        let entry = snap["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .find(|n| n["mntns"] == ns.mntns)
            .unwrap_or_else(|| panic!("mnt:[{}] missing from the snapshot", ns.mntns));
        let mut got: Vec<(String, Option<u64>, Option<u64>, bool)> = entry["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .map(|m| {
                (
                    m["mount_point"].as_str().expect("mount_point").to_string(),
                    m["shared"].as_u64(),
                    m["master"].as_u64(),
                    m["unbindable"].as_bool().expect("unbindable"),
                )
            })
            .collect();
        let mut want: Vec<_> = ns
            .table()
            .into_iter()
            .map(|m| (m.mount_point, m.shared, m.master, m.unbindable))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(
            got, want,
            "snapshot (left) vs /proc/{}/mountinfo (right)",
            ns.pid
        );
    }
    // X's peer group: ns1's X a member, ns2's X its slave.
    let g = group_of(&w.nss[0].table(), &x)
        .shared
        .expect("X shared in ns1");
    let group = snap["peer_groups"]
        .as_array()
        .expect("peer_groups")
        .iter()
        .find(|p| p["group"] == g)
        .expect("X's group");
    let at = |list: &Value, ns: u64| {
        list.as_array()
            .expect("list")
            .iter()
            .any(|m| m["mntns"] == ns && m["mount_point"] == x.as_str())
    };
    assert!(at(&group["members"], w.nss[0].mntns), "{group}");
    assert!(at(&group["slaves"], w.nss[1].mntns), "{group}");
    assert!(!at(&group["members"], w.nss[1].mntns), "{group}");
}

#[test]
fn snapshot_human_and_dot() {
    let t = tempdir();
    let x = format!("{}/X", t.path().display());
    let w = two_namespaces(&x);
    let g = group_of(&w.nss[0].table(), &x).shared.expect("shared");
    let text = ok(&["snapshot"]);
    for ns in &w.nss {
        assert!(
            text.contains(&format!("mnt:[{}]  pid {} (mntdrive)", ns.mntns, ns.pid)),
            "{text}"
        );
    }
    assert!(text.contains(&format!("{x}  tmpfs X  [")), "{text}");
    assert!(text.contains(&format!("shared:{g}")), "{text}");
    let dot = ok(&["snapshot", "--dot"]);
    assert!(dot.starts_with("digraph mounts {"), "{dot}");
    assert!(dot.contains(&format!("g{g} [")), "{dot}");
    // Graphviz itself must accept it.
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("graphviz `dot` (cargo xtask setup installs it)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(dot.as_bytes())
        .expect("feed dot");
    let out = child.wait_with_output().expect("dot");
    assert!(
        out.status.success(),
        "dot rejected the graph: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
}

#[test]
fn explain_says_why_not() {
    let t = tempdir();
    let x = format!("{}/X", t.path().display());
    let w = two_namespaces(&x);
    let (a, b) = (&w.nss[0], &w.nss[1]);
    let g = group_of(&a.table(), &x).shared.expect("shared");
    // From ns1: reaches ns2 as a slave copy.
    let text = ok(&["explain", &format!("{x}/B"), "--pid", &a.pid.to_string()]);
    assert!(
        text.contains(&format!(
            "  mnt:[{}] {x}/B  (slave copy, received from master:{g})",
            b.mntns
        )),
        "{text}"
    );
    // From ns2: a slave does not send back.
    let text = ok(&[
        "explain",
        &format!("{x}/C"),
        "--mntns",
        &b.mntns.to_string(),
    ]);
    assert!(text.contains("It would not appear in:"), "{text}");
    let who = format!("mnt:[{}] (pid {})", a.mntns, a.pid);
    let why = format!(
        ": the mount at {x} is a slave (master:{g}) but not shared: it receives, it does not send"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("  ") && l.contains(&who) && l.ends_with(&why)),
        "{text}"
    );
}

#[test]
fn views_refuse_bad_input_in_one_line() {
    for (args, want) in [
        (&["explain", "relative/path"][..], "is not an absolute path"),
        (
            &["explain", "/x", "--mntns", "1"],
            "mount namespace mnt:[1] is not known",
        ),
        (
            &["explain", "/x", "--pid", "999999999"],
            "no process 999999999",
        ),
    ] {
        let out = mnttrace(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("mnttrace: error: ") && err.contains(want),
            "{args:?}: {err}"
        );
    }
    let out = mnttrace(&["snapshot", "--json", "--dot"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}
