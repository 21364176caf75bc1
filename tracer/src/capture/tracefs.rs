//! Makes tracefs reachable for tracepoint attach without touching the host.
//!
//! aya resolves a tracepoint's id through /sys/kernel/tracing (or
//! /sys/kernel/debug/tracing). Where tracefs is not mounted, mnttrace moves
//! itself into a mount namespace of its own (slave of the host's, so nothing
//! propagates back) and mounts tracefs there; the mount dies with the process.
use std::path::{Path, PathBuf};

use nix::{
    mount::{MsFlags, mount},
    sched::{CloneFlags, unshare},
};

pub const TRACEFS: &str = "/sys/kernel/tracing";
const TRACEFS_LEGACY: &str = "/sys/kernel/debug/tracing";

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted and mnttrace cannot make a private mount namespace for it: unshare(CLONE_NEWNS): {0}"
    )]
    Unshare(nix::Error),
    #[error("tracefs is not mounted and mnttrace cannot isolate its own mounts: {0}")]
    Isolate(nix::Error),
    #[error(
        "tracefs is not available: mount -t tracefs on {TRACEFS} failed: {0} (kernel without CONFIG_TRACING?)"
    )]
    Mount(nix::Error),
}

/// Where tracefs was found, and whether mnttrace mounted it privately.
#[derive(Debug)]
pub struct Tracefs {
    pub path: PathBuf,
    pub private: bool,
}

fn populated(p: &Path) -> bool {
    p.join("events").is_dir()
}

/// Must run before any thread is spawned: unshare(CLONE_NEWNS) applies to the
/// calling thread only, and threads made later inherit it.
pub fn ensure() -> Result<Tracefs, TracefsError> {
    for p in [TRACEFS, TRACEFS_LEGACY] {
        if populated(Path::new(p)) {
            return Ok(Tracefs {
                path: p.into(),
                private: false,
            });
        }
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(TracefsError::Unshare)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(TracefsError::Isolate)?;
    mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(TracefsError::Mount)?;
    log::debug!("mounted tracefs at {TRACEFS} in mnttrace's own mount namespace");
    Ok(Tracefs {
        path: TRACEFS.into(),
        private: true,
    })
}

impl Tracefs {
    /// Whether the running kernel has this syscall tracepoint.
    pub fn has_syscall_event(&self, name: &str) -> bool {
        self.path.join("events/syscalls").join(name).is_dir()
    }
}
