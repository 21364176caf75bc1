//! What mnttrace reports: decoded, owned records, independent of output format.
use std::time::SystemTime;

use crate::decode::Call;

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
    pub args: Vec<Arg>,
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
}

impl LossReason {
    pub fn name(self) -> &'static str {
        match self {
            LossReason::RingbufFull => "ringbuf_full",
            LossReason::EnterMapFull => "enter_map_full",
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            LossReason::RingbufFull => "ring buffer full",
            LossReason::EnterMapFull => "per-thread enter map full",
        }
    }
}

/// Events lost since the previous report.
#[derive(Clone, Debug)]
pub struct Lost {
    pub time: SystemTime,
    pub since: SystemTime,
    pub reason: LossReason,
    pub count: u64,
    pub total: u64,
}

pub enum Record {
    Syscall(Syscall),
    Lost(Lost),
}
