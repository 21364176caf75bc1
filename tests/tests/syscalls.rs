//! Every traced syscall, succeeding and failing, made by the driver inside a
//! mount namespace of its own with mnttrace running; each record is held
//! against what the kernel returned and what /proc/thread-self/ns/mnt said.
use mnttrace_tests::{check_script, flags, tempdir};
use serde_json::{Value, json};

const MS_NOSUID: u64 = 2;
const MS_NODEV: u64 = 4;
const MS_REMOUNT: u64 = 32;
const MS_NOATIME: u64 = 1024;
const MS_BIND: u64 = 4096;
const MS_MOVE: u64 = 8192;
const MS_REC: u64 = 16384;
const MS_SHARED: u64 = 1 << 20;
const MNT_DETACH: u64 = 2;
const CLONE_NEWNS: u64 = 0x20000;
const CLONE_FS: u64 = 0x200;

#[test]
fn mount_and_umount2() {
    let t = tempdir();
    let d = t.path().display().to_string();
    let long = format!("size=1m,{}", "x".repeat(600));
    let script = json!([
        {"op": "mount", "source": "tmpfs", "target": d, "fstype": "tmpfs",
         "flags": MS_NOSUID | MS_NODEV, "data": "size=1m,mode=755",
         "expect": {"source": "tmpfs", "target": d, "fstype": "tmpfs", "data": "size=1m,mode=755",
                    "flags": flags(MS_NOSUID | MS_NODEV, &["MS_NOSUID", "MS_NODEV"])}},
        {"op": "mkdir", "path": format!("{d}/a")},
        {"op": "mkdir", "path": format!("{d}/b")},
        {"op": "mount", "source": format!("{d}/a"), "target": format!("{d}/b"), "flags": MS_BIND | MS_REC,
         "expect": {"source": format!("{d}/a"), "fstype": Value::Null, "data": Value::Null,
                    "flags": flags(MS_BIND | MS_REC, &["MS_BIND", "MS_REC"])}},
        {"op": "mount", "source": "none", "target": format!("{d}/b"), "flags": MS_REC | MS_SHARED,
         "expect": {"flags": flags(MS_REC | MS_SHARED, &["MS_REC", "MS_SHARED"])}},
        {"op": "mount", "source": "none", "target": format!("{d}/b"),
         "flags": MS_REMOUNT | MS_BIND | MS_NOATIME,
         "expect": {"flags": flags(MS_REMOUNT | MS_NOATIME | MS_BIND, &["MS_REMOUNT", "MS_NOATIME", "MS_BIND"])}},
        {"op": "mount", "source": format!("{d}/b"), "target": format!("{d}/nonexistent"), "flags": MS_MOVE,
         "expect_errno": "ENOENT",
         "expect": {"flags": flags(MS_MOVE, &["MS_MOVE"])}},
        {"op": "mount", "source": "tmpfs", "target": format!("{d}/a"), "fstype": "tmpfs", "data": long,
         "expect_errno": "EINVAL", "expect": {"data": long[..511]}},
        {"op": "umount", "target": format!("{d}/b"), "flags": MNT_DETACH,
         "expect": {"target": format!("{d}/b"), "flags": flags(MNT_DETACH, &["MNT_DETACH"])}},
        {"op": "umount", "target": format!("{d}/b"), "flags": 0, "expect_errno": "EINVAL",
         "expect": {"flags": flags(0, &[])}},
        {"op": "umount", "target": "/nonexistent-mnttrace", "flags": 0, "expect_errno": "ENOENT"},
    ]);
    let records = check_script(script);
    let cut: Vec<&Value> = records
        .iter()
        .filter(|r| r["truncated"] == json!(["data"]))
        .collect();
    assert_eq!(
        cut.len(),
        1,
        "exactly the long data string is marked truncated"
    );
}

