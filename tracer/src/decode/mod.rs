//! Turns a raw kernel [`Event`] into a [`Syscall`] record: names, decoded
//! flags, strings made safe, errno names, relative paths resolved.
mod call;
pub mod flags;
mod paths;
pub mod secrets;
pub mod text;

use std::time::{Duration, SystemTime};

pub use call::Call;
use tracer_ebpf::{Event, NSTR};

use crate::record::{Arg, Syscall, Value};

/// Converts kernel monotonic timestamps to wall-clock time.
#[derive(Clone, Copy)]
pub struct Clock {
    boot_wall: SystemTime,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

impl Clock {
    pub fn new() -> Clock {
        let mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
            .unwrap_or_default();
        Clock {
            boot_wall: SystemTime::now() - mono,
        }
    }

    pub fn wall(&self, ktime_ns: u64) -> SystemTime {
        self.boot_wall + Duration::from_nanos(ktime_ns)
    }
}

const AT_FDCWD: i64 = -100;

struct Raw<'a>(&'a Event);

impl Raw<'_> {
    fn arg(&self, i: usize) -> u64 {
        self.0.args[i]
    }
    fn int(&self, i: usize) -> i64 {
        self.0.args[i] as i32 as i64
    }
    /// String slot `slot`, read from argument `arg`: `Null` for a NULL pointer.
    fn str_arg(&self, slot: usize, arg: usize) -> Value {
        if self.0.args[arg] == 0 {
            Value::Null
        } else {
            self.string(slot)
        }
    }
    fn string(&self, slot: usize) -> Value {
        let e = self.0;
        // Packed: slot `slot` follows the ones before it.
        let at: usize = e.str_len[..slot].iter().map(|&n| usize::from(n)).sum();
        let len = usize::from(e.str_len[slot]);
        Value::Str {
            bytes: e.strs.get(at..at + len).unwrap_or_default().to_vec(),
            truncated: e.str_trunc & (1 << slot) != 0,
            unreadable: e.str_fault & (1 << slot) != 0,
        }
    }
    fn has_string(&self, slot: usize) -> bool {
        slot < NSTR && (self.0.str_len[slot] > 0 || self.0.str_fault & (1 << slot) != 0)
    }
}

