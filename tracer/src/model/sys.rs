//! listmount(2), statmount(2) and NS_GET_MNTNS_ID, by hand: libc, nix and
//! rustix (as of this writing) have none of them, and Debian's headers predate
//! them. Layouts follow include/uapi/linux/mount.h and nsfs.h of Linux 6.18.
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

const SYS_STATMOUNT: libc::c_long = 457;
const SYS_LISTMOUNT: libc::c_long = 458;
/// _IOR(0xb7, 0x5, __u64)
const NS_GET_MNTNS_ID: libc::c_ulong = 0x8008_b705;

const STATMOUNT_SB_BASIC: u64 = 0x1;
const STATMOUNT_MNT_BASIC: u64 = 0x2;
const STATMOUNT_PROPAGATE_FROM: u64 = 0x4;
const STATMOUNT_MNT_ROOT: u64 = 0x8;
const STATMOUNT_MNT_POINT: u64 = 0x10;
const STATMOUNT_FS_TYPE: u64 = 0x20;
const STATMOUNT_MNT_OPTS: u64 = 0x80;
const STATMOUNT_SB_SOURCE: u64 = 0x200;

const LSMT_ROOT: u64 = u64::MAX;

#[repr(C)]
struct MntIdReq {
    size: u32,
    spare: u32,
    mnt_id: u64,
    param: u64,
    mnt_ns_id: u64,
}

/// The fixed head of `struct statmount`; strings follow at `str` offsets.
#[repr(C)]
#[derive(Clone, Copy)]
struct StatmountHead {
    size: u32,
    mnt_opts: u32,
    mask: u64,
    sb_dev_major: u32,
    sb_dev_minor: u32,
    sb_magic: u64,
    sb_flags: u32,
    fs_type: u32,
    mnt_id: u64,
    mnt_parent_id: u64,
    mnt_id_old: u32,
    mnt_parent_id_old: u32,
    mnt_attr: u64,
    mnt_propagation: u64,
    mnt_peer_group: u64,
    mnt_master: u64,
    propagate_from: u64,
    mnt_root: u32,
    mnt_point: u32,
    mnt_ns_id: u64,
    fs_subtype: u32,
    sb_source: u32,
    opt_num: u32,
    opt_array: u32,
    opt_sec_num: u32,
    opt_sec_array: u32,
    supported_mask: u64,
    mnt_uidmap_num: u32,
    mnt_uidmap: u32,
    mnt_gidmap_num: u32,
    mnt_gidmap: u32,
    spare2: [u64; 43],
}

const HEAD: usize = std::mem::size_of::<StatmountHead>();
const _: () = assert!(HEAD == 512);

/// What statmount(2) says of one mount.
#[derive(Clone, Debug)]
pub struct Stat {
    pub mnt_id: u64,
    pub parent_id: u64,
    pub old_id: u32,
    pub propagation: u64,
    pub peer_group: u64,
    pub master: u64,
    pub propagate_from: u64,
    pub dev: (u32, u32),
    pub root: String,
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
    pub options: String,
}

/// The 64-bit id of the mount namespace `nsfd` refers to (Linux 6.11+).
pub fn mntns_id(nsfd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut id: u64 = 0;
    // SAFETY: NS_GET_MNTNS_ID writes one u64 through the pointer.
    let r = unsafe { libc::ioctl(nsfd.as_raw_fd(), NS_GET_MNTNS_ID, &mut id as *mut u64) };
    Errno::result(r).map(|_| id)
}

/// Every mount id of namespace `ns_id` (0: the caller's), in id order.
pub fn listmount(ns_id: u64) -> Result<Vec<u64>, Errno> {
    listmount_after(ns_id, 0)
}

/// The mount ids of namespace `ns_id` greater than `last` (unique ids grow:
/// these are the newest mounts).
pub fn listmount_after(ns_id: u64, mut last: u64) -> Result<Vec<u64>, Errno> {
    let mut all = Vec::new();
    // The kernel allocates (and charges to mnttrace's memcg) a buffer of
    // the size asked for on every call: a diff's listing above a table's
    // newest mount is usually one id, so it starts small.
    let mut cap = if last == 0 { 512 } else { 8 };
    let mut buf = [0u64; 512];
    loop {
        let req = MntIdReq {
            size: std::mem::size_of::<MntIdReq>() as u32,
            spare: 0,
            mnt_id: LSMT_ROOT,
            param: last,
            mnt_ns_id: ns_id,
        };
        let buf = &mut buf[..cap];
        // SAFETY: req is a valid mnt_id_req; buf holds buf.len() ids.
        let n = unsafe {
            libc::syscall(
                SYS_LISTMOUNT,
                &req as *const MntIdReq,
                buf.as_mut_ptr(),
                buf.len(),
                0,
            )
        };
        let n = Errno::result(n)? as usize;
        // The kernel returns at most buf.len() ids; more would be a bug, not a panic here.
        all.extend_from_slice(buf.get(..n).ok_or(Errno::EBADMSG)?);
        if n < buf.len() {
            return Ok(all);
        }
        last = buf[n - 1];
        cap = 512;
    }
}

