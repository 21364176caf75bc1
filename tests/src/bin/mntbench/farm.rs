//! The bench's side of `nsfarm`: N namespaces under one shared peer group,
//! built in a private namespace tree of the farm's own, and gone with it.
use std::{
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, Result};
use mnttrace_tests::link::Link;

use crate::proc::Guard;

/// Directories under the shared mount that mounts go on (`mount K`).
pub const SLOTS: usize = 64;

pub struct Farm {
    guard: Guard,
    link: Option<Link>,
    /// The process whose namespace holds the original of the shared mount;
    /// its mount(2) calls are the ones measured.
    pub pid: u32,
    pub n: usize,
    /// Mounts in each namespace's table.
    pub mounts: u64,
    pub setup_ms: f64,
    /// Where the slots are, as the farm's namespaces see it.
    pub peers: String,
    _dir: tempfile::TempDir,
}

impl Farm {
    pub fn start(n: usize, mounts: usize) -> Result<Farm> {
        let dir = tempfile::Builder::new()
            .prefix("mntbench-farm-")
            .tempdir()?;
        let mut cmd = Command::new(crate::beside("nsfarm"));
        cmd.arg(dir.path())
            .args([n, mounts, SLOTS].map(|v| v.to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut guard = Guard::spawn(&mut cmd)?;
        let (link, hello) = Link::open(guard.child(), "nsfarm").context("nsfarm's hello")?;
        Ok(Farm {
            pid: hello["pid"].as_u64().context("pid")? as u32,
            n,
            mounts: hello["mounts"].as_u64().unwrap_or(0),
            setup_ms: hello["setup_ms"].as_f64().unwrap_or(0.0),
            peers: format!("{}/x", dir.path().display()),
            guard,
            link: Some(link),
            _dir: dir,
        })
    }

    fn ask(&mut self, op: &str, k: usize) -> Result<i64> {
        let link = self.link.as_mut().context("farm stopped")?;
        let v = link.ask(&format!("{op} {k}"))?;
        v["ret"].as_i64().context("ret")
    }

    /// mount(2) of a tmpfs on slot `k`: one copy in every namespace.
    pub fn mount(&mut self, k: usize) -> Result<i64> {
        self.ask("mount", k)
    }

    pub fn umount(&mut self, k: usize) -> Result<i64> {
        self.ask("umount", k)
    }

    pub fn target(&self, k: usize) -> String {
        format!("{}/{k}", self.peers)
    }
}

impl Drop for Farm {
    /// Its stdin's end has it kill and reap every namespace's process
    /// before exiting; the guard kills it if it does not.
    fn drop(&mut self) {
        drop(self.link.take());
        let _ = self.guard.wait(Duration::from_secs(30));
    }
}
