//! Reads from kernel structs through the offsets userspace found in BTF.

use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use tracer_ebpf::{NSFS_MAGIC, Offsets};

/// Overridden at load time by the agent with offsets from the running
/// kernel's BTF. Until then it is `POISON` and [`offsets`] refuses to work.
#[unsafe(no_mangle)]
static OFFSETS: Offsets = Offsets::POISON;

/// Thread-group id to trace, 0 for all (a kernel-side `--pid` filter).
#[unsafe(no_mangle)]
static FILTER_TGID: u32 = 0;

#[inline(always)]
pub fn offsets() -> Option<Offsets> {
    // SAFETY: a static; read_volatile keeps the compiler from folding POISON in.
    let o = unsafe { core::ptr::read_volatile(&OFFSETS) };
    (o.magic == Offsets::MAGIC).then_some(o)
}

#[inline(always)]
pub fn filter_tgid() -> u32 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&FILTER_TGID) }
}

#[inline(always)]
fn read<T>(base: u64, off: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel tolerates any address.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T).ok() }
}

#[inline(always)]
pub fn current() -> u64 {
    // SAFETY: always valid in tracing programs.
    unsafe { bpf_get_current_task() }
}

/// `task->nsproxy->mnt_ns`; 0 while the task is exiting.
#[inline(always)]
pub fn mnt_ns_ptr(o: &Offsets, task: u64) -> u64 {
    let nsproxy: u64 = read(task, o.task_nsproxy).unwrap_or(0);
    read(nsproxy, o.nsproxy_mnt_ns).unwrap_or(0)
}

/// `task->nsproxy->mnt_ns->ns.inum`; 0 while the task is exiting.
#[inline(always)]
pub fn mntns_of(o: &Offsets, task: u64) -> u32 {
    inum_of(o, mnt_ns_ptr(o, task))
}

#[inline(always)]
pub fn inum_of(o: &Offsets, mnt_ns: u64) -> u32 {
    read(mnt_ns, o.mnt_ns_inum).unwrap_or(0)
}

/// The unique id of the newest mount of namespace `mnt_ns` (the last node of
/// its tree of mounts, which is ordered by that id), 0 if none. Read without
/// the namespace's lock: after a call's own changes, which is all it is for.
#[inline(always)]
pub fn newest_mount(o: &Offsets, mnt_ns: u64) -> u64 {
    let node: u64 = read(mnt_ns, o.mnt_ns_last_node).unwrap_or(0);
    if node == 0 {
        return 0;
    }
    read(node.wrapping_sub(o.mount_node as u64), o.mount_id_unique).unwrap_or(0)
}

#[inline(always)]
pub fn ppid_of(o: &Offsets, task: u64) -> u32 {
    let parent: u64 = read(task, o.task_real_parent).unwrap_or(0);
    read(parent, o.task_tgid).unwrap_or(0)
}

#[inline(always)]
pub fn tid_of(o: &Offsets, task: u64) -> u32 {
    read(task, o.task_pid).unwrap_or(0)
}

/// The namespace inode behind `fd` of the current task if it is an nsfs file
/// (what `setns` was given), else 0.
#[inline(always)]
pub fn nsfs_inode_of_fd(o: &Offsets, fd: u64) -> u64 {
    let files: u64 = read(current(), o.task_files).unwrap_or(0);
    let fdt: u64 = read(files, o.files_fdt).unwrap_or(0);
    let max_fds: u32 = read(fdt, o.fdt_max_fds).unwrap_or(0);
    if fd >= max_fds as u64 {
        return 0;
    }
    let fd_array: u64 = read(fdt, o.fdt_fd).unwrap_or(0);
    if fd_array == 0 {
        return 0;
    }
    let file: u64 = read(fd_array + fd * 8, 0).unwrap_or(0);
    let inode: u64 = read(file, o.file_inode).unwrap_or(0);
    let sb: u64 = read(inode, o.inode_sb).unwrap_or(0);
    let magic: u64 = read(sb, o.sb_magic).unwrap_or(0);
    if magic != NSFS_MAGIC {
        return 0;
    }
    read(inode, o.inode_ino).unwrap_or(0)
}
