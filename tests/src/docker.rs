//! A Docker Engine of the test's own: dockerd (Debian's docker.io) inside the
//! test's private mount namespace, every path it writes in a temp dir, and
//! everything it started stopped and removed when dropped.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

pub const IMAGE: &str = "mnttrace-busybox:test";

pub struct Engine {
    dir: PathBuf,
    ns_pid: u32,
    daemon: Option<Child>,
    /// Its containers' cgroup parent (`--cgroup-parent`), removed at the end.
    cgroup_parent: String,
}

impl Engine {
    /// Starts dockerd in the mount namespace of `ns_pid`, whose /run,
    /// /etc/docker and /opt the caller has already covered with directories
    /// of its own (dockerd and containerd write there whatever their flags).
    pub fn start(dir: &Path, ns_pid: u32) -> Engine {
        for d in ["data", "exec", "client", "tmp"] {
            std::fs::create_dir_all(dir.join(d)).expect("engine dir");
        }
        std::fs::write(dir.join("daemon.json"), "{}").expect("daemon.json");
        let cgroup_parent = format!("mnttrace-docker-{}", std::process::id());
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("log");
        let p = |s: &str| dir.join(s).display().to_string();
        let daemon = Command::new("nsenter")
            .arg(format!("--mount=/proc/{ns_pid}/ns/mnt"))
            .arg("--")
            .arg("/usr/sbin/dockerd")
            .args(["--config-file", &p("daemon.json")])
            .args(["--data-root", &p("data"), "--exec-root", &p("exec")])
            .args(["--pidfile", &p("docker.pid")])
            .arg(format!("-H=unix://{}", p("docker.sock")))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--exec-opt=native.cgroupdriver=cgroupfs",
                "--storage-driver=overlay2",
            ])
            .arg(format!("--cgroup-parent=/{cgroup_parent}"))
            .env("DOCKER_CONFIG", p("client"))
            .env("TMPDIR", p("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let e = Engine {
            dir: dir.into(),
            ns_pid,
            daemon: Some(daemon),
            cgroup_parent,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !e.docker(&["info"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer: {}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        e
    }

    /// The docker client on this engine's socket, with the classic builder:
    /// it takes FROM from the engine's own images (no registry).
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("/usr/bin/docker")
            .arg(format!("-H=unix://{}/docker.sock", self.dir.display()))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// `docker …` that must succeed; its stdout, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(out.status.success(), "docker {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A busybox image, made with `docker import` (no registry is needed).
    pub fn import_busybox(&self) {
        let root = self.dir.join("image");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "vol"] {
            std::fs::create_dir_all(root.join(d)).expect("image dir");
        }
        std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
        for applet in ["sh", "sleep", "mount", "umount", "mkdir", "cat"] {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
        self.import(&root, IMAGE, &["ENV PATH=/bin"]);
    }

    /// Makes image `tag` of the tree at `root` with `docker import`, each of
    /// `changes` a Dockerfile instruction (`-c`).
    pub fn import(&self, root: &Path, tag: &str, changes: &[&str]) {
        let tar = self
            .dir
            .join(format!("{}.tar", tag.replace([':', '/'], "-")));
        let st = Command::new("tar")
            .arg("-C")
            .arg(root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("tar");
        assert!(st.success(), "tar");
        let tar = tar.display().to_string();
        let mut args = vec!["import"];
        for c in changes {
            args.extend(["-c", c]);
        }
        args.extend([tar.as_str(), tag]);
        self.ok(&args);
    }

    /// Pid of a container's init, as Docker reports it.
    pub fn pid(&self, name: &str) -> u32 {
        self.ok(&["inspect", "-f", "{{.State.Pid}}", name])
            .parse()
            .expect("pid")
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let ids = self.docker(&["ps", "-aq"]);
        let ids = String::from_utf8_lossy(&ids.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.docker(&args);
        }
        if let Some(mut d) = self.daemon.take() {
            let _ = nix_kill(d.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(d.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        // What is left in the namespace (containerd, shims) and in the
        // containers' cgroups, then the cgroups themselves.
        let ns = std::fs::read_link(format!("/proc/{}/ns/mnt", self.ns_pid)).ok();
        let mut victims = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if pid != self.ns_pid
                    && ns.is_some()
                    && std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok() == ns
                {
                    victims.push(pid);
                }
            }
        }
        let cgroups = self.cgroup_dirs();
        for d in &cgroups {
            if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                victims.extend(
                    procs
                        .split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        for pid in &victims {
            let _ = nix_kill(*pid, libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && victims
                .iter()
                .any(|p| Path::new(&format!("/proc/{p}")).exists())
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for d in cgroups.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl Engine {
    /// Every cgroup directory under the engine's parent, parents first.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let Ok(hier) = std::fs::read_dir("/sys/fs/cgroup") else {
            return out;
        };
        for h in hier.flatten() {
            let mut stack = vec![h.path().join(&self.cgroup_parent)];
            // memory lives under the test process's own memory cgroup here.
            if let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") {
                for line in own.lines() {
                    let mut f = line.splitn(3, ':');
                    let (Some(_), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
                        continue;
                    };
                    if h.file_name().to_str() == Some(ctrl.trim_start_matches("name="))
                        && path != "/"
                    {
                        stack.push(
                            h.path()
                                .join(path.trim_start_matches('/'))
                                .join(&self.cgroup_parent),
                        );
                    }
                }
            }
            while let Some(d) = stack.pop() {
                if !d.is_dir() {
                    continue;
                }
                out.push(d.clone());
                if let Ok(sub) = std::fs::read_dir(&d) {
                    stack.extend(sub.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
                }
            }
        }
        out
    }
}

fn nix_kill(pid: u32, sig: i32) -> i32 {
    // SAFETY: plain kill(2) on a pid the test started or found.
    unsafe { libc::kill(pid as i32, sig) }
}
