//! The contract between the kernel program and the `mnttrace` agent.
//!
//! Everything that crosses the ring buffer or is handed to the program at load
//! time is defined here, once, `#[repr(C)]`, with its size asserted so that a
//! change on one side cannot silently misread the other.
#![no_std]

use core::mem::size_of;

/// Bytes kept of each string argument (NUL included). Longer strings are cut
/// and flagged in [`Event::str_trunc`].
pub const STR_CAP: usize = 512;
/// String slots per event; see [`call`] for what each slot holds per syscall.
pub const NSTR: usize = 4;
pub const COMM_LEN: usize = 16;

/// Syscall identifiers carried in [`Event::call`].
///
/// String slots and `aux` words per call (everything else is in `args`, raw):
/// - `MOUNT`: strs source, target, fstype, data.
/// - `UMOUNT`: strs target.
/// - `PIVOT_ROOT`: strs new_root, put_old.
/// - `SETNS`: aux[0] inode of the target namespace when the fd is an nsfs file.
/// - `UNSHARE`: none.
/// - `CLONE`, `CLONE3`: aux[0] clone flags, aux[1] child tid (global).
/// - `FSOPEN`: strs fs_name.
/// - `FSCONFIG`: strs key, value (value only for the string/path commands).
/// - `FSMOUNT`: none.
/// - `MOVE_MOUNT`: strs from_path, to_path.
/// - `OPEN_TREE`: strs path.
/// - `OPEN_TREE_ATTR`, `MOUNT_SETATTR`: strs path; aux attr_set, attr_clr,
///   propagation, userns_fd from `struct mount_attr` (aux[3] = u64::MAX when
///   the struct could not be read).
pub mod call {
    pub const MOUNT: u32 = 1;
    pub const UMOUNT: u32 = 2;
    pub const PIVOT_ROOT: u32 = 3;
    pub const SETNS: u32 = 4;
    pub const UNSHARE: u32 = 5;
    pub const CLONE: u32 = 6;
    pub const CLONE3: u32 = 7;
    pub const FSOPEN: u32 = 8;
    pub const FSCONFIG: u32 = 9;
    pub const FSMOUNT: u32 = 10;
    pub const MOVE_MOUNT: u32 = 11;
    pub const OPEN_TREE: u32 = 12;
    pub const OPEN_TREE_ATTR: u32 = 13;
    pub const MOUNT_SETATTR: u32 = 14;
}

/// `CLONE_NEWNS`, the only clone/unshare/setns flag that makes a call ours.
pub const CLONE_NEWNS: u64 = 0x0002_0000;

/// Indexes into the per-CPU `DROPS` counter array.
pub mod drop {
    /// The ring buffer had no room for an event.
    pub const RINGBUF_FULL: u32 = 0;
    /// The per-thread enter map had no room: the syscall is not reported.
    pub const ENTER_MAP_FULL: u32 = 1;
    pub const COUNT: u32 = 2;
}

/// One mount-related syscall, emitted at its exit.
///
/// On the ring it is cut short: the [`EVENT_HEAD`] bytes before `strs`, then
/// the strings packed one after another (slot i after slots 0..i, each
/// `str_len[i]` bytes, no NUL), so a record is as long as what it carries.
/// Most records are a tenth of the whole struct, and a ring of a given size
/// holds ten times as many.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Event {
    /// `bpf_ktime_get_ns()` at syscall exit (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    pub latency_ns: u64,
    pub cgroup_id: u64,
    /// The syscall's return value: negative errno on failure.
    pub ret: i64,
    /// Raw syscall arguments, as the tracepoint saw them.
    pub args: [u64; 6],
    /// Per-call extra words; see [`call`].
    pub aux: [u64; 4],
    /// The unique id of the newest mount in the caller's namespace at entry
    /// (umount2 only, else 0) and at exit (mount and umount2, else 0): ids only grow, so a mount call's
    /// own mount is the newest at its exit, and an umount2 after which the
    /// newest is older took it away. What a namespace no mount event is read
    /// from shows of a mount made and gone before userspace could look.
    pub newest_before: u64,
    pub newest_after: u64,
    /// Thread-group id and thread id, in the initial pid namespace.
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub call: u32,
    /// Mount namespace inode at entry and at exit (for clone: the child's).
    pub mntns_before: u32,
    pub mntns_after: u32,
    /// Bytes of each string slot, NUL excluded.
    pub str_len: [u16; NSTR],
    /// Bit i: slot i was cut at `STR_CAP - 1` bytes.
    pub str_trunc: u32,
    /// Bit i: slot i had a pointer but reading user memory failed.
    pub str_fault: u32,
    pub comm: [u8; COMM_LEN],
    /// The string slots, packed (see above).
    pub strs: [u8; NSTR * STR_CAP],
}

