//! The live stream: ring buffer → decode → filter → output, until a signal,
//! --duration, --count or a closed output ends it.
use std::{
    io,
    time::{Duration, SystemTime},
};

use std::os::fd::AsRawFd as _;

use anyhow::Context as _;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    capture::{
        self,
        loader::{self, LoadOptions},
        offsets,
        tracefs::Tracefs,
        wake::Wake,
    },
    cli::Cli,
    container::Containers,
    decode::{self, Call, Clock},
    filter::Filter,
    model::Source,
    output::Output,
    propagation::{self, Correlator, Mode, fanotify::Watcher},
    record::{Lost, Record},
};

/// How often the kernel's drop counters are read and losses reported.
const LOSS_INTERVAL: Duration = Duration::from_secs(1);

/// How long the loop lets calls gather after it handled some of a burst.
const COALESCE: Duration = Duration::from_micros(1000);

/// Calls handled this soon after the previous ones are a burst.
const BURST_GAP: Duration = Duration::from_micros(500);

/// Events handled before the loop looks at signals and the clock again: on a
/// host that never stops mounting, the ring never empties.
const DRAIN_BATCH: usize = 4096;

pub struct Summary {
    /// Syscall records written.
    pub reported: u64,
    /// Kernel drops, fanotify overflows and records the output could not take.
    pub lost: u64,
    /// The reader of our output went away.
    pub closed_output: bool,
    /// What ended the run: a signal's name, "done", "output closed".
    pub stop: &'static str,
}

enum Stop {
    Signal(&'static str),
    Done,
    ClosedOutput,
}

impl Stop {
    fn name(&self) -> &'static str {
        match self {
            Stop::Signal(s) => s,
            Stop::Done => "done",
            Stop::ClosedOutput => "output closed",
        }
    }
}

