//! Checks the capabilities mnttrace needs before it tries anything, so a
//! missing one is named instead of surfacing as an EPERM from deep inside.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
#[error("mnttrace needs {needed} (run it as root); missing: {missing}")]
pub struct MissingCaps {
    needed: String,
    missing: String,
}

/// Effective capability set from /proc/self/status.
fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// What mnttrace is about to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The live stream: BPF programs, plus CAP_SYS_ADMIN for tracefs, fanotify
    /// mount marks and other namespaces' tables.
    Trace,
    /// The views: other namespaces' tables only.
    Read,
}

pub fn check(need: Need) -> Result<(), MissingCaps> {
    let Some(eff) = effective() else {
        // Cannot tell; let the kernel answer.
        return Ok(());
    };
    let mut needed = match need {
        Need::Trace => vec![("CAP_BPF", CAP_BPF), ("CAP_PERFMON", CAP_PERFMON)],
        Need::Read => vec![],
    };
    needed.push(("CAP_SYS_ADMIN", CAP_SYS_ADMIN));
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(_, bit)| eff & (1 << bit) == 0)
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(MissingCaps {
        needed: needed
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", "),
        missing: missing.join(", "),
    })
}
