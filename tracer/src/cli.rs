//! Command line. Every value is checked here, so a bad one gets one line from
//! clap and exit status 2 before anything is loaded.
use std::time::Duration;

use clap::Parser;

use crate::{decode::Call, propagation::Choice};

#[derive(Debug, Parser)]
#[command(
    name = "mnttrace",
    version,
    about = "Trace mount-related syscalls of every process, live, with their mount namespaces"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub view: Option<View>,

    /// One JSON object per line (schema mnttrace/v1, see docs/json.md).
    #[arg(long)]
    pub json: bool,

    /// How mounts propagated into other namespaces and paths are seen: fanotify
    /// mount notifications (Linux 6.15+), re-reading the mount tables a call can
    /// reach (diff), or not at all. auto picks fanotify where the kernel has it.
    #[arg(long, value_enum, default_value = "auto", value_name = "MODE")]
    pub propagation: Choice,

    /// Where mount tables are read from: statmount(2)/listmount(2) (Linux
    /// 6.11+, unique mount ids) or /proc/PID/mountinfo. auto: the first the
    /// kernel has. fanotify propagation needs statmount.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        value_name = "SOURCE"
    )]
    pub mount_tables: Tables,

    /// Only this process (thread-group id); repeatable. A single --pid is also
    /// applied in the kernel, so lost-event counts then concern it alone.
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Vec<u32>,

    /// Only processes with this command name (exact, as in /proc/PID/comm); repeatable.
    #[arg(long, value_name = "COMM")]
    pub comm: Vec<String>,

    /// Only calls made in this container, or whose mounts reached it: an id
    /// prefix or a name (docker, Kubernetes, runc/crun id); repeatable.
    #[arg(long, value_name = "ID|NAME", value_parser = parse_container)]
    pub container: Vec<String>,

    /// Another OCI runtime state directory to read container ids, bundles and
    /// annotations from (`runc --root`); repeatable. /run/runc, /run/crun,
    /// containerd's and every running dockerd's are always read.
    #[arg(long, global = true, value_name = "DIR")]
    pub runtime_root: Vec<std::path::PathBuf>,

    /// Only calls whose mount namespace (before or after) has this inode; repeatable.
    #[arg(long, value_name = "INODE", value_parser = clap::value_parser!(u32).range(1..))]
    pub mntns: Vec<u32>,

    /// Only these syscalls; repeatable.
    #[arg(long, value_name = "CALL", value_enum)]
    pub call: Vec<Call>,

    /// Only failed calls.
    #[arg(long)]
    pub failed: bool,

    /// Only calls made by this user id; repeatable.
    #[arg(long, value_name = "UID")]
    pub uid: Vec<u32>,

    /// Exit cleanly after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Exit cleanly after this many reported calls.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// This machine's name in every JSON record (`node`), e.g. the Kubernetes
    /// node a DaemonSet pod runs on.
    #[arg(long, env = "MNTTRACE_NODE_NAME", value_name = "NAME", value_parser = parse_node_name)]
    pub node_name: Option<String>,

    /// Write the stream to FILE instead of stdout: whole lines only (a write
    /// that fails part-way is cut back and counted as lost), mode 0600,
    /// appended to if it exists; SIGHUP reopens it.
    #[arg(long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,

    /// Rotate --output when it would grow past SIZE (e.g. 100M): FILE becomes
    /// FILE.1, FILE.1 becomes FILE.2, and so on.
    #[arg(long, value_name = "SIZE", requires = "output", value_parser = parse_file_size)]
    pub rotate_size: Option<u64>,

    /// Rotated files to keep (FILE.1 … FILE.N); 0 keeps none.
    #[arg(long, value_name = "N", requires = "rotate_size", default_value = "5", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub rotate_keep: u32,

    /// Show the values of secret-looking mount options (password=, secret=,
    /// token=, credentials= …) instead of redacting them.
    #[arg(long, global = true)]
    pub show_secrets: bool,

    /// Kernel ring buffer size: a power of two, at least one page (e.g. 64K, 16M).
    #[arg(long, value_name = "BYTES", default_value = "4M", value_parser = parse_ring_size)]
    pub ring_size: u32,

    /// Colour in the human stream (auto: only on a terminal). Never with NO_COLOR set.
    #[arg(long, value_enum, default_value = "auto")]
    pub color: ColorChoice,

    /// Kernel BTF to read struct offsets from.
    #[arg(long, value_name = "PATH", default_value = crate::capture::offsets::VMLINUX_BTF)]
    pub btf: std::path::PathBuf,

    /// More diagnostics on stderr (-v: info, -vv: debug, including the kernel program's log).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Views of the machine's mounts, instead of the live stream.
