//! fanotify mount notifications (Linux 6.15+): one group, one FAN_MARK_MNTNS
//! mark per watched namespace, FAN_MNT_ATTACH|FAN_MNT_DETACH events naming the
//! unique mount id and the process whose syscall caused them. Written against
//! libc because no crate knows FAN_REPORT_MNT yet; constants from
//! include/uapi/linux/fanotify.h of Linux 6.18.
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

const FAN_REPORT_MNT: libc::c_uint = 0x0000_4000;
const FAN_MARK_MNTNS: libc::c_uint = 0x0000_0110;
pub const FAN_MNT_ATTACH: u64 = 0x0100_0000;
pub const FAN_MNT_DETACH: u64 = 0x0200_0000;
const FAN_Q_OVERFLOW: u64 = 0x0000_4000;
const FAN_EVENT_INFO_TYPE_MNT: u8 = 7;
/// fanotify_event_metadata: event_len u32, vers u8, reserved u8,
/// metadata_len u16, mask u64, fd i32, pid i32.
const METADATA_LEN: usize = 24;

/// One mount event as the kernel queued it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Mount {
        mask: u64,
        pid: u32,
        mnt_id: u64,
    },
    /// The kernel's queue overflowed: events were dropped.
    Overflow,
}

pub struct Watcher {
    fd: OwnedFd,
    buf: std::cell::RefCell<Vec<u8>>,
}

impl AsRawFd for Watcher {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Watcher {
    /// EINVAL means a kernel without mount notifications.
    pub fn new() -> Result<Watcher, Errno> {
        let flags = FAN_REPORT_MNT | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | libc::FAN_CLASS_NOTIF;
        // SAFETY: plain syscall; the fd returned is owned below.
        let fd = unsafe { libc::fanotify_init(flags, 0) };
        let fd = Errno::result(fd)?;
        // SAFETY: fanotify_init returned a fresh fd.
        Ok(Watcher {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            buf: std::cell::RefCell::new(vec![0; 64 * 1024]),
        })
    }

    /// Watches the mount namespace `nsfd` (an open /proc/PID/ns/mnt).
    pub fn watch(&self, nsfd: BorrowedFd<'_>) -> Result<(), Errno> {
        self.mark(libc::FAN_MARK_ADD, nsfd)
    }

    /// Stops watching the mount namespace `nsfd`.
    pub fn unwatch(&self, nsfd: BorrowedFd<'_>) -> Result<(), Errno> {
        self.mark(libc::FAN_MARK_REMOVE, nsfd)
    }

    fn mark(&self, how: libc::c_uint, nsfd: BorrowedFd<'_>) -> Result<(), Errno> {
        // SAFETY: valid fds; a NULL path makes the mark on the dirfd itself.
        let r = unsafe {
            libc::fanotify_mark(
                self.fd.as_raw_fd(),
                how | FAN_MARK_MNTNS,
                FAN_MNT_ATTACH | FAN_MNT_DETACH,
                nsfd.as_raw_fd(),
                std::ptr::null(),
            )
        };
        Errno::result(r).map(drop)
    }

