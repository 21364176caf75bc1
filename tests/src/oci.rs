//! OCI containers for tests: a busybox bundle in a temp dir, run by runc or
//! crun inside the test's own mount namespace (entered with nsenter), and
//! always killed and deleted, even when the test fails.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// A runtime binary with its state root, run in the mount namespace of `ns_pid`.
#[derive(Clone)]
pub struct Runtime {
    pub name: &'static str,
    pub root: PathBuf,
    pub ns_pid: u32,
}

impl Runtime {
    pub fn command(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.ns_pid))
            .arg("--")
            .arg(self.name)
            .arg("--root")
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// `state ID`, as JSON, if the runtime knows the container.
    pub fn state(&self, id: &str) -> Option<Value> {
        let out = self
            .command()
            .args(["state", id])
            .stdout(Stdio::piped())
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

/// An OCI bundle: a busybox rootfs and a config.json with one bind volume.
pub struct Bundle {
    pub dir: PathBuf,
}

impl Bundle {
    /// `volume` is bound at /vol with `propagation`; `rootfs` sets
    /// linux.rootfsPropagation when given (left unset otherwise, as most
    /// hand-written bundles do).
    pub fn new(dir: &Path, volume: &str, propagation: &str, rootfs: Option<&str>) -> Bundle {
        let root = dir.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "vol"] {
            std::fs::create_dir_all(root.join(d)).expect("rootfs dir");
        }
        std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
        let out = Command::new("runc")
            .arg("spec")
            .current_dir(dir)
            .output()
            .expect("runc spec");
        assert!(out.status.success(), "runc spec: {out:?}");
        let path = dir.join("config.json");
        let mut c: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("config.json")).expect("JSON");
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!(["/bin/busybox", "sleep", "1000"]);
        c["root"]["readonly"] = json!(false);
        if let Some(caps) = c["process"]["capabilities"].as_object_mut() {
            for set in caps.values_mut() {
                if let Some(list) = set.as_array_mut() {
                    list.push(json!("CAP_SYS_ADMIN"));
                }
            }
        }
        c["mounts"].as_array_mut().expect("mounts").push(json!({
            "destination": "/vol", "type": "bind", "source": volume,
            "options": ["rbind", propagation],
        }));
        c["linux"]["namespaces"] =
            json!([{"type": "mount"}, {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}]);
        if let Some(r) = rootfs {
            c["linux"]["rootfsPropagation"] = json!(r);
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&c).expect("JSON")).expect("write");
        Bundle { dir: dir.into() }
    }
}

/// A running container; killed and deleted when dropped.
pub struct Container {
    pub rt: Runtime,
    pub id: String,
    pub init_pid: u32,
    /// Its cgroup directories, removed if the runtime leaves them behind.
    cgroups: Vec<PathBuf>,
}

impl Container {
    /// `run -d`; all three stdio on /dev/null, or the detached init would
    /// hold the test's pipes open.
    pub fn run(rt: &Runtime, bundle: &Bundle, id: &str) -> Container {
        let log = bundle.dir.join("run.err");
        let err = std::fs::File::create(&log).expect("run.err");
        let status = rt
            .command()
            .args(["run", "-d", "--bundle"])
            .arg(&bundle.dir)
            .arg(id)
            .stderr(err)
            .status()
            .expect("run the runtime");
        // Delete whatever was made, even on failure.
        let mut c = Container {
            rt: rt.clone(),
            id: id.into(),
            init_pid: 0,
            cgroups: Vec::new(),
        };
        assert!(
            status.success(),
            "{} run {id}: {}",
            rt.name,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let state = rt.state(id).expect("state of a running container");
        c.init_pid = state["pid"].as_u64().expect("pid") as u32;
        let text =
            std::fs::read_to_string(format!("/proc/{}/cgroup", c.init_pid)).unwrap_or_default();
        for line in text.lines() {
            let mut f = line.splitn(3, ':');
            let (Some(_), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let hier = match ctrl {
                "" => "unified",
                c => c.strip_prefix("name=").unwrap_or(c),
            };
            if path.ends_with(id) {
                c.cgroups.push(
                    Path::new("/sys/fs/cgroup")
                        .join(hier)
                        .join(path.trim_start_matches('/')),
                );
            }
        }
        c
    }

    /// `exec ID ARGS…` in the container.
    pub fn exec(&self, args: &[&str]) -> Command {
        let mut c = self.rt.command();
        c.arg("exec").arg(&self.id).args(args);
        c
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.rt.command().args(["kill", &self.id, "KILL"]).output();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && self
                .rt
                .state(&self.id)
                .is_some_and(|s| s["status"] == "running")
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.rt.command().args(["delete", "-f", &self.id]).output();
        // A runtime that could not remove its cgroups leaves empty directories.
        for d in &self.cgroups {
            let _ = std::fs::remove_dir(d);
        }
    }
}
