//! mnttrace under measurement: started, timed until attached, its output
//! stamped line by line on arrival.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, channel},
    },
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::proc::{self, Guard};

pub struct Agent {
    pub guard: Guard,
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// From just before exec to its `mnttrace: tracing` line (attached, the
    /// model of every namespace loaded).
    pub startup_ms: f64,
    /// Output lines with the CLOCK_MONOTONIC ns at which each was read.
    pub lines: Option<Receiver<(u64, String)>>,
}

/// Starts `mnttrace ARGS`; with `stamp` its stdout is read and stamped, else
/// discarded. Returns once it is attached.
pub fn start(bin: &str, args: &[&str], stamp: bool) -> Result<Agent> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(if stamp { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped());
    let t0 = proc::monotonic_ns();
    let mut guard = Guard::spawn(&mut cmd)?;
    let lines = match guard.child().stdout.take() {
        Some(out) => {
            let (tx, rx) = channel();
            std::thread::spawn(move || {
                // Stamp, then hand over: parsing here would delay the stamps
                // of the lines behind.
                let r = BufReader::with_capacity(1 << 20, out);
                for l in r.lines().map_while(Result::ok) {
                    if tx.send((proc::monotonic_ns(), l)).is_err() {
                        break;
                    }
                }
            });
            Some(rx)
        }
        None => None,
    };
    let stderr = proc::collect_lines(guard.child().stderr.take().context("stderr")?);
    let err = stderr.clone();
    let mut at = 0;
    proc::wait_until(
        &mut guard,
        Duration::from_secs(120),
        "mnttrace start",
        || {
            let ok = err
                .lock()
                .expect("stderr")
                .iter()
                .any(|l| l.starts_with("mnttrace: tracing"));
            if ok && at == 0 {
                at = proc::monotonic_ns();
            }
            ok
        },
    )
    .with_context(|| format!("stderr: {:?}", stderr.lock().expect("stderr")))?;
    Ok(Agent {
        guard,
        stderr,
        startup_ms: at.saturating_sub(t0) as f64 / 1e6,
        lines,
    })
}
