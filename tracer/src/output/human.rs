//! The live human stream: one line per syscall, strace-like call syntax in
//! mountsnoop-like columns, flags by name, strings escaped for the terminal.
use std::fmt::Write as _;

use crate::decode::{flags::join, text::quoted};
use crate::model::reach::Relation;
use crate::record::{Action, Evidence, LossReason, Lost, Propagated, Record, Syscall, Value};

pub struct Human {
    pub color: bool,
}

const RED: &str = "\x1b[31m";
const BOLD: &str = "\x1b[1m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

pub const HEADER: &str =
    "TIME            COMM             PID      TID      MNTNS       CONTAINER    CALL";

impl Human {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("{code}{s}{RESET}")
        } else {
            s.to_string()
        }
    }

    pub fn header(&self) -> String {
        self.paint(DIM, HEADER)
    }

    pub fn line(&self, r: &Record) -> String {
        match r {
            Record::Syscall(s) => self.syscall(s),
            Record::Lost(l) => self.lost(l),
            Record::Propagated(p) => self.propagated(p),
            Record::Ended(e) => self.paint(
                DIM,
                &format!(
                    "{:<15} -- mnt:[{}]{} ended{}: its {} mounts went with it --",
                    clock(e.time),
                    e.mntns,
                    e.container
                        .as_deref()
                        .map(|c| format!(" ({})", label(c)))
                        .unwrap_or_default(),
                    e.pid
                        .map(|p| format!(" (last released by pid {p})"))
                        .unwrap_or_default(),
                    e.mounts
                ),
            ),
        }
    }

    /// `  ↳ mnt:[4026532201] /data/x  attached  (peer, shared:42)`, under its
    /// syscall; with no syscall seen, a line of its own saying so.
    pub fn propagated(&self, p: &Propagated) -> String {
        let path = p.path.as_deref().map_or("?".to_string(), |s| {
            quoted(s.as_bytes()).trim_matches('"').to_string()
        });
        let mut how = Vec::new();
        let prop = &p.propagation;
        match (p.relation, prop.master) {
            (Some(Relation::Slave), Some(m)) => how.push(format!("slave of master:{m}")),
            (Some(Relation::Slave), None) => how.push("slave".into()),
            (Some(Relation::Peer), _) => how.push("peer".into()),
            (Some(Relation::Own), _) | (None, _) => {}
        }
        if let Some(g) = prop.shared {
            how.push(format!("shared:{g}"));
        }
        if p.relation != Some(Relation::Slave)
            && let Some(m) = prop.master
        {
            how.push(format!("master:{m}"));
        }
        if prop.unbindable {
            how.push("unbindable".into());
        }
        if how.is_empty() && p.evidence == Evidence::Observed {
            how.push("private".into());
        }
        // The call's own mount: which one the kernel made.
        if p.relation == Some(Relation::Own) && p.action != Action::Detached {
            how.insert(0, format!("mount {}", p.mnt_id));
        }
        let mut line = format!("mnt:[{}] {path}  {}", p.mntns, p.action.name());
        if let Some(c) = &p.container {
            line = format!(
                "mnt:[{}] ({}) {path}  {}",
                p.mntns,
                label(c),
                p.action.name()
            );
        }
        if let Some(from) = &p.from_path {
            let _ = write!(line, " from {}", quoted(from.as_bytes()).trim_matches('"'));
        }
        if !how.is_empty() {
            let _ = write!(line, "  ({})", how.join(", "));
        }
        if p.evidence == Evidence::Derived {
            line.push_str("  [derived]");
        }
        let line = self.paint(CYAN, &line);
        match p.cause {
            Some(_) => format!("  ↳ {line}"),
            None => format!(
                "{:<15} {} {line}  [no syscall seen{}]",
                clock(p.time),
                self.paint(YELLOW, "?"),
                p.cause_pid
                    .map(|pid| format!("; the kernel names pid {pid}"))
                    .unwrap_or_default()
            ),
        }
    }

    fn lost(&self, l: &Lost) -> String {
        let what = match l.reason {
            LossReason::OutputFailed => "records",
            LossReason::FanotifyOverflow => "times, mount events with them",
            _ => "events",
        };
        let mut line = format!(
            "-- lost {} {what} ({}) since {}; {} lost in total",
            l.count,
            l.reason.describe(),
            clock(l.since),
            l.total
        );
        if let Some(n) = l.reread {
            let _ = write!(line, "; the tables of {n} mount namespaces were read again");
        }
        line.push_str(" --");
        self.paint(RED, &line)
    }

    pub fn syscall(&self, s: &Syscall) -> String {
        let mut line = format!(
            "{:<15} {:<16} {:<8} {:<8} {:<11} {:<12} ",
            clock(s.time),
            quoted(s.comm.as_bytes()).trim_matches('"'),
            s.pid,
            s.tid,
            s.mntns_before,
            container(s.container.as_deref()),
        );
        line.push_str(&self.paint(BOLD, s.call.name()));
        line.push('(');
        let mut first = true;
        for a in s.args.iter().filter(|a| !a.name.ends_with("_resolved")) {
            if !first {
                line.push_str(", ");
            }
            first = false;
            let _ = write!(line, "{}={}", a.name, render(&a.value));
            let resolved = format!("{}_resolved", a.name);
            if let Some(Value::Str { bytes, .. }) = s.arg(&resolved) {
                let _ = write!(line, " [{}]", quoted(bytes).trim_matches('"'));
            }
        }
        line.push_str(") = ");
        match s.errno() {
            Some(errno) => line.push_str(&self.paint(RED, &format!("-1 {errno}"))),
            None => {
                let _ = write!(line, "{}", s.ret);
            }
        }
        if s.mntns_after != s.mntns_before {
            let change = format!("  mnt:[{}] -> mnt:[{}]", s.mntns_before, s.mntns_after);
            line.push_str(&self.paint(YELLOW, &change));
        }
        line
    }
}

/// The container column: a name or short id, made safe for the terminal.
fn container(c: Option<&crate::container::Container>) -> String {
    c.map_or_else(|| "-".to_string(), label)
}

fn label(c: &crate::container::Container) -> String {
    let l = quoted(c.label().as_bytes()).trim_matches('"').to_string();
    l.chars().take(12).collect()
}

fn render(v: &Value) -> String {
    match v {
        Value::Str {
            unreadable: true, ..
        } => "<unreadable>".to_string(),
        Value::Str {
            bytes, truncated, ..
        } => {
            let mut s = quoted(bytes);
            if *truncated {
                s.push_str("...");
            }
            s
        }
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Flags { names, .. } => join(names),
        Value::Enum { name, .. } => name.clone(),
        Value::Null => "NULL".to_string(),
    }
}

/// Time of day (UTC) with microseconds: no tz database lookup
/// in the hot path, and the JSON stream carries the full RFC 3339 time.
fn clock(t: std::time::SystemTime) -> String {
    let s = humantime::format_rfc3339_micros(t).to_string();
    // 2026-11-23T19:22:01.123456Z -> 19:22:01.123456
    s.get(11..26).unwrap_or(&s).to_string()
}
