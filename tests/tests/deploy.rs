//! deploy/: the DaemonSet a fleet runs and the image it runs. The manifest
//! is read as Kubernetes would read it and held to what mnttrace documents
//! (the capabilities of README's "Capabilities", the node's name from the
//! downward API, the mounts it reads); then what a node would run is run
//! here: the image's entrypoint with the container's env and arguments
//! under exactly the manifest's capabilities, and the image itself, built
//! from deploy/Containerfile by a dockerd of the test's own and started with
//! the manifest's settings. A mount made meanwhile must come out as NDJSON
//! records carrying the node's name.
use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mnttrace_tests::{
    Killed, collect, docker::Engine, mnttrace_bin, mount_in_private_namespace, tempdir,
};
use serde_json::Value;

const MANIFEST: &str = include_str!("../../deploy/daemonset.yaml");
const CONTAINERFILE: &str = include_str!("../../deploy/Containerfile");
const DOCKERIGNORE: &str = include_str!("../../deploy/Containerfile.dockerignore");
const README: &str = include_str!("../../README.md");

/// What `spec.nodeName` gives the pod in these tests.
const NODE: &str = "node-7.fleet.example";

/// The manifest's documents (split on `---` lines, each parsed as YAML).
fn documents() -> Vec<Value> {
    MANIFEST
        .split("\n---\n")
        .map(|d| serde_norway::from_str::<Value>(d).expect("a YAML document"))
        .collect()
}

/// The DaemonSet and its one container.
struct Manifest {
    namespace: Value,
    daemonset: Value,
}

impl Manifest {
    fn read() -> Manifest {
        let docs = documents();
        let of_kind = |k: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == k).collect() };
        let ds = of_kind("DaemonSet");
        assert_eq!(ds.len(), 1, "one DaemonSet in deploy/daemonset.yaml");
        let ns = of_kind("Namespace");
        assert_eq!(ns.len(), 1, "its Namespace in deploy/daemonset.yaml");
        Manifest {
            namespace: ns[0].clone(),
            daemonset: ds[0].clone(),
        }
    }

    fn pod(&self) -> &Value {
        &self.daemonset["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        let cs = self.pod()["containers"].as_array().expect("containers");
        assert_eq!(cs.len(), 1, "one container");
        &cs[0]
    }

    fn security(&self) -> &Value {
        &self.container()["securityContext"]
    }

    /// capabilities.add as capabilities(7) names them.
    fn caps(&self) -> BTreeSet<String> {
        strings(&self.security()["capabilities"]["add"])
            .into_iter()
            .map(|c| format!("CAP_{c}"))
            .collect()
    }

    /// The container's environment as the kubelet would give it on node
    /// `NODE`, in order (each `$(VAR)` may name an earlier one).
    fn env(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for e in self.container()["env"].as_array().into_iter().flatten() {
            let name = e["name"].as_str().expect("env name").to_string();
            let value = if let Some(v) = e["value"].as_str() {
                expand(v, &out)
            } else {
                let field = e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .unwrap_or_else(|| panic!("env {name}: neither value nor fieldRef"));
                assert_eq!(
                    field, "spec.nodeName",
                    "env {name}: a field this test cannot give"
                );
                NODE.to_string()
            };
            out.push((name, value));
        }
        out
    }

    /// What the container runs: `command` or the image's ENTRYPOINT, then
    /// `args` or (without `command`) the image's CMD, `$(VAR)` expanded.
    fn argv(&self, image: &Image) -> Vec<String> {
        let c = self.container();
        let env = self.env();
        let command = c.get("command").map(strings);
        let args = c.get("args").map(strings);
        let mut argv = command.clone().unwrap_or_else(|| image.entrypoint.clone());
        match (args, command) {
            (Some(a), _) => argv.extend(a),
            (None, None) => argv.extend(image.cmd.clone()),
            (None, Some(_)) => {}
        }
        argv.iter().map(|a| expand(a, &env)).collect()
    }

    /// (hostPath, mountPath, readOnly, mountPropagation) of each mount.
    fn mounts(&self) -> Vec<(String, String, bool, Option<String>)> {
        let volumes = self.pod()["volumes"].as_array().expect("volumes");
        self.container()["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .map(|m| {
                let name = &m["name"];
                let v = volumes
                    .iter()
                    .find(|v| v["name"] == *name)
                    .unwrap_or_else(|| panic!("no volume {name}"));
                let host = v["hostPath"]["path"]
                    .as_str()
                    .unwrap_or_else(|| panic!("volume {name} is not a hostPath"));
                (
                    host.to_string(),
                    m["mountPath"].as_str().expect("mountPath").to_string(),
                    m["readOnly"] == true,
                    m["mountPropagation"].as_str().map(str::to_string),
                )
            })
            .collect()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_string()
        })
        .collect()
}

