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
    loop {
        let req = MntIdReq {
            size: std::mem::size_of::<MntIdReq>() as u32,
            spare: 0,
            mnt_id: LSMT_ROOT,
            param: last,
            mnt_ns_id: ns_id,
        };
        let mut buf = [0u64; 512];
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
        all.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            return Ok(all);
        }
        last = buf[n - 1];
    }
}

/// statmount(2) of mount `mnt_id` in namespace `ns_id` (0: the caller's).
pub fn statmount(ns_id: u64, mnt_id: u64) -> Result<Stat, Errno> {
    let req = MntIdReq {
        size: std::mem::size_of::<MntIdReq>() as u32,
        spare: 0,
        mnt_id,
        param: STATMOUNT_SB_BASIC
            | STATMOUNT_MNT_BASIC
            | STATMOUNT_PROPAGATE_FROM
            | STATMOUNT_MNT_ROOT
            | STATMOUNT_MNT_POINT
            | STATMOUNT_FS_TYPE
            | STATMOUNT_MNT_OPTS
            | STATMOUNT_SB_SOURCE,
        mnt_ns_id: ns_id,
    };
    let mut size = 4096usize;
    loop {
        // u64 elements keep the head aligned.
        let mut buf = vec![0u64; size / 8];
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
                size *= 4;
                continue;
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        // SAFETY: the kernel wrote at least the head; buf is 8-aligned.
        let head: StatmountHead = unsafe { std::ptr::read(buf.as_ptr() as *const StatmountHead) };
        // SAFETY: the bytes of buf, as bytes.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, size) };
        let strs = &bytes[HEAD.min(bytes.len())..(head.size as usize).clamp(HEAD, size)];
        let text = |bit: u64, off: u32| -> String {
            if head.mask & bit == 0 {
                return String::new();
            }
            let s = strs.get(off as usize..).unwrap_or(&[]);
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        };
        return Ok(Stat {
            mnt_id: head.mnt_id,
            parent_id: head.mnt_parent_id,
            old_id: head.mnt_id_old,
            propagation: head.mnt_propagation,
            peer_group: head.mnt_peer_group,
            master: head.mnt_master,
            propagate_from: head.propagate_from,
            dev: (head.sb_dev_major, head.sb_dev_minor),
            root: text(STATMOUNT_MNT_ROOT, head.mnt_root),
            mount_point: text(STATMOUNT_MNT_POINT, head.mnt_point),
            fstype: text(STATMOUNT_FS_TYPE, head.fs_type),
            source: text(STATMOUNT_SB_SOURCE, head.sb_source),
            options: text(STATMOUNT_MNT_OPTS, head.mnt_opts),
        });
    }
}
