//! Soak-test load: `nschurn N DIR` makes N short-lived mount namespaces, one
//! after another, each a child that unshares, makes its mounts private,
//! mounts and unmounts a tmpfs on DIR and exits. Nothing reaches the host.
use std::ffi::CString;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: nschurn N DIR");
    let dir = CString::new(args.next().expect("usage: nschurn N DIR")).expect("DIR");
    let (tmpfs, root) = (c"tmpfs", c"/");
    for _ in 0..n {
        // SAFETY: fork in a single-threaded program; the child only makes
        // raw syscalls on pointers that live until it exits.
        unsafe {
            match libc::fork() {
                0 => {
                    let ok = libc::unshare(libc::CLONE_NEWNS) == 0
                        && libc::mount(
                            std::ptr::null(),
                            root.as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        ) == 0
                        && libc::mount(
                            tmpfs.as_ptr(),
                            dir.as_ptr(),
                            tmpfs.as_ptr(),
                            0,
                            std::ptr::null(),
                        ) == 0
                        && libc::umount2(dir.as_ptr(), 0) == 0;
                    libc::_exit(if ok { 0 } else { 1 });
                }
                -1 => panic!("fork: {}", std::io::Error::last_os_error()),
                child => {
                    let mut status = 0;
                    libc::waitpid(child, &mut status, 0);
                    assert!(
                        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                        "child failed"
                    );
                }
            }
        }
    }
}