/// Kubernetes' `$(VAR)` expansion in command, args and env values: a
/// defined variable is replaced, `$$` is a `$`, anything else stays.
fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some((name, after)) = tail
            .strip_prefix("$(")
            .and_then(|t| t.split_once(')'))
            .filter(|(n, _)| !n.is_empty())
        {
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = after;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// deploy/Containerfile: its base, what it copies where, ENTRYPOINT, CMD.
struct Image {
    from: String,
    copies: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

impl Image {
    fn read() -> Image {
        let mut image = Image {
            from: String::new(),
            copies: Vec::new(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
        };
        let joined = CONTAINERFILE.replace("\\\n", " ");
        let exec_form = |rest: &str, what: &str| -> Vec<String> {
            let v: Value = serde_json::from_str(rest)
                .unwrap_or_else(|e| panic!("{what} is not in exec (JSON) form ({e}): {rest}"));
            strings(&v)
        };
        for line in joined.lines().map(str::trim) {
            let Some((word, rest)) = line.split_once(' ') else {
                continue;
            };
            match word {
                "FROM" => image.from = rest.trim().to_string(),
                "COPY" => {
                    let parts: Vec<&str> = rest.split_whitespace().collect();
                    assert_eq!(parts.len(), 2, "COPY SRC DEST: {line}");
                    image.copies.push((parts[0].into(), parts[1].into()));
                }
                "ENTRYPOINT" => image.entrypoint = exec_form(rest, "ENTRYPOINT"),
                "CMD" => image.cmd = exec_form(rest, "CMD"),
                _ => {}
            }
        }
        image
    }

    /// Where the image has the binary built by `cargo build --release`.
    fn binary(&self) -> &str {
        &self
            .copies
            .iter()
            .find(|(src, _)| src == "target/release/mnttrace")
            .expect("deploy/Containerfile copies target/release/mnttrace")
            .1
    }
}

/// The capabilities README.md documents (its `setpriv --bounding-set` line),
/// as capabilities(7) names them.
fn documented() -> BTreeSet<String> {
    let section = README
        .split("\n## ")
        .find(|s| s.starts_with("Capabilities\n"))
        .expect("README.md has a Capabilities section");
    let line = section
        .lines()
        .find(|l| l.starts_with("setpriv "))
        .expect("a setpriv line in README's Capabilities section");
    let set = line
        .split_whitespace()
        .skip_while(|w| *w != "--bounding-set")
        .nth(1)
        .expect("setpriv --bounding-set SET");
    set.split(',')
        .filter_map(|w| w.strip_prefix('+'))
        .map(|c| format!("CAP_{}", c.to_uppercase()))
        .collect()
}

/// A Kubernetes memory quantity in bytes (Ki, Mi, Gi, k, M, G or none).
fn bytes(q: &str) -> u64 {
    let units = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    let (num, mult) = units
        .iter()
        .find_map(|(u, m)| q.strip_suffix(u).map(|n| (n, *m)))
        .unwrap_or((q, 1));
    num.parse::<u64>()
        .unwrap_or_else(|_| panic!("memory quantity {q}"))
        * mult
}

/// What matters in the manifest, read as Kubernetes reads it.
#[test]
fn manifest_is_what_mnttrace_documents() {
    let m = Manifest::read();
    let ns = m.namespace["metadata"]["name"]
        .as_str()
        .expect("namespace name");
    assert_eq!(m.daemonset["apiVersion"], "apps/v1");
    assert_eq!(m.daemonset["metadata"]["namespace"], ns);
    assert_eq!(
        m.namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "privileged",
        "hostPID and CAP_SYS_ADMIN need a privileged Pod Security level"
    );
    let selector = &m.daemonset["spec"]["selector"]["matchLabels"];
    let labels = &m.daemonset["spec"]["template"]["metadata"]["labels"];
    for (k, v) in selector.as_object().expect("matchLabels") {
        assert_eq!(&labels[k], v, "the selector must match the pods' label {k}");
    }
    let pod = m.pod();
    assert_eq!(pod["hostPID"], true, "mnttrace reads every process's /proc");
    assert!(
        pod["tolerations"]
            .as_array()
            .expect("tolerations")
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none()),
        "it must tolerate every taint, to run on every node"
    );
    assert!(
        pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("grace")
            >= 5
    );

    // Exactly the documented capabilities, nothing more, no privileged.
    let sc = m.security();
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(m.caps(), documented(), "capabilities.add vs README");
    assert_ne!(sc["privileged"], true);
    assert_eq!(sc["runAsUser"], 0, "the capabilities are uid 0's");
    assert!(
        !strings(&sc["capabilities"]["add"]).contains(&"CAP_SYS_ADMIN".to_string()),
        "Kubernetes spells capabilities without CAP_"
    );
    assert_eq!(sc["seccompProfile"]["type"], "Unconfined");

    // The node's name from the downward API, in the variable mnttrace reads.
    let env = m.container()["env"].as_array().expect("env");
    let node = env
        .iter()
        .find(|e| e["name"] == "MNTTRACE_NODE_NAME")
        .expect("MNTTRACE_NODE_NAME");
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");

    // BTF and the runtimes' state, read-only; runtime state follows the
    // host's unmounts (HostToContainer); no socket directory, no /.
    let mounts = m.mounts();
    let find = |path: &str| mounts.iter().find(|(h, c, _, _)| h == path && c == path);
    let btf = find("/sys/kernel/btf").expect("a /sys/kernel/btf mount");
    assert!(btf.2, "BTF read-only");
    for state in [
        "/run/containerd/runc",
        "/run/containerd/io.containerd.runtime.v2.task",
        "/run/runc",
        "/run/crun",
    ] {
        let (_, _, ro, prop) = find(state).unwrap_or_else(|| panic!("no {state} mount"));
        assert!(*ro, "{state} read-only");
        assert_eq!(prop.as_deref(), Some("HostToContainer"), "{state}");
    }
    for (host, _, _, _) in &mounts {
        assert!(
            !matches!(host.as_str(), "/" | "/run" | "/run/containerd" | "/proc"),
            "hostPath {host} gives more than mnttrace reads"
        );
    }

    // Memory within the limit; the limit around the measured need.
    let res = &m.container()["resources"];
    let limit = bytes(res["limits"]["memory"].as_str().expect("memory limit"));
    let request = bytes(res["requests"]["memory"].as_str().expect("memory request"));
    assert!(request <= limit);
    assert!(
        (64 << 20..=256 << 20).contains(&limit),
        "limit {limit}: mnttrace needs ~50 MB"
    );

    // The image: its ENTRYPOINT runs the binary it copies, with --json.
    let image = Image::read();
    assert!(
        image.from.contains("debian"),
        "a glibc base: {}",
        image.from
    );
    let argv = m.argv(&image);
    assert_eq!(argv[0], image.binary(), "what runs is what is copied");
    assert!(argv.contains(&"--json".to_string()), "{argv:?}");
    assert!(
        DOCKERIGNORE
            .lines()
            .any(|l| l == "!target/release/mnttrace"),
        "the build context must keep the binary"
    );
}

#[test]
fn expansion_as_kubernetes_does() {
    let env = vec![("A".to_string(), "x".to_string())];
    assert_eq!(expand("--n=$(A)", &env), "--n=x");
    assert_eq!(expand("$$(A) $(B) $ $(", &env), "$(A) $(B) $ $(");
}

/// Lines of a child's stdout and stderr, collected as they come.
struct Lines {
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

impl Lines {
    fn of(child: &mut Child) -> Lines {
        Lines {
            out: collect(child.stdout.take().expect("stdout")),
            err: collect(child.stderr.take().expect("stderr")),
        }
    }

    fn out(&self) -> Vec<String> {
        self.out.lock().expect("stdout").clone()
    }

    fn err(&self) -> Vec<String> {
        self.err.lock().expect("stderr").clone()
    }
}

fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool, why: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "no {what}: {}", why());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every line is a mnttrace/v1 record of node `NODE`; the mount of
/// `source` is among them.
fn check_records(lines: &[String], source: &str) {
    let records = mnttrace_tests::parse(lines);
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r["node"], NODE, "{r}");
    }
    assert!(
        records.iter().any(|r| r["kind"] == "syscall"
            && r["call"] == "mount"
            && r["args"]["source"] == source
            && r["ret"] == 0),
        "no record of the mount of {source}"
    );
}

