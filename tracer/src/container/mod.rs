//! Which container a process or a mount namespace belongs to: from the
//! process's cgroup path (every engine names its cgroups after the container)
//! and the OCI runtime's state directory (bundle, init pid, annotations).
//!
//! Resolved once per cgroup and cached; a lookup reads only procfs and the
//! runtimes' small state files, never an engine's API socket, so the event
//! stream never waits on a daemon.
pub mod cgroup;
pub mod docker;
pub mod state;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use state::{BundleConfig, StateRoot};

/// Runtime state roots read by default: runc's and crun's own (also used by
/// podman and CRI-O), and containerd's per-namespace runc roots.
const DEFAULT_ROOTS: &[&str] = &["/run/runc", "/run/crun"];
const CONTAINERD_RUNC: &str = "/run/containerd/runc";

/// Caches are dropped whole past these sizes (they rebuild from procfs).
const MAX_PROCS: usize = 1 << 16;
const MAX_CGROUPS: usize = 1 << 14;
/// How long a container whose runtime has not written its state yet is looked up again.
const SETTLE: Duration = Duration::from_secs(30);
/// How long a namespace must have been in no container to be taken as
/// staying so.
const OUTSIDE_SETTLE: Duration = Duration::from_secs(10);

/// One container, as far as it can be known.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Container {
    pub id: String,
    /// docker, containerd, cri-o, podman, runc, crun; `oci` when only a
    /// runtime state directory names it.
    pub runtime: String,
    pub name: Option<String>,
    pub pod: Option<String>,
    pub pod_namespace: Option<String>,
    pub pod_uid: Option<String>,
    pub init_pid: Option<u32>,
    pub bundle: Option<PathBuf>,
    pub config: Option<BundleConfig>,
}

impl Container {
    /// Short form for a column: the name, else the id's first 12 characters.
    pub fn label(&self) -> &str {
        self.name
            .as_deref()
            .unwrap_or_else(|| self.id.get(..12).unwrap_or(&self.id))
    }

    /// `--container` matching: an id prefix or the exact name.
    pub fn matches(&self, query: &str) -> bool {
        !query.is_empty() && (self.id.starts_with(query) || self.name.as_deref() == Some(query))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "runtime": self.runtime,
            "name": self.name,
            "pod": self.pod,
            "pod_namespace": self.pod_namespace,
            "pod_uid": self.pod_uid,
            "init_pid": self.init_pid,
            "bundle": self.bundle,
        })
    }

    /// Everything the runtime has written is in.
    fn complete(&self) -> bool {
        self.init_pid.is_some() && (self.runtime != "docker" || self.name.is_some())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no running container matches {0:?} (by id prefix or name)")]
    NotFound(String),
    #[error("{query:?} matches {} containers: {}", .ids.len(), .ids.join(", "))]
    Ambiguous { query: String, ids: Vec<String> },
}

struct Cached {
    container: Option<Arc<Container>>,
    first: Instant,
}

/// The resolver and its caches.
pub struct Containers {
    extra: Vec<StateRoot>,
    roots: Vec<StateRoot>,
    daemons: Vec<docker::Daemon>,
    daemons_read: Option<Instant>,
    by_cgroup: HashMap<String, Cached>,
    /// Processes found in a container. Those found in none are read again
    /// each time (one small procfs read): a runtime moves its new process
    /// into the container's cgroup only after cloning it.
    by_proc: HashMap<(u32, u32), Arc<Container>>,
    /// Namespaces a container process was found in by its cgroup (never
    /// the host's): for processes in them that are gone, or that a runtime
    /// put there without moving them into the container's cgroup.
    by_ns: HashMap<u32, (Arc<Container>, SystemTime)>,
    /// Entries of namespaces whose inode number a new namespace took before
    /// their end was reported (ends are reported on the tick).
    retired: HashMap<u32, (Arc<Container>, SystemTime)>,
    host_ns: u32,
    /// Namespaces searched for a live process this tick (a /proc scan each).
    searched: std::collections::HashSet<u32>,
    /// Namespaces found in no container, and since when: a call or a copy
    /// there costs no lookup through another process. Young ones are asked
    /// again each tick (a runtime moves a new namespace's process into its
    /// container's cgroup after making it); old ones stay until they end.
    outside_ns: HashMap<u32, Instant>,
    /// Namespaces made while mnttrace watched, and when: only these can be
    /// a container's whose process a runtime has yet to move into its
    /// cgroup. One already there at start-up that is in no container is
    /// settled at once: asking a thousand such namespaces again each second
    /// made the first copies of a mount after each tick wait for a thousand
    /// cgroup reads.
    born: HashMap<u32, Instant>,
    /// Processes (not runtimes) found in no container this tick: a storm of
    /// calls costs one cgroup read a second, not one each. A process moved
    /// into a container's cgroup later is seen at the next tick; runtimes,
    /// which do that to their own children, are never cached this way.
    outside_proc: std::collections::HashSet<(u32, u32)>,
}

