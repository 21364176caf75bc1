//! Syscall tracepoints. Each `sys_enter_X` stashes its raw arguments per
//! thread; the matching `sys_exit_X` turns them into one [`Event`] with the
//! return value, reading user strings then (the kernel has copied them in by
//! exit, so the pages are resident and the reads do not fault).
//!
//! Record layout of a syscall tracepoint (events/syscalls/*/format): 8 bytes
//! of common fields, `int __syscall_nr` at 8, then each argument as 8 bytes
//! from offset 16; the exit record has `long ret` at 16.

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_str_bytes, generated as raw,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
};
use aya_log_ebpf::debug;
use core::mem::size_of;

use tracer_ebpf::{
    CLONE_NEWNS, COMM_LEN, EVENT_HEAD, Enter, Event, NSTR, STR_CAP, WAKE_RECORD, call, drop,
};

use crate::task;

/// Default 4 MiB; the agent sets the size with `--ring-size`.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// 1 while the agent waits for a wake-up, 0 while it is awake (it then reads
/// the ring without one). A wake-up is an irq_work, a self-IPI: in a VM an
/// exit to the hypervisor, and sent once per burst it was the larger part of
/// an exit probe's samples in a profile of a storm. The agent's side of the
/// handshake is in `capture/wake.rs` and `agent.rs`.
#[map]
static WAKE: Array<u32> = Array::with_max_entries(1, 0);

/// Where each CPU builds the event it is about to emit.
#[map]
static SCRATCH: PerCpuArray<Event> = PerCpuArray::with_max_entries(1, 0);

/// Per-thread state between enter and exit. LRU so that threads killed inside
/// a syscall cannot fill it for good.
#[map]
static ENTER: LruHashMap<u32, Enter> = LruHashMap::with_max_entries(16384, 0);

#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(drop::COUNT, 0);

const ARGS_OFF: usize = 16;
const RET_OFF: usize = 16;

fn count_drop(idx: u32) {
    if let Some(p) = DROPS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *p += 1 };
    }
}

/// The field at `off` of the tracepoint record: a direct load (the verifier
/// checks a program's context accesses), not a probe-read helper call per
/// argument.
#[inline(always)]
fn field<T: Copy>(ctx: &TracePointContext, off: usize) -> T {
    // SAFETY: `off` is a constant within the record's fixed layout (see the
    // module comment); the verifier rejects any other context access.
    unsafe { *(ctx.as_ptr().cast::<u8>().add(off).cast::<T>()) }
}

#[inline(always)]
fn arg(ctx: &TracePointContext, i: usize) -> u64 {
    field(ctx, ARGS_OFF + i * 8)
}

/// Copies word by word. A plain assignment becomes a call to a byte-at-a-time
/// memmove in BPF (the compiler cannot tell a map value from the scratch
/// event apart): some eighty loop rounds per event.
#[inline(always)]
fn copy_words<const N: usize>(dst: &mut [u64; N], src: &[u64; N]) {
    for i in 0..N {
        // SAFETY: both in bounds; volatile keeps LLVM from fusing the words
        // back into a memmove.
        unsafe { core::ptr::write_volatile(&mut dst[i], core::ptr::read_volatile(&src[i])) };
    }
}

/// Calls that can move the calling thread to another mount namespace: only
/// for them is the namespace read at entry as well as at exit.
#[inline(always)]
fn changes_namespace(call: u32) -> bool {
    matches!(
        call,
        call::SETNS | call::UNSHARE | call::CLONE | call::CLONE3
    )
}

/// Calls whose exit reads the newest mount in the caller's namespace (see
/// `Event::newest_before`): the ones userspace reads it for.
#[inline(always)]
fn reads_newest(call: u32) -> bool {
    matches!(call, call::MOUNT | call::UMOUNT)
}

/// Which argument indexes hold user strings for this call.
struct Strs([Option<usize>; NSTR]);
const NONE: Strs = Strs([None; NSTR]);

