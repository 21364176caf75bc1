//! Checks, before anything is loaded, that mnttrace holds the capabilities
//! this run needs, and names exactly the missing ones in one line. Without
//! the check a missing capability surfaces as an EPERM from deep inside, or
//! worse, as nothing: listmount(2) of a namespace mnttrace may not read and
//! /proc/PID entries of a process it may not inspect just leave that
//! namespace out of the stream.
//!
//! What needs what (found by dropping each from the bounding set, Linux 6.18;
//! README, "Capabilities"):
//! - CAP_SYS_PTRACE, always: /proc/PID/ns/mnt, mountinfo, root and cwd of a
//!   process are behind a ptrace read check, which also refuses a caller
//!   lacking any capability the target holds. With a reduced set that is
//!   every root daemon on the host, pid 1 included.
//! - CAP_SYS_ADMIN, to mount tracefs in mnttrace's own namespace when it is
//!   not mounted, and to read (statmount/listmount) and watch (fanotify mount
//!   marks) other namespaces. Reading tables from mountinfo needs only the
//!   ptrace check, and fanotify is then not used.
//! - CAP_BPF and CAP_PERFMON for the programs and their tracepoints, only
//!   when CAP_SYS_ADMIN is not held: the kernel accepts CAP_SYS_ADMIN for
//!   both (`bpf_token_capable`, `perfmon_capable`).
//!
//! Not needed: CAP_SYS_RESOURCE (the RLIMIT_MEMLOCK bump may fail; kernels
//! since 5.11 charge BPF memory to the cgroup), CAP_DAC_OVERRIDE. Optional:
//! CAP_DAC_READ_SEARCH lets dirfd arguments of processes of other users be
//! resolved (their /proc/PID/fd is mode 0500); without it those `*_resolved`
//! fields are left out, as for any fd /proc no longer shows.
use std::path::Path;

use crate::{
    cli::{Cli, Tables},
    model::Source,
};

/// A capability: its name as capabilities(7) spells it, and its bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    pub name: &'static str,
    bit: u32,
}

pub const CAP_SYS_PTRACE: Cap = Cap {
    name: "CAP_SYS_PTRACE",
    bit: 19,
};
pub const CAP_SYS_ADMIN: Cap = Cap {
    name: "CAP_SYS_ADMIN",
    bit: 21,
};
pub const CAP_PERFMON: Cap = Cap {
    name: "CAP_PERFMON",
    bit: 38,
};
pub const CAP_BPF: Cap = Cap {
    name: "CAP_BPF",
    bit: 39,
};

/// What mnttrace is about to do, with the choices that change what it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The live stream.
    Trace { tables: Tables },
    /// The views (snapshot, explain, volumes).
    Read { tables: Tables },
}

impl Need {
    pub fn trace(cli: &Cli) -> Need {
        Need::Trace {
            tables: cli.mount_tables,
        }
    }

    pub fn read(cli: &Cli) -> Need {
        Need::Read {
            tables: cli.mount_tables,
        }
    }
}

/// The facts of this machine and this run the answer depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Situation {
    live: bool,
    /// tracefs must be mounted by mnttrace (see `tracefs::ensure`).
    mount_tracefs: bool,
    /// Tables come from statmount(2)/listmount(2), and with them fanotify.
    statmount: bool,
}

impl Situation {
    fn of(need: Need) -> Situation {
        let (live, tables) = match need {
            Need::Trace { tables } => (true, tables),
            Need::Read { tables } => (false, tables),
        };
        Situation {
            live,
            mount_tracefs: live && !tracefs_mounted(),
            // An explicit statmount on a kernel without it is refused later,
            // with its own message.
            statmount: matches!(tables.source(), Ok(Source::Statmount)),
        }
    }
}

/// Where `tracefs::ensure` looks for a mounted tracefs.
fn tracefs_mounted() -> bool {
    [super::tracefs::TRACEFS, "/sys/kernel/debug/tracing"]
        .iter()
        .any(|p| Path::new(p).join("events").is_dir())
}

/// Each capability the run needs, with what for; `alternative` names one
/// that also does (and is then not needed).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    cap: Cap,
    why: String,
    alternative: Option<Cap>,
}

fn held(eff: u64, cap: Cap) -> bool {
    eff & (1 << cap.bit) != 0
}

