//! The syscalls mnttrace reports, by name.
use tracer_ebpf::call as id;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Call {
    Mount,
    #[value(alias = "umount2")]
    Umount,
    PivotRoot,
    Setns,
    Unshare,
    Clone,
    Clone3,
    Fsopen,
    Fsconfig,
    Fsmount,
    MoveMount,
    OpenTree,
    OpenTreeAttr,
    MountSetattr,
}

impl Call {
    pub fn from_id(v: u32) -> Option<Call> {
        Some(match v {
            id::MOUNT => Call::Mount,
            id::UMOUNT => Call::Umount,
            id::PIVOT_ROOT => Call::PivotRoot,
            id::SETNS => Call::Setns,
            id::UNSHARE => Call::Unshare,
            id::CLONE => Call::Clone,
            id::CLONE3 => Call::Clone3,
            id::FSOPEN => Call::Fsopen,
            id::FSCONFIG => Call::Fsconfig,
            id::FSMOUNT => Call::Fsmount,
            id::MOVE_MOUNT => Call::MoveMount,
            id::OPEN_TREE => Call::OpenTree,
            id::OPEN_TREE_ATTR => Call::OpenTreeAttr,
            id::MOUNT_SETATTR => Call::MountSetattr,
            _ => return None,
        })
    }

    /// The name users know from man pages (`umount2`, not the kernel's `umount`).
    pub fn name(self) -> &'static str {
        match self {
            Call::Mount => "mount",
            Call::Umount => "umount2",
            Call::PivotRoot => "pivot_root",
            Call::Setns => "setns",
            Call::Unshare => "unshare",
            Call::Clone => "clone",
            Call::Clone3 => "clone3",
            Call::Fsopen => "fsopen",
            Call::Fsconfig => "fsconfig",
            Call::Fsmount => "fsmount",
            Call::MoveMount => "move_mount",
            Call::OpenTree => "open_tree",
            Call::OpenTreeAttr => "open_tree_attr",
            Call::MountSetattr => "mount_setattr",
        }
    }
}