#[test]
fn pivot_root() {
    let t = tempdir();
    let d = t.path().display().to_string();
    let script = json!([
        {"op": "mount", "source": "tmpfs", "target": d, "fstype": "tmpfs"},
        {"op": "mkdir", "path": format!("{d}/old")},
        {"op": "pivot_root", "new_root": "/nonexistent-mnttrace", "put_old": "/nonexistent-mnttrace/old",
         "expect_errno": "ENOENT", "expect": {"new_root": "/nonexistent-mnttrace"}},
        {"op": "pivot_root", "new_root": d, "put_old": format!("{d}/old"),
         "expect": {"new_root": d, "put_old": format!("{d}/old")}},
    ]);
    check_script(script);
}

#[test]
fn namespaces_setns_unshare_clone() {
    let script = json!([
        {"op": "open", "path": "/proc/thread-self/ns/mnt"},
        {"op": "unshare", "flags": CLONE_NEWNS,
         "expect": {"flags": flags(CLONE_NEWNS, &["CLONE_NEWNS"])}},
        {"op": "setns", "fd": "$0", "nstype": CLONE_NEWNS,
         "expect": {"nstype": flags(CLONE_NEWNS, &["CLONE_NEWNS"])}},
        {"op": "setns", "fd": 999, "nstype": CLONE_NEWNS, "expect_errno": "EBADF",
         "expect": {"fd": 999, "target_mntns": Value::Null}},
        {"op": "unshare", "flags": CLONE_NEWNS | CLONE_FS | 0x100000, "expect_errno": "EINVAL"},
        {"op": "clone", "flags": CLONE_NEWNS,
         "expect": {"flags": flags(CLONE_NEWNS | 17, &["CLONE_NEWNS", "SIGCHLD"])}},
        {"op": "clone3", "flags": CLONE_NEWNS,
         "expect": {"flags": flags(CLONE_NEWNS, &["CLONE_NEWNS"])}},
        {"op": "clone3", "flags": CLONE_NEWNS | CLONE_FS, "expect_errno": "EINVAL"},
        {"op": "clone", "flags": CLONE_NEWNS | CLONE_FS, "expect_errno": "EINVAL"},
    ]);
    let records = check_script(script);
    let calls: Vec<&Value> = records.iter().filter(|r| r["kind"] == "syscall").collect();
    // setns names the namespace it joins: the one unshare left.
    assert_eq!(calls[1]["args"]["target_mntns"], calls[0]["mntns_before"]);
    assert_ne!(calls[0]["mntns_before"], calls[0]["mntns_after"]);
    // clone/clone3 name the child, whose namespace is the "after" one.
    for c in [&calls[4], &calls[5]] {
        assert_eq!(c["args"]["child_tid"], c["ret"], "{c}");
        assert_ne!(c["mntns_after"], c["mntns_before"], "{c}");
    }
}

const FSOPEN_CLOEXEC: u64 = 1;
const FSCONFIG_SET_STRING: u64 = 1;
const FSCONFIG_CMD_CREATE: u64 = 6;
const MOUNT_ATTR_RDONLY: u64 = 1;
const MOUNT_ATTR_NOSUID: u64 = 2;
const MOUNT_ATTR_NODEV: u64 = 4;
const MOUNT_ATTR_NOEXEC: u64 = 8;
const MOVE_MOUNT_F_EMPTY_PATH: u64 = 4;
const OPEN_TREE_CLONE: u64 = 1;
const AT_RECURSIVE: u64 = 0x8000;
const AT_FDCWD: i64 = -100;

