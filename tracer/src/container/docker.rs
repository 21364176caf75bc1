//! Docker Engine: where each running dockerd keeps its runtime state and its
//! containers' names. Read from its files, not its API socket: a wedged
//! dockerd hangs API clients, and mnttrace must never wait on one.
use std::path::PathBuf;

use super::state::{StateRoot, read_json};

/// A running dockerd, and the directories its command line gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Daemon {
    pub pid: u32,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
}

impl Daemon {
    /// Every dockerd on the machine, in whichever mount namespace.
    pub fn discover() -> Vec<Daemon> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim_end() == "dockerd")
            })
            .filter_map(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let args: Vec<String> = cmdline
                    .split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                Some(Daemon::from_args(pid, &args))
            })
            .collect()
    }

    fn from_args(pid: u32, args: &[String]) -> Daemon {
        let opt = |name: &str| {
            let long = format!("--{name}");
            let eq = format!("--{name}=");
            args.iter().enumerate().find_map(|(i, a)| {
                if let Some(v) = a.strip_prefix(&eq) {
                    Some(v.to_string())
                } else if *a == long {
                    args.get(i + 1).cloned()
                } else {
                    None
                }
            })
        };
        Daemon {
            pid,
            data_root: opt("data-root")
                .or_else(|| opt("graph"))
                .unwrap_or_else(|| "/var/lib/docker".into())
                .into(),
            exec_root: opt("exec-root")
                .unwrap_or_else(|| "/var/run/docker".into())
                .into(),
        }
    }

    fn prefix(&self) -> PathBuf {
        format!("/proc/{}/root", self.pid).into()
    }

    /// Where its runc keeps container state (the shim runs runc with this root).
    pub fn state_root(&self) -> StateRoot {
        StateRoot {
            prefix: self.prefix(),
            dir: self.exec_root.join("runtime-runc/moby"),
            engine: Some("docker"),
        }
    }

    /// The container's name, as `docker ps` shows it.
    pub fn name(&self, id: &str) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Config {
            #[serde(rename = "Name")]
            name: String,
        }
        if id.contains('/') {
            return None;
        }
        let path = self
            .data_root
            .join("containers")
            .join(id)
            .join("config.v2.json");
        let path = self.prefix().join(path.strip_prefix("/").unwrap_or(&path));
        let c: Config = read_json(&path)?;
        Some(c.name.trim_start_matches('/').to_string()).filter(|n| !n.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let args: Vec<String> = [
            "dockerd",
            "--data-root=/d",
            "--exec-root",
            "/e",
            "-H",
            "unix:///s",
        ]
        .map(String::from)
        .to_vec();
        let d = Daemon::from_args(7, &args);
        assert_eq!(d.data_root, PathBuf::from("/d"));
        assert_eq!(d.exec_root, PathBuf::from("/e"));
        assert_eq!(d.state_root().dir, PathBuf::from("/e/runtime-runc/moby"));
        let d = Daemon::from_args(7, &["dockerd".to_string()]);
        assert_eq!(d.data_root, PathBuf::from("/var/lib/docker"));
    }
}
