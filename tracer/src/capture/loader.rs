//! Loads the embedded kernel program, hands it the BTF offsets and filters,
//! and attaches every syscall tracepoint this kernel has.
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
};
use aya_log::EbpfLogger;
use tracer_ebpf::Offsets;

use super::tracefs::Tracefs;

static OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracer-ebpf"));

/// (syscall tracepoint suffix, enter program, exit program).
pub const SYSCALLS: &[(&str, &str, &str)] = &[
    ("mount", "enter_mount", "exit_mount"),
    ("umount", "enter_umount", "exit_umount"),
    ("pivot_root", "enter_pivot_root", "exit_pivot_root"),
    ("setns", "enter_setns", "exit_setns"),
    ("unshare", "enter_unshare", "exit_unshare"),
    ("clone", "enter_clone", "exit_clone"),
    ("clone3", "enter_clone3", "exit_clone3"),
    ("fsopen", "enter_fsopen", "exit_fsopen"),
    ("fsconfig", "enter_fsconfig", "exit_fsconfig"),
    ("fsmount", "enter_fsmount", "exit_fsmount"),
    ("move_mount", "enter_move_mount", "exit_move_mount"),
    ("open_tree", "enter_open_tree", "exit_open_tree"),
    (
        "open_tree_attr",
        "enter_open_tree_attr",
        "exit_open_tree_attr",
    ),
    ("mount_setattr", "enter_mount_setattr", "exit_mount_setattr"),
];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the kernel refused the BPF program: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the kernel refused program {name}: {source}")]
    Program {
        name: String,
        source: aya::programs::ProgramError,
    },
    #[error("the BPF object has no {0}")]
    Missing(&'static str),
    #[error("the BPF object has no map {0}")]
    MissingMap(&'static str),
    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
}

pub struct LoadOptions {
    pub offsets: Offsets,
    pub ring_size: u32,
    pub filter_tgid: u32,
}

pub struct Loaded {
    /// Owns the programs and their links: dropping it detaches everything.
    pub ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    /// The probes' `WAKE` flag (see `capture::wake`).
    pub wake: Array<MapData, u32>,
    pub drops: PerCpuArray<MapData, u64>,
    pub logger: Option<EbpfLogger<&'static dyn log::Log>>,
    pub attached: Vec<&'static str>,
    pub skipped: Vec<&'static str>,
}

pub fn load(opts: &LoadOptions, tracefs: &Tracefs) -> Result<Loaded, LoadError> {
    bump_memlock();
    let mut ebpf = EbpfLoader::new()
        // Offsets come from BTF at load time (`offsets.rs`), not CO-RE: aya
        // need not parse the kernel's 5 MB of BTF (a third of start-up and
        // of peak memory).
        .btf(None)
        .override_global("OFFSETS", &opts.offsets, true)
        .override_global("FILTER_TGID", &opts.filter_tgid, true)
        .map_max_entries("EVENTS", opts.ring_size)
        .load(OBJ)?;
    // Only present when the program logs; diagnostics stay at debug level.
    let logger = EbpfLogger::init(&mut ebpf)
        .map_err(|e| log::debug!("aya-log not available: {e}"))
        .ok();

    let mut attached = Vec::new();
    let mut skipped = Vec::new();
    for &(call, enter, exit) in SYSCALLS {
        let (tp_enter, tp_exit) = (format!("sys_enter_{call}"), format!("sys_exit_{call}"));
        if !tracefs.has_syscall_event(&tp_enter) || !tracefs.has_syscall_event(&tp_exit) {
            skipped.push(call);
            continue;
        }
        for (prog, tp) in [(enter, &tp_enter), (exit, &tp_exit)] {
            attach_tracepoint(&mut ebpf, prog, tp)?;
        }
        attached.push(call);
    }
    let fork: &mut RawTracePoint = ebpf
        .program_mut("fork")
        .ok_or(LoadError::Missing("program fork"))?
        .try_into()
        .map_err(|source| program_err("fork", source))?;
    fork.load().map_err(|source| program_err("fork", source))?;
    fork.attach("sched_process_fork")
        .map_err(|source| program_err("fork", source))?;

    let ring = take_map(&mut ebpf, "EVENTS")?;
    let wake = take_map(&mut ebpf, "WAKE")?;
    let drops = take_map(&mut ebpf, "DROPS")?;
    Ok(Loaded {
        ebpf,
        ring,
        wake,
        drops,
        logger,
        attached,
        skipped,
    })
}

/// Takes map `name` out of the object as the map type the agent uses.
fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    T::try_from(map).map_err(|source| LoadError::Map { name, source })
}

fn program_err(name: &str, source: aya::programs::ProgramError) -> LoadError {
    LoadError::Program {
        name: name.to_string(),
        source,
    }
}

fn attach_tracepoint(ebpf: &mut Ebpf, prog: &'static str, tp: &str) -> Result<(), LoadError> {
    let p: &mut TracePoint = ebpf
        .program_mut(prog)
        .ok_or(LoadError::Missing("a syscall program"))?
        .try_into()
        .map_err(|source| program_err(prog, source))?;
    p.load().map_err(|source| program_err(prog, source))?;
    p.attach("syscalls", tp)
        .map_err(|source| program_err(prog, source))?;
    Ok(())
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; later ones (this
/// one included) account it by memcg, so a refused bump is only worth a note.
fn bump_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall on a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!(
            "RLIMIT_MEMLOCK not raised ({}); fine on kernels that account BPF memory by memcg",
            std::io::Error::last_os_error()
        );
    }
}