/// A ring record that carries no event: sent to wake the agent when it went
/// to sleep while a record was on its way (see `WAKE` in the program).
/// Shorter than any event, so never taken for one.
pub const WAKE_RECORD: [u8; 8] = *b"mntwake\0";

/// Bytes of an [`Event`] before its strings: the shortest record.
pub const EVENT_HEAD: usize = core::mem::offset_of!(Event, strs);

/// Byte offsets of the kernel struct members the program reads, computed by
/// the agent from /sys/kernel/btf/vmlinux at load time (Rust eBPF has no
/// CO-RE relocations). Handed over with `EbpfLoader::override_global`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    /// [`Offsets::MAGIC`] once filled in; the program does nothing until then.
    pub magic: u32,
    pub task_nsproxy: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_files: u32,
    pub nsproxy_mnt_ns: u32,
    /// `mnt_namespace.ns.inum`, nesting folded in.
    pub mnt_ns_inum: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_inode: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub sb_magic: u32,
    /// `mnt_namespace.mnt_last_node`: the rb-tree node of its newest mount.
    pub mnt_ns_last_node: u32,
    /// `mount.mnt_node`, to get from that node to its mount.
    pub mount_node: u32,
    pub mount_id_unique: u32,
}

impl Offsets {
    pub const MAGIC: u32 = 0x6d6e_7474; // "mntt"
    /// What the object carries until userspace overrides it.
    pub const POISON: Offsets = Offsets {
        magic: 0,
        task_nsproxy: u32::MAX,
        task_real_parent: u32::MAX,
        task_tgid: u32::MAX,
        task_pid: u32::MAX,
        task_files: u32::MAX,
        nsproxy_mnt_ns: u32::MAX,
        mnt_ns_inum: u32::MAX,
        files_fdt: u32::MAX,
        fdt_max_fds: u32::MAX,
        fdt_fd: u32::MAX,
        file_inode: u32::MAX,
        inode_ino: u32::MAX,
        inode_sb: u32::MAX,
        sb_magic: u32::MAX,
        mnt_ns_last_node: u32::MAX,
        mount_node: u32::MAX,
        mount_id_unique: u32::MAX,
    };
}

/// What the enter handler keeps per thread until the syscall exits.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Enter {
    pub ts_ns: u64,
    pub args: [u64; 6],
    pub aux: [u64; 4],
    /// User pointers of the string arguments, 0 for an empty slot.
    pub str_ptrs: [u64; NSTR],
    /// See [`Event::newest_before`].
    pub newest_before: u64,
    pub call: u32,
    pub mntns_before: u32,
    /// Set by the fork hook for clone/clone3: the child's namespace.
    pub child_mntns: u32,
    /// The thread the entry is for: the exit probe checks it, as an LRU map
    /// may hand a full map's oldest entry to another thread meanwhile.
    pub tid: u32,
}

impl Enter {
    /// What a thread's entry holds before its first call.
    pub const EMPTY: Enter = Enter {
        ts_ns: 0,
        args: [0; 6],
        aux: [0; 4],
        str_ptrs: [0; NSTR],
        newest_before: 0,
        call: 0,
        mntns_before: 0,
        child_mntns: 0,
        tid: 0,
    };
}

/// `NSFS_MAGIC` from uapi/linux/magic.h: the fd given to setns is a namespace file.
pub const NSFS_MAGIC: u64 = 0x6e73_6673;

const _: () = assert!(size_of::<Event>() == 192 + NSTR * STR_CAP);
const _: () = assert!(EVENT_HEAD == 192);
const _: () = assert!(WAKE_RECORD.len() < EVENT_HEAD);
const _: () = assert!(size_of::<Offsets>() == 18 * 4);
const _: () = assert!(size_of::<Enter>() == 8 + 48 + 32 + 32 + 8 + 16);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data, `#[repr(C)]`, every bit pattern valid.
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::Offsets {}
}
