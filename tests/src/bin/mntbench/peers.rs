//! The tracers compared in the storm: mnttrace, libbpf-tools mountsnoop and
//! an equivalent bpftrace script, each writing to a file on disk. How each is
//! started, when it counts as attached, and how its records of the storm
//! are counted.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::proc::{self, Guard};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracer {
    None,
    Mnttrace,
    /// A diagnostic: `--propagation off` (no fanotify, no mount tables read)
    /// separates the cost of capture and output from that of propagation.
    MnttraceCaptureOnly,
    /// A diagnostic: `--propagation diff` follows propagation without
    /// fanotify, whose marks cost the storm's own syscalls (an event queued
    /// per attach and detach).
    MnttraceDiff,
    Mountsnoop,
    Bpftrace,
}

pub const ALL: [Tracer; 6] = [
    Tracer::None,
    Tracer::Mnttrace,
    Tracer::MnttraceCaptureOnly,
    Tracer::MnttraceDiff,
    Tracer::Mountsnoop,
    Tracer::Bpftrace,
];

impl Tracer {
    pub fn name(self) -> &'static str {
        match self {
            Tracer::None => "none",
            Tracer::Mnttrace => "mnttrace",
            Tracer::MnttraceCaptureOnly => "mnttrace-propagation-off",
            Tracer::MnttraceDiff => "mnttrace-propagation-diff",
            Tracer::Mountsnoop => "mountsnoop",
            Tracer::Bpftrace => "bpftrace",
        }
    }
}

/// mount and umount at sys_enter (arguments kept per thread) and sys_exit
/// (one line with the return value), as mountsnoop prints them. The mount
/// line takes two printf calls: one with five strings exceeds the 512-byte
/// BPF stack in bpftrace 0.17.
pub const BPFTRACE_SCRIPT: &str = r#"
tracepoint:syscalls:sys_enter_mount {
  @src[tid] = str(args->dev_name); @dst[tid] = str(args->dir_name);
  @fs[tid] = str(args->type); @fl[tid] = args->flags; @data[tid] = str(args->data);
}
tracepoint:syscalls:sys_exit_mount {
  printf("%d %s mount(\"%s\", \"%s\", ", pid, comm, @src[tid], @dst[tid]);
  printf("\"%s\", 0x%x, \"%s\") = %d\n", @fs[tid], @fl[tid], @data[tid], args->ret);
  delete(@src[tid]); delete(@dst[tid]); delete(@fs[tid]); delete(@fl[tid]); delete(@data[tid]);
}
tracepoint:syscalls:sys_enter_umount {
  @target[tid] = str(args->name); @ufl[tid] = args->flags;
}
tracepoint:syscalls:sys_exit_umount {
  printf("%d %s umount(\"%s\", 0x%x) = %d\n", pid, comm, @target[tid], @ufl[tid], args->ret);
  delete(@target[tid]); delete(@ufl[tid]);
}
"#;

/// The peers need tracefs, which the host does not mount: each runs in a
/// private mount namespace of its own with tracefs mounted there (gone
/// with it).
fn in_private_tracefs(cmd: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!("mount -t tracefs tracefs /sys/kernel/tracing && exec {cmd}"),
    ]);
    c
}

/// Whether this mnttrace has `--output FILE` (being added while this was written).
pub fn mnttrace_has_output(bin: &str) -> bool {
    Command::new(bin)
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--output"))
}

/// A tracer running, attached.
pub struct Running {
    pub guard: Guard,
    pub out: PathBuf,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub attach_ms: f64,
}

