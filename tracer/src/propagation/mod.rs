//! Joins each mount-changing syscall with the mounts the kernel attached or
//! detached because of it, in every namespace: from fanotify mount
//! notifications where the kernel has them, else by re-reading the namespaces
//! the model says the call can reach.
pub mod correlator;
pub mod fanotify;
mod lineage;
mod placement;

pub use correlator::Correlator;

use crate::{
    decode::Call,
    model::Mount,
    record::{Syscall, Value},
};

/// A mount the kernel attached, read and located, kept out of the model
/// until the records of the call that made it are out (see
/// `Correlator::settle`).
pub struct Unsettled {
    pub ns: u32,
    pub mount: Mount,
    /// The process the kernel named as its cause.
    pub pid: u32,
    /// When the read that returned its event ended (CLOCK_MONOTONIC ns).
    pub read_at: u64,
}

/// How propagation is seen (`--propagation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// fanotify where the kernel has mount notifications, diff otherwise.
    Auto,
    Fanotify,
    Diff,
    Off,
}

/// The mode in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Fanotify,
    Diff,
    Off,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Fanotify => "fanotify",
            Mode::Diff => "diff",
            Mode::Off => "off",
        }
    }
}

const MS_REMOUNT: u64 = 0x20;
const MS_PROPAGATION: u64 = (1 << 17) | (1 << 18) | (1 << 19) | (1 << 20);

/// What a successful syscall may have done to mount tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Attached, detached or moved mounts.
    Mounts,
    /// Changed propagation types (no mount comes or goes).
    Propagation,
    /// Moved the caller (or made a child) into another namespace: pid to find it by.
    Namespace(u32),
}

fn flags(s: &Syscall, name: &str) -> u64 {
    match s.arg(name) {
        Some(Value::Flags { raw, .. }) => *raw,
        _ => 0,
    }
}

pub fn effect(s: &Syscall) -> Effect {
    if s.failed() {
        return Effect::None;
    }
    match s.call {
        Call::Mount => {
            let f = flags(s, "flags");
            if f & MS_PROPAGATION != 0 {
                Effect::Propagation
            } else if f & MS_REMOUNT != 0 {
                Effect::None
            } else {
                Effect::Mounts
            }
        }
        Call::Umount | Call::MoveMount | Call::PivotRoot => Effect::Mounts,
        Call::MountSetattr if flags(s, "propagation") != 0 => Effect::Propagation,
        Call::Unshare | Call::Setns if s.mntns_after != s.mntns_before => Effect::Namespace(s.tid),
        Call::Clone | Call::Clone3 => match s.arg("child_tid") {
            Some(Value::UInt(t)) => Effect::Namespace(*t as u32),
            _ => Effect::None,
        },
        _ => Effect::None,
    }
}

/// The path a syscall mounts at or unmounts, absolute where it can be known.
pub fn target(s: &Syscall) -> Option<String> {
    let names: &[&str] = match s.call {
        Call::Mount | Call::Umount => &["target_resolved", "target"],
        Call::MoveMount => &["to_path_resolved", "to_path"],
        Call::PivotRoot => &["new_root_resolved", "new_root"],
        _ => return None,
    };
    path_arg(s, names)
}

/// What a bind mount(2) copies from, absolute where it can be known.
pub fn source(s: &Syscall) -> Option<String> {
    match s.call {
        Call::Mount => path_arg(s, &["source_resolved", "source"]),
        _ => None,
    }
}

fn path_arg(s: &Syscall, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match s.arg(n) {
        Some(Value::Str {
            bytes,
            truncated: false,
            unreadable: false,
        }) if bytes.first() == Some(&b'/') => {
            let p = String::from_utf8_lossy(bytes).into_owned();
            let t = p.trim_end_matches('/');
            Some(if t.is_empty() { "/".into() } else { t.into() })
        }
        _ => None,
    })
}
