//! Docker Engine (Debian's docker.io) as users run it: `docker run -v` and
//! `--mount type=bind,bind-propagation=…`, with a dockerd of the test's own
//! in a private mount namespace. Ids and names come from Docker; what
//! propagates comes from the kernel's mountinfo.
use std::process::Command;

use mnttrace_tests::{
    Tracer,
    docker::{Engine, IMAGE},
    mnttrace_bin, mnttrace_json, tempdir,
    world::{World, bind, line_at, make, mkdir, mountinfo, tmpfs},
};
use serde_json::Value;

#[test]
fn docker_volumes_and_propagation() {
    let tmp = tempdir();
    let base = tmp.path().display().to_string();
    let mut w = World::new("fanotify");
    w.trace();
    let host = w.fresh();
    let host_pid = w.nss[host].pid;
    let host_ns = w.nss[host].mntns;
    // dockerd and containerd write to /run, /etc/docker and /opt whatever
    // their flags say: cover them, in this namespace only.
    for d in ["/run", "/etc/docker", "/opt"] {
        let shadow = format!("{base}/shadow{}", d.replace('/', "-"));
        std::fs::create_dir_all(&shadow).expect("shadow dir");
        w.step(host, bind(&shadow, d));
    }
    let src = format!("{base}/src");
    w.step(host, mkdir(&src));
    w.step(host, tmpfs("dockersrc", &src));
    w.step(host, make(&src, "shared", false));
    w.step(host, mkdir(&format!("{src}/in")));
    let plain = format!("{base}/plain");
    std::fs::create_dir_all(&plain).expect("plain dir");

    let engine = Engine::start(&tmp.path().join("engine"), host_pid);
    engine.import_busybox();
    let tag = std::process::id();

    // With / private, Docker refuses a bind asking for rslave propagation;
    // mnttrace explains why in its own words.
    let refused = format!("refused-{tag}");
    let out = engine.docker(&[
        "run",
        "-d",
        "--name",
        &refused,
        "--network",
        "none",
        "--mount",
        &format!("type=bind,src={plain},dst=/vol,bind-propagation=rslave"),
        IMAGE,
        "sleep",
        "1000",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "docker accepted: {out:?}");
    assert!(err.contains("not a shared or slave mount"), "{err}");
    let mp = err
        .split("is mounted on ")
        .nth(1)
        .and_then(|r| r.split(" but").next())
        .unwrap_or_else(|| panic!("no mount point in {err}"))
        .to_string();
    let kernel =
        line_at(&mountinfo(host_pid), &mp).unwrap_or_else(|| panic!("nothing mounted at {mp}"));
    assert_eq!((kernel.shared, kernel.master), (None, None), "{kernel:?}");
    let ex = mnttrace_json(&["explain", &plain, "--pid", &host_pid.to_string(), "--json"]);
    assert_eq!(ex["parent"]["mount_point"], mp.as_str(), "{ex}");
    let note = ex["bind_propagation"]
        .as_str()
        .unwrap_or_else(|| panic!("{ex}"));
    assert!(
        note.contains(&format!("{mp} is private")) && note.contains("--make-rshared"),
        "{note}"
    );
    let human = Command::new(mnttrace_bin())
        .args(["explain", &plain, "--pid", &host_pid.to_string()])
        .output()
        .expect("explain");
    let human = String::from_utf8_lossy(&human.stdout).to_string();
    eprintln!("docker: {}\nmnttrace explain:\n{human}", err.trim());
    assert!(human.contains(&format!("Note: {note}")), "{human}");
    let _ = engine.docker(&["rm", "-f", &refused]);
    w.step(host, make("/", "shared", true));

    // A second mnttrace that only wants container B, by Docker's name.
    let b = format!("shared-{tag}");
    let only_b = Tracer::start(&["--json", "--container", &b]);

    // A: plain -v (rprivate); B: bind-propagation=rshared, allowed to mount.
    let a = format!("web-{tag}");
    let a_id = engine.ok(&[
        "run",
        "-d",
        "--name",
        &a,
        "--network",
        "none",
        "-v",
        &format!("{src}:/vol"),
        IMAGE,
        "sleep",
        "1000",
    ]);
    let b_id = engine.ok(&[
        "run",
        "-d",
        "--name",
        &b,
        "--network",
        "none",
        "--cap-add",
        "SYS_ADMIN",
        "--mount",
        &format!("type=bind,src={src},dst=/vol,bind-propagation=rshared"),
        IMAGE,
        "sleep",
        "1000",
    ]);
    let a_ns = w.watch(engine.pid(&a));
    let b_ns = w.watch(engine.pid(&b));

    // Creation, tagged with Docker's id and name.
    let tracer = w.tracer.as_ref().expect("tracer");
    for (id, name, ns) in [(&a_id, &a, a_ns), (&b_id, &b, b_ns)] {
        let records = tracer.wait_for(20, |rs| {
            rs.iter()
                .any(|r| r["call"] == "pivot_root" && r["container"]["id"] == id.as_str())
        });
        let mine: Vec<&Value> = records
            .iter()
            .filter(|r| r["kind"] == "syscall" && r["container"]["id"] == id.as_str())
            .collect();
        assert!(
            mine.iter().any(|r| r["mntns_after"] == ns
                && matches!(r["call"].as_str(), Some("unshare" | "clone" | "clone3"))),
            "no new namespace for {name}: {mine:#?}"
        );
        assert!(
            mine.iter()
                .any(|r| r["call"] == "mount" && r["args"]["source"] == src.as_str()),
            "no volume bind for {name}"
        );
        for r in &mine {
            assert_eq!(r["container"]["runtime"], "docker", "{r}");
        }
        assert!(
            mine.iter().any(|r| r["container"]["name"] == name.as_str()),
            "Docker's name {name} never given: {mine:#?}"
        );
    }

    // A host mount under the source: asked first, then made; exact records,
    // tagged where they land.
    let ex = mnttrace_json(&[
        "explain",
        &format!("{src}/in"),
        "--pid",
        &host_pid.to_string(),
        "--container",
        &a,
        "--json",
    ]);
    let out = w.step(host, tmpfs("fromhost", &format!("{src}/in")));
    for r in out.records.iter().filter(|r| r["mntns"] != host_ns) {
        let want = if r["mntns"] == a_ns { &a_id } else { &b_id };
        assert_eq!(r["container"]["id"], want.as_str(), "{r}");
    }
    let reached = |ns: u64| out.kernel.iter().any(|k| k.mntns == ns);
    assert_eq!(ex["for_container"]["seen"], reached(a_ns), "{ex}");
    if !reached(a_ns) {
        assert!(
            ex["for_container"]["breaks"]
                .as_str()
                .is_some_and(|b| b.contains("/vol")),
            "{ex}"
        );
    }
    let vols = mnttrace_json(&["volumes", &b, "--host-pid", &host_pid.to_string(), "--json"]);
    let entry = &vols["containers"][0];
    assert_eq!(entry["container"]["id"], b_id.as_str(), "{vols}");
    assert_eq!(entry["container"]["name"], b.as_str(), "{vols}");
    let vol = entry["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["mount_point"] == "/vol")
        .cloned()
        .unwrap_or_else(|| panic!("/vol not in {vols}"));
    assert_eq!(vol["host_path"], src.as_str(), "{vol}");
    assert_eq!(vol["from_host"], reached(b_ns), "{vol}");

    // A mount made inside B through docker exec: exact records; it reaches
    // the host exactly when the kernel says so, and `volumes` agrees.
    let sock = format!("unix://{base}/engine/docker.sock");
    let mut exec = Command::new("/usr/bin/docker");
    exec.args([
        "-H", &sock, "exec", &b, "mount", "-t", "tmpfs", "inside", "/vol",
    ]);
    let out = w.external(&mut exec, |r| {
        r["call"] == "mount"
            && r["args"]["target"] == "/vol"
            && r["args"]["source"] == "inside"
            && r["container"]["id"] == b_id.as_str()
    });
    let to_host = out.kernel.iter().any(|k| k.mntns == host_ns);
    let vols = mnttrace_json(&["volumes", &b, "--host-pid", &host_pid.to_string(), "--json"]);
    let inner = vols["containers"][0]["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .rev()
        .find(|m| m["mount_point"] == "/vol")
        .cloned()
        .expect("/vol");
    assert_eq!(inner["to_host"], to_host, "{inner}");

    // The snapshot names each namespace's container.
    let snap = mnttrace_json(&["snapshot", "--json"]);
    for (id, ns) in [(&a_id, a_ns), (&b_id, b_ns)] {
        let entry = snap["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .find(|n| n["mntns"] == ns)
            .unwrap_or_else(|| panic!("mnt:[{ns}] not in the snapshot"));
        assert_eq!(entry["container"]["id"], id.as_str(), "{entry}");
    }

    // --container B: B's calls and those whose mounts reached B, nothing of A's.
    let seen = only_b.wait_for(20, |rs| {
        rs.iter()
            .any(|r| r["call"] == "mount" && r["args"]["source"] == "inside")
    });
    let calls: Vec<&Value> = seen.iter().filter(|r| r["kind"] == "syscall").collect();
    assert!(
        calls.iter().any(|r| r["call"] == "pivot_root"),
        "{calls:#?}"
    );
    for r in &calls {
        let reached_b = seen
            .iter()
            .any(|p| p["cause"] == r["id"] && p["container"]["id"] == b_id.as_str());
        assert!(
            r["container"]["id"] == b_id.as_str() || reached_b,
            "--container {b} let through: {r}"
        );
    }
    drop(only_b);
    drop(engine);
    w.finish();
}