/// How much of a mount statmount(2) is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// Ids, device, propagation and the strings (root, mount point, type,
    /// source, options).
    Full,
    /// Ids, device and propagation only: about half the cost, since any
    /// string makes the kernel allocate 12 KiB (3 * PATH_MAX) for the call
    /// (1.9 µs against 4.0 µs a call here, 30,000 mounts of a farm). The
    /// strings come back empty.
    Numbers,
}

impl Detail {
    fn mask(self) -> u64 {
        let numbers = STATMOUNT_SB_BASIC | STATMOUNT_MNT_BASIC | STATMOUNT_PROPAGATE_FROM;
        match self {
            Detail::Numbers => numbers,
            Detail::Full => {
                numbers
                    | STATMOUNT_MNT_ROOT
                    | STATMOUNT_MNT_POINT
                    | STATMOUNT_FS_TYPE
                    | STATMOUNT_MNT_OPTS
                    | STATMOUNT_SB_SOURCE
            }
        }
    }
}

/// statmount(2) of mount `mnt_id` in namespace `ns_id` (0: the caller's).
/// A reply that does not decode (see [`parse_statmount`]) is `EBADMSG`,
/// logged with what was wrong: callers tell kernel errors apart by errno.
pub fn statmount(ns_id: u64, mnt_id: u64, detail: Detail) -> Result<Stat, Errno> {
    let req = MntIdReq {
        size: std::mem::size_of::<MntIdReq>() as u32,
        spare: 0,
        mnt_id,
        param: detail.mask(),
        mnt_ns_id: ns_id,
    };
    thread_local! {
        // One buffer per thread, reused: a propagation into a thousand
        // namespaces is a thousand calls. u64 elements keep the head aligned
        // for the kernel's sake.
        static BUF: std::cell::RefCell<Vec<u64>> = std::cell::RefCell::new(vec![0; 4096 / 8]);
    }
    BUF.with_borrow_mut(|buf| {
        loop {
            let size = buf.len() * 8;
            // SAFETY: req is valid; buf is `size` writable bytes.
            let r = unsafe {
                libc::syscall(
                    SYS_STATMOUNT,
                    &req as *const MntIdReq,
                    buf.as_mut_ptr(),
                    size,
                    0,
                )
            };
            match Errno::result(r) {
                Err(Errno::EOVERFLOW) if size < 1 << 20 => {
                    buf.resize(size * 4 / 8, 0);
                    continue;
                }
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            // SAFETY: buf is `size` initialised bytes, viewed as bytes.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, size) };
            return parse_statmount(bytes).map_err(|e| {
                log::warn!("statmount of mount {mnt_id}: {e}");
                Errno::EBADMSG
            });
        }
    })
}

/// Why a statmount(2) reply does not decode.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StatmountError {
    #[error("reply of {len} bytes is shorter than the {HEAD}-byte struct statmount")]
    Short { len: usize },
    #[error("reply says it is {size} bytes, outside {HEAD}..={len}")]
    Size { size: u32, len: usize },
    #[error("reply lacks {what} (mask {mask:#x})")]
    Missing { what: &'static str, mask: u64 },
    #[error("{field} at offset {offset} is outside the {area}-byte string area")]
    Offset {
        field: &'static str,
        offset: u32,
        area: usize,
    },
    #[error("{field} at offset {offset} has no terminating NUL")]
    Unterminated { field: &'static str, offset: u32 },
}

/// Decodes a statmount(2) reply: `struct statmount`, then its string area
/// (`str[]`), which the head's string fields index into, up to `size` bytes.
/// Pure, for the fuzz target (`tracer/fuzz`): any bytes give a `Stat` or an
/// error, and nothing outside `buf` (or outside `size`) is read.
pub fn parse_statmount(buf: &[u8]) -> Result<Stat, StatmountError> {
    if buf.len() < HEAD {
        return Err(StatmountError::Short { len: buf.len() });
    }
    // SAFETY: buf holds HEAD bytes; StatmountHead is plain integers, valid
    // for any bit pattern; read_unaligned needs no alignment of buf.
    let head: StatmountHead =
        unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const StatmountHead) };
    let size = head.size as usize;
    if !(HEAD..=buf.len()).contains(&size) {
        return Err(StatmountError::Size {
            size: head.size,
            len: buf.len(),
        });
    }
    // Without these the ids and device below would be zeros, not the mount's.
    for (bit, what) in [
        (STATMOUNT_SB_BASIC, "STATMOUNT_SB_BASIC"),
        (STATMOUNT_MNT_BASIC, "STATMOUNT_MNT_BASIC"),
    ] {
        if head.mask & bit == 0 {
            return Err(StatmountError::Missing {
                what,
                mask: head.mask,
            });
        }
    }
    let strs = &buf[HEAD..size];
    // The kernel sets a string's mask bit only when it wrote the string (an
    // empty one, such as a mount without per-mount options, leaves it clear).
    let text = |bit: u64, offset: u32, field: &'static str| -> Result<String, StatmountError> {
        if head.mask & bit == 0 {
            return Ok(String::new());
        }
        let s = strs.get(offset as usize..).ok_or(StatmountError::Offset {
            field,
            offset,
            area: strs.len(),
        })?;
        let end = s
            .iter()
            .position(|&b| b == 0)
            .ok_or(StatmountError::Unterminated { field, offset })?;
        Ok(String::from_utf8_lossy(&s[..end]).into_owned())
    };
    Ok(Stat {
        mnt_id: head.mnt_id,
        parent_id: head.mnt_parent_id,
        old_id: head.mnt_id_old,
        propagation: head.mnt_propagation,
        peer_group: head.mnt_peer_group,
        master: head.mnt_master,
        propagate_from: head.propagate_from,
        dev: (head.sb_dev_major, head.sb_dev_minor),
        root: text(STATMOUNT_MNT_ROOT, head.mnt_root, "mnt_root")?,
        mount_point: text(STATMOUNT_MNT_POINT, head.mnt_point, "mnt_point")?,
        fstype: text(STATMOUNT_FS_TYPE, head.fs_type, "fs_type")?,
        source: text(STATMOUNT_SB_SOURCE, head.sb_source, "sb_source")?,
        options: text(STATMOUNT_MNT_OPTS, head.mnt_opts, "mnt_opts")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as the kernel lays it out: `head`, then `strs` as the string
    /// area, with `size` set to what was written.
    fn reply(mut head: StatmountHead, strs: &[u8]) -> Vec<u8> {
        head.size = (HEAD + strs.len()) as u32;
        let mut b = vec![0u8; HEAD];
        // SAFETY: b is HEAD bytes; head is plain integers.
        unsafe { std::ptr::write_unaligned(b.as_mut_ptr() as *mut StatmountHead, head) };
        b.extend_from_slice(strs);
        b
    }

    fn head() -> StatmountHead {
        // SAFETY: all integers: zero is a valid value of each.
        let mut h: StatmountHead = unsafe { std::mem::zeroed() };
        h.mask = STATMOUNT_SB_BASIC
            | STATMOUNT_MNT_BASIC
            | STATMOUNT_MNT_ROOT
            | STATMOUNT_MNT_POINT
            | STATMOUNT_FS_TYPE;
        h.mnt_id = 0x1_0000_0042;
        h.mnt_parent_id = 0x1_0000_0001;
        h.sb_dev_major = 8;
        h.sb_dev_minor = 1;
        // "\0" reserved by the kernel for unset offsets, then the strings.
        h.mnt_root = 1;
        h.mnt_point = 3;
        h.fs_type = 8;
        h
    }

    #[test]
    fn statmount_reply_decodes() {
        let st = parse_statmount(&reply(head(), b"\0/\0/mnt\0ext4\0")).expect("decodes");
        assert_eq!(st.mnt_id, 0x1_0000_0042);
        assert_eq!(st.dev, (8, 1));
        assert_eq!(
            (&*st.root, &*st.mount_point, &*st.fstype),
            ("/", "/mnt", "ext4")
        );
        // Mask bits clear: empty, whatever the offset says.
        assert_eq!((&*st.source, &*st.options), ("", ""));
    }

    #[test]
    fn statmount_reply_trailing_buffer_is_ignored() {
        // The syscall wrapper passes its whole buffer: bytes past `size` are
        // not the reply's, so a string may not run into them.
        let mut b = reply(head(), b"\0/\0/mnt\0ext4");
        b.extend_from_slice(b"\0\0\0\0");
        assert_eq!(
            parse_statmount(&b).map(|_| ()),
            Err(StatmountError::Unterminated {
                field: "fs_type",
                offset: 8
            })
        );
    }

    #[test]
    fn statmount_reply_errors() {
        let good = reply(head(), b"\0/\0/mnt\0ext4\0");
        assert_eq!(
            parse_statmount(&good[..HEAD - 1]).map(|_| ()),
            Err(StatmountError::Short { len: HEAD - 1 })
        );
        // size past the buffer, and size inside the head.
        assert!(matches!(
            parse_statmount(&good[..good.len() - 1]),
            Err(StatmountError::Size { .. })
        ));
        let mut small = good.clone();
        small[..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(matches!(
            parse_statmount(&small),
            Err(StatmountError::Size { size: 8, .. })
        ));
        let mut h = head();
        h.mnt_point = 1000;
        assert_eq!(
            parse_statmount(&reply(h, b"\0/\0/mnt\0ext4\0")).map(|_| ()),
            Err(StatmountError::Offset {
                field: "mnt_point",
                offset: 1000,
                area: 13
            })
        );
        h = head();
        h.mask &= !STATMOUNT_MNT_BASIC;
        assert!(matches!(
            parse_statmount(&reply(h, b"\0/\0/mnt\0ext4\0")),
            Err(StatmountError::Missing { .. })
        ));
    }

    #[test]
    fn real_reply_decodes() {
        // Dumped from statmount(2) on Linux 6.18 (a fuzz seed): a tmpfs from
        // "src with\ttab" on "/tmp/fzm/with space", with no fs options.
        let b = include_bytes!("../../fuzz/seeds/statmount/real-tmpfs-with-space.bin");
        let st = parse_statmount(b).expect("decodes");
        assert_eq!(
            (
                &*st.root,
                &*st.mount_point,
                &*st.fstype,
                &*st.source,
                &*st.options
            ),
            ("/", "/tmp/fzm/with space", "tmpfs", "src with\ttab", "")
        );
        assert_ne!(st.peer_group, 0, "mounted shared");
    }

    /// Read in numbers, a mount is what it is read whole, without strings.
    #[test]
    fn numbers_are_the_whole_read_without_strings() {
        let Ok(ids) = listmount(0) else {
            eprintln!("skipped: listmount(2) unavailable on this kernel");
            return;
        };
        for id in ids {
            let (Ok(whole), Ok(numbers)) = (
                statmount(0, id, Detail::Full),
                statmount(0, id, Detail::Numbers),
            ) else {
                continue; // unmounted meanwhile
            };
            let key = |s: &Stat| {
                (
                    s.mnt_id,
                    s.parent_id,
                    s.old_id,
                    s.propagation,
                    s.peer_group,
                    s.master,
                    s.propagate_from,
                    s.dev,
                )
            };
            assert_eq!(key(&numbers), key(&whole));
            assert!(!whole.mount_point.is_empty(), "{whole:?}");
            let strings = [
                &numbers.root,
                &numbers.mount_point,
                &numbers.fstype,
                &numbers.source,
                &numbers.options,
            ];
            assert!(strings.iter().all(|s| s.is_empty()), "{numbers:?}");
        }
    }

    #[test]
    fn own_namespace_statmount_decodes() {
        // The real syscall, unprivileged: the caller's own namespace.
        let ids = match listmount(0) {
            Ok(ids) => ids,
            Err(e) => {
                eprintln!("skipped: listmount(2) unavailable on this kernel: {e}");
                return;
            }
        };
        assert!(!ids.is_empty(), "listmount(2) listed no mount");
        for id in ids {
            match statmount(0, id, Detail::Full) {
                Ok(st) => {
                    assert_eq!(st.mnt_id, id);
                    assert!(st.mount_point.starts_with('/'), "{st:?}");
                    assert!(!st.fstype.is_empty(), "{st:?}");
                }
                // Unmounted since listmount(2).
                Err(Errno::ENOENT) => {}
                Err(e) => panic!("statmount(2) of mount {id}: {e}"),
            }
        }
    }
}
