//! Which records the user asked to see.
use crate::{cli::Cli, decode::Call, record::Syscall};

#[derive(Debug, Default)]
pub struct Filter {
    pids: Vec<u32>,
    comms: Vec<String>,
    mntns: Vec<u32>,
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
            calls: cli.call.clone(),
            uids: cli.uid.clone(),
            failed: cli.failed,
        }
    }

    pub fn matches(&self, s: &Syscall) -> bool {
        fn any<T: PartialEq>(set: &[T], v: &T) -> bool {
            set.is_empty() || set.contains(v)
        }
        any(&self.pids, &s.pid)
            && any(&self.comms, &s.comm)
            && any(&self.calls, &s.call)
            && any(&self.uids, &s.uid)
            && (self.mntns.is_empty()
                || self.mntns.contains(&s.mntns_before)
                || self.mntns.contains(&s.mntns_after))
            && (!self.failed || s.failed())
    }

    /// The one pid the kernel can filter on, if exactly one was given.
    pub fn kernel_tgid(&self) -> u32 {
        match self.pids.as_slice() {
            [p] => *p,
            _ => 0,
        }
    }
}
