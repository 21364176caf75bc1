//! Reads mount tables from the kernel: statmount(2)/listmount(2) where the
//! kernel has them (unique 64-bit ids, any namespace by id), otherwise each
//! namespace's /proc/PID/mountinfo through a process inside it.
use std::{collections::BTreeMap, fs::File, os::fd::AsFd, os::unix::fs::MetadataExt as _};

use nix::errno::Errno;
use procfs::process::{MountOptFields, Process};

use super::{
    mount::{Mount, Propagation, shared},
    sys,
};

const MS_UNBINDABLE: u64 = 1 << 17;
const MS_SLAVE: u64 = 1 << 19;
const MS_SHARED: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("process {pid} is gone")]
    Gone { pid: u32 },
    #[error("reading mount namespace {what}: {err}")]
    Kernel { what: String, err: Errno },
    #[error("reading /proc/{pid}/mountinfo: {err}")]
    Mountinfo { pid: u32, err: procfs::ProcError },
}

/// Which kernel interface mount tables are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Statmount,
    Mountinfo,
}

/// A mount namespace found on the machine: its inode, its 64-bit id (0 when
/// the kernel has none), and a process inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub inode: u32,
    pub ns_id: u64,
    pub pid: u32,
}

impl Source {
    /// statmount(2) if this kernel has it (6.8+) and can name namespaces (6.11+).
    pub fn detect() -> Source {
        let own = File::open("/proc/self/ns/mnt")
            .ok()
            .and_then(|f| sys::mntns_id(f.as_fd()).ok());
        match (own, sys::listmount(0)) {
            (Some(_), Ok(_)) => Source::Statmount,
            _ => Source::Mountinfo,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Source::Statmount => "statmount",
            Source::Mountinfo => "mountinfo",
        }
    }

    /// The namespace process `pid` is in, if it still exists.
    pub fn identify(self, pid: u32) -> Option<Found> {
        let path = format!("/proc/{pid}/ns/mnt");
        let f = File::open(&path).ok()?;
        let inode = f.metadata().ok()?.ino() as u32;
        let ns_id = match self {
            Source::Statmount => sys::mntns_id(f.as_fd()).ok()?,
            Source::Mountinfo => 0,
        };
        Some(Found { inode, ns_id, pid })
    }

    /// Every mount namespace some process is in, each with its lowest pid
    /// that is still there when asked (a runtime's short-lived process may
    /// have left between the scan and the question).
    pub fn discover(self, skip: u32) -> Vec<Found> {
        let mut by_inode: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // Kernel threads share init's namespace; stat is cheaper than open.
            let Ok(md) = std::fs::metadata(format!("/proc/{pid}/ns/mnt")) else {
                continue;
            };
            let inode = md.ino() as u32;
            if inode == skip {
                continue;
            }
            by_inode.entry(inode).or_default().push(pid);
        }
        by_inode
            .into_iter()
            .filter_map(|(inode, mut pids)| {
                pids.sort_unstable();
                pids.into_iter()
                    .find_map(|pid| self.identify(pid).filter(|f| f.inode == inode))
            })
            .collect()
    }

    /// All mounts of namespace `ns`.
    pub fn list(self, ns: &Found) -> Result<Vec<Mount>, SourceError> {
        match self {
            Source::Statmount => {
                let kernel = |err| SourceError::Kernel {
                    what: format!("mnt:[{}]", ns.inode),
                    err,
                };
                let ids = sys::listmount(ns.ns_id).map_err(kernel)?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    match sys::statmount(ns.ns_id, id, sys::Detail::Full) {
                        Ok(st) => out.push(from_stat(st)),
                        // Unmounted between the two calls.
                        Err(Errno::ENOENT) => {}
                        Err(e) => return Err(kernel(e)),
                    }
                }
                Ok(out)
            }
            Source::Mountinfo => {
                let gone = |_| SourceError::Gone { pid: ns.pid };
                let p = Process::new(ns.pid as i32).map_err(gone)?;
                let infos = p
                    .mountinfo()
                    .map_err(|err| SourceError::Mountinfo { pid: ns.pid, err })?;
                Ok(infos.into_iter().map(from_mountinfo).collect())
            }
        }
    }

    /// The mount ids of `ns`, where the kernel lists them without the rest
    /// (statmount); None otherwise.
    pub fn ids(self, ns: &Found) -> Result<Option<Vec<u64>>, SourceError> {
        self.ids_after(ns, 0)
    }

    /// Whether [`ids`](Self::ids) lists ids without the rest.
    pub fn lists_ids(self) -> bool {
        self == Source::Statmount
    }

    /// [`ids`](Self::ids) above `last`, in id order.
    pub fn ids_after(self, ns: &Found, last: u64) -> Result<Option<Vec<u64>>, SourceError> {
        match self {
            Source::Statmount => sys::listmount_after(ns.ns_id, last)
                .map(Some)
                .map_err(|err| SourceError::Kernel {
                    what: format!("mnt:[{}]", ns.inode),
                    err,
                }),
            Source::Mountinfo => Ok(None),
        }
    }

    /// One mount by id, if it is (still) in namespace `ns`.
    pub fn stat(self, ns: &Found, id: u64) -> Option<Mount> {
        self.stat_in(ns, id, sys::Detail::Full)
    }

    /// One mount by id, if it is (still) in namespace `ns`, read in `detail`
    /// (mountinfo has no cheaper read: always whole).
    pub fn stat_in(self, ns: &Found, id: u64, detail: sys::Detail) -> Option<Mount> {
        match self {
            Source::Statmount => sys::statmount(ns.ns_id, id, detail).ok().map(from_stat),
            Source::Mountinfo => self.list(ns).ok()?.into_iter().find(|m| m.id == id),
        }
    }
}

