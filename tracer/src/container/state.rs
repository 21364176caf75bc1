//! OCI runtimes' state directories (runc's `state.json`, crun's `status`) and
//! the bundle's `config.json` they point to: what only the runtime knows —
//! the bundle, the init pid, the annotations (Kubernetes pod name and
//! namespace), the propagation the bundle asked for.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// Files larger than this are not runtime state; never read them whole.
const MAX_STATE: u64 = 4 << 20;

/// A directory where a runtime keeps one subdirectory per container, read
/// through `prefix` (`/` or `/proc/PID/root` for a runtime in another mount
/// namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRoot {
    pub prefix: PathBuf,
    pub dir: PathBuf,
    /// Engine that drives this root (docker for dockerd's runc root).
    pub engine: Option<&'static str>,
}

impl StateRoot {
    pub fn local(dir: impl Into<PathBuf>) -> StateRoot {
        StateRoot {
            prefix: "/".into(),
            dir: dir.into(),
            engine: None,
        }
    }

    /// `path` (absolute, in the runtime's namespace) as mnttrace can open it.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.prefix.join(path.strip_prefix("/").unwrap_or(path))
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.resolve(&self.dir.join(id))
    }

    /// Whether the runtime has a directory for `id` (it makes it before the
    /// container's first process runs, long before the state file).
    pub fn has(&self, id: &str) -> bool {
        !id.contains('/') && id != ".." && self.container_dir(id).is_dir()
    }

    /// What the runtime wrote about container `id`, if it has written it yet.
    pub fn read(&self, id: &str) -> Option<State> {
        let dir = self.container_dir(id);
        if let Some(s) = read_json::<RuncState>(&dir.join("state.json")) {
            let bundle = s
                .config
                .labels
                .iter()
                .find_map(|l| l.strip_prefix("bundle="))
                .map(PathBuf::from);
            return Some(self.with_bundle(State {
                runtime: "runc",
                init_pid: Some(s.init_process_pid),
                bundle,
                bundle_config: None,
            }));
        }
        if let Some(s) = read_json::<CrunStatus>(&dir.join("status")) {
            return Some(self.with_bundle(State {
                runtime: "crun",
                init_pid: Some(s.pid),
                bundle: s.bundle.map(PathBuf::from),
                bundle_config: None,
            }));
        }
        None
    }

    fn with_bundle(&self, mut s: State) -> State {
        s.bundle_config = s
            .bundle
            .as_ref()
            .and_then(|b| read_json::<BundleConfig>(&self.resolve(&b.join("config.json"))));
        s
    }
}

/// One container as its runtime describes it.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub runtime: &'static str,
    pub init_pid: Option<u32>,
    pub bundle: Option<PathBuf>,
    pub bundle_config: Option<BundleConfig>,
}

#[derive(Deserialize)]
struct RuncState {
    init_process_pid: u32,
    #[serde(default)]
    config: RuncConfig,
}

#[derive(Deserialize, Default)]
struct RuncConfig {
    #[serde(default)]
    labels: Vec<String>,
}

#[derive(Deserialize)]
struct CrunStatus {
    pid: u32,
    bundle: Option<String>,
}

/// The parts of an OCI bundle's config.json mnttrace reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct BundleConfig {
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub mounts: Vec<BundleMount>,
    #[serde(default)]
    pub linux: BundleLinux,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct BundleMount {
    pub destination: String,
    #[serde(default)]
    pub options: Vec<String>,
}

impl BundleMount {
    /// The propagation option asked for (`rslave`, `shared`, …), if any.
    pub fn propagation(&self) -> Option<&str> {
        self.options.iter().map(String::as_str).find(|o| {
            matches!(
                *o,
                "private"
                    | "rprivate"
                    | "slave"
                    | "rslave"
                    | "shared"
                    | "rshared"
                    | "unbindable"
                    | "runbindable"
            )
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct BundleLinux {
    #[serde(default, rename = "rootfsPropagation")]
    pub rootfs_propagation: Option<String>,
}

impl BundleConfig {
    /// The annotation among `keys` that is set (engines differ in spelling).
    pub fn annotation(&self, keys: &[&str]) -> Option<String> {
        keys.iter()
            .find_map(|k| self.annotations.get(*k))
            .filter(|v| !v.is_empty())
            .cloned()
    }

    /// The bundle's mount at `destination` (a path inside the container).
    pub fn mount_at(&self, destination: &str) -> Option<&BundleMount> {
        let clean = |p: &str| p.trim_end_matches('/').to_string();
        self.mounts
            .iter()
            .rev()
            .find(|m| clean(&m.destination) == clean(destination))
    }
}

/// A small JSON file, if it exists and parses.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).ok()?;
    let mut text = Vec::new();
    f.take(MAX_STATE).read_to_end(&mut text).ok()?;
    match serde_json::from_slice(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            log::debug!("{}: {e}", path.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_config() {
        // The shape containerd's CRI plugin writes.
        let c: BundleConfig = serde_json::from_str(
            r#"{"ociVersion":"1.1.0","annotations":{
                "io.kubernetes.cri.sandbox-name":"web-0",
                "io.kubernetes.cri.sandbox-namespace":"shop",
                "io.kubernetes.cri.container-name":"nginx"},
              "mounts":[{"destination":"/data","type":"bind","source":"/var/lib/kubelet/x",
                         "options":["rbind","rslave","rw"]},
                        {"destination":"/proc","type":"proc","source":"proc"}],
              "linux":{"rootfsPropagation":"rslave"}}"#,
        )
        .expect("parses");
        assert_eq!(
            c.annotation(&["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"]),
            Some("web-0".into())
        );
        assert_eq!(
            c.mount_at("/data/").and_then(|m| m.propagation()),
            Some("rslave")
        );
        assert_eq!(c.mount_at("/proc").and_then(|m| m.propagation()), None);
        assert_eq!(c.linux.rootfs_propagation.as_deref(), Some("rslave"));
        let empty: BundleConfig = serde_json::from_str("{}").expect("parses");
        assert_eq!(empty, BundleConfig::default());
    }
}