/// Starts `t` writing to `out`; returns once it is attached.
pub fn start(t: Tracer, out: &Path, work: &Path, mnttrace: &str) -> Result<Running> {
    let file = std::fs::File::create(out).with_context(|| format!("{}", out.display()))?;
    let mut cmd = match t {
        Tracer::Mnttrace | Tracer::MnttraceCaptureOnly | Tracer::MnttraceDiff => {
            let mut c = Command::new(mnttrace);
            c.arg("--json");
            match t {
                Tracer::MnttraceCaptureOnly => c.args(["--propagation", "off"]),
                Tracer::MnttraceDiff => c.args(["--propagation", "diff"]),
                _ => &mut c,
            };
            if mnttrace_has_output(mnttrace) {
                c.arg("--output").arg(out).stdout(Stdio::null());
            } else {
                c.stdout(file);
            }
            c
        }
        Tracer::Mountsnoop => {
            let mut c = in_private_tracefs("mountsnoop");
            c.stdout(file);
            c
        }
        Tracer::Bpftrace => {
            let script = work.join("storm.bt");
            std::fs::write(&script, BPFTRACE_SCRIPT)?;
            let mut c = in_private_tracefs(&format!("bpftrace {}", script.display()));
            c.stdout(file);
            c
        }
        Tracer::None => anyhow::bail!("no tracer to start"),
    };
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut guard = Guard::spawn(&mut cmd)?;
    let stderr = proc::collect_lines(guard.child().stderr.take().context("stderr")?);
    let pid = guard.pid;
    let err = stderr.clone();
    let out_path = out.to_path_buf();
    let what = format!("{} attaching", t.name());
    proc::wait_until(&mut guard, Duration::from_secs(120), &what, || match t {
        // Said once attached and its model of every namespace is loaded.
        Tracer::Mnttrace | Tracer::MnttraceCaptureOnly | Tracer::MnttraceDiff => err
            .lock()
            .expect("stderr")
            .iter()
            .any(|l| l.starts_with("mnttrace: tracing")),
        // Its header line is block-buffered in a file, so it shows late: its
        // poll loop, entered after attaching, is the sign instead.
        Tracer::Mountsnoop => proc::comm(pid) == "mountsnoop" && proc::in_poll_loop(pid),
        // "Attaching N probes..." comes before the probes are attached; the
        // poll loop after.
        Tracer::Bpftrace => {
            proc::comm(pid) == "bpftrace"
                && std::fs::read_to_string(&out_path).is_ok_and(|s| s.contains("Attaching"))
                && proc::in_poll_loop(pid)
        }
        Tracer::None => true,
    })
    .with_context(|| format!("stderr: {:?}", stderr.lock().expect("stderr")))?;
    Ok(Running {
        guard,
        out: out.to_path_buf(),
        stderr,
        attach_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

/// What a tracer's output holds of the storm process `pid`.
#[derive(Debug, Default)]
pub struct Count {
    pub mounts: u64,
    pub umounts: u64,
    /// Loss each tracer reports itself, by reason.
    pub lost: BTreeMap<String, u64>,
    /// mnttrace's propagation records caused by the storm.
    pub propagation: u64,
}

pub fn count(t: Tracer, out: &Path, stderr: &[String], pid: u32) -> Result<Count> {
    let text = std::fs::read_to_string(out).with_context(|| format!("{}", out.display()))?;
    let mut c = Count::default();
    let p = pid.to_string();
    match t {
        Tracer::Mnttrace | Tracer::MnttraceCaptureOnly | Tracer::MnttraceDiff => {
            for l in text.lines() {
                let Ok(v) = serde_json::from_str::<Value>(l) else {
                    continue;
                };
                match v["kind"].as_str() {
                    Some("syscall") if v["pid"] == pid => match v["call"].as_str() {
                        Some("mount") => c.mounts += 1,
                        Some("umount2") => c.umounts += 1,
                        _ => {}
                    },
                    Some("propagation") if v["cause_pid"] == pid => c.propagation += 1,
                    Some("lost") => {
                        let reason = v["reason"].as_str().unwrap_or("?").to_string();
                        let total = v["total"].as_u64().unwrap_or(0);
                        let e = c.lost.entry(reason).or_default();
                        *e = (*e).max(total);
                    }
                    _ => {}
                }
            }
        }
        Tracer::Mountsnoop => {
            // COMM PID TID MNT_NS CALL; the storm's comm has no space.
            for l in text.lines() {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.get(1) == Some(&p.as_str()) {
                    match f.get(4) {
                        Some(call) if call.starts_with("mount(") => c.mounts += 1,
                        Some(call) if call.starts_with("umount(") => c.umounts += 1,
                        _ => {}
                    }
                }
            }
            // libbpf-tools name lost perf-buffer samples on stderr; a full
            // ring buffer drops them silently.
            let lost: u64 = stderr
                .iter()
                .filter(|l| l.contains("lost") || l.contains("Lost"))
                .filter_map(|l| l.split_whitespace().find_map(|w| w.parse::<u64>().ok()))
                .sum();
            if lost > 0 {
                c.lost.insert("reported".into(), lost);
            }
        }
        Tracer::Bpftrace => {
            for l in text.lines() {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.first() == Some(&p.as_str()) {
                    match f.get(2) {
                        Some(call) if call.starts_with("mount(") => c.mounts += 1,
                        Some(call) if call.starts_with("umount(") => c.umounts += 1,
                        _ => {}
                    }
                }
                // "Lost N events" at exit.
                if let Some(n) = l.strip_prefix("Lost ").and_then(|r| {
                    r.split_whitespace()
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                }) {
                    *c.lost.entry("reported".into()).or_default() += n;
                }
            }
        }
        Tracer::None => {}
    }
    Ok(c)
}
