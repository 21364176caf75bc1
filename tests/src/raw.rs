//! Bare mount(2) for the bench's workload generators (stormgen, nsfarm):
//! called in tight loops and between fork and wait, where the test world's
//! JSON-speaking helpers would cost more than the call measured.
use std::ffi::CString;

pub fn cstr(s: &str) -> CString {
    CString::new(s).expect("paths come from the bench, without NUL")
}

/// Panics with `who: what: <errno>` when a set-up call returned non-zero.
pub fn check(who: &str, r: libc::c_int, what: &str) {
    if r != 0 {
        panic!("{who}: {what}: {}", std::io::Error::last_os_error());
    }
}

pub fn mount(src: &str, target: &str, fstype: Option<&str>, flags: libc::c_ulong) -> libc::c_int {
    let (src, target, fstype) = (cstr(src), cstr(target), fstype.map(cstr));
    // SAFETY: valid C strings that outlive the call.
    unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            std::ptr::null(),
        )
    }
}