pub fn from_stat(st: sys::Stat) -> Mount {
    let some = |flag: u64, v: u64| (st.propagation & flag != 0 && v != 0).then_some(v);
    Mount {
        id: st.mnt_id,
        parent: st.parent_id,
        old_id: st.old_id,
        propagation: Propagation {
            shared: some(MS_SHARED, st.peer_group),
            master: some(MS_SLAVE, st.master),
            propagate_from: some(MS_SLAVE, st.propagate_from),
            unbindable: st.propagation & MS_UNBINDABLE != 0,
        },
        mount_point: st.mount_point,
        root: shared(st.root),
        fstype: shared(st.fstype),
        source: shared(st.source),
        options: shared(st.options),
        dev: st.dev,
    }
}

/// One parsed /proc/PID/mountinfo line as a [`Mount`]. Public for the fuzz
/// target (`tracer/fuzz`), which feeds it procfs's parse of arbitrary text.
pub fn from_mountinfo(mi: procfs::process::MountInfo) -> Mount {
    let mut p = Propagation::default();
    for f in &mi.opt_fields {
        match f {
            MountOptFields::Shared(g) => p.shared = Some(u64::from(*g)),
            MountOptFields::Master(g) => p.master = Some(u64::from(*g)),
            MountOptFields::PropagateFrom(g) => p.propagate_from = Some(u64::from(*g)),
            MountOptFields::Unbindable => p.unbindable = true,
        }
    }
    let opts: Vec<String> = mi
        .mount_options
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();
    let (maj, min) = mi
        .majmin
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or((0, 0));
    Mount {
        id: u64::from(mi.mnt_id as u32),
        parent: u64::from(mi.pid as u32),
        old_id: mi.mnt_id as u32,
        mount_point: unescape(&mi.mount_point.to_string_lossy()),
        root: shared(unescape(&mi.root)),
        fstype: shared(mi.fs_type),
        source: shared(unescape(&mi.mount_source.unwrap_or_default())),
        options: shared(opts.join(",")),
        dev: (maj, min),
        propagation: p,
    }
}

/// mountinfo's fields with the kernel's octal escapes undone (`\040` for a
/// space, `\011` tab, `\012` newline, `\134` backslash: show_mountinfo's
/// mangle), which procfs leaves in place; statmount(2) gives them raw, and
/// both sources must say the same path.
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0')));
        match octal {
            Some(v) if v <= 0xff => {
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A live process in mount namespace `mntns` (a scan of /proc: for when the
/// process that made or joined it is gone already).
pub fn member_of(mntns: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/mnt")).is_ok_and(|m| m.ino() as u32 == mntns)
        })
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/x\\011\\012\\134y"), "/x\t\n\\y");
        assert_eq!(unescape("/plain"), "/plain");
        // Not an escape: kept as it is.
        assert_eq!(unescape("/a\\9x\\04"), "/a\\9x\\04");
    }
}
