//! Flag tables, one per syscall argument: each call's flags are decoded with
//! that call's own table (umount2's MNT_*, never MS_*). Values are the uapi
//! constants from linux/mount.h, linux/sched.h and linux/fcntl.h; several
//! (fsconfig commands, MOVE_MOUNT_*, MOUNT_ATTR_*) are missing from Debian's
//! libc headers and from the libc crate's older releases, hence the tables.

pub type Table = &'static [(u64, &'static str)];

pub const MS: Table = &[
    (1, "MS_RDONLY"),
    (2, "MS_NOSUID"),
    (4, "MS_NODEV"),
    (8, "MS_NOEXEC"),
    (16, "MS_SYNCHRONOUS"),
    (32, "MS_REMOUNT"),
    (64, "MS_MANDLOCK"),
    (128, "MS_DIRSYNC"),
    (256, "MS_NOSYMFOLLOW"),
    (1024, "MS_NOATIME"),
    (2048, "MS_NODIRATIME"),
    (4096, "MS_BIND"),
    (8192, "MS_MOVE"),
    (16384, "MS_REC"),
    (32768, "MS_SILENT"),
    (1 << 16, "MS_POSIXACL"),
    (1 << 17, "MS_UNBINDABLE"),
    (1 << 18, "MS_PRIVATE"),
    (1 << 19, "MS_SLAVE"),
    (1 << 20, "MS_SHARED"),
    (1 << 21, "MS_RELATIME"),
    (1 << 22, "MS_KERNMOUNT"),
    (1 << 23, "MS_I_VERSION"),
    (1 << 24, "MS_STRICTATIME"),
    (1 << 25, "MS_LAZYTIME"),
];
const MS_MGC_MSK: u64 = 0xffff_0000;
const MS_MGC_VAL: u64 = 0xc0ed_0000;

pub const MNT: Table = &[
    (1, "MNT_FORCE"),
    (2, "MNT_DETACH"),
    (4, "MNT_EXPIRE"),
    (8, "UMOUNT_NOFOLLOW"),
];