#[test]
fn new_mount_api() {
    let t = tempdir();
    let d = t.path().display().to_string();
    let x = format!("{d}/x");
    let script = json!([
        {"op": "mount", "source": "tmpfs", "target": d, "fstype": "tmpfs"},
        {"op": "mkdir", "path": x},
        {"op": "fsopen", "fs_name": "tmpfs", "flags": FSOPEN_CLOEXEC,
         "expect": {"fs_name": "tmpfs", "flags": flags(1, &["FSOPEN_CLOEXEC"])}},
        {"op": "fsconfig", "fd": "$2", "cmd": FSCONFIG_SET_STRING, "key": "size", "value": "1m",
         "expect": {"key": "size", "value": "1m", "cmd": {"raw": 1, "name": "FSCONFIG_SET_STRING"}}},
        {"op": "fsconfig", "fd": "$2", "cmd": FSCONFIG_CMD_CREATE,
         "expect": {"key": Value::Null, "value": Value::Null,
                    "cmd": {"raw": 6, "name": "FSCONFIG_CMD_CREATE"}}},
        {"op": "fsmount", "fd": "$2", "flags": 1, "attr_flags": MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
         "expect": {"flags": flags(1, &["FSMOUNT_CLOEXEC"]),
                    "attr_flags": flags(6, &["MOUNT_ATTR_NOSUID", "MOUNT_ATTR_NODEV"])}},
        {"op": "open", "path": d},
        {"op": "move_mount", "from_dfd": "$5", "from_path": "", "to_dfd": "$6", "to_path": "x",
         "flags": MOVE_MOUNT_F_EMPTY_PATH,
         "expect": {"to_path": "x", "to_path_resolved": x,
                    "flags": flags(4, &["MOVE_MOUNT_F_EMPTY_PATH"])}},
        {"op": "open_tree", "dfd": AT_FDCWD, "path": x, "flags": OPEN_TREE_CLONE,
         "expect": {"path": x, "dfd": AT_FDCWD, "flags": flags(1, &["OPEN_TREE_CLONE"])}},
        {"op": "mount_setattr", "dfd": AT_FDCWD, "path": x, "flags": AT_RECURSIVE,
         "attr_set": MOUNT_ATTR_RDONLY, "propagation": MS_SHARED,
         "expect": {"flags": flags(AT_RECURSIVE, &["AT_RECURSIVE"]),
                    "attr_set": flags(1, &["MOUNT_ATTR_RDONLY"]),
                    "propagation": flags(MS_SHARED, &["MS_SHARED"])}},
        {"op": "open_tree_attr", "dfd": AT_FDCWD, "path": x, "flags": OPEN_TREE_CLONE,
         "attr_set": MOUNT_ATTR_NOEXEC,
         "expect": {"attr_set": flags(8, &["MOUNT_ATTR_NOEXEC"])}},
        {"op": "fsopen", "fs_name": "nosuchfs-mnttrace", "flags": 0, "expect_errno": "ENODEV"},
        {"op": "fsopen", "fs_name": "tmpfs", "flags": 0},
        {"op": "fsconfig", "fd": "$12", "cmd": FSCONFIG_SET_STRING, "key": "nosuchkey", "value": "v",
         "expect_errno": "EINVAL", "expect": {"key": "nosuchkey"}},
        {"op": "fsmount", "fd": 999, "flags": 0, "attr_flags": 0, "expect_errno": "EBADF"},
        {"op": "move_mount", "from_dfd": AT_FDCWD, "from_path": "/nonexistent-mnttrace", "to_dfd": AT_FDCWD,
         "to_path": x, "flags": 0, "expect_errno": "ENOENT"},
        {"op": "open_tree", "dfd": AT_FDCWD, "path": "/nonexistent-mnttrace", "flags": OPEN_TREE_CLONE,
         "expect_errno": "ENOENT"},
        {"op": "mount_setattr", "dfd": AT_FDCWD, "path": "/nonexistent-mnttrace", "flags": 0,
         "attr_set": MOUNT_ATTR_RDONLY, "expect_errno": "ENOENT"},
        {"op": "open_tree_attr", "dfd": AT_FDCWD, "path": "/nonexistent-mnttrace", "flags": OPEN_TREE_CLONE,
         "expect_errno": "ENOENT"},
    ]);
    check_script(script);
}
