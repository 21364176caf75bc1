//! The kernel side of mnttrace: syscall tracepoints of every mount-related
//! call, paired per thread, one event per syscall at its exit.
//!
//! Kept minimal on purpose: capture raw arguments, user strings and namespace
//! inodes; every decision about meaning is made in userspace.
#![no_std]
#![no_main]

mod probes;
mod task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
