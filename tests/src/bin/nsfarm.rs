//! Namespace farm for `mntbench latency|startup`: N mount namespaces of
//! ~MOUNTS mounts each, all holding a peer of one shared mount, so one mount
//! made there reaches every one of them.
//!
//! `nsfarm DIR N MOUNTS SLOTS [mixed]`: moves into a private namespace of its
//! own (nothing reaches the host), mounts a tmpfs on DIR with a shared tmpfs
//! at DIR/x (directories DIR/x/0..SLOTS to mount on) and private pads under
//! DIR/pad until the table holds MOUNTS mounts, then forks N-1 children that
//! each unshare a copy of it and only wait. Forked, not exec'd: a thousand
//! namespaces take about a second.
//!
//! `mixed` (the propagation tests' farm) adds a second peer of DIR/x with
//! another root: DIR/x/sub bound at DIR/w/y, DIR/w a private tmpfs (so it can
//! be moved, to DIR/v); and of the children, every third makes its copy a slave
//! (rslave), every third after it a slave that is also shared (rslave, then
//! rshared).
//!
//! Prints `{"pid","mntns","ns","mounts","setup_ms"}`, then serves lines, each
//! answered `{"ret"}` (0 or -errno), paths relative to DIR/x unless said:
//! `mount P` (a tmpfs named `b`), `umount P`, `mkdir P`, `bind P Q`, and
//! `move A B` (A, B relative to DIR). On stdin's end it
//! kills and reaps every child, so the namespaces are gone when it exits; the
//! children also die with it (PR_SET_PDEATHSIG) if it is killed, and it with
//! the bench.
use mnttrace_tests::raw::{check, cstr, mount};
use std::{
    io::{BufRead, Write},
    os::unix::fs::MetadataExt as _,
    time::Instant,
};

fn mounts_here() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").map_or(0, |t| t.lines().count())
}

/// How a child's copy takes part in propagation.
#[derive(Clone, Copy)]
enum Kind {
    Peer,
    Slave,
    SharedSlave,
}