pub async fn run(cli: &Cli, tracefs: &Tracefs, mut out: Output) -> anyhow::Result<Summary> {
    let filter = Filter::from_cli(cli);
    let offsets = offsets::from_file(&cli.btf)?;
    // The kernel verifies the programs on this thread while another reads
    // every namespace's mount table: the two halves of start-up, on two CPUs.
    // (A mount made between a table's read and the attach is not lost: the
    // namespace is watched before it is read, and the event comes without a
    // syscall.)
    let (loaded, corr) = std::thread::scope(|s| {
        let model = s.spawn(|| {
            let corr = correlator(cli, tracefs, filter.kernel_tgid())?;
            // Each namespace's container looked up now, not on the first
            // mount that reaches it (at 1,000 namespaces, a thousand cgroup
            // reads in that mount's path).
            let mut containers = Containers::new(&cli.runtime_root);
            for n in corr.model.namespaces() {
                containers.of_ns(n.found.inode, Some(n.found.pid));
            }
            Ok((corr, containers))
        });
        let loaded = loader::load(
            &LoadOptions {
                offsets,
                ring_size: cli.ring_size,
                filter_tgid: filter.kernel_tgid(),
            },
            tracefs,
        );
        let corr = model.join().unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "the thread reading the mount tables panicked"
            ))
        });
        (loaded, corr)
    });
    let (loaded, (corr, containers)) = (loaded?, corr?);
    let loader::Loaded {
        ebpf,
        ring,
        wake,
        drops,
        logger,
        attached,
        skipped,
    } = loaded;
    if let Some(logger) = logger {
        let mut logger = readable(logger).context("watching the kernel program's log")?;
        tokio::spawn(async move {
            while let Ok(mut guard) = logger.readable_mut().await {
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
        });
    }
    for call in &skipped {
        eprintln!("mnttrace: notice: this kernel has no tracepoint for {call}; it is not traced");
    }
    eprintln!(
        "mnttrace: tracing {} syscalls{} (Ctrl-C to stop)",
        attached.len(),
        if tracefs.private {
            ", tracefs mounted in mnttrace's own mount namespace"
        } else {
            ""
        }
    );

    let mut ring = readable(ring).context("watching the ring buffer")?;
    let mut wake = Wake::new(wake);
    let mut mount_events = match corr.watcher() {
        Some(w) => Some(readable(FdRef(w.as_raw_fd())).context("watching fanotify")?),
        None => None,
    };
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    // With --output, SIGHUP reopens the file (after logrotate moved it);
    // otherwise it is a hang-up, and ends the run like SIGTERM.
    let reopen_on_hup = cli.output.is_some();
    let mut ticker = tokio::time::interval(LOSS_INTERVAL);
    let deadline = tokio::time::sleep(cli.duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);

    let clock = Clock::new();
    let mut st = State {
        show_secrets: cli.show_secrets,
        more: false,
        handled: 0,
        filter,
        clock,
        next_id: 1,
        reported: 0,
        limit: cli.count,
        losses: Losses::new(),
        corr,
        containers,
    };
    if let Err(e) = out.header() {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Ok(Summary {
                reported: 0,
                lost: 0,
                closed_output: true,
                stop: Stop::ClosedOutput.name(),
            });
        }
        return Err(e).context("writing output");
    }

    // When the loop last handled calls.
    let mut calls_at: Option<std::time::Instant> = None;
    let stop = loop {
        let handled = std::mem::take(&mut st.handled);
        let burst = handled > 1 || calls_at.is_some_and(|t| t.elapsed() < BURST_GAP);
        if handled > 0 {
            calls_at = Some(std::time::Instant::now());
        }
        let awake = if st.more {
            // The ring is never empty while a host mounts faster than we
            // follow: yield, so the runtime polls its drivers (signals,
            // timers) before the ring is read again.
            tokio::task::yield_now().await;
            true
        } else if handled > 0 && burst {
            // Calls are coming fast: more are likely. Waiting a moment lets
            // the burst gather, so it costs one wake-up, one fanotify read
            // and one write per batch, not per call (in a mount storm these
            // were half of mnttrace's CPU, and the CPU it takes is the
            // storm's). A call after a quiet spell is handled at once, and
            // so is the next one if it comes later than BURST_GAP: a
            // wait after every call held a call that came during it for
            // half a millisecond on average (a mount into a thousand
            // namespaces, made right after the umount before it).
            std::thread::sleep(COALESCE);
            true
        } else {
            false
        };
        // Awake, the agent reads the ring without being woken (the probes
        // send no wake-up meanwhile). Before it waits it says so, then
        // looks once more: a record sent before the probes saw that came
        // without a wake-up. (Woken for anything else, it goes back to
        // waiting without a look: the probes were told all along.)
        let mut looked = Ok(None);
        if !awake && wake.set(true) {
            looked = st.drain(ring.get_mut(), &mut out, DRAIN_BATCH);
        }
        // (`more` implies `handled`: a batch cut short handled some.)
        let step = if !awake && (st.handled > 0 || !matches!(looked, Ok(None))) {
            wake.set(false);
            looked
        } else {
            let step = tokio::select! {
                // Through a yield, not at once: the runtime polls its
                // drivers then (signals, timers), which it otherwise does
                // only when the loop waits, and an awake loop never does
                // while calls keep coming.
                _ = tokio::task::yield_now(), if awake => st.drain(ring.get_mut(), &mut out, DRAIN_BATCH),
                guard = ring.readable_mut() => {
                    let mut guard = guard.context("ring buffer")?;
                    let r = st.drain(guard.get_inner_mut(), &mut out, DRAIN_BATCH);
                    // Left ready when the batch ended first: the loop comes back.
                    if !st.more {
                        guard.clear_ready();
                    }
                    r
                }
                guard = readable_opt(&mut mount_events) => {
                    let mut guard = guard.context("fanotify")?;
                    st.corr.ingest();
                    guard.clear_ready();
                    Ok(None)
                }
                _ = ticker.tick() => {
                    // Only if the probes may not know when to wake us.
                    let drained = if wake.broken() {
                        st.drain(ring.get_mut(), &mut out, DRAIN_BATCH)
                    } else {
                        Ok(None)
                    };
                    drained.and_then(|stop| match stop {
                        Some(stop) => Ok(Some(stop)),
                        None => st.tick(&drops, &mut out).map(|_| None),
                    })
                }
                _ = sigint.recv() => Ok(Some(Stop::Signal("SIGINT"))),
                _ = sigterm.recv() => Ok(Some(Stop::Signal("SIGTERM"))),
                _ = sighup.recv() => {
                    if reopen_on_hup {
                        out.reopen().map(|_| None)
                    } else {
                        Ok(Some(Stop::Signal("SIGHUP")))
                    }
                }
                _ = &mut deadline => Ok(Some(Stop::Done)),
            };
            if st.handled > 0 {
                wake.set(false);
            }
            step
        };
        match step {
            Ok(Some(stop)) => break stop,
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break Stop::ClosedOutput,
            Err(e) => return Err(e).context("writing output"),
        }
    };

    // Detach first, so what is still in the ring is all there will be; the
    // mount events queued by now are all those calls can have caused.
    drop(ebpf);
    drop(mount_events);
    st.corr.stop_watching();
    let mut closed_output = matches!(stop, Stop::ClosedOutput);
    if !closed_output {
        let tail = st
            .drain(ring.get_mut(), &mut out, usize::MAX)
            .and_then(|_| st.losses.report(&drops, &mut out))
            .and_then(|_| st.finish(&mut out));
        match tail {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => closed_output = true,
            r => r.context("writing output")?,
        }
    }
    let (output_lost, output_lost_calls) = out.lost();
    Ok(Summary {
        reported: st.reported - output_lost_calls.min(st.reported),
        lost: st.losses.total() + st.corr.overflows() + output_lost,
        closed_output,
        stop: if closed_output {
            Stop::ClosedOutput.name()
        } else {
            stop.name()
        },
    })
}

