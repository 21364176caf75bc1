//! Test driver: performs exact mount-related syscalls and reports what the
//! kernel answered, so tests can hold mnttrace's records against it.
//!
//! `mntdrive SCRIPT.json` (a JSON array of steps): moves into a private mount namespace of its own
//! (nothing it does reaches the host), prints `{"pid","tid","mntns"}`, waits
//! for a line on stdin (the test starts mnttrace meanwhile), then runs each
//! step and prints one JSON line per step:
//! `{"step","ret","errno","tid","mntns_before","mntns_after","child_tid"}`.
//! Integer arguments may be `"$N"`: the return value of step N (an fd).
//!
//! `mntdrive --serve [--join PID]`: the same, one step per stdin line, each
//! answered at once; with --join, in a namespace cloned from PID's with
//! propagation unchanged instead of a private one.
use std::{
    ffi::CString,
    io::{BufRead, Write},
};

use serde_json::{Value, json};

const SYS_OPEN_TREE_ATTR: libc::c_long = 467;

thread_local! {
    /// /proc opened before any pivot_root, so the namespace stays readable after.
    static PROC: std::fs::File = std::fs::File::open("/proc").expect("open /proc");
}

fn ns_inode() -> u64 {
    use std::os::fd::AsRawFd;
    PROC.with(|proc| {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let path = CString::new("thread-self/ns/mnt").expect("literal");
        // SAFETY: valid fd, path and out-pointer.
        let r = unsafe { libc::fstatat(proc.as_raw_fd(), path.as_ptr(), &mut st, 0) };
        if r == 0 { st.st_ino } else { 0 }
    })
}

/// A string argument; `KEY_hex` gives its bytes in hex instead (not UTF-8,
/// control characters).
fn cstr(v: &Value, key: &str) -> Option<CString> {
    if let Some(hex) = v.get(format!("{key}_hex")).and_then(Value::as_str) {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex byte"))
            .collect();
        return Some(CString::new(bytes).expect("no NUL in test strings"));
    }
    v.get(key)
        .and_then(Value::as_str)
        .map(|s| CString::new(s).expect("no NUL in test strings"))
}