fn has_mount(lines: &[String], source: &str) -> bool {
    let needle = format!("\"source\":\"{source}\"");
    lines.iter().any(|l| l.contains(&needle))
}

/// The entrypoint as the kubelet would start it, with the local binary in
/// the image's place: the container's env (node name from spec.nodeName),
/// its capabilities alone in the bounding set, no_new_privs as
/// allowPrivilegeEscalation says, in a mount namespace without tracefs, as
/// a pod's is.
#[test]
fn entrypoint_under_the_manifests_settings() {
    let m = Manifest::read();
    let image = Image::read();
    let mut argv = m.argv(&image);
    argv[0] = mnttrace_bin();
    let bounding: Vec<String> = m
        .caps()
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let mut setpriv = vec![
        "setpriv".to_string(),
        "--bounding-set".to_string(),
        format!("-all,{}", bounding.join(",")),
    ];
    if m.security()["allowPrivilegeEscalation"] == false {
        setpriv.push("--no-new-privs".into());
    }
    setpriv.push("--".into());
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(
            "for d in /sys/kernel/tracing /sys/kernel/debug; do \
             if mountpoint -q \"$d\"; then umount -l \"$d\" || exit 1; fi; done; exec \"$@\"",
        )
        .arg("sh")
        .args(&setpriv)
        .args(&argv)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(m.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Killed(cmd.spawn().expect("start the entrypoint"));
    let lines = Lines::of(&mut child.0);
    wait_until(
        "start",
        60,
        || {
            if let Ok(Some(st)) = child.0.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!("mnttrace exited ({st}): {:?}", lines.err());
            }
            lines
                .err()
                .iter()
                .any(|l| l.starts_with("mnttrace: tracing"))
        },
        || format!("{:?}", lines.err()),
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).expect("status");
    assert!(
        status.lines().any(|l| l == "NoNewPrivs:\t1")
            || m.security()["allowPrivilegeEscalation"] != false,
        "{status}"
    );

    let source = format!("mnttrace-deploy-{}", std::process::id());
    mount_in_private_namespace(&source);
    wait_until(
        "record of the mount",
        30,
        || has_mount(&lines.out(), &source),
        || format!("{:?}", lines.err()),
    );
    // The kubelet stops a pod with SIGTERM.
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let st = child.0.wait().expect("wait");
    std::thread::sleep(Duration::from_millis(200));
    assert!(st.success(), "exit {st} on SIGTERM: {:?}", lines.err());
    check_records(&lines.out(), &source);
    let last = lines.err().last().cloned().unwrap_or_default();
    assert!(last.starts_with("mnttrace: detached"), "{last}");
}

