//! Storm generator for `mntbench storm`: N mount+umount pairs of a tmpfs on
//! one directory, as tight as the kernel allows, in a private mount namespace
//! of its own (nothing reaches the host).
//!
//! `stormgen DIR N [--shared] [--ids FILE]`: sets up, prints `{"pid","mntns"}`, waits for a
//! line on stdin (the bench attaches a tracer meanwhile, so the set-up's own
//! mounts are not part of what is counted), runs the storm and prints
//! `{"pid","n","elapsed_ns","cpu_ns","vcsw","ivcsw","failed"}`. With `--shared` the target sits under a
//! shared mount whose peer lives in a second namespace (a forked child that
//! only waits), so every mount and umount propagates into it. With `--ids`
//! each mount's unique id (statx) goes to FILE, one a line: the kernel's
//! answer to which mount each call made (a test's, not the bench's: the
//! statx is a third syscall per pair).
use mnttrace_tests::raw::{check, cstr, mount};

/// statx(2) mask bit for the mount's unique 64-bit id (Linux 6.8), which
/// fanotify's mount events carry; not in the libc crate yet.
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
use std::{
    io::{BufRead, Write},
    os::unix::fs::MetadataExt as _,
    time::Instant,
};

/// The peer namespace: a child that copies ours (so its copy of `base` is a
/// peer of ours) and then only waits to be killed, dying with us.
fn spawn_peer() -> libc::pid_t {
    let mut pipe = [0; 2];
    // SAFETY: plain syscalls; the child is single-threaded code up to pause().
    unsafe {
        check("stormgen", libc::pipe(pipe.as_mut_ptr()), "pipe");
        let pid = libc::fork();
        if pid == 0 {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            let ok: u8 = (libc::unshare(libc::CLONE_NEWNS) == 0).into();
            libc::write(pipe[1], (&ok as *const u8).cast(), 1);
            loop {
                libc::pause();
            }
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        libc::close(pipe[1]);
        let mut ok = 0u8;
        libc::read(pipe[0], (&mut ok as *mut u8).cast(), 1);
        libc::close(pipe[0]);
        assert_eq!(ok, 1, "the peer namespace's unshare failed");
        pid
    }
}

/// Our user + system CPU time. The system part includes every probe the
/// tracers run in our syscalls, and unlike elapsed time it does not grow
/// while other processes hold the CPU.
/// Also the context switches: voluntary ones are waits (a lock, an RCU
/// grace period), involuntary ones the CPU taken by another process.
fn usage() -> (u64, u64, u64) {
    // SAFETY: an all-zero rusage is valid; RUSAGE_SELF is always allowed.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    (
        ns(ru.ru_utime) + ns(ru.ru_stime),
        ru.ru_nvcsw as u64,
        ru.ru_nivcsw as u64,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: stormgen DIR N [--shared]");
        std::process::exit(2);
    };
    let shared = args.iter().any(|a| a == "--shared");
    let ids_to = args
        .iter()
        .position(|a| a == "--ids")
        .and_then(|i| args.get(i + 1));
    // SAFETY: plain syscalls.
    check(
        "stormgen",
        unsafe { libc::unshare(libc::CLONE_NEWNS) },
        "unshare",
    );
    check(
        "stormgen",
        mount("none", "/", None, libc::MS_REC | libc::MS_PRIVATE),
        "make / rprivate",
    );
    check(
        "stormgen",
        mount("stormbase", dir, Some("tmpfs"), 0),
        "tmpfs on DIR",
    );
    let target = format!("{dir}/t");
    std::fs::create_dir(&target).expect("mkdir DIR/t");
    let peer = shared.then(|| {
        check(
            "stormgen",
            mount("none", dir, None, libc::MS_SHARED),
            "make DIR shared",
        );
        spawn_peer()
    });
    let mntns = std::fs::metadata("/proc/self/ns/mnt").map_or(0, |m| m.ino());
    let pid = std::process::id();
    let mut out = std::io::stdout().lock();
    writeln!(out, r#"{{"pid":{pid},"mntns":{mntns}}}"#).expect("stdout");
    out.flush().expect("stdout");
    // The bench gone before saying go: no storm.
    let mut go = String::new();
    if !matches!(std::io::stdin().lock().read_line(&mut go), Ok(n) if n > 0) {
        std::process::exit(1);
    }

    // The loop: nothing but the two syscalls (C strings made once).
    let (src, tgt, fs) = (cstr("storm"), cstr(&target), cstr("tmpfs"));
    let mut failed = 0u64;
    let u0 = usage();
    let mut ids: Vec<u64> = Vec::new();
    let start = Instant::now();
    for _ in 0..n {
        // SAFETY: valid C strings that outlive the calls; an all-zero statx
        // is valid.
        unsafe {
            if libc::mount(src.as_ptr(), tgt.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) != 0 {
                failed += 1;
            }
            if ids_to.is_some() {
                let mut stx: libc::statx = std::mem::zeroed();
                libc::statx(
                    libc::AT_FDCWD,
                    tgt.as_ptr(),
                    0,
                    STATX_MNT_ID_UNIQUE,
                    &mut stx,
                );
                ids.push(stx.stx_mnt_id);
            }
            if libc::umount2(tgt.as_ptr(), 0) != 0 {
                failed += 1;
            }
        }
    }
    let elapsed = start.elapsed().as_nanos();
    if let Some(file) = ids_to {
        let text: String = ids.iter().map(|i| format!("{i}\n")).collect();
        std::fs::write(file, text).expect("--ids FILE");
    }
    let u1 = usage();
    let (cpu, vol, invol) = (u1.0 - u0.0, u1.1 - u0.1, u1.2 - u0.2);
    writeln!(
        out,
        r#"{{"pid":{pid},"n":{n},"elapsed_ns":{elapsed},"cpu_ns":{cpu},"vcsw":{vol},"ivcsw":{invol},"failed":{failed}}}"#
    )
    .expect("stdout");
    out.flush().expect("stdout");
    if let Some(p) = peer {
        // SAFETY: our own child.
        unsafe {
            libc::kill(p, libc::SIGKILL);
            libc::waitpid(p, std::ptr::null_mut(), 0);
        }
    }
}