/// Namespace kinds, as unshare/setns/clone3 take them.
pub const CLONE: Table = &[
    (0x80, "CLONE_NEWTIME"),
    (0x100, "CLONE_VM"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x800, "CLONE_SIGHAND"),
    (0x1000, "CLONE_PIDFD"),
    (0x2000, "CLONE_PTRACE"),
    (0x4000, "CLONE_VFORK"),
    (0x8000, "CLONE_PARENT"),
    (0x10000, "CLONE_THREAD"),
    (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"),
    (0x80000, "CLONE_SETTLS"),
    (0x100000, "CLONE_PARENT_SETTID"),
    (0x200000, "CLONE_CHILD_CLEARTID"),
    (0x400000, "CLONE_DETACHED"),
    (0x800000, "CLONE_UNTRACED"),
    (0x1000000, "CLONE_CHILD_SETTID"),
    (0x2000000, "CLONE_NEWCGROUP"),
    (0x4000000, "CLONE_NEWUTS"),
    (0x8000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"),
    (0x80000000, "CLONE_IO"),
    (0x100000000, "CLONE_CLEAR_SIGHAND"),
    (0x200000000, "CLONE_INTO_CGROUP"),
];

pub const FSOPEN: Table = &[(1, "FSOPEN_CLOEXEC")];
pub const FSMOUNT: Table = &[(1, "FSMOUNT_CLOEXEC")];

pub const MOUNT_ATTR: Table = &[
    (0x1, "MOUNT_ATTR_RDONLY"),
    (0x2, "MOUNT_ATTR_NOSUID"),
    (0x4, "MOUNT_ATTR_NODEV"),
    (0x8, "MOUNT_ATTR_NOEXEC"),
    (0x10, "MOUNT_ATTR_NOATIME"),
    (0x20, "MOUNT_ATTR_STRICTATIME"),
    (0x80, "MOUNT_ATTR_NODIRATIME"),
    (0x100000, "MOUNT_ATTR_IDMAP"),
    (0x200000, "MOUNT_ATTR_NOSYMFOLLOW"),
];

pub const MOVE_MOUNT: Table = &[
    (0x1, "MOVE_MOUNT_F_SYMLINKS"),
    (0x2, "MOVE_MOUNT_F_AUTOMOUNTS"),
    (0x4, "MOVE_MOUNT_F_EMPTY_PATH"),
    (0x10, "MOVE_MOUNT_T_SYMLINKS"),
    (0x20, "MOVE_MOUNT_T_AUTOMOUNTS"),
    (0x40, "MOVE_MOUNT_T_EMPTY_PATH"),
    (0x100, "MOVE_MOUNT_SET_GROUP"),
    (0x200, "MOVE_MOUNT_BENEATH"),
];

pub const OPEN_TREE: Table = &[
    (0x1, "OPEN_TREE_CLONE"),
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
    (0x8000, "AT_RECURSIVE"),
    (0x80000, "OPEN_TREE_CLOEXEC"),
];

pub const AT: Table = &[
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
    (0x8000, "AT_RECURSIVE"),
];

/// `struct mount_attr.propagation`: one MS_* propagation type.
pub const PROPAGATION: Table = &[
    (1 << 17, "MS_UNBINDABLE"),
    (1 << 18, "MS_PRIVATE"),
    (1 << 19, "MS_SLAVE"),
    (1 << 20, "MS_SHARED"),
];

pub const FSCONFIG_CMDS: &[&str] = &[
    "FSCONFIG_SET_FLAG",
    "FSCONFIG_SET_STRING",
    "FSCONFIG_SET_BINARY",
    "FSCONFIG_SET_PATH",
    "FSCONFIG_SET_PATH_EMPTY",
    "FSCONFIG_SET_FD",
    "FSCONFIG_CMD_CREATE",
    "FSCONFIG_CMD_RECONFIGURE",
    "FSCONFIG_CMD_CREATE_EXCL",
];

/// Names of the bits set in `value`; bits the table does not know are kept
/// as one hex remainder so nothing is hidden.
pub fn decode(value: u64, table: Table) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = value;
    for &(bit, name) in table {
        if value & bit == bit && bit != 0 {
            names.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#x}"));
    }
    names
}

/// mount(2) flags: the historic magic in the top half is named, not decoded.
pub fn decode_mount(value: u64) -> Vec<String> {
    if value & MS_MGC_MSK == MS_MGC_VAL {
        let mut names = vec!["MS_MGC_VAL".to_string()];
        names.extend(decode(value & !MS_MGC_MSK, MS));
        return names;
    }
    decode(value, MS)
}

/// clone(2) flags: the low byte is the exit signal, not a flag.
pub fn decode_clone(value: u64) -> Vec<String> {
    let mut names = decode(value & !0xff, CLONE);
    let sig = (value & 0xff) as i32;
    if sig != 0 {
        names.push(
            nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {sig}")),
        );
    }
    names
}

pub fn fsconfig_cmd(cmd: u64) -> String {
    FSCONFIG_CMDS
        .get(cmd as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("{cmd}"))
}

pub fn join(names: &[String]) -> String {
    if names.is_empty() {
        "0".to_string()
    } else {
        names.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The names the peer tools get wrong: each pinned to its value.
    #[test]
    fn mount_flags_pinned() {
        assert_eq!(decode_mount(libc::MS_REC), ["MS_REC"]);
        assert_eq!(decode_mount(libc::MS_BIND), ["MS_BIND"]);
        assert_eq!(decode_mount(libc::MS_MOVE), ["MS_MOVE"]);
        assert_eq!(decode_mount(libc::MS_NOATIME), ["MS_NOATIME"]);
        assert_eq!(
            decode_mount(libc::MS_BIND | libc::MS_REC),
            ["MS_BIND", "MS_REC"]
        );
        assert_eq!(
            decode_mount(libc::MS_REC | libc::MS_SHARED),
            ["MS_REC", "MS_SHARED"]
        );
        assert_eq!(decode_mount(0xc0ed_0000 | 1), ["MS_MGC_VAL", "MS_RDONLY"]);
    }

    #[test]
    fn umount_flags_use_their_own_table() {
        assert_eq!(decode(libc::MNT_DETACH as u64, MNT), ["MNT_DETACH"]);
        // 2 is MS_NOSUID for mount(2) but MNT_DETACH for umount2(2).
        assert_eq!(decode(2, MNT), ["MNT_DETACH"]);
        assert_eq!(decode(2 | 0x40, MNT), ["MNT_DETACH", "0x40"]);
    }

    #[test]
    fn clone_flags_and_signal() {
        let v = libc::CLONE_NEWNS as u64 | libc::SIGCHLD as u64;
        assert_eq!(decode_clone(v), ["CLONE_NEWNS", "SIGCHLD"]);
        assert_eq!(decode(libc::CLONE_NEWNS as u64, CLONE), ["CLONE_NEWNS"]);
    }

    #[test]
    fn tables_agree_with_libc() {
        for (v, n) in [
            (libc::MS_SHARED, "MS_SHARED"),
            (libc::MS_SLAVE, "MS_SLAVE"),
            (libc::MS_PRIVATE, "MS_PRIVATE"),
            (libc::MS_UNBINDABLE, "MS_UNBINDABLE"),
            (libc::MS_LAZYTIME, "MS_LAZYTIME"),
        ] {
            assert_eq!(decode_mount(v), [n]);
        }
        assert_eq!(decode(libc::AT_RECURSIVE as u64, AT), ["AT_RECURSIVE"]);
        assert_eq!(
            decode(libc::O_CLOEXEC as u64, OPEN_TREE),
            ["OPEN_TREE_CLOEXEC"]
        );
        assert_eq!(fsconfig_cmd(6), "FSCONFIG_CMD_CREATE");
        assert_eq!(join(&[]), "0");
    }
}