/// Decodes one event, secrets redacted unless `show_secrets`. `None` for an
/// event id this build does not know.
pub fn syscall(e: &Event, id: u64, clock: &Clock, show_secrets: bool) -> Option<Syscall> {
    let call = Call::from_id(e.call)?;
    let r = Raw(e);
    let mut args = Vec::new();
    let pid = e.pid;
    let mut push = |name: &'static str, value: Value| args.push(Arg { name, value });
    let fl = |v: u64, names: Vec<String>| Value::Flags { raw: v, names };
    match call {
        Call::Mount => {
            let f = r.arg(3);
            push("source", r.str_arg(0, 0));
            push("target", r.str_arg(1, 1));
            push("fstype", r.str_arg(2, 2));
            push("flags", fl(f, flags::decode_mount(f)));
            push("data", r.str_arg(3, 4));
            // The source is a path only for bind and move.
            if f & (libc::MS_BIND | libc::MS_MOVE) != 0 {
                paths::resolve(pid, AT_FDCWD, &r.string(0), &mut push, "source_resolved");
            }
            paths::resolve(pid, AT_FDCWD, &r.string(1), &mut push, "target_resolved");
        }
        Call::Umount => {
            push("target", r.str_arg(0, 0));
            push("flags", fl(r.arg(1), flags::decode(r.arg(1), flags::MNT)));
            paths::resolve(pid, AT_FDCWD, &r.string(0), &mut push, "target_resolved");
        }
        Call::PivotRoot => {
            push("new_root", r.str_arg(0, 0));
            push("put_old", r.str_arg(1, 1));
            paths::resolve(pid, AT_FDCWD, &r.string(0), &mut push, "new_root_resolved");
            paths::resolve(pid, AT_FDCWD, &r.string(1), &mut push, "put_old_resolved");
        }
        Call::Setns => {
            push("fd", Value::Int(r.int(0)));
            let t = r.arg(1) as u32 as u64;
            push("nstype", fl(t, flags::decode(t, flags::CLONE)));
            push(
                "target_mntns",
                match e.aux[0] {
                    0 => Value::Null,
                    ino => Value::UInt(ino),
                },
            );
        }
        Call::Unshare => {
            push("flags", fl(r.arg(0), flags::decode(r.arg(0), flags::CLONE)));
        }
        Call::Clone | Call::Clone3 => {
            let f = e.aux[0];
            let names = if call == Call::Clone {
                flags::decode_clone(f)
            } else {
                flags::decode(f, flags::CLONE)
            };
            push("flags", fl(f, names));
            push(
                "child_tid",
                match e.aux[1] {
                    0 => Value::Null,
                    t => Value::UInt(t),
                },
            );
        }
        Call::Fsopen => {
            push("fs_name", r.str_arg(0, 0));
            push(
                "flags",
                fl(r.arg(1), flags::decode(r.arg(1), flags::FSOPEN)),
            );
        }
        Call::Fsconfig => {
            push("fd", Value::Int(r.int(0)));
            push(
                "cmd",
                Value::Enum {
                    raw: r.arg(1),
                    name: flags::fsconfig_cmd(r.arg(1)),
                },
            );
            push("key", r.str_arg(0, 2));
            push(
                "value",
                if r.has_string(1) {
                    r.string(1)
                } else {
                    Value::Null
                },
            );
            push("aux", Value::Int(r.int(4)));
        }
        Call::Fsmount => {
            push("fd", Value::Int(r.int(0)));
            push(
                "flags",
                fl(r.arg(1), flags::decode(r.arg(1), flags::FSMOUNT)),
            );
            let a = r.arg(2);
            push("attr_flags", fl(a, flags::decode(a, flags::MOUNT_ATTR)));
        }
        Call::MoveMount => {
            let f = r.arg(4);
            push("from_dfd", Value::Int(r.int(0)));
            push("from_path", r.str_arg(0, 1));
            push("to_dfd", Value::Int(r.int(2)));
            push("to_path", r.str_arg(1, 3));
            push("flags", fl(f, flags::decode(f, flags::MOVE_MOUNT)));
            paths::resolve(pid, r.int(0), &r.string(0), &mut push, "from_path_resolved");
            paths::resolve(pid, r.int(2), &r.string(1), &mut push, "to_path_resolved");
        }
        Call::OpenTree | Call::OpenTreeAttr | Call::MountSetattr => {
            let table = if call == Call::MountSetattr {
                flags::AT
            } else {
                flags::OPEN_TREE
            };
            push("dfd", Value::Int(r.int(0)));
            push("path", r.str_arg(0, 1));
            push("flags", fl(r.arg(2), flags::decode(r.arg(2), table)));
            if call != Call::OpenTree {
                if e.aux[3] == u64::MAX {
                    push("attr", Value::Null);
                } else {
                    let [set, clr, prop, userns] = e.aux;
                    push("attr_set", fl(set, flags::decode(set, flags::MOUNT_ATTR)));
                    push("attr_clr", fl(clr, flags::decode(clr, flags::MOUNT_ATTR)));
                    push(
                        "propagation",
                        fl(prop, flags::decode(prop, flags::PROPAGATION)),
                    );
                    push("userns_fd", Value::Int(userns as i64));
                }
            }
            paths::resolve(pid, r.int(0), &r.string(0), &mut push, "path_resolved");
        }
    }
    let redacted = if show_secrets {
        Vec::new()
    } else {
        redact(call, &mut args)
    };
    Some(Syscall {
        container: None,
        redacted,
        id,
        time: clock.wall(e.ts_ns),
        ktime_ns: e.ts_ns,
        latency_ns: e.latency_ns,
        pid: e.pid,
        tid: e.tid,
        ppid: e.ppid,
        uid: e.uid,
        gid: e.gid,
        comm: text::comm(&e.comm),
        cgroup_id: e.cgroup_id,
        call,
        ret: e.ret,
        mntns_before: e.mntns_before,
        mntns_after: e.mntns_after,
        newest_before: e.newest_before,
        newest_after: e.newest_after,
        args,
    })
}

/// Replaces secret values in `args`; returns the names of the args changed.
fn redact(call: Call, args: &mut [Arg]) -> Vec<&'static str> {
    let key = args.iter().find_map(|a| match (&a.name, &a.value) {
        (&"key", Value::Str { bytes, .. }) => Some(bytes.clone()),
        _ => None,
    });
    let mut changed = Vec::new();
    for a in args.iter_mut() {
        let Value::Str { bytes, .. } = &mut a.value else {
            continue;
        };
        let new = match (call, a.name) {
            (Call::Mount, "data") => secrets::options(bytes),
            (Call::Mount, "source") => secrets::url(bytes),
            (Call::Fsconfig, "value") => {
                secrets::fsconfig_value(key.as_deref().unwrap_or_default(), bytes)
            }
            _ => None,
        };
        if let Some(new) = new {
            *bytes = new;
            changed.push(a.name);
        }
    }
    changed
}