#[derive(Debug, clap::Subcommand)]
pub enum View {
    /// Every mount namespace with its mount tree and propagation, and the
    /// peer-group graph linking them.
    Snapshot {
        /// One JSON document (schema mnttrace/snapshot/v1).
        #[arg(long, conflicts_with = "dot")]
        json: bool,
        /// The peer-group graph for Graphviz (`| dot -Tsvg > mounts.svg`).
        #[arg(long)]
        dot: bool,
    },
    /// Where the kernel would propagate a mount made at PATH, and why it would
    /// not reach each other namespace.
    Explain {
        /// Absolute path, as seen in the chosen namespace.
        path: String,
        /// The namespace of this process (default: mnttrace's own).
        #[arg(long, value_name = "PID", conflicts_with = "mntns", value_parser = clap::value_parser!(u32).range(1..))]
        pid: Option<u32>,
        /// The namespace with this inode.
        #[arg(long, value_name = "INODE", value_parser = clap::value_parser!(u32).range(1..))]
        mntns: Option<u32>,
        /// Answer for this container (id prefix or name): would it see a
        /// mount made at PATH, where, and if not, where the chain breaks.
        #[arg(long, value_name = "ID|NAME", value_parser = parse_container)]
        container: Option<String>,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Each container's mounts: path inside, the host path it shows, and
    /// whether mounts propagate from the host into it and back.
    Volumes {
        /// Only this container (id prefix or name).
        #[arg(value_parser = parse_container)]
        container: Option<String>,
        /// The namespace that counts as the host: this process's (default: pid 1's).
        #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
        host_pid: Option<u32>,
        /// One JSON document (schema mnttrace/volumes/v1).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Tables {
    Auto,
    Statmount,
    Mountinfo,
}

impl Tables {
    /// The source to read tables from; an explicit statmount on a kernel
    /// without it is an error.
    pub fn source(self) -> anyhow::Result<crate::model::Source> {
        use crate::model::Source;
        match (self, Source::detect()) {
            (Tables::Auto, s) => Ok(s),
            (Tables::Mountinfo, _) => Ok(Source::Mountinfo),
            (Tables::Statmount, Source::Statmount) => Ok(Source::Statmount),
            (Tables::Statmount, Source::Mountinfo) => Err(anyhow::anyhow!(
                "--mount-tables=statmount: this kernel has no statmount(2)/listmount(2) with namespace ids (Linux 6.11+)"
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

fn parse_container(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a container id or name (letters, digits, '_', '.', '-')"
        ))
    }
}

fn parse_file_size(s: &str) -> Result<u64, String> {
    let bytes = parse_bytes(s)?;
    if bytes < 4096 {
        return Err(format!("{s} is smaller than 4K"));
    }
    Ok(bytes)
}

fn parse_node_name(s: &str) -> Result<String, String> {
    // A DNS-1123 subdomain, as Kubernetes node names are; refusing anything
    // else keeps control characters out of every record.
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a node name (letters, digits, '-', '.')"
        ))
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (try 10s, 2m, 1h)"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

/// A byte count with an optional K, M or G (binary) unit.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (t, 1u64),
        Some((i, _)) => {
            let m = match t[i..].to_ascii_uppercase().as_str() {
                "K" | "KB" | "KIB" => 1 << 10,
                "M" | "MB" | "MIB" => 1 << 20,
                "G" | "GB" | "GIB" => 1 << 30,
                other => return Err(format!("unknown unit {other:?} (use K, M or G)")),
            };
            (&t[..i], m)
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 64K, 16M)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s} is too large"))
}

pub fn parse_ring_size(s: &str) -> Result<u32, String> {
    let bytes = parse_bytes(s)?;
    if bytes > 1 << 30 {
        return Err(format!("{s} is larger than 1G"));
    }
    let page = 4096;
    if bytes < page || !bytes.is_power_of_two() {
        return Err(format!("{s} must be a power of two of at least 4K"));
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_size("16M"), Ok(16 << 20));
        assert_eq!(parse_ring_size("4096"), Ok(4096));
        assert_eq!(parse_ring_size("64k"), Ok(64 << 10));
        assert!(parse_ring_size("3M").is_err());
        assert!(parse_ring_size("1K").is_err());
        assert!(parse_ring_size("12Q").is_err());
        assert!(parse_ring_size("").is_err());
        assert!(parse_ring_size("99999999999G").is_err());
    }

    #[test]
    fn bad_arguments_are_refused() {
        for args in [
            &["mnttrace", "--call", "mountt"][..],
            &["mnttrace", "--pid", "0"],
            &["mnttrace", "--pid", "abc"],
            &["mnttrace", "--duration", "soon"],
            &["mnttrace", "--count", "0"],
            &["mnttrace", "--propagation", "sometimes"],
            &["mnttrace", "explain"],
            &["mnttrace", "explain", "/x", "--pid", "1", "--mntns", "2"],
            &["mnttrace", "snapshot", "--json", "--dot"],
            &["mnttrace", "--container", ""],
            &["mnttrace", "--container", "a/b"],
            &["mnttrace", "volumes", "x y"],
            &["mnttrace", "--rotate-size", "1M"],
            &["mnttrace", "--output", "f", "--rotate-size", "1Q"],
            &["mnttrace", "--output", "f", "--rotate-size", "100"],
            &["mnttrace", "--output", "f", "--rotate-keep", "3"],
            &["mnttrace", "--node-name", "a b"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} accepted");
        }
        let ok = Cli::try_parse_from(["mnttrace", "--call", "umount2", "--call", "mount"]).unwrap();
        assert_eq!(ok.call, [Call::Umount, Call::Mount]);
    }
}
