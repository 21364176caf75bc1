//! What a process's cgroup path says about its container.
//!
//! Every engine names the cgroup it makes after the container id, each in its
//! own shape (cgroupfs or systemd driver, v1 or v2); the patterns are the
//! ones the engines write, as Inspektor Gadget and the OpenTelemetry cgroup
//! detectors read them. No crate covers all of them and the runtime they
//! belong to, so they are matched here.

/// What the cgroup path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// Engine, when the path's shape names it.
    pub runtime: Option<&'static str>,
    pub id: String,
    /// Kubernetes pod UID (from a kubepods slice or directory).
    pub pod_uid: Option<String>,
}

/// The cgroup paths of `/proc/PID/cgroup` (v2 `0::` line first, then the
/// named v1 hierarchies), without duplicates.
pub fn paths(proc_cgroup: &str) -> Vec<&str> {
    let mut v2 = Vec::new();
    let mut v1 = Vec::new();
    for line in proc_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(num), Some(_ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if num == "0" { &mut v2 } else { &mut v1 }.push(path);
    }
    let mut all: Vec<&str> = v2.into_iter().chain(v1).collect();
    let mut seen = std::collections::HashSet::new();
    all.retain(|p| seen.insert(*p));
    all
}

/// The container a cgroup path names, if its shape is an engine's.
pub fn classify(path: &str) -> Option<Hint> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let pod_uid = parts.iter().find_map(|p| pod_uid(p));
    // The innermost component naming a container wins (nested engines).
    for (i, part) in parts.iter().enumerate().rev() {
        let parent = i.checked_sub(1).map(|j| parts[j]);
        if let Some((runtime, id)) = scope(part) {
            return Some(Hint {
                runtime,
                id,
                pod_uid,
            });
        }
        // cgroupfs drivers: /docker/<id>, /libpod_parent/libpod-<id>,
        // /kubepods/<qos>/pod<uid>/<id>, /machine.slice/.../<id>.
        if is_id(part) {
            let runtime = match parent {
                Some("docker") => Some("docker"),
                // Under a pod's directory: a CRI engine, which one unknown.
                _ if pod_uid.is_some() => None,
                _ => continue,
            };
            return Some(Hint {
                runtime,
                id: part.to_string(),
                pod_uid,
            });
        }
        if let Some(id) = part.strip_prefix("libpod-").filter(|id| is_id(id)) {
            return Some(Hint {
                runtime: Some("podman"),
                id: id.to_string(),
                pod_uid,
            });
        }
    }
    None
}

/// A systemd scope named for a container: `docker-<id>.scope` and the like.
/// Monitor processes (conmon) have scopes of their own and are not containers.
fn scope(part: &str) -> Option<(Option<&'static str>, String)> {
    let name = part.strip_suffix(".scope")?;
    const PREFIXES: &[(&str, &str)] = &[
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
        ("nerdctl-", "containerd"),
        ("runc-", "runc"),
        ("crun-", "crun"),
    ];
    if name.contains("conmon") {
        return None;
    }
    PREFIXES.iter().find_map(|(prefix, runtime)| {
        let id = name.strip_prefix(prefix)?;
        (is_id(id) || matches!(*runtime, "runc" | "crun") && !id.is_empty())
            .then(|| (Some(*runtime), id.to_string()))
    })
}

/// `kubepods-besteffort-pod<uid>.slice` (systemd, `_` for `-`) or `pod<uid>` (cgroupfs).
fn pod_uid(part: &str) -> Option<String> {
    let part = part.strip_suffix(".slice").unwrap_or(part);
    let uid = part
        .rsplit_once("-pod")
        .map(|(_, u)| u)
        .or_else(|| part.strip_prefix("pod"))?;
    let uid = uid.replace('_', "-");
    (uid.len() == 36 && uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(uid)
}

/// Engines' container ids: 64 hex digits.
pub fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The last component of a cgroup path: where runc and crun, without an
/// engine, put a container (`/<id>`, under the runtime's own cgroup).
pub fn leaf(path: &str) -> Option<&str> {
    path.rsplit('/').next().filter(|l| !l.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a9b0c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

    fn hint(path: &str) -> Option<(Option<&'static str>, String, Option<String>)> {
        classify(path).map(|h| (h.runtime, h.id, h.pod_uid))
    }

    #[test]
    fn engines() {
        let uid = "0d6a5f8e-1b2c-4d3e-8f90-a1b2c3d4e5f6";
        let slice = uid.replace('-', "_");
        let cases = [
            (format!("/docker/{ID}"), Some("docker"), ID, None),
            (
                format!("/system.slice/docker-{ID}.scope"),
                Some("docker"),
                ID,
                None,
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{slice}.slice/cri-containerd-{ID}.scope"
                ),
                Some("containerd"),
                ID,
                Some(uid),
            ),
            (
                format!("/kubepods/besteffort/pod{uid}/{ID}"),
                None,
                ID,
                Some(uid),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{slice}.slice/crio-{ID}.scope"),
                Some("cri-o"),
                ID,
                Some(uid),
            ),
            (
                format!("/machine.slice/libpod-{ID}.scope/container"),
                Some("podman"),
                ID,
                None,
            ),
            (
                format!("/libpod_parent/libpod-{ID}"),
                Some("podman"),
                ID,
                None,
            ),
            (
                "/system.slice/runc-web.scope".to_string(),
                Some("runc"),
                "web",
                None,
            ),
        ];
        for (path, runtime, id, pod) in cases {
            assert_eq!(
                hint(&path),
                Some((runtime, id.to_string(), pod.map(String::from))),
                "{path}"
            );
        }
    }

    #[test]
    fn not_containers() {
        for path in [
            "/",
            "/user.slice/user-0.slice/session-1.scope",
            "/system.slice/crio-conmon-abc.scope",
            "/system.slice/docker.service",
            "/docker/notanid",
        ] {
            assert_eq!(classify(path), None, "{path}");
        }
    }

    #[test]
    fn proc_cgroup_lines() {
        let text = "9:name=systemd:/c1\n4:memory:/x/c1\n3:cpuset:/c1\n0::/\n";
        assert_eq!(paths(text), ["/", "/c1", "/x/c1"]);
        assert_eq!(leaf("/x/c1"), Some("c1"));
        assert_eq!(leaf("/"), None);
    }
}
