//! Which records the user asked to see.
use crate::{
    cli::Cli,
    container::Container,
    decode::Call,
    record::{Propagated, Syscall},
};

#[derive(Debug, Default)]
pub struct Filter {
    pids: Vec<u32>,
    comms: Vec<String>,
    mntns: Vec<u32>,
    containers: Vec<String>,
    calls: Vec<Call>,
    uids: Vec<u32>,
    failed: bool,
}

impl Filter {
    pub fn from_cli(cli: &Cli) -> Filter {
        Filter {
            pids: cli.pid.clone(),
            comms: cli.comm.clone(),
            mntns: cli.mntns.clone(),
            containers: cli.container.clone(),
            calls: cli.call.clone(),
            uids: cli.uid.clone(),
            failed: cli.failed,
        }
    }

    /// A syscall with the mounts it changed: --mntns also matches a call made
    /// elsewhere whose mounts propagated into that namespace.
    pub fn matches(&self, s: &Syscall, effects: &[Propagated]) -> bool {
        fn any<T: PartialEq>(set: &[T], v: &T) -> bool {
            set.is_empty() || set.contains(v)
        }
        any(&self.pids, &s.pid)
            && any(&self.comms, &s.comm)
            && any(&self.calls, &s.call)
            && any(&self.uids, &s.uid)
            && (self.mntns.is_empty()
                || self.mntns.contains(&s.mntns_before)
                || self.mntns.contains(&s.mntns_after)
                || effects.iter().any(|p| self.mntns.contains(&p.mntns)))
            && (self.containers.is_empty()
                || self.container(s.container.as_deref())
                || effects
                    .iter()
                    .any(|p| self.container(p.container.as_deref())))
            && (!self.failed || s.failed())
    }

    /// Whether a change with no syscall seen (a mount no call explains, a
    /// namespace that ended) is shown: only namespace and pid filters can
    /// speak of it.
    pub fn matches_unexplained(
        &self,
        mntns: u32,
        pid: Option<u32>,
        container: Option<&Container>,
    ) -> bool {
        self.comms.is_empty()
            && self.calls.is_empty()
            && self.uids.is_empty()
            && !self.failed
            && (self.mntns.is_empty() || self.mntns.contains(&mntns))
            && (self.pids.is_empty() || pid.is_some_and(|c| self.pids.contains(&c)))
            && (self.containers.is_empty() || self.container(container))
    }

    fn container(&self, c: Option<&Container>) -> bool {
        c.is_some_and(|c| self.containers.iter().any(|q| c.matches(q)))
    }

    /// The one pid the kernel can filter on, if exactly one was given.
    pub fn kernel_tgid(&self) -> u32 {
        match self.pids.as_slice() {
            [p] => *p,
            _ => 0,
        }
    }
}