/// The binary's shared libraries (ldd), for a base image made from the
/// host's own: debian:bookworm-slim needs a registry, this does not.
fn libraries(bin: &str) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(bin).output().expect("ldd");
    assert!(out.status.success(), "ldd {bin}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(PathBuf::from)
        .collect()
}

/// The image built from deploy/Containerfile, run by Docker with what the
/// manifest asks of the runtime: host PID namespace, uid 0, only its
/// capabilities, its seccomp and AppArmor profiles, no_new_privs, read-only
/// root, its memory limit, its env and its read-only mounts with their
/// propagation; stopped with SIGTERM as the kubelet does.
#[test]
fn image_runs_with_the_manifests_settings() {
    let m = Manifest::read();
    let image = Image::read();
    let tmp = tempdir();
    let base = tmp.path();
    // dockerd writes to /run, /etc/docker and /opt whatever its flags: a
    // namespace of the test's own covers them; its mounts are made shared
    // there (new peer groups, none with the host's) so Docker takes
    // `rslave` volumes, as a node's shared / does.
    let shadow = base.join("shadow");
    let script = "for d in /run /etc/docker /opt; do \
                  mkdir -p \"$0$d\" && mount --bind \"$0$d\" \"$d\" || exit 1; done; \
                  mount --make-rshared / && echo ready && exec sleep 3600";
    let mut holder = Killed(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", script])
            .arg(&shadow)
            .stdout(Stdio::piped())
            .spawn()
            .expect("namespace for dockerd"),
    );
    let mut ready = String::new();
    BufReader::new(holder.0.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("ready");
    assert_eq!(
        ready.trim(),
        "ready",
        "could not cover /run, /etc/docker, /opt"
    );
    let dir = base.join("engine");
    let engine = Engine::start(&dir, holder.0.id());

    // Base: the binary's libraries; then deploy/Containerfile as written,
    // its context holding the binary under test at target/release/mnttrace.
    let bin = mnttrace_bin();
    let root = base.join("base");
    for d in ["proc", "sys", "dev", "tmp", "etc", "run"] {
        std::fs::create_dir_all(root.join(d)).expect("base dir");
    }
    for lib in libraries(&bin) {
        let to = root.join(lib.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(to.parent().expect("dir")).expect("lib dir");
        std::fs::copy(&lib, &to).unwrap_or_else(|e| panic!("copy {}: {e}", lib.display()));
    }
    engine.import(&root, &image.from, &[]);
    let ctx = base.join("context");
    std::fs::create_dir_all(ctx.join("target/release")).expect("context");
    std::fs::create_dir_all(ctx.join("deploy")).expect("context");
    std::fs::copy(&bin, ctx.join("target/release/mnttrace")).expect("binary");
    std::fs::write(ctx.join("deploy/Containerfile"), CONTAINERFILE).expect("Containerfile");
    let tag = m.container()["image"].as_str().expect("image");
    engine.ok(&[
        "build",
        "-q",
        "-f",
        &ctx.join("deploy/Containerfile").display().to_string(),
        "-t",
        tag,
        &ctx.display().to_string(),
    ]);

    // `docker run` with the manifest's settings.
    let sc = m.security();
    let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name=mnttrace".into()];
    args.push("--network=none".into());
    if m.pod()["hostPID"] == true {
        args.push("--pid=host".into());
    }
    args.push(format!(
        "--user={}:{}",
        sc["runAsUser"].as_u64().expect("runAsUser"),
        sc["runAsGroup"].as_u64().unwrap_or(0)
    ));
    for c in strings(&sc["capabilities"]["drop"]) {
        args.push(format!("--cap-drop={c}"));
    }
    for c in strings(&sc["capabilities"]["add"]) {
        args.push(format!("--cap-add={c}"));
    }
    if sc["seccompProfile"]["type"] == "Unconfined" {
        args.push("--security-opt=seccomp=unconfined".into());
    }
    if sc["appArmorProfile"]["type"] == "Unconfined" {
        args.push("--security-opt=apparmor=unconfined".into());
    }
    if sc["allowPrivilegeEscalation"] == false {
        args.push("--security-opt=no-new-privileges".into());
    }
    if sc["readOnlyRootFilesystem"] == true {
        args.push("--read-only".into());
    }
    if let Some(mem) = m.container()["resources"]["limits"]["memory"].as_str() {
        args.push(format!("--memory={}", bytes(mem)));
    }
    for (k, v) in m.env() {
        args.push(format!("--env={k}={v}"));
    }
    for (host, path, ro, prop) in m.mounts() {
        let mut opts: Vec<&str> = Vec::new();
        if ro {
            opts.push("ro");
        }
        match prop.as_deref() {
            Some("HostToContainer") => opts.push("rslave"),
            Some("Bidirectional") => opts.push("rshared"),
            _ => {}
        }
        args.push(format!("--volume={host}:{path}:{}", opts.join(",")));
    }
    if let Some(cmd) = m.container().get("command") {
        args.push(format!("--entrypoint={}", strings(cmd)[0]));
    }
    args.push(tag.into());
    // Arguments past the entrypoint, as Kubernetes gives them.
    let argv = m.argv(&image);
    let skip = if m.container().get("command").is_some() {
        1
    } else {
        image.entrypoint.len()
    };
    args.extend(argv.into_iter().skip(skip));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    engine.ok(&args);

    let logs = || {
        let out = engine.docker(&["logs", "mnttrace"]);
        let lines = |b: &[u8]| -> Vec<String> {
            String::from_utf8_lossy(b)
                .lines()
                .map(str::to_string)
                .collect()
        };
        (lines(&out.stdout), lines(&out.stderr))
    };
    let state = || {
        engine.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "mnttrace",
        ])
    };
    wait_until(
        "start in the container",
        60,
        || {
            let st = state();
            assert!(!st.starts_with("exited"), "{st}: {:?}", logs().1);
            logs().1.iter().any(|l| l.starts_with("mnttrace: tracing"))
        },
        || format!("{} {:?}", state(), logs().1),
    );
    let (_, err) = logs();
    assert!(
        err.iter()
            .any(|l| l.contains("fanotify") && l.contains("statmount")),
        "full propagation (fanotify, statmount) under the manifest's profiles: {err:?}"
    );
    let source = format!("mnttrace-image-{}", std::process::id());
    mount_in_private_namespace(&source);
    wait_until(
        "record of the mount from the container",
        30,
        || has_mount(&logs().0, &source),
        || format!("{} {:?}", state(), logs().1),
    );
    let grace = m.pod()["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    engine.ok(&["stop", "-t", &grace.to_string(), "mnttrace"]);
    assert_eq!(
        state(),
        "exited 0",
        "SIGTERM must end it cleanly: {:?}",
        logs().1
    );
    let (out, err) = logs();
    check_records(&out, &source);
    let last = err.last().cloned().unwrap_or_default();
    assert!(last.starts_with("mnttrace: detached"), "{last}");
}