/// One namespace: a forked child that unshares a copy of ours (its DIR/x a
/// peer of ours, or a slave of it as `kind` says), says so on `ready`, and
/// waits to be killed.
fn fork_holder(ready: libc::c_int, dir: &str, kind: Kind) -> libc::pid_t {
    let dir = cstr(dir);
    // SAFETY: we are single-threaded; the child runs only raw syscalls.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // Not the bench's pipes: its reads must end when we do.
            libc::close(0);
            libc::close(1);
            let mut ok = libc::unshare(libc::CLONE_NEWNS) == 0;
            let none = c"none".as_ptr();
            let mut make = |flags| {
                ok = ok
                    && libc::mount(
                        none,
                        dir.as_ptr(),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    ) == 0;
            };
            match kind {
                Kind::Peer => {}
                Kind::Slave => make(libc::MS_REC | libc::MS_SLAVE),
                Kind::SharedSlave => {
                    make(libc::MS_REC | libc::MS_SLAVE);
                    make(libc::MS_REC | libc::MS_SHARED);
                }
            }
            let ok: u8 = ok.into();
            libc::write(ready, (&ok as *const u8).cast(), 1);
            loop {
                libc::pause();
            }
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        pid
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| args.get(i).and_then(|a| a.parse::<usize>().ok());
    let (Some(dir), Some(n), Some(want), Some(slots)) = (args.first(), num(1), num(2), num(3))
    else {
        eprintln!("usage: nsfarm DIR N MOUNTS SLOTS [mixed]");
        std::process::exit(2);
    };
    let mixed = match args.get(4).map(String::as_str) {
        None => false,
        Some("mixed") => true,
        Some(other) => {
            eprintln!("nsfarm: unknown layout {other:?} (only \"mixed\")");
            std::process::exit(2);
        }
    };
    let t0 = Instant::now();
    // SAFETY: plain syscalls.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        check("nsfarm", libc::unshare(libc::CLONE_NEWNS), "unshare");
    }
    check(
        "nsfarm",
        mount("none", "/", None, libc::MS_REC | libc::MS_PRIVATE),
        "make / rprivate",
    );
    check(
        "nsfarm",
        mount("farm", dir, Some("tmpfs"), 0),
        "tmpfs on DIR",
    );
    let x = format!("{dir}/x");
    for d in [x.as_str(), &format!("{dir}/pad")] {
        std::fs::create_dir(d).expect("mkdir");
    }
    check(
        "nsfarm",
        mount("peers", &x, Some("tmpfs"), 0),
        "tmpfs on DIR/x",
    );
    check(
        "nsfarm",
        mount("none", &x, None, libc::MS_SHARED),
        "make DIR/x shared",
    );
    for k in 0..slots {
        std::fs::create_dir(format!("{x}/{k}")).expect("mkdir slot");
    }
    if mixed {
        let w = format!("{dir}/w");
        for d in [format!("{x}/sub"), w.clone(), format!("{dir}/v")] {
            std::fs::create_dir(d).expect("mkdir");
        }
        check("nsfarm", mount("w", &w, Some("tmpfs"), 0), "tmpfs on DIR/w");
        std::fs::create_dir(format!("{w}/y")).expect("mkdir");
        check(
            "nsfarm",
            mount(&format!("{x}/sub"), &format!("{w}/y"), None, libc::MS_BIND),
            "bind DIR/x/sub on DIR/w/y",
        );
    }
    // Pads are private, outside DIR/x: a container's mounts, mostly its own.
    let mut i = 0;
    while mounts_here() < want {
        let p = format!("{dir}/pad/{i}");
        std::fs::create_dir(&p).expect("mkdir pad");
        check("nsfarm", mount("pad", &p, Some("tmpfs"), 0), "pad tmpfs");
        i += 1;
    }

    let mut ready = [0; 2];
    // SAFETY: plain syscall.
    check("nsfarm", unsafe { libc::pipe(ready.as_mut_ptr()) }, "pipe");
    let children: Vec<libc::pid_t> = (1..n)
        .map(|i| {
            let kind = match i % 3 {
                _ if !mixed => Kind::Peer,
                1 => Kind::Slave,
                2 => Kind::SharedSlave,
                _ => Kind::Peer,
            };
            fork_holder(ready[1], dir, kind)
        })
        .collect();
    // SAFETY: our own pipe.
    unsafe { libc::close(ready[1]) };
    let mut ok = 0usize;
    let mut buf = [0u8; 256];
    while ok < children.len() {
        // SAFETY: reading into a buffer we own.
        let r = unsafe { libc::read(ready[0], buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            break;
        }
        let got = &buf[..r as usize];
        assert!(!got.contains(&0), "nsfarm: a child's unshare failed");
        ok += got.len();
    }
    assert_eq!(ok, children.len(), "every namespace ready");

    let mntns = std::fs::metadata("/proc/self/ns/mnt").map_or(0, |m| m.ino());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        r#"{{"pid":{},"mntns":{mntns},"ns":{n},"mounts":{},"setup_ms":{:.1}}}"#,
        std::process::id(),
        mounts_here(),
        t0.elapsed().as_secs_f64() * 1e3
    )
    .expect("stdout");
    out.flush().expect("stdout");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let w: Vec<&str> = line.split_whitespace().collect();
        let under = |p: &str| format!("{x}/{p}");
        let r = match w[..] {
            ["mount", p] => mount("b", &under(p), Some("tmpfs"), 0),
            ["umount", p] => {
                let t = cstr(&under(p));
                // SAFETY: valid C string.
                unsafe { libc::umount2(t.as_ptr(), 0) }
            }
            ["mkdir", p] => match std::fs::create_dir(under(p)) {
                Ok(()) => 0,
                Err(_) => -1,
            },
            ["bind", p, q] => mount(&under(p), &under(q), None, libc::MS_BIND),
            ["move", a, b] => mount(
                &format!("{dir}/{a}"),
                &format!("{dir}/{b}"),
                None,
                libc::MS_MOVE,
            ),
            _ => {
                eprintln!("nsfarm: unknown request {line:?}");
                break;
            }
        };
        let ret = if r == 0 {
            0
        } else {
            -std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
        };
        writeln!(out, r#"{{"ret":{ret}}}"#).expect("stdout");
        out.flush().expect("stdout");
    }
    for &c in &children {
        // SAFETY: our own children.
        unsafe { libc::kill(c, libc::SIGKILL) };
    }
    for &c in &children {
        // SAFETY: our own children.
        unsafe { libc::waitpid(c, std::ptr::null_mut(), 0) };
    }
}
