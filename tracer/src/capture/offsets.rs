//! Kernel struct member offsets from the running kernel's BTF.
//!
//! Rust eBPF has no CO-RE relocations, so the agent reads
//! /sys/kernel/btf/vmlinux at start, resolves each member path (descending
//! into anonymous structs/unions, e.g. `mnt_namespace.ns.inum`) and hands the
//! byte offsets to the program as a global. A member this kernel lacks is an
//! error naming it, never a silent 0.
use std::path::Path;

use super::btf::{Btf, Type};
use tracer_ebpf::Offsets;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error(
        "no kernel BTF at {path}: {reason} (mnttrace needs a kernel built with CONFIG_DEBUG_INFO_BTF)"
    )]
    NoBtf { path: String, reason: String },
    #[error("kernel BTF at {path} is unreadable: {reason}")]
    BadBtf { path: String, reason: String },
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("kernel BTF: {0} is not a byte-aligned member")]
    Bitfield(String),
}

pub fn from_file(path: &Path) -> Result<Offsets, OffsetsError> {
    let shown = path.display().to_string();
    if let Err(e) = std::fs::metadata(path) {
        return Err(OffsetsError::NoBtf {
            path: shown,
            reason: e.kind().to_string(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| OffsetsError::NoBtf {
        path: shown.clone(),
        reason: e.kind().to_string(),
    })?;
    let btf = Btf::parse(bytes).map_err(|e| OffsetsError::BadBtf {
        path: shown,
        reason: e.to_string(),
    })?;
    let r = Resolver { btf };
    Ok(Offsets {
        magic: Offsets::MAGIC,
        task_nsproxy: r.offset("task_struct", "nsproxy")?,
        task_real_parent: r.offset("task_struct", "real_parent")?,
        task_tgid: r.offset("task_struct", "tgid")?,
        task_pid: r.offset("task_struct", "pid")?,
        task_files: r.offset("task_struct", "files")?,
        nsproxy_mnt_ns: r.offset("nsproxy", "mnt_ns")?,
        mnt_ns_inum: r.offset("mnt_namespace", "ns.inum")?,
        files_fdt: r.offset("files_struct", "fdt")?,
        fdt_max_fds: r.offset("fdtable", "max_fds")?,
        fdt_fd: r.offset("fdtable", "fd")?,
        file_inode: r.offset("file", "f_inode")?,
        inode_ino: r.offset("inode", "i_ino")?,
        inode_sb: r.offset("inode", "i_sb")?,
        sb_magic: r.offset("super_block", "s_magic")?,
        mnt_ns_last_node: r.offset("mnt_namespace", "mnt_last_node")?,
        mount_node: r.offset("mount", "mnt_node")?,
        mount_id_unique: r.offset("mount", "mnt_id_unique")?,
    })
}

struct Resolver {
    btf: Btf,
}

impl Resolver {
    /// Byte offset of the dotted member `path` inside `struct strukt`.
    fn offset(&self, strukt: &str, path: &str) -> Result<u32, OffsetsError> {
        let no_member = || OffsetsError::NoMember {
            strukt: strukt.to_string(),
            member: path.to_string(),
        };
        let mut ty = self.named_struct(strukt)?;
        let mut bits = 0u32;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, name) in parts.iter().enumerate() {
            let (off, member_ty) = self.find_member(&ty, name).ok_or_else(no_member)?;
            bits += off;
            if i + 1 < parts.len() {
                ty = self.strip(member_ty).ok_or_else(no_member)?;
            }
        }
        if !bits.is_multiple_of(8) {
            return Err(OffsetsError::Bitfield(format!("{strukt}.{path}")));
        }
        Ok(bits / 8)
    }

    fn named_struct(&self, name: &str) -> Result<Type, OffsetsError> {
        self.btf
            .struct_named(name)
            .ok_or_else(|| OffsetsError::NoStruct(name.to_string()))
    }

    /// Finds `name` among the members of a struct/union, looking through
    /// anonymous members; returns its bit offset and its type id.
    fn find_member(&self, ty: &Type, name: &str) -> Option<(u32, u32)> {
        for m in self.btf.members(*ty) {
            let mname = self.btf.name(m.name_off);
            if mname == name.as_bytes() {
                return Some((m.bit_offset, m.type_id));
            }
            if mname.is_empty()
                && let Some(inner) = self.btf.strip(m.type_id)
                && let Some((off, t)) = self.find_member(&inner, name)
            {
                return Some((m.bit_offset + off, t));
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to the struct/union underneath.
    fn strip(&self, id: u32) -> Option<Type> {
        self.btf.strip(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the running kernel: every offset resolves and the fixed
    /// ones agree with what C would say about `struct mount_attr`-like
    /// facts we can check independently (nsproxy's first member is a count).
    #[test]
    fn running_kernel_offsets_resolve() {
        let o = from_file(Path::new(VMLINUX_BTF)).expect("offsets from /sys/kernel/btf/vmlinux");
        assert_eq!(o.magic, Offsets::MAGIC);
        assert_ne!(o, Offsets::POISON);
        assert!(o.nsproxy_mnt_ns > 0, "nsproxy.mnt_ns follows the refcount");
        assert!(
            o.task_tgid == o.task_pid + 4,
            "tgid follows pid in task_struct"
        );
    }

    #[test]
    fn missing_member_is_named() {
        let r = Resolver {
            btf: Btf::parse(std::fs::read(VMLINUX_BTF).expect("btf")).expect("btf"),
        };
        let err = r.offset("task_struct", "no_such_member").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel BTF: struct task_struct has no member no_such_member"
        );
        assert!(matches!(
            r.offset("no_such_struct_xyz", "a"),
            Err(OffsetsError::NoStruct(_))
        ));
    }

    /// The lean reader agrees with btf-rs, a full parser, on every offset.
    #[test]
    fn agrees_with_btf_rs() {
        use btf_rs::Type as T;
        let full = btf_rs::Btf::from_file(VMLINUX_BTF).expect("btf-rs");
        let offset = |strukt: &str, member: &str| -> u32 {
            let types = full.resolve_types_by_name(strukt).expect("struct");
            let s = types
                .into_iter()
                .find_map(|t| match t {
                    T::Struct(s) if !s.members.is_empty() => Some(s),
                    _ => None,
                })
                .expect("a struct with members");
            // Into anonymous structs and unions, as the kernel's C does.
            fn find(full: &btf_rs::Btf, members: &[btf_rs::Member], name: &str) -> Option<u32> {
                members.iter().find_map(|m| {
                    match full.resolve_name(m).ok().filter(|n| !n.is_empty()) {
                        Some(n) => (n == name).then(|| m.bit_offset()),
                        None => match full.resolve_chained_type(m).ok()? {
                            T::Struct(s) | T::Union(s) => {
                                Some(m.bit_offset() + find(full, &s.members, name)?)
                            }
                            _ => None,
                        },
                    }
                })
            }
            find(&full, &s.members, member).expect("member") / 8
        };
        let o = from_file(Path::new(VMLINUX_BTF)).expect("offsets");
        assert_eq!(o.task_nsproxy, offset("task_struct", "nsproxy"));
        assert_eq!(o.task_real_parent, offset("task_struct", "real_parent"));
        assert_eq!(o.task_tgid, offset("task_struct", "tgid"));
        assert_eq!(o.task_pid, offset("task_struct", "pid"));
        assert_eq!(o.task_files, offset("task_struct", "files"));
        assert_eq!(o.nsproxy_mnt_ns, offset("nsproxy", "mnt_ns"));
        assert_eq!(
            o.mnt_ns_inum,
            offset("mnt_namespace", "ns") + offset("ns_common", "inum")
        );
        assert_eq!(o.files_fdt, offset("files_struct", "fdt"));
        assert_eq!(o.fdt_max_fds, offset("fdtable", "max_fds"));
        assert_eq!(o.fdt_fd, offset("fdtable", "fd"));
        assert_eq!(o.file_inode, offset("file", "f_inode"));
        assert_eq!(o.inode_ino, offset("inode", "i_ino"));
        assert_eq!(o.inode_sb, offset("inode", "i_sb"));
        assert_eq!(o.sb_magic, offset("super_block", "s_magic"));
        assert_eq!(o.mnt_ns_last_node, offset("mnt_namespace", "mnt_last_node"));
        assert_eq!(o.mount_node, offset("mount", "mnt_node"));
        assert_eq!(o.mount_id_unique, offset("mount", "mnt_id_unique"));
    }
}
