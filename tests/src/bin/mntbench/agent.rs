//! mnttrace under measurement: started, timed until attached, its output
//! stamped on arrival.
use std::{
    io::Read,
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        mpsc::{Receiver, Sender, channel},
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
    /// Output lines, in batches of one read(2) each, with the
    /// CLOCK_MONOTONIC ns at which that read returned.
    pub lines: Option<Receiver<(u64, Vec<String>)>>,
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
            std::thread::spawn(move || read_stamped(out, tx));
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

/// Reads `out` until it ends, each read's whole lines stamped as it returns
/// (every line in it had arrived by then) and sent on as one batch. Parsing
/// here would delay the stamps of the lines behind. With a stamp and a send
/// per line (the receiver parsing each), a mount's last copy was stamped
/// up to 1.1-5.1 ms after mnttrace had written it (the worst of each of 4
/// runs of 20 mounts at 1,000 namespaces, timestamps put in mnttrace for a
/// while); this way, 1.2-1.4 ms.
fn read_stamped(mut out: impl Read, tx: Sender<(u64, Vec<String>)>) {
    let mut buf = vec![0u8; 1 << 20];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match out.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let at = proc::monotonic_ns();
        tail.extend_from_slice(&buf[..n]);
        let whole = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let lines: Vec<String> = tail[..whole]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        tail.drain(..whole);
        if !lines.is_empty() && tx.send((at, lines)).is_err() {
            return;
        }
    }
}