    /// Every event queued now, in the kernel's order.
    pub fn read(&self) -> Result<Vec<Event>, Errno> {
        let mut out = Vec::new();
        // Reused: read once per syscall seen, and zeroing 64K each time showed.
        let mut buf = self.buf.borrow_mut();
        let buf = &mut *buf;
        loop {
            match nix::unistd::read(self.fd.as_fd(), buf) {
                Ok(0) | Err(Errno::EAGAIN) => return Ok(out),
                Ok(n) => {
                    parse(&buf[..n], &mut out);
                    // fanotify_read stops only when the queue is empty or
                    // the next event does not fit: a read that left room for
                    // any event emptied the queue, and the read that would
                    // say EAGAIN is saved (half of a storm's reads).
                    if n + ROOM <= buf.len() {
                        return Ok(out);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// More than any event of a mount-only group takes (metadata and one mount
/// record, 40 bytes).
const ROOM: usize = 1024;

/// `struct fanotify_event_info_mnt`: a 4-byte header, then (after padding)
/// the 64-bit mount id, so a record shorter than this cannot hold one.
const MNT_INFO_MIN: usize = 4 + 8;

/// Parses the raw bytes of one read(2) of a fanotify group: events of
/// `fanotify_event_metadata`, each followed by its info records, appended to
/// `out` in order. Public for the fuzz target (`tracer/fuzz`): the bytes come
/// from the kernel, but a malformed buffer must only lose events, never panic.
pub fn parse(mut buf: &[u8], out: &mut Vec<Event>) {
    while buf.len() >= METADATA_LEN {
        let Some(len) = u32_at(buf, 0).map(|l| l as usize) else {
            return;
        };
        if len < METADATA_LEN || len > buf.len() {
            log::warn!("malformed fanotify event of {len} bytes skipped");
            return;
        }
        let ev = &buf[..len];
        buf = &buf[len..];
        let meta_len = u16_at(ev, 6).map_or(METADATA_LEN, usize::from);
        // A shorter metadata_len would have us read the metadata itself as
        // info records, a longer one past the event.
        if !(METADATA_LEN..=len).contains(&meta_len) {
            log::warn!("fanotify event with metadata_len {meta_len} of {len} skipped");
            continue;
        }
        let mask = u64_at(ev, 8).unwrap_or(0);
        let pid = u32_at(ev, 20).unwrap_or(0);
        if mask & FAN_Q_OVERFLOW != 0 {
            out.push(Event::Overflow);
            continue;
        }
        let mut info = &ev[meta_len..];
        while info.len() >= 4 {
            let kind = info[0];
            let ilen = usize::from(u16_at(info, 2).unwrap_or(0));
            if ilen < 4 || ilen > info.len() {
                break;
            }
            // The mount id is the record's last 8 bytes, whatever the padding;
            // a record too short for one holds none (its last 8 bytes would
            // be its own header or the bytes before it).
            if kind == FAN_EVENT_INFO_TYPE_MNT
                && ilen >= MNT_INFO_MIN
                && let Some(mnt_id) = u64_at(info, ilen - 8)
            {
                out.push(Event::Mount { mask, pid, mnt_id });
            }
            info = &info[ilen..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_mount_event() {
        let mut b = Vec::new();
        b.extend_from_slice(&40u32.to_ne_bytes()); // event_len
        b.extend_from_slice(&[3, 0]); // vers, reserved
        b.extend_from_slice(&24u16.to_ne_bytes()); // metadata_len
        b.extend_from_slice(&(FAN_MNT_ATTACH | FAN_MNT_DETACH).to_ne_bytes());
        b.extend_from_slice(&(-1i32).to_ne_bytes()); // fd
        b.extend_from_slice(&77u32.to_ne_bytes()); // pid
        b.extend_from_slice(&[FAN_EVENT_INFO_TYPE_MNT, 0]);
        b.extend_from_slice(&16u16.to_ne_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&0x1_0000_002au64.to_ne_bytes());
        let mut out = Vec::new();
        parse(&b, &mut out);
        assert_eq!(
            out,
            [Event::Mount {
                mask: FAN_MNT_ATTACH | FAN_MNT_DETACH,
                pid: 77,
                mnt_id: 0x1_0000_002a
            }]
        );
    }

    #[test]
    fn real_buffer_parses() {
        // One read(2) on Linux 6.18 (a fuzz seed): four mounts attached in a
        // fresh namespace, then the last one detached.
        let b = include_bytes!("../../fuzz/seeds/fanotify/real-4-attach-1-detach.bin");
        let mut out = Vec::new();
        parse(b, &mut out);
        let masks: Vec<u64> = out
            .iter()
            .map(|e| match e {
                Event::Mount { mask, .. } => *mask,
                Event::Overflow => 0,
            })
            .collect();
        assert_eq!(
            masks,
            [
                FAN_MNT_ATTACH,
                FAN_MNT_ATTACH,
                FAN_MNT_ATTACH,
                FAN_MNT_ATTACH,
                FAN_MNT_DETACH
            ]
        );
        assert!(matches!((out[3], out[4]), (
            Event::Mount { mnt_id: a, .. },
            Event::Mount { mnt_id: d, .. }
        ) if a == d));
    }

    /// metadata of an event of `len` bytes with the given metadata_len.
    fn meta(len: u32, meta_len: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&[3, 0]);
        b.extend_from_slice(&meta_len.to_ne_bytes());
        b.extend_from_slice(&FAN_MNT_ATTACH.to_ne_bytes());
        b.extend_from_slice(&(-1i32).to_ne_bytes());
        b.extend_from_slice(&77u32.to_ne_bytes());
        b
    }

    #[test]
    fn short_mount_record_holds_no_id() {
        // A 4-byte mount record: its "last 8 bytes" were taken from its own
        // header and the metadata before it, inventing a mount id.
        let mut b = meta(32, 24);
        b.extend_from_slice(&[FAN_EVENT_INFO_TYPE_MNT, 0]);
        b.extend_from_slice(&4u16.to_ne_bytes());
        b.extend_from_slice(&[FAN_EVENT_INFO_TYPE_MNT, 0]);
        b.extend_from_slice(&4u16.to_ne_bytes());
        let mut out = Vec::new();
        parse(&b, &mut out);
        assert_eq!(out, []);
    }

    #[test]
    fn metadata_len_outside_the_event_is_skipped() {
        // metadata_len 0 would read the metadata as info records, one past
        // the event would read the next event's bytes; the event after is kept.
        let mut b = meta(24, 0);
        b.extend_from_slice(&meta(24, 25));
        let mut ok = meta(40, 24);
        ok.extend_from_slice(&[FAN_EVENT_INFO_TYPE_MNT, 0]);
        ok.extend_from_slice(&16u16.to_ne_bytes());
        ok.extend_from_slice(&[0; 4]);
        ok.extend_from_slice(&9u64.to_ne_bytes());
        b.extend_from_slice(&ok);
        let mut out = Vec::new();
        parse(&b, &mut out);
        assert_eq!(
            out,
            [Event::Mount {
                mask: FAN_MNT_ATTACH,
                pid: 77,
                mnt_id: 9
            }]
        );
    }
}
