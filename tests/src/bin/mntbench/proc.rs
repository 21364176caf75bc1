//! Processes the bench starts and what /proc tells about them. Every one is
//! held by a [`Guard`] that kills and reaps it on every path, a panic
//! included; a graceful stop is SIGINT, reaped with wait4(2) for its rusage.
use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

pub fn monotonic_ns() -> u64 {
    // The clock of the records' ktime_ns (bpf_ktime_get_ns).
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// How a process the bench stopped ended, and what it cost.
#[derive(Clone, Debug, Default)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Peak resident set (ru_maxrss), KiB.
    pub maxrss_kib: u64,
    /// User + system CPU over its whole life, ms.
    pub cpu_ms: f64,
    /// It did not stop on SIGINT and was killed.
    pub killed: bool,
}

impl Exit {
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            _ if self.killed => "killed (ignored SIGINT)".into(),
            (Some(c), _) => format!("exit {c}"),
            (_, Some(s)) => format!("signal {s}"),
            _ => "?".into(),
        }
    }
}

pub struct Guard {
    child: Child,
    reaped: bool,
    pub pid: i32,
}

impl Guard {
    /// Starts `cmd`, which dies with the bench even if the bench is killed
    /// outright (PR_SET_PDEATHSIG, kept across exec).
    pub fn spawn(cmd: &mut Command) -> Result<Guard> {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child
        // before exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        Ok(Guard {
            pid: child.id() as i32,
            child,
            reaped: false,
        })
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Reaps it if it has exited.
    pub fn try_reap(&mut self) -> Option<Exit> {
        if self.reaped {
            return None;
        }
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; the pid is our child's.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut ru) };
        if r != self.pid {
            return None;
        }
        self.reaped = true;
        let tv = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
        Some(Exit {
            code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            maxrss_kib: ru.ru_maxrss as u64,
            cpu_ms: tv(ru.ru_utime) + tv(ru.ru_stime),
            killed: false,
        })
    }

    /// Waits for it to exit by itself, up to `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<Exit> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(e) = self.try_reap() {
                return Some(e);
            }
            if self.reaped || Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        if !self.reaped {
            // SAFETY: our child, not yet reaped, so the pid is still its.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    /// SIGINT, and `drain` for it to finish; once more; then SIGKILL.
    pub fn stop(&mut self, drain: Duration) -> Exit {
        for _ in 0..2 {
            self.signal(libc::SIGINT);
            if let Some(e) = self.wait(drain) {
                return e;
            }
        }
        self.signal(libc::SIGKILL);
        let mut e = self.wait(Duration::from_secs(10)).unwrap_or_default();
        e.killed = true;
        e
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.reaped {
            self.signal(libc::SIGKILL);
            let _ = self.wait(Duration::from_secs(10));
        }
    }
}

/// Lines of a child's stream, collected by a thread as they come.
pub fn collect_lines(r: impl Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(l);
        }
    });
    lines
}

/// A field of /proc/PID/status in KiB (VmHWM, VmRSS).
pub fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of a running process (all its threads), ms.
pub fn cpu_ms(pid: i32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state is field 3.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 * 1e3 / hz)
}

/// Whether the process is blocked in epoll_wait: the poll loop of a
/// libbpf-tools tool or bpftrace, entered only once every probe is attached.
pub fn in_poll_loop(pid: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let Some(nr) = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok())
    else {
        return false;
    };
    #[cfg(target_arch = "x86_64")]
    if nr == libc::SYS_epoll_wait {
        return true;
    }
    nr == libc::SYS_epoll_pwait || nr == libc::SYS_epoll_pwait2
}

/// Every process's pid now (none if /proc cannot be read).
fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
}

pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default()
}

/// Other tracers running on this shared machine (their probes slow every
/// mount the bench makes): "comm:pid" of each not in `mine`.
pub fn foreign_tracers(mine: &[i32]) -> Vec<String> {
    let mut out: Vec<String> = pids()
        .filter(|p| !mine.contains(p))
        .filter_map(|p| {
            let c = comm(p);
            ["mnttrace", "bpftrace", "mountsnoop", "strace", "perf"]
                .contains(&c.as_str())
                .then(|| format!("{c}:{p}"))
        })
        .collect();
    out.sort();
    out
}

/// CPU time (ns, every thread's, from schedstat) of every process on the
/// machine but those named in `skip` and the pids in `mine`, with its
/// command name: what else ran on the machine's CPUs (kernel threads
/// included). By pid: a kernel worker's name changes with its work.
pub fn others_cpu_ns(skip: &[&str], mine: &[i32]) -> std::collections::HashMap<i32, (String, u64)> {
    let mut out = std::collections::HashMap::new();
    for pid in pids() {
        let c = comm(pid);
        if mine.contains(&pid) || skip.contains(&c.as_str()) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        let ns: u64 = tasks
            .filter_map(|t| {
                let text = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
                text.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        out.insert(pid, (c, ns));
    }
    out
}

/// What `others_cpu_ns` grew by from `before` to `after` (a process new
/// since counts from zero), in ms by command name.
pub fn others_cpu_delta(
    before: &std::collections::HashMap<i32, (String, u64)>,
    after: &std::collections::HashMap<i32, (String, u64)>,
) -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    for (pid, (name, ns)) in after {
        let d = ns.saturating_sub(before.get(pid).map_or(0, |b| b.1));
        *by_name.entry(name.clone()).or_default() += d as f64 / 1e6;
    }
    by_name
}

/// Every process whose command name is `name`.
pub fn pids_named(name: &str) -> Vec<i32> {
    pids().filter(|p| comm(*p) == name).collect()
}

/// Distinct mount namespaces of every process now.
pub fn namespaces_on_machine() -> usize {
    use std::os::unix::fs::MetadataExt as _;
    let inodes: std::collections::BTreeSet<u64> = pids()
        .filter_map(|p| std::fs::metadata(format!("/proc/{p}/ns/mnt")).ok())
        .map(|m| m.ino())
        .collect();
    inodes.len()
}

/// Waits until `done()` holds; an error if `limit` passes or the process
/// exits first.
pub fn wait_until(
    g: &mut Guard,
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return Ok(());
        }
        if let Some(e) = g.try_reap() {
            anyhow::bail!("{what}: the process ended first ({})", e.describe());
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: timed out");
        std::thread::sleep(Duration::from_millis(2));
    }
}