#[inline(always)]
fn stash(ctx: &TracePointContext, call: u32, nargs: usize, strs: Strs, aux: [u64; 4]) -> u32 {
    let Some(o) = task::offsets() else {
        return 0;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let filter = task::filter_tgid();
    if filter != 0 && (pid_tgid >> 32) as u32 != filter {
        return 0;
    }
    let tid = pid_tgid as u32;
    // A thread's entry stays in the map between its calls and is rewritten
    // in place, not inserted and deleted per call (with the direct loads and
    // the namespace read only where needed, an enter probe went from 0.7 to
    // 0.25 µs). The LRU bounds what threads that are gone leave behind.
    let e = match ENTER.get_ptr_mut(&tid) {
        Some(e) => e,
        None => {
            if ENTER.insert(&tid, &Enter::EMPTY, 0).is_err() {
                count_drop(drop::ENTER_MAP_FULL);
                debug!(ctx, "mnttrace: enter map full, tid {}", tid);
                return 0;
            }
            let Some(e) = ENTER.get_ptr_mut(&tid) else {
                count_drop(drop::ENTER_MAP_FULL);
                return 0;
            };
            e
        }
    };
    // SAFETY: `e` is this thread's own entry; no one else writes it.
    unsafe {
        (*e).ts_ns = bpf_ktime_get_ns();
        // Volatile, as in `copy_words`: the zeroes would become a memset.
        for i in 0..6 {
            let v = if i < nargs { arg(ctx, i) } else { 0 };
            core::ptr::write_volatile(&mut (*e).args[i], v);
        }
        copy_words(&mut (*e).aux, &aux);
        for (slot, idx) in strs.0.iter().enumerate() {
            let v = match idx {
                Some(idx) => (*e).args[*idx],
                None => 0,
            };
            core::ptr::write_volatile(&mut (*e).str_ptrs[slot], v);
        }
        (*e).mntns_before = if changes_namespace(call) {
            task::mntns_of(&o, task::current())
        } else {
            0
        };
        // What an umount2 takes away is read off the newest mount before
        // and after it (see `Event::newest_before`).
        (*e).newest_before = if call == call::UMOUNT {
            task::newest_mount(&o, task::mnt_ns_ptr(&o, task::current()))
        } else {
            0
        };
        (*e).child_mntns = 0;
        (*e).tid = tid;
        // Last: the fork hook and the exit probe go by it.
        (*e).call = call;
    }
    0
}

#[inline(always)]
fn emit(ctx: &TracePointContext, call: u32) -> u32 {
    let Some(o) = task::offsets() else {
        return 0;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some(ep) = ENTER.get_ptr_mut(&tid) else {
        return 0;
    };
    // SAFETY: this thread's own entry. Taken (its call cleared) so that an
    // exit without an enter (a call already under way when the probes were
    // attached) finds nothing, and checked against this exit's call.
    let e = unsafe {
        if (*ep).call != call || (*ep).tid != tid {
            return 0;
        }
        (*ep).call = 0;
        &*ep
    };
    let ret: i64 = field(ctx, RET_OFF);
    // Built in a per-CPU scratch event (it does not fit the 512-byte stack)
    // and copied out as long as it is: a fixed-size reservation would carry
    // four full string slots in every record.
    let Some(ev) = SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let cur = task::current();
    // SAFETY: helpers without preconditions.
    let (now, cgroup, uid_gid) = unsafe {
        (
            bpf_ktime_get_ns(),
            bpf_get_current_cgroup_id(),
            bpf_get_current_uid_gid(),
        )
    };
    let mnt_ns = task::mnt_ns_ptr(&o, cur);
    let newest_after = if reads_newest(call) {
        task::newest_mount(&o, mnt_ns)
    } else {
        0
    };
    let mntns_after = if (call == call::CLONE || call == call::CLONE3) && e.child_mntns != 0 {
        e.child_mntns
    } else {
        task::inum_of(&o, mnt_ns)
    };
    let mntns_before = if changes_namespace(call) {
        e.mntns_before
    } else {
        mntns_after
    };
    // SAFETY: `ev` is this CPU's scratch slot; a program runs to completion
    // on its CPU, so nothing else uses it meanwhile.
    let len = unsafe {
        (*ev).ts_ns = now;
        (*ev).latency_ns = now.wrapping_sub(e.ts_ns);
        (*ev).cgroup_id = cgroup;
        (*ev).ret = ret;
        copy_words(&mut (*ev).args, &e.args);
        copy_words(&mut (*ev).aux, &e.aux);
        (*ev).newest_before = e.newest_before;
        (*ev).newest_after = newest_after;
        (*ev).pid = (pid_tgid >> 32) as u32;
        (*ev).tid = tid;
        (*ev).ppid = task::ppid_of(&o, cur);
        (*ev).uid = uid_gid as u32;
        (*ev).gid = (uid_gid >> 32) as u32;
        (*ev).call = call;
        (*ev).mntns_before = mntns_before;
        (*ev).mntns_after = mntns_after;
        // Straight into the event: aya's wrapper zeroes a copy first.
        if raw::bpf_get_current_comm(core::ptr::addr_of_mut!((*ev).comm).cast(), COMM_LEN as u32)
            != 0
        {
            (*ev).comm = [0; COMM_LEN];
        }
        (*ev).str_trunc = 0;
        (*ev).str_fault = 0;
        let strs = &mut *core::ptr::addr_of_mut!((*ev).strs);
        let mut at = 0usize;
        for i in 0..NSTR {
            (*ev).str_len[i] = 0;
            let src = e.str_ptrs[i];
            if src == 0 {
                continue;
            }
            // Each slot takes at most STR_CAP - 1 bytes, so `at` stays below
            // (NSTR - 1) * STR_CAP; the explicit bound is what the verifier
            // needs to accept the helper's buffer and size.
            let Some(buf) = strs.get_mut(at..at + STR_CAP) else {
                break;
            };
            match bpf_probe_read_user_str_bytes(src as *const u8, buf) {
                Ok(s) => {
                    let n = s.len();
                    (*ev).str_len[i] = n as u16;
                    if n == STR_CAP - 1 {
                        // Full buffer: cut only if the string goes on.
                        let next: u8 =
                            bpf_probe_read_user((src + n as u64) as *const u8).unwrap_or(0);
                        if next != 0 {
                            (*ev).str_trunc |= 1 << i;
                        }
                    }
                    at += n.min(STR_CAP - 1);
                }
                Err(_) => (*ev).str_fault |= 1 << i,
            }
        }
        EVENT_HEAD + at
    };
    // SAFETY: the scratch slot viewed as the bytes it is.
    let bytes = unsafe { &*(ev as *const [u8; size_of::<Event>()]) };
    let Some(record) = bytes.get(..len) else {
        return 0;
    };
    let asleep = agent_waits();
    // Default flags wake the agent if it has read everything before.
    let flags = if asleep {
        0
    } else {
        u64::from(BPF_RB_NO_WAKEUP)
    };
    if EVENTS.output::<[u8]>(record, flags).is_err() {
        count_drop(drop::RINGBUF_FULL);
    } else if !asleep && agent_waits() {
        // It went to sleep meanwhile, and may have looked at the ring before
        // the record was in. The commit above is a full barrier, and the
        // agent says it waits before it looks: one of the two sees the other.
        let _ = EVENTS.output::<[u8; 8]>(&WAKE_RECORD, u64::from(BPF_RB_FORCE_WAKEUP));
    }
    0
}

#[inline(always)]
fn agent_waits() -> bool {
    // SAFETY: a u32 in an array map; a torn read cannot happen.
    WAKE.get(0)
        .is_none_or(|w| unsafe { core::ptr::read_volatile(w) } != 0)
}

/// Reads `struct mount_attr` (attr_set, attr_clr, propagation, userns_fd).
#[inline(always)]
fn mount_attr(ptr: u64, size: u64) -> [u64; 4] {
    if ptr == 0 || size < 32 {
        return [0, 0, 0, u64::MAX];
    }
    // SAFETY: bpf_probe_read_user tolerates any address.
    unsafe { bpf_probe_read_user(ptr as *const [u64; 4]) }.unwrap_or([0, 0, 0, u64::MAX])
}

macro_rules! exit_probe {
    ($name:ident, $call:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            emit(&ctx, $call)
        }
    };
}

// long sys_mount(char __user *dev_name, char __user *dir_name, char __user *type,
//                unsigned long flags, void __user *data);
#[tracepoint]
pub fn enter_mount(ctx: TracePointContext) -> u32 {
    let s = Strs([Some(0), Some(1), Some(2), Some(4)]);
    stash(&ctx, call::MOUNT, 5, s, [0; 4])
}
exit_probe!(exit_mount, call::MOUNT);

// long sys_umount(char __user *name, int flags);   (umount2(2))
#[tracepoint]
pub fn enter_umount(ctx: TracePointContext) -> u32 {
    stash(
        &ctx,
        call::UMOUNT,
        2,
        Strs([Some(0), None, None, None]),
        [0; 4],
    )
}
exit_probe!(exit_umount, call::UMOUNT);

// long sys_pivot_root(const char __user *new_root, const char __user *put_old);
#[tracepoint]
pub fn enter_pivot_root(ctx: TracePointContext) -> u32 {
    let s = Strs([Some(0), Some(1), None, None]);
    stash(&ctx, call::PIVOT_ROOT, 2, s, [0; 4])
}
exit_probe!(exit_pivot_root, call::PIVOT_ROOT);

// long sys_setns(int fd, int nstype);
#[tracepoint]
pub fn enter_setns(ctx: TracePointContext) -> u32 {
    let nstype = arg(&ctx, 1);
    // 0 takes any namespace fd; a pidfd names the kinds to join.
    if nstype != 0 && nstype & CLONE_NEWNS == 0 {
        return 0;
    }
    let Some(o) = task::offsets() else {
        return 0;
    };
    let fd = arg(&ctx, 0) as u32 as u64;
    let target = task::nsfs_inode_of_fd(&o, fd);
    stash(&ctx, call::SETNS, 2, NONE, [target, 0, 0, 0])
}
exit_probe!(exit_setns, call::SETNS);

// long sys_unshare(unsigned long unshare_flags);
#[tracepoint]
pub fn enter_unshare(ctx: TracePointContext) -> u32 {
    if arg(&ctx, 0) & CLONE_NEWNS == 0 {
        return 0;
    }
    stash(&ctx, call::UNSHARE, 1, NONE, [0; 4])
}
exit_probe!(exit_unshare, call::UNSHARE);

// long sys_clone(unsigned long clone_flags, unsigned long newsp, int __user *parent_tidptr,
//                int __user *child_tidptr, unsigned long tls);   (x86_64 order)
#[tracepoint]
pub fn enter_clone(ctx: TracePointContext) -> u32 {
    let flags = arg(&ctx, 0);
    if flags & CLONE_NEWNS == 0 {
        return 0;
    }
    stash(&ctx, call::CLONE, 5, NONE, [flags, 0, 0, 0])
}
exit_probe!(exit_clone, call::CLONE);

// long sys_clone3(struct clone_args __user *uargs, size_t size);  flags is its first u64.
#[tracepoint]
pub fn enter_clone3(ctx: TracePointContext) -> u32 {
    let uargs = arg(&ctx, 0);
    // SAFETY: bpf_probe_read_user tolerates any address.
    let flags: u64 = unsafe { bpf_probe_read_user(uargs as *const u64) }.unwrap_or(0);
    if flags & CLONE_NEWNS == 0 {
        return 0;
    }
    stash(&ctx, call::CLONE3, 2, NONE, [flags, 0, 0, 0])
}
exit_probe!(exit_clone3, call::CLONE3);

// long sys_fsopen(const char __user *fs_name, unsigned int flags);
#[tracepoint]
pub fn enter_fsopen(ctx: TracePointContext) -> u32 {
    stash(
        &ctx,
        call::FSOPEN,
        2,
        Strs([Some(0), None, None, None]),
        [0; 4],
    )
}
exit_probe!(exit_fsopen, call::FSOPEN);

// long sys_fsconfig(int fs_fd, unsigned int cmd, const char __user *key,
//                   const void __user *value, int aux);
#[tracepoint]
pub fn enter_fsconfig(ctx: TracePointContext) -> u32 {
    // FSCONFIG_SET_STRING = 1, SET_PATH = 3, SET_PATH_EMPTY = 4 carry a string value.
    let cmd = arg(&ctx, 1);
    let value = if matches!(cmd, 1 | 3 | 4) {
        Some(3)
    } else {
        None
    };
    stash(
        &ctx,
        call::FSCONFIG,
        5,
        Strs([Some(2), value, None, None]),
        [0; 4],
    )
}
exit_probe!(exit_fsconfig, call::FSCONFIG);

// long sys_fsmount(int fs_fd, unsigned int flags, unsigned int attr_flags);
#[tracepoint]
pub fn enter_fsmount(ctx: TracePointContext) -> u32 {
    stash(&ctx, call::FSMOUNT, 3, NONE, [0; 4])
}
exit_probe!(exit_fsmount, call::FSMOUNT);

// long sys_move_mount(int from_dfd, const char __user *from_path, int to_dfd,
//                     const char __user *to_path, unsigned int ms_flags);
#[tracepoint]
pub fn enter_move_mount(ctx: TracePointContext) -> u32 {
    let s = Strs([Some(1), Some(3), None, None]);
    stash(&ctx, call::MOVE_MOUNT, 5, s, [0; 4])
}
exit_probe!(exit_move_mount, call::MOVE_MOUNT);

// long sys_open_tree(int dfd, const char __user *path, unsigned flags);
#[tracepoint]
pub fn enter_open_tree(ctx: TracePointContext) -> u32 {
    stash(
        &ctx,
        call::OPEN_TREE,
        3,
        Strs([Some(1), None, None, None]),
        [0; 4],
    )
}
exit_probe!(exit_open_tree, call::OPEN_TREE);

// long sys_open_tree_attr(int dfd, const char __user *path, unsigned flags,
//                         struct mount_attr __user *uattr, size_t usize);
#[tracepoint]
pub fn enter_open_tree_attr(ctx: TracePointContext) -> u32 {
    let attr = mount_attr(arg(&ctx, 3), arg(&ctx, 4));
    let s = Strs([Some(1), None, None, None]);
    stash(&ctx, call::OPEN_TREE_ATTR, 5, s, attr)
}
exit_probe!(exit_open_tree_attr, call::OPEN_TREE_ATTR);

// long sys_mount_setattr(int dfd, const char __user *path, unsigned int flags,
//                        struct mount_attr __user *uattr, size_t usize);
#[tracepoint]
pub fn enter_mount_setattr(ctx: TracePointContext) -> u32 {
    let attr = mount_attr(arg(&ctx, 3), arg(&ctx, 4));
    let s = Strs([Some(1), None, None, None]);
    stash(&ctx, call::MOUNT_SETATTR, 5, s, attr)
}
exit_probe!(exit_mount_setattr, call::MOUNT_SETATTR);

/// sched_process_fork(struct task_struct *parent, struct task_struct *child),
/// run in the parent: records the child's namespace and tid for a pending
/// clone/clone3, which the parent's syscall exit cannot see otherwise.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn fork(ctx: RawTracePointContext) -> i32 {
    let Some(o) = task::offsets() else {
        return 0;
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(e) = ENTER.get_ptr_mut(&tid) else {
        return 0;
    };
    let child: u64 = ctx.arg(1);
    // SAFETY: `e` is this thread's own entry.
    unsafe {
        if (*e).call == call::CLONE || (*e).call == call::CLONE3 {
            (*e).child_mntns = task::mntns_of(&o, child);
            (*e).aux[1] = task::tid_of(&o, child) as u64;
        }
    }
    0
}