/// The capabilities `s` takes.
fn requirements(s: Situation) -> Vec<Requirement> {
    let mut admin = Vec::new();
    if s.mount_tracefs {
        admin.push("to mount tracefs in a mount namespace of its own");
    }
    if s.statmount {
        admin.push(if s.live {
            "to read other mount namespaces with statmount(2) and watch them with fanotify"
        } else {
            "to read other mount namespaces with statmount(2)"
        });
    }
    let mut out = Vec::new();
    if !admin.is_empty() {
        out.push(Requirement {
            cap: CAP_SYS_ADMIN,
            why: admin.join(" and "),
            alternative: None,
        });
    }
    if s.live && admin.is_empty() {
        for (cap, why) in [
            (CAP_BPF, "to load the BPF programs"),
            (CAP_PERFMON, "to attach the BPF programs to tracepoints"),
        ] {
            out.push(Requirement {
                cap,
                why: why.into(),
                alternative: Some(CAP_SYS_ADMIN),
            });
        }
    }
    out.push(Requirement {
        cap: CAP_SYS_PTRACE,
        why: "to read other processes' /proc/PID/ns/mnt, mountinfo, root and cwd".into(),
        alternative: None,
    });
    out
}

/// One line: the missing capabilities, each with what it is for, then the
/// whole set this run needs.
#[derive(Debug, thiserror::Error)]
#[error("missing {missing}; this run needs {needed}")]
pub struct MissingCaps {
    missing: String,
    needed: String,
}

fn verdict(reqs: &[Requirement], eff: u64) -> Result<(), MissingCaps> {
    let missing: Vec<String> = reqs
        .iter()
        .filter(|r| !held(eff, r.cap) && !r.alternative.is_some_and(|a| held(eff, a)))
        .map(|r| format!("{} ({})", r.cap.name, r.why))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // CAP_BPF, CAP_PERFMON (or CAP_SYS_ADMIN): the alternative after the
    // last of the requirements it stands in for.
    let needed: Vec<String> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| match r.alternative {
            Some(alt) if reqs.get(i + 1).and_then(|n| n.alternative) != Some(alt) => {
                format!("{} (or {})", r.cap.name, alt.name)
            }
            _ => r.cap.name.to_string(),
        })
        .collect();
    Err(MissingCaps {
        missing: missing.join(", "),
        needed: needed.join(", "),
    })
}

/// Effective capability set from /proc/self/status.
fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

pub fn check(need: Need) -> Result<(), MissingCaps> {
    let Some(eff) = effective() else {
        // Cannot tell; let the kernel answer.
        return Ok(());
    };
    verdict(&requirements(Situation::of(need)), eff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Cap]) -> u64 {
        caps.iter().fold(0, |acc, c| acc | 1 << c.bit)
    }

    const POD: Situation = Situation {
        live: true,
        mount_tracefs: true,
        statmount: true,
    };

    fn error(s: Situation, caps: &[Cap]) -> Option<String> {
        verdict(&requirements(s), set(caps))
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn sys_admin_and_sys_ptrace_trace_where_tracefs_is_not_mounted() {
        assert_eq!(error(POD, &[CAP_SYS_ADMIN, CAP_SYS_PTRACE]), None);
        let e = error(POD, &[CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON]).expect("refused");
        assert!(e.starts_with("missing CAP_SYS_PTRACE ("), "{e}");
        assert!(
            e.ends_with("; this run needs CAP_SYS_ADMIN, CAP_SYS_PTRACE"),
            "{e}"
        );
        let e = error(POD, &[CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE]).expect("refused");
        assert!(
            e.starts_with("missing CAP_SYS_ADMIN (to mount tracefs"),
            "{e}"
        );
    }

    #[test]
    fn without_sys_admin_bpf_and_perfmon_are_named() {
        let s = Situation {
            live: true,
            mount_tracefs: false,
            statmount: false,
        };
        assert_eq!(error(s, &[CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE]), None);
        assert_eq!(error(s, &[CAP_SYS_ADMIN, CAP_SYS_PTRACE]), None);
        let e = error(s, &[CAP_BPF, CAP_SYS_PTRACE]).expect("refused");
        assert_eq!(
            e,
            "missing CAP_PERFMON (to attach the BPF programs to tracepoints); this run needs \
             CAP_BPF, CAP_PERFMON (or CAP_SYS_ADMIN), CAP_SYS_PTRACE"
        );
        let e = error(s, &[CAP_SYS_ADMIN]).expect("refused");
        assert!(e.starts_with("missing CAP_SYS_PTRACE ("), "{e}");
        assert!(
            e.ends_with("needs CAP_BPF, CAP_PERFMON (or CAP_SYS_ADMIN), CAP_SYS_PTRACE"),
            "{e}"
        );
    }

    #[test]
    fn views_need_sys_admin_only_for_statmount() {
        let mut s = Situation {
            live: false,
            mount_tracefs: false,
            statmount: false,
        };
        assert_eq!(error(s, &[CAP_SYS_PTRACE]), None);
        s.statmount = true;
        let e = error(s, &[CAP_SYS_PTRACE]).expect("refused");
        assert!(e.starts_with("missing CAP_SYS_ADMIN (to read other"), "{e}");
        let e = error(s, &[]).expect("refused");
        assert!(e.contains("), CAP_SYS_PTRACE ("), "both named: {e}");
    }
}