fn readable<T: std::os::fd::AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its fd (a BPF map) for as long as the AsyncFd lives.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// Wraps a descriptor owned elsewhere (the correlator's fanotify group),
/// which outlives the registration.
struct FdRef(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for FdRef {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

async fn readable_opt(
    fd: &mut Option<AsyncFd<FdRef>>,
) -> io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, FdRef>> {
    match fd {
        Some(fd) => fd.readable_mut().await,
        None => std::future::pending().await,
    }
}

/// Builds the model and picks how propagation is seen (`--propagation`).
fn correlator(cli: &Cli, tracefs: &Tracefs, kernel_tgid: u32) -> anyhow::Result<Correlator> {
    use std::os::unix::fs::MetadataExt as _;
    let source = cli.mount_tables.source()?;
    // mnttrace's own namespace exists only to hold tracefs: not the user's.
    let own = if tracefs.private {
        std::fs::metadata("/proc/self/ns/mnt")
            .map(|m| m.ino() as u32)
            .unwrap_or(0)
    } else {
        0
    };
    let fanotify = || -> anyhow::Result<Watcher> {
        if source != Source::Statmount {
            anyhow::bail!(
                "mount tables are read from mountinfo, whose mount ids fanotify does not use"
            );
        }
        Watcher::new().map_err(|e| match e {
            nix::errno::Errno::EINVAL => {
                anyhow::anyhow!("this kernel has no fanotify mount notifications (Linux 6.15+)")
            }
            e => anyhow::anyhow!("fanotify_init(FAN_REPORT_MNT): {e}"),
        })
    };
    let (mode, watcher) = match cli.propagation {
        propagation::Choice::Off => (Mode::Off, None),
        propagation::Choice::Diff => (Mode::Diff, None),
        propagation::Choice::Fanotify => (
            Mode::Fanotify,
            Some(fanotify().context("--propagation=fanotify")?),
        ),
        propagation::Choice::Auto => match fanotify() {
            Ok(w) => (Mode::Fanotify, Some(w)),
            Err(e) => {
                eprintln!(
                    "mnttrace: notice: {e:#}; propagation is seen by re-reading mount tables"
                );
                (Mode::Diff, None)
            }
        },
    };
    let corr = Correlator::new(source, own, mode, watcher, kernel_tgid);
    match mode {
        Mode::Off => eprintln!("mnttrace: propagation: off"),
        m => eprintln!(
            "mnttrace: propagation: {} ({} mount namespaces, tables from {})",
            m.name(),
            corr.model.namespaces().count(),
            source.name()
        ),
    }
    Ok(corr)
}

struct State {
    show_secrets: bool,
    /// The last drain stopped at its limit with events left in the ring.
    more: bool,
    /// Events the drains took since the loop last waited.
    handled: usize,
    corr: Correlator,
    containers: Containers,
    filter: Filter,
    clock: Clock,
    next_id: u64,
    reported: u64,
    limit: Option<u64>,
    losses: Losses,
}

impl State {
    /// Writes every event waiting in the ring; `Some(Done)` once --count is reached.
    /// At most `limit` of them; `self.more` tells whether it stopped there.
    fn drain(
        &mut self,
        ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
        out: &mut Output,
        limit: usize,
    ) -> io::Result<Option<Stop>> {
        let mut stop = None;
        let mut n = 0;
        self.more = false;
        loop {
            if n == limit {
                self.more = true;
                break;
            }
            let Some(item) = ring.next() else { break };
            if *item == tracer_ebpf::WAKE_RECORD {
                continue;
            }
            n += 1;
            self.handled += 1;
            let Some(raw) = capture::parse_event(&item) else {
                log::warn!("short ring-buffer record of {} bytes skipped", item.len());
                continue;
            };
            drop(item);
            let id = self.next_id;
            self.next_id += 1;
            let Some(mut sys) = decode::syscall(&raw, id, &self.clock, self.show_secrets) else {
                log::warn!("event with unknown call id {} skipped", raw.call);
                continue;
            };
            if matches!(sys.call, Call::Unshare | Call::Clone | Call::Clone3)
                && sys.mntns_after != sys.mntns_before
            {
                // A new namespace, maybe on a dead one's inode number.
                self.containers.forget_ns(sys.mntns_after);
            }
            let witness = self.witness(sys.mntns_after);
            sys.container = self
                .containers
                .of_call(sys.pid, &sys.comm, sys.mntns_after, witness);
            let mut effects = self.corr.on_syscall(&sys);
            // A namespace the call made or entered is in the model only now:
            // its process may tell what the caller, gone already, could not.
            if sys.container.is_none() && sys.mntns_after != sys.mntns_before && !sys.failed() {
                let witness = self.witness(sys.mntns_after);
                sys.container =
                    self.containers
                        .of_call(sys.pid, &sys.comm, sys.mntns_after, witness);
            }
            for p in &mut effects {
                p.container = self.ns_container(p.mntns);
                if !self.show_secrets {
                    crate::decode::secrets::source(&mut p.source);
                }
            }
            if !self.filter.matches(&sys, &effects) {
                continue;
            }
            if self.limit.is_some_and(|n| self.reported >= n) {
                stop = Some(Stop::Done);
                break;
            }
            out.write(&Record::Syscall(sys))?;
            for p in effects {
                out.write(&Record::Propagated(p))?;
            }
            self.reported += 1;
            if self.limit.is_some_and(|n| self.reported >= n) {
                stop = Some(Stop::Done);
                break;
            }
        }
        out.flush()?;
        // The records are out: the model takes the last call's mounts.
        self.corr.settle();
        Ok(stop)
    }
}

impl State {
    /// A process the model knows in namespace `mntns`.
    fn witness(&self, mntns: u32) -> Option<u32> {
        self.corr.model.get(mntns).map(|n| n.found.pid)
    }

    /// The container whose namespace `mntns` is.
    fn ns_container(&mut self, mntns: u32) -> Option<std::sync::Arc<crate::container::Container>> {
        let witness = self.witness(mntns);
        self.containers.of_ns(mntns, witness)
    }

    /// Once a second: losses, mount events no syscall claimed, namespaces
    /// that died or appeared.
    fn tick(
        &mut self,
        drops: &aya::maps::PerCpuArray<aya::maps::MapData, u64>,
        out: &mut Output,
    ) -> io::Result<()> {
        self.losses.report(drops, out)?;
        self.containers.tick();
        let (orphans, ended, lost) = self.corr.tick(!self.more);
        for l in lost {
            out.write(&Record::Lost(l))?;
        }
        self.unexplained(orphans, ended, out)
    }

    fn finish(&mut self, out: &mut Output) -> io::Result<()> {
        let (orphans, ended) = self.corr.finish();
        self.unexplained(orphans, ended, out)
    }

    /// Mount changes no syscall claimed, and namespaces that died.
    fn unexplained(
        &mut self,
        orphans: Vec<crate::record::Propagated>,
        ended: Vec<crate::record::Ended>,
        out: &mut Output,
    ) -> io::Result<()> {
        for mut e in ended {
            e.container = self.containers.ended(e.mntns, e.alive_at.unwrap_or(e.time));
            if self
                .filter
                .matches_unexplained(e.mntns, e.pid, e.container.as_deref())
            {
                out.write(&Record::Ended(e))?;
            }
        }
        for mut p in orphans {
            p.container = self.ns_container(p.mntns);
            if !self.show_secrets {
                crate::decode::secrets::source(&mut p.source);
            }
            if self
                .filter
                .matches_unexplained(p.mntns, p.cause_pid, p.container.as_deref())
            {
                out.write(&Record::Propagated(p))?;
            }
        }
        out.flush()
    }
}

/// Turns the kernel's cumulative drop counters into `lost` records.
struct Losses {
    seen: [u64; 2],
    since: SystemTime,
}

impl Losses {
    fn new() -> Losses {
        Losses {
            seen: [0; 2],
            since: SystemTime::now(),
        }
    }

    fn total(&self) -> u64 {
        self.seen.iter().sum()
    }

    fn report(
        &mut self,
        drops: &aya::maps::PerCpuArray<aya::maps::MapData, u64>,
        out: &mut Output,
    ) -> io::Result<()> {
        let now = SystemTime::now();
        for (i, (reason, total)) in capture::drop_totals(drops).into_iter().enumerate() {
            let count = total.saturating_sub(self.seen[i]);
            if count == 0 {
                continue;
            }
            self.seen[i] = total;
            out.write(&Record::Lost(Lost {
                time: now,
                since: self.since,
                reason,
                count,
                total: self.total(),
                calls: None,
                reread: None,
            }))?;
        }
        self.since = now;
        out.flush()
    }
}