fn ptr(c: &Option<CString>) -> *const libc::c_char {
    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

fn int(v: &Value, key: &str, rets: &[i64]) -> i64 {
    match v.get(key) {
        Some(Value::Number(n)) => n.as_i64().expect("integer argument"),
        Some(Value::String(s)) if s.starts_with('$') => {
            rets[s[1..].parse::<usize>().expect("$N step reference")]
        }
        None => 0,
        Some(other) => panic!("bad integer argument {key}: {other}"),
    }
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Runs one step; returns (ret, child_tid).
fn step(s: &Value, rets: &[i64]) -> (i64, i64) {
    let op = s["op"].as_str().expect("op");
    let i = |k| int(s, k, rets);
    // SAFETY: raw syscalls on pointers that live across the call.
    unsafe {
        let r = match op {
            "mount" => {
                let (src, tgt, fs, data) = (
                    cstr(s, "source"),
                    cstr(s, "target"),
                    cstr(s, "fstype"),
                    cstr(s, "data"),
                );
                libc::syscall(
                    libc::SYS_mount,
                    ptr(&src),
                    ptr(&tgt),
                    ptr(&fs),
                    i("flags"),
                    ptr(&data),
                )
            }
            "umount" => {
                let t = cstr(s, "target");
                libc::syscall(libc::SYS_umount2, ptr(&t), i("flags"))
            }
            // Ends the driver at once (the last step of a batch: no answer).
            "exit" => libc::_exit(0),
            "pivot_root" => {
                let (n, o) = (cstr(s, "new_root"), cstr(s, "put_old"));
                libc::syscall(libc::SYS_pivot_root, ptr(&n), ptr(&o))
            }
            "setns" => libc::syscall(libc::SYS_setns, i("fd"), i("nstype")),
            "unshare" => libc::syscall(libc::SYS_unshare, i("flags")),
            "clone" | "clone3" => {
                let flags = i("flags") as u64;
                let mut pipe = [0; 2];
                assert_eq!(libc::pipe(pipe.as_mut_ptr()), 0);
                let r = if op == "clone" {
                    libc::syscall(libc::SYS_clone, flags | libc::SIGCHLD as u64, 0, 0, 0, 0)
                } else {
                    let args = CloneArgs {
                        flags,
                        exit_signal: libc::SIGCHLD as u64,
                        ..Default::default()
                    };
                    libc::syscall(
                        libc::SYS_clone3,
                        &args as *const CloneArgs,
                        std::mem::size_of::<CloneArgs>(),
                    )
                };
                if r == 0 {
                    // Child: report its namespace, then leave at once.
                    let ino = ns_inode().to_ne_bytes();
                    libc::write(pipe[1], ino.as_ptr().cast(), 8);
                    libc::_exit(0);
                }
                libc::close(pipe[1]);
                if r > 0 {
                    let mut buf = [0u8; 8];
                    libc::read(pipe[0], buf.as_mut_ptr().cast(), 8);
                    CHILD_NS.with(|c| c.set(u64::from_ne_bytes(buf)));
                    libc::waitpid(r as i32, std::ptr::null_mut(), 0);
                }
                libc::close(pipe[0]);
                return (if r < 0 { -errno() } else { r }, r);
            }
            "fsopen" => {
                let n = cstr(s, "fs_name");
                libc::syscall(libc::SYS_fsopen, ptr(&n), i("flags"))
            }
            "fsconfig" => {
                let (k, v) = (cstr(s, "key"), cstr(s, "value"));
                libc::syscall(
                    libc::SYS_fsconfig,
                    i("fd"),
                    i("cmd"),
                    ptr(&k),
                    ptr(&v),
                    i("aux"),
                )
            }
            "fsmount" => libc::syscall(libc::SYS_fsmount, i("fd"), i("flags"), i("attr_flags")),
            "move_mount" => {
                let (f, t) = (cstr(s, "from_path"), cstr(s, "to_path"));
                libc::syscall(
                    libc::SYS_move_mount,
                    i("from_dfd"),
                    ptr(&f),
                    i("to_dfd"),
                    ptr(&t),
                    i("flags"),
                )
            }
            "open_tree" => {
                let p = cstr(s, "path");
                libc::syscall(libc::SYS_open_tree, i("dfd"), ptr(&p), i("flags"))
            }
            "open_tree_attr" | "mount_setattr" => {
                let p = cstr(s, "path");
                let attr = MountAttr {
                    attr_set: i("attr_set") as u64,
                    attr_clr: i("attr_clr") as u64,
                    propagation: i("propagation") as u64,
                    userns_fd: 0,
                };
                let nr = if op == "mount_setattr" {
                    libc::SYS_mount_setattr
                } else {
                    SYS_OPEN_TREE_ATTR
                };
                libc::syscall(
                    nr,
                    i("dfd"),
                    ptr(&p),
                    i("flags"),
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                )
            }
            // Helpers that mnttrace does not trace.
            "open" => {
                let p = cstr(s, "path");
                libc::open(ptr(&p), libc::O_RDONLY | libc::O_CLOEXEC) as i64
            }
            "mkdir" => {
                let p = cstr(s, "path");
                libc::mkdir(ptr(&p), 0o755) as i64
            }
            "close" => libc::close(i("fd") as i32) as i64,
            // The thread's command name, as tracers show it.
            "comm" => {
                let name = cstr(s, "name");
                libc::prctl(libc::PR_SET_NAME, ptr(&name)) as i64
            }
            other => panic!("unknown op {other}"),
        };
        (if r < 0 { -errno() } else { r }, 0)
    }
}

thread_local! {
    static CHILD_NS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn errno() -> i64 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64
}

/// Runs step `s` and returns the result line the tests read.
fn run(n: usize, s: &Value, rets: &mut Vec<i64>, tid: i32) -> Value {
    CHILD_NS.with(|c| c.set(0));
    let before = ns_inode();
    let (ret, child) = step(s, rets);
    let after = CHILD_NS.with(|c| c.get());
    let after = if after != 0 { after } else { ns_inode() };
    rets.push(ret);
    let errno = (ret < 0).then(|| format!("{:?}", nix::errno::Errno::from_raw(-ret as i32)));
    json!({
        "step": n, "op": s["op"], "ret": ret, "errno": errno, "tid": tid,
        "mntns_before": before, "mntns_after": after, "child_tid": child,
    })
}

/// `--join PID`: a second namespace cloned from PID's with propagation
/// unchanged (what `unshare -m --propagation unchanged` makes).
fn join(pid: &str) {
    let path = CString::new(format!("/proc/{pid}/ns/mnt")).expect("path");
    // SAFETY: plain syscalls on a fresh fd.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        assert!(fd >= 0, "open {pid}'s mount namespace");
        assert_eq!(libc::setns(fd, libc::CLONE_NEWNS), 0, "setns");
        libc::close(fd);
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--serve [--join PID]`: steps come one JSON line at a time on stdin, each
    // answered at once, so a test can interleave several drivers.
    if args.first().map(String::as_str) == Some("--serve") {
        match args.get(1).map(String::as_str) {
            Some("--join") => join(args.get(2).expect("--join PID")),
            _ => private_namespace(),
        }
        hello();
        let mut rets = Vec::new();
        let mut out = std::io::stdout().lock();
        let tid = unsafe { libc::gettid() };
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line.expect("stdin");
            let s: Value = serde_json::from_str(&line).expect("step is JSON");
            // {"op":"batch","steps":[...]}: back to back, one array of results.
            let rec = match s["steps"].as_array() {
                Some(steps) if s["op"] == "batch" => {
                    Value::Array(steps.iter().map(|s| run(n, s, &mut rets, tid)).collect())
                }
                _ => run(n, &s, &mut rets, tid),
            };
            writeln!(out, "{rec}").expect("stdout");
            out.flush().expect("stdout");
        }
        return;
    }
    let path = args
        .first()
        .expect("usage: mntdrive SCRIPT.json | --serve [--join PID]");
    let text = std::fs::read_to_string(path).expect("read script");
    let script: Vec<Value> = serde_json::from_str(&text).expect("script is a JSON array");
    private_namespace();
    hello();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).expect("stdin");

    let tid = unsafe { libc::gettid() };
    let mut out = std::io::stdout().lock();
    let mut rets = Vec::new();
    for (n, s) in script.iter().enumerate() {
        let rec = run(n, s, &mut rets, tid);
        writeln!(out, "{rec}").expect("stdout");
        out.flush().expect("stdout");
    }
    // Stay alive (fds open, /proc readable) until the test has its records.
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut rest);
}

fn hello() {
    let tid = unsafe { libc::gettid() };
    let mut out = std::io::stdout().lock();
    let hello = json!({"pid": std::process::id(), "tid": tid, "mntns": ns_inode()});
    writeln!(out, "{hello}").expect("stdout");
    out.flush().expect("stdout");
}

/// A fresh namespace of the driver's own, private throughout, so nothing it
/// does reaches the host.
fn private_namespace() {
    // SAFETY: plain syscalls.
    unsafe {
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare");
        let root = CString::new("/").expect("literal");
        let r = libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        assert_eq!(r, 0, "make / rprivate");
    }
}