impl Containers {
    /// `extra`: state roots named on the command line (`--runtime-root`).
    pub fn new(extra: &[PathBuf]) -> Containers {
        let mut c = Containers {
            extra: extra.iter().map(StateRoot::local).collect(),
            roots: Vec::new(),
            daemons: Vec::new(),
            daemons_read: None,
            by_cgroup: HashMap::new(),
            by_proc: HashMap::new(),
            by_ns: HashMap::new(),
            retired: HashMap::new(),
            searched: Default::default(),
            outside_ns: Default::default(),
            born: Default::default(),
            outside_proc: Default::default(),
            host_ns: std::fs::metadata("/proc/1/ns/mnt")
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m) as u32)
                .unwrap_or(0),
        };
        c.rediscover();
        c
    }

    /// Finds the engines and state roots on the machine again.
    fn rediscover(&mut self) {
        self.daemons = docker::Daemon::discover();
        self.daemons_read = Some(Instant::now());
        let mut roots = self.extra.clone();
        roots.extend(self.daemons.iter().map(|d| d.state_root()));
        roots.extend(DEFAULT_ROOTS.iter().map(StateRoot::local));
        if let Ok(dir) = std::fs::read_dir(CONTAINERD_RUNC) {
            roots.extend(dir.flatten().map(|e| StateRoot {
                engine: Some("containerd"),
                ..StateRoot::local(e.path())
            }));
        }
        self.roots = roots;
    }

    /// The container process `pid` (in namespace `mntns`) belongs to; None
    /// when it is in none or is gone.
    pub fn of_process(&mut self, pid: u32, mntns: u32) -> Option<Arc<Container>> {
        self.lookup(pid, mntns).flatten()
    }

    /// The container of a call's process; if the process is gone already,
    /// that of its namespace, through `witness`, another process in it.
    /// `comm` tells whether it may be a runtime working on a container.
    pub fn of_call(
        &mut self,
        pid: u32,
        comm: &str,
        mntns: u32,
        witness: Option<u32>,
    ) -> Option<Arc<Container>> {
        let runtime = comm.starts_with("runc") || comm.starts_with("crun");
        if !runtime && self.outside_proc.contains(&(pid, mntns)) {
            return self.of_ns(mntns, witness);
        }
        match self.lookup(pid, mntns) {
            Some(Some(c)) => Some(c),
            found => {
                if found.is_some() && !runtime && self.outside_proc.len() < MAX_PROCS {
                    self.outside_proc.insert((pid, mntns));
                }
                if found.is_some()
                    && runtime
                    && let Some(c) = self.of_runtime_call(pid).map(Arc::new)
                {
                    self.by_proc.insert((pid, mntns), c.clone());
                    return Some(c);
                }
                self.of_ns(mntns, witness)
            }
        }
    }

    /// The container whose namespace `mntns` is: as found before, through
    /// `witness` (a process the model knows in it), or through any live
    /// process in it (runc's process that made it has exited by now).
    pub fn of_ns(&mut self, mntns: u32, witness: Option<u32>) -> Option<Arc<Container>> {
        if let Some((c, _)) = self.by_ns.get(&mntns) {
            return Some(c.clone());
        }
        if self.outside_ns.contains_key(&mntns) {
            return None;
        }
        let c = match witness.and_then(|w| self.lookup(w, mntns)) {
            Some(c) => c,
            None if mntns != self.host_ns && self.searched.insert(mntns) => {
                crate::model::source::member_of(mntns).and_then(|pid| self.of_process(pid, mntns))
            }
            None => return None,
        };
        if c.is_none() {
            if self.outside_ns.len() >= MAX_CGROUPS {
                self.outside_ns
                    .retain(|_, since| since.elapsed() >= OUTSIDE_SETTLE);
            }
            let since = if self.born.contains_key(&mntns) {
                Instant::now()
            } else {
                Instant::now()
                    .checked_sub(OUTSIDE_SETTLE)
                    .unwrap_or_else(Instant::now)
            };
            self.outside_ns.entry(mntns).or_insert(since);
        }
        c
    }

    /// None: the process is gone.
    fn lookup(&mut self, pid: u32, mntns: u32) -> Option<Option<Arc<Container>>> {
        if let Some(c) = self.by_proc.get(&(pid, mntns)) {
            return Some(Some(c.clone()));
        }
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let c = self.of_cgroup(&text);
        if let Some(c) = &c
            && mntns != self.host_ns
        {
            if self.by_ns.len() >= MAX_CGROUPS {
                self.by_ns.clear();
            }
            self.outside_ns.remove(&mntns);
            self.by_ns
                .entry(mntns)
                .or_insert_with(|| (c.clone(), SystemTime::now()));
        }
        if self.by_proc.len() >= MAX_PROCS {
            self.by_proc.clear();
        }
        if let Some(c) = &c {
            self.by_proc.insert((pid, mntns), c.clone());
        }
        Some(c)
    }

    /// A runtime process working on a container before its process is in
    /// the container's cgroup (`crun run` cloning it, `runc exec` joining
    /// its namespaces): named by the runtime's command line, or its parent's
    /// for `runc init`, and confirmed by the runtime's state directory.
    fn of_runtime_call(&mut self, pid: u32) -> Option<Container> {
        let args = |pid: u32| -> Option<Vec<String>> {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some(
                raw.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            )
        };
        let runtime = |a: &[String]| {
            a.first()
                .and_then(|a0| a0.rsplit('/').next())
                .is_some_and(|b| b == "runc" || b == "crun")
        };
        let mut pid = pid;
        let mut a = args(pid)?;
        // runc's init forks twice (runc:[0:PARENT], [1:CHILD], [2:INIT]),
        // all "runc init": the invocation naming the id is above them.
        for _ in 0..4 {
            if !runtime(&a) {
                return None;
            }
            if a.get(1).is_none_or(|s| s != "init") {
                break;
            }
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            pid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            a = args(pid)?;
        }
        let sub = a
            .iter()
            .position(|x| matches!(x.as_str(), "run" | "create" | "start" | "exec"))?;
        let id = a[sub + 1..]
            .iter()
            .filter(|x| !x.starts_with('-'))
            .find(|x| self.roots.iter().any(|r| r.has(x)))?
            .clone();
        let mut c = Container {
            runtime: "oci".into(),
            id,
            ..Default::default()
        };
        self.enrich(&mut c);
        Some(c)
    }

    /// Namespace `mntns` is new: its inode number may have named a dead
    /// namespace whose end is still to be reported.
    pub fn forget_ns(&mut self, mntns: u32) {
        self.outside_ns.remove(&mntns);
        if self.born.len() >= MAX_CGROUPS {
            self.born.retain(|_, at| at.elapsed() < OUTSIDE_SETTLE);
        }
        self.born.insert(mntns, Instant::now());
        if let Some(old) = self.by_ns.remove(&mntns) {
            if self.retired.len() >= MAX_CGROUPS {
                self.retired.clear();
            }
            self.retired.insert(mntns, old);
        }
        self.by_proc.retain(|(_, ns), _| *ns != mntns);
    }

    /// The container of a namespace that ended at `when`, and forgets it:
    /// the one seen there before `when`, in the namespace now on that inode
    /// or in the one it replaced.
    pub fn ended(&mut self, mntns: u32, when: SystemTime) -> Option<Arc<Container>> {
        self.outside_ns.remove(&mntns);
        if let Some((c, seen)) = self.by_ns.get(&mntns)
            && *seen <= when
        {
            let c = c.clone();
            self.by_ns.remove(&mntns);
            self.by_proc.retain(|(_, ns), _| *ns != mntns);
            return Some(c);
        }
        match self.retired.remove(&mntns) {
            Some((c, seen)) if seen <= when => Some(c),
            Some(other) => {
                self.retired.insert(mntns, other);
                None
            }
            None => None,
        }
    }

    fn of_cgroup(&mut self, text: &str) -> Option<Arc<Container>> {
        if let Some(c) = self.by_cgroup.get(text) {
            return c.container.clone();
        }
        let c = self.resolve(text).map(Arc::new);
        // Not cached: an engine's id whose daemon is not found yet (it was
        // looked for less than a second ago).
        let maybe = || {
            cgroup::paths(text)
                .iter()
                .any(|p| cgroup::leaf(p).is_some_and(cgroup::is_id))
        };
        if c.is_none() && maybe() {
            return None;
        }
        if self.by_cgroup.len() >= MAX_CGROUPS {
            self.by_cgroup.clear();
        }
        self.by_cgroup.insert(
            text.to_string(),
            Cached {
                container: c.clone(),
                first: Instant::now(),
            },
        );
        c
    }

    /// Once a second: containers whose runtime had not written everything
    /// yet (state file, engine name) are read again, for later records.
    pub fn tick(&mut self) {
        self.searched.clear();
        self.outside_ns
            .retain(|_, since| since.elapsed() >= OUTSIDE_SETTLE);
        self.born.retain(|_, at| at.elapsed() < OUTSIDE_SETTLE);
        self.outside_proc.clear();
        let pending: Vec<String> = self
            .by_cgroup
            .iter()
            .filter(|(_, c)| {
                c.first.elapsed() < SETTLE && c.container.as_ref().is_some_and(|c| !c.complete())
            })
            .map(|(k, _)| k.clone())
            .collect();
        if pending.is_empty() {
            return;
        }
        let mut changed = false;
        for text in pending {
            let fresh = self.resolve(&text);
            if let Some(cached) = self.by_cgroup.get_mut(&text)
                && cached.container.as_deref() != fresh.as_ref()
            {
                cached.container = fresh.map(Arc::new);
                changed = true;
            }
        }
        if changed {
            self.by_proc.clear();
        }
    }

    /// Reads what the cgroup path and the runtimes say.
    fn resolve(&mut self, text: &str) -> Option<Container> {
        let paths: Vec<String> = cgroup::paths(text).into_iter().map(String::from).collect();
        for path in &paths {
            if let Some(h) = cgroup::classify(path) {
                let mut c = Container {
                    runtime: h.runtime.unwrap_or("cri").to_string(),
                    id: h.id,
                    pod_uid: h.pod_uid,
                    ..Default::default()
                };
                self.enrich(&mut c);
                return Some(c);
            }
        }
        // runc and crun without an engine: the cgroup's leaf is the id, and
        // the runtime made a directory for it before starting the container.
        let known = |me: &Self, leaf: &str| me.roots.iter().any(|r| r.has(leaf));
        for path in &paths {
            let Some(leaf) = cgroup::leaf(path) else {
                continue;
            };
            // An engine's id under a cgroup parent of the user's choosing
            // (dockerd --cgroup-parent): a daemon started since may hold it.
            if !known(self, leaf) && cgroup::is_id(leaf) && self.stale() {
                self.rediscover();
            }
            if known(self, leaf) {
                let mut c = Container {
                    runtime: "oci".into(),
                    id: leaf.to_string(),
                    ..Default::default()
                };
                self.enrich(&mut c);
                return Some(c);
            }
        }
        None
    }

    /// Whether the daemons were looked for over a second ago.
    fn stale(&self) -> bool {
        self.daemons_read
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
    }

    /// Adds what the runtime's state, the bundle and the engine know.
    fn enrich(&mut self, c: &mut Container) {
        let mut found = self
            .roots
            .iter()
            .find_map(|r| Some((r.read(&c.id)?, r.engine)));
        if found.is_none() && c.runtime == "docker" && self.stale() {
            // A daemon started since: look again, at most once a second.
            self.rediscover();
            found = self
                .roots
                .iter()
                .find_map(|r| Some((r.read(&c.id)?, r.engine)));
        }
        if let Some((s, engine)) = found {
            if c.runtime == "oci" || c.runtime == "cri" && engine.is_none() {
                c.runtime = engine.unwrap_or(s.runtime).to_string();
            }
            c.init_pid = s.init_pid;
            c.bundle = s.bundle;
            c.config = s.bundle_config;
        } else if c.runtime == "oci"
            && let Some(r) = self.roots.iter().find(|r| r.has(&c.id))
        {
            c.runtime = r.engine.unwrap_or(root_runtime(&r.dir)).to_string();
        }
        if let Some(cfg) = &c.config {
            c.pod = cfg.annotation(&["io.kubernetes.pod.name", "io.kubernetes.cri.sandbox-name"]);
            c.pod_namespace = cfg.annotation(&[
                "io.kubernetes.pod.namespace",
                "io.kubernetes.cri.sandbox-namespace",
            ]);
            c.pod_uid = c.pod_uid.take().or_else(|| {
                cfg.annotation(&["io.kubernetes.pod.uid", "io.kubernetes.cri.sandbox-uid"])
            });
            c.name = cfg.annotation(&[
                "io.kubernetes.container.name",
                "io.kubernetes.cri.container-name",
                "nerdctl/name",
            ]);
        }
        if c.runtime == "docker" {
            c.name = self.daemons.iter().find_map(|d| d.name(&c.id));
        }
    }

    /// Every container with a process on the machine, by its namespace:
    /// `namespaces` gives each namespace's inode and a process in it.
    pub fn running(
        &mut self,
        namespaces: impl IntoIterator<Item = (u32, u32)>,
    ) -> Vec<(u32, Arc<Container>)> {
        namespaces
            .into_iter()
            .filter_map(|(ns, pid)| Some((ns, self.of_process(pid, ns)?)))
            .collect()
    }

    /// The one running container `query` names (id prefix or name).
    pub fn find(
        &mut self,
        query: &str,
        namespaces: impl IntoIterator<Item = (u32, u32)>,
    ) -> Result<(u32, Arc<Container>), ContainerError> {
        let mut hits: Vec<(u32, Arc<Container>)> = self
            .running(namespaces)
            .into_iter()
            .filter(|(_, c)| c.matches(query))
            .collect();
        // An exact id or name beats prefixes.
        if hits.len() > 1
            && let Some(i) = hits
                .iter()
                .position(|(_, c)| c.id == query || c.name.as_deref() == Some(query))
        {
            return Ok(hits.swap_remove(i));
        }
        match hits.len() {
            0 => Err(ContainerError::NotFound(query.into())),
            1 => Ok(hits.remove(0)),
            _ => Err(ContainerError::Ambiguous {
                query: query.into(),
                ids: hits.iter().map(|(_, c)| c.id.clone()).collect(),
            }),
        }
    }
}

/// A runtime named by its state root's path (`/run/crun` → crun).
fn root_runtime(dir: &std::path::Path) -> &'static str {
    let s = dir.to_string_lossy();
    if s.contains("crun") {
        "crun"
    } else if s.contains("runc") {
        "runc"
    } else {
        "oci"
    }
}
