//! What mnttrace reports: decoded, owned records, independent of output format.
use std::{sync::Arc, time::SystemTime};

use crate::{
    container::Container,
    decode::Call,
    model::{Propagation, reach::Relation},
};

/// One argument value, typed so each output can render it faithfully.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Bytes from user memory, as read (not necessarily UTF-8).
    Str {
        bytes: Vec<u8>,
        truncated: bool,
        unreadable: bool,
    },
    Int(i64),
    UInt(u64),
    Flags {
        raw: u64,
        names: Vec<String>,
    },
    Enum {
        raw: u64,
        name: String,
    },
    Null,
}

#[derive(Clone, Debug)]
pub struct Arg {
    pub name: &'static str,
    pub value: Value,
}

/// One mount-related syscall, as seen at its exit.
#[derive(Clone, Debug)]
pub struct Syscall {
    /// Per-run sequence number; later records (propagation) refer to it.
    pub id: u64,
    pub time: SystemTime,
    pub ktime_ns: u64,
    pub latency_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    pub call: Call,
    pub ret: i64,
    pub mntns_before: u32,
    pub mntns_after: u32,
    /// The newest mount's unique id in the caller's namespace before
    /// (umount2) and after (mount, umount2) the call, 0 if not read: see
    /// `tracer_ebpf::Event::newest_before`.
    pub newest_before: u64,
    pub newest_after: u64,
    pub args: Vec<Arg>,
    /// Args whose secret values were replaced by `<redacted>`.
    pub redacted: Vec<&'static str>,
    /// The container the process is in (filled by the agent).
    pub container: Option<Arc<Container>>,
}

impl Syscall {
    pub fn failed(&self) -> bool {
        self.ret < 0
    }

    /// `EINVAL` etc. for a failed call.
    pub fn errno(&self) -> Option<String> {
        if self.ret >= 0 {
            return None;
        }
        let n = i32::try_from(-self.ret).unwrap_or(i32::MAX);
        Some(match nix::errno::Errno::from_raw(n) {
            nix::errno::Errno::UnknownErrno => format!("E{n}"),
            e => format!("{e:?}"),
        })
    }

    pub fn arg(&self, name: &str) -> Option<&Value> {
        self.args.iter().find(|a| a.name == name).map(|a| &a.value)
    }
}

/// Why events were lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossReason {
    RingbufFull,
    EnterMapFull,
    /// The kernel's fanotify queue overflowed: mount events were dropped.
    FanotifyOverflow,
    /// Writing the output failed (disk full, quota, I/O error): records dropped.
    OutputFailed,
    /// mnttrace fell so far behind that mount events waiting for their
    /// syscall were dropped.
    Backlog,
}

impl LossReason {
    pub fn name(self) -> &'static str {
        match self {
            LossReason::RingbufFull => "ringbuf_full",
            LossReason::EnterMapFull => "enter_map_full",
            LossReason::FanotifyOverflow => "fanotify_overflow",
            LossReason::OutputFailed => "output_failed",
            LossReason::Backlog => "backlog",
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            LossReason::RingbufFull => "ring buffer full",
            LossReason::EnterMapFull => "per-thread enter map full",
            LossReason::FanotifyOverflow => "fanotify mount-event queue overflowed",
            LossReason::OutputFailed => "the output could not be written",
            LossReason::Backlog => "mount events waiting for their syscall",
        }
    }
}

/// Events lost since the previous report.
#[derive(Clone, Debug)]
pub struct Lost {
    pub time: SystemTime,
    pub since: SystemTime,
    pub reason: LossReason,
    /// Events (kernel), overflows (fanotify) or records (output) lost.
    pub count: u64,
    pub total: u64,
    /// Output losses: how many of the records were syscall records.
    pub calls: Option<u64>,
    /// fanotify overflows: the namespaces whose tables were read again.
    pub reread: Option<usize>,
}

/// What happened to a mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Attached,
    Detached,
    /// Detached from one place and attached at another (move_mount, MS_MOVE, pivot_root).
    Moved,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Attached => "attached",
            Action::Detached => "detached",
            Action::Moved => "moved",
        }
    }
}

/// How mnttrace knows of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// The kernel told (fanotify event, or a re-read mount table), with the
    /// mount looked up while it existed.
    Observed,
    /// The mount was gone before it could be looked up: where it was comes from
    /// the model (its table before, or the propagation rules).
    Derived,
}

impl Evidence {
    pub fn name(self) -> &'static str {
        match self {
            Evidence::Observed => "observed",
            Evidence::Derived => "derived",
        }
    }
}

/// Which mechanism saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Fanotify,
    Diff,
    /// The first listing of a namespace that appeared while mnttrace ran.
    Listing,
    /// The syscall's own probe: the newest mount of the caller's namespace,
    /// read in the kernel as the call entered and returned (a mount made and
    /// gone before any re-read, in a namespace no mount event is read from).
    Probe,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Fanotify => "fanotify",
            Via::Diff => "diff",
            Via::Listing => "listing",
            Via::Probe => "probe",
        }
    }
}

/// A mount attached to or detached from a namespace, because of a syscall
/// (`cause`) or with none seen.
#[derive(Clone, Debug)]
pub struct Propagated {
    pub time: SystemTime,
    /// Id of the syscall record that caused it.
    pub cause: Option<u64>,
    /// The process the kernel names as the cause, when it names one.
    pub cause_pid: Option<u32>,
    pub mntns: u32,
    pub mnt_id: u64,
    /// Where, in `mntns`; None when neither the kernel nor the model can tell.
    pub path: Option<String>,
    /// For a move, where it was.
    pub from_path: Option<String>,
    pub action: Action,
    pub relation: Option<Relation>,
    pub propagation: Propagation,
    pub fstype: Arc<str>,
    pub source: Arc<str>,
    pub evidence: Evidence,
    pub via: Via,
    /// The container whose namespace `mntns` is (filled by the agent).
    pub container: Option<Arc<Container>>,
}

/// A mount namespace whose last process left: the kernel detached all its
/// mounts at once (not one syscall's doing, so not listed mount by mount).
#[derive(Clone, Debug)]
pub struct Ended {
    pub time: SystemTime,
    pub mntns: u32,
    /// The process whose exit (or last setns/unshare) released it, as the
    /// kernel names it; for a namespace no mount event was read from (none
    /// of its mounts shared or a slave), found gone by the rescan of /proc,
    /// the process last found in it.
    pub pid: Option<u32>,
    pub mounts: usize,
    pub container: Option<Arc<Container>>,
    /// When it was last known alive, if its end was found later than it
    /// happened (a quiet namespace's, by the scan of /proc): its container
    /// is the one seen there before then, not one on its inode number since.
    pub alive_at: Option<SystemTime>,
}

pub enum Record {
    Syscall(Syscall),
    Propagated(Propagated),
    Ended(Ended),
    Lost(Lost),
}
