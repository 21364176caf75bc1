//! The live stream: ring buffer → decode → filter → output, until a signal,
//! --duration, --count or a closed output ends it.
use std::{
    io::{self, Write},
    time::{Duration, SystemTime},
};

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
    },
    cli::Cli,
    decode::{self, Clock},
    filter::Filter,
    output::Output,
    record::{Lost, Record},
};

/// How often the kernel's drop counters are read and losses reported.
const LOSS_INTERVAL: Duration = Duration::from_secs(1);

pub struct Summary {
    pub reported: u64,
    pub lost: u64,
    /// The reader of our output went away: exit quietly.
    pub closed_output: bool,
}

enum Stop {
    Signal(&'static str),
    Done,
    ClosedOutput,
}

pub async fn run<W: Write>(
    cli: &Cli,
    tracefs: &Tracefs,
    mut out: Output<W>,
) -> anyhow::Result<Summary> {
    let filter = Filter::from_cli(cli);
    let offsets = offsets::from_file(&cli.btf)?;
    let loaded = loader::load(
        &LoadOptions {
            offsets,
            ring_size: cli.ring_size,
            filter_tgid: filter.kernel_tgid(),
        },
        tracefs,
    )?;
    let loader::Loaded {
        ebpf,
        ring,
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
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut ticker = tokio::time::interval(LOSS_INTERVAL);
    let deadline = tokio::time::sleep(cli.duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);

    let clock = Clock::new();
    let mut st = State {
        filter,
        clock,
        next_id: 1,
        reported: 0,
        limit: cli.count,
        losses: Losses::new(),
    };
    if let Err(e) = out.header() {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Ok(Summary {
                reported: 0,
                lost: 0,
                closed_output: true,
            });
        }
        return Err(e).context("writing output");
    }

    let stop = loop {
        let step = tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("ring buffer")?;
                let r = st.drain(guard.get_inner_mut(), &mut out);
                guard.clear_ready();
                r
            }
            _ = ticker.tick() => st.losses.report(&drops, &mut out).map(|_| None),
            _ = sigint.recv() => Ok(Some(Stop::Signal("SIGINT"))),
            _ = sigterm.recv() => Ok(Some(Stop::Signal("SIGTERM"))),
            _ = &mut deadline => Ok(Some(Stop::Done)),
        };
        match step {
            Ok(Some(stop)) => break stop,
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break Stop::ClosedOutput,
            Err(e) => return Err(e).context("writing output"),
        }
    };

    // Detach first, so what is still in the ring is all there will be.
    drop(ebpf);
    let mut closed_output = matches!(stop, Stop::ClosedOutput);
    if !closed_output {
        let tail = st
            .drain(ring.get_mut(), &mut out)
            .and_then(|_| st.losses.report(&drops, &mut out));
        match tail {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => closed_output = true,
            r => r.context("writing output")?,
        }
    }
    if let Stop::Signal(name) = stop {
        log::info!("{name}: detached");
    }
    Ok(Summary {
        reported: st.reported,
        lost: st.losses.total(),
        closed_output,
    })
}

fn readable<T: std::os::fd::AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its fd (a BPF map) for as long as the AsyncFd lives.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

struct State {
    filter: Filter,
    clock: Clock,
    next_id: u64,
    reported: u64,
    limit: Option<u64>,
    losses: Losses,
}

impl State {
    /// Writes every event waiting in the ring; `Some(Done)` once --count is reached.
    fn drain<W: Write>(
        &mut self,
        ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
        out: &mut Output<W>,
    ) -> io::Result<Option<Stop>> {
        let mut stop = None;
        while let Some(item) = ring.next() {
            let Some(raw) = capture::parse_event(&item) else {
                log::warn!("short ring-buffer record of {} bytes skipped", item.len());
                continue;
            };
            drop(item);
            let id = self.next_id;
            self.next_id += 1;
            let Some(sys) = decode::syscall(&raw, id, &self.clock) else {
                log::warn!("event with unknown call id {} skipped", raw.call);
                continue;
            };
            if !self.filter.matches(&sys) {
                continue;
            }
            if self.limit.is_some_and(|n| self.reported >= n) {
                stop = Some(Stop::Done);
                break;
            }
            out.write(&Record::Syscall(sys))?;
            self.reported += 1;
            if self.limit.is_some_and(|n| self.reported >= n) {
                stop = Some(Stop::Done);
                break;
            }
        }
        out.flush()?;
        Ok(stop)
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

    fn report<W: Write>(
        &mut self,
        drops: &aya::maps::PerCpuArray<aya::maps::MapData, u64>,
        out: &mut Output<W>,
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
            }))?;
        }
        self.since = now;
        out.flush()
    }
}
