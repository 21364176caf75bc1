//! NDJSON: one object per line, schema `mnttrace/v1` (docs/json.md,
//! docs/mnttrace-v1.schema.json).
//!
//! Records are serialized straight from borrowed views of them: building a
//! `serde_json::Value` per record (a map, a String per key) was a third of
//! mnttrace's CPU in a mount storm.
use serde::{Serialize, Serializer, ser::SerializeMap as _};

use crate::container::Container;
use crate::decode::text::lossy;
use crate::record::{Arg, Ended, Lost, Propagated, Record, Syscall, Value};

pub const SCHEMA: &str = "mnttrace/v1";

/// A time in RFC 3339 with microseconds (formatted once for the records
/// that share it: a String per record was a tenth of a propagation's
/// output cost).
struct Time(std::time::SystemTime);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use std::fmt::Write as _;
        thread_local! {
            // The last time written (a call's propagation records share
            // one), in a buffer reused for the next.
            static LAST: std::cell::RefCell<(Option<std::time::SystemTime>, String)> =
                const { std::cell::RefCell::new((None, String::new())) };
        }
        LAST.with_borrow_mut(|(at, text)| {
            if *at != Some(self.0) {
                text.clear();
                // Into a String: formatting cannot fail.
                let _ = write!(text, "{}", humantime::format_rfc3339_micros(self.0));
                *at = Some(self.0);
            }
            s.serialize_str(text)
        })
    }
}

struct ArgValue<'a>(&'a Value);

impl Serialize for ArgValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Flags<'a> {
            raw: u64,
            names: &'a [String],
        }
        #[derive(Serialize)]
        struct Enum<'a> {
            raw: u64,
            name: &'a str,
        }
        match self.0 {
            Value::Str { bytes, .. } => s.serialize_str(&lossy(bytes)),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::Flags { raw, names } => Flags { raw: *raw, names }.serialize(s),
            Value::Enum { raw, name } => Enum { raw: *raw, name }.serialize(s),
            Value::Null => s.serialize_unit(),
        }
    }
}

struct Args<'a>(&'a [Arg]);

impl Serialize for Args<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for a in self.0 {
            m.serialize_entry(a.name, &ArgValue(&a.value))?;
        }
        m.end()
    }
}

/// A container as JSON (`null` for none).
struct ContainerJson<'a>(Option<&'a Container>);

impl Serialize for ContainerJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_unit(),
            Some(c) => c.json().serialize(s),
        }
    }
}

#[derive(Serialize)]
struct SyscallJson<'a> {
    schema: &'static str,
    kind: &'static str,
    id: u64,
    time: Time,
    ktime_ns: u64,
    latency_ns: u64,
    pid: u32,
    tid: u32,
    ppid: u32,
    uid: u32,
    gid: u32,
    comm: &'a str,
    cgroup_id: u64,
    call: &'static str,
    ret: i64,
    errno: Option<String>,
    mntns_before: u32,
    mntns_after: u32,
    args: Args<'a>,
    truncated: Vec<&'static str>,
    unreadable: Vec<&'static str>,
    redacted: &'a [&'static str],
    container: ContainerJson<'a>,
    node: Option<&'a str>,
}

/// The propagation record as serde lays it out: the reference
/// [`write_propagated`] is held to.
#[cfg(test)]
#[derive(Serialize)]
struct PropagatedJson<'a> {
    schema: &'static str,
    kind: &'static str,
    time: Time,
    cause: Option<u64>,
    cause_pid: Option<u32>,
    mntns: u32,
    mnt_id: u64,
    path: Option<&'a str>,
    from_path: Option<&'a str>,
    action: &'static str,
    relation: Option<&'static str>,
    shared: Option<u64>,
    master: Option<u64>,
    unbindable: bool,
    fstype: &'a str,
    source: &'a str,
    evidence: &'static str,
    via: &'static str,
    container: ContainerJson<'a>,
    node: Option<&'a str>,
}

#[derive(Serialize)]
struct EndedJson<'a> {
    schema: &'static str,
    kind: &'static str,
    time: Time,
    mntns: u32,
    pid: Option<u32>,
    mounts: usize,
    container: ContainerJson<'a>,
    node: Option<&'a str>,
}

#[derive(Serialize)]
struct LostJson<'a> {
    schema: &'static str,
    kind: &'static str,
    time: Time,
    since: Time,
    reason: &'static str,
    count: u64,
    total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    calls: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reread_namespaces: Option<usize>,
    node: Option<&'a str>,
}

fn syscall<'a>(s: &'a Syscall, node: Option<&'a str>) -> SyscallJson<'a> {
    let flagged = |pick: fn(&Value) -> bool| -> Vec<&'static str> {
        s.args
            .iter()
            .filter(|a| pick(&a.value))
            .map(|a| a.name)
            .collect()
    };
    SyscallJson {
        schema: SCHEMA,
        kind: "syscall",
        id: s.id,
        time: Time(s.time),
        ktime_ns: s.ktime_ns,
        latency_ns: s.latency_ns,
        pid: s.pid,
        tid: s.tid,
        ppid: s.ppid,
        uid: s.uid,
        gid: s.gid,
        comm: &s.comm,
        cgroup_id: s.cgroup_id,
        call: s.call.name(),
        ret: s.ret,
        errno: s.errno(),
        mntns_before: s.mntns_before,
        mntns_after: s.mntns_after,
        args: Args(&s.args),
        truncated: flagged(|v| {
            matches!(
                v,
                Value::Str {
                    truncated: true,
                    ..
                }
            )
        }),
        unreadable: flagged(|v| {
            matches!(
                v,
                Value::Str {
                    unreadable: true,
                    ..
                }
            )
        }),
        redacted: &s.redacted,
        container: ContainerJson(s.container.as_deref()),
        node,
    }
}

#[cfg(test)]
fn propagated<'a>(p: &'a Propagated, node: Option<&'a str>) -> PropagatedJson<'a> {
    PropagatedJson {
        schema: SCHEMA,
        kind: "propagation",
        time: Time(p.time),
        cause: p.cause,
        cause_pid: p.cause_pid,
        mntns: p.mntns,
        mnt_id: p.mnt_id,
        path: p.path.as_deref(),
        from_path: p.from_path.as_deref(),
        action: p.action.name(),
        relation: p.relation.map(|r| r.name()),
        shared: p.propagation.shared,
        master: p.propagation.master,
        unbindable: p.propagation.unbindable,
        fstype: &p.fstype,
        source: &p.source,
        evidence: p.evidence.name(),
        via: p.via.name(),
        container: ContainerJson(p.container.as_deref()),
        node,
    }
}

fn ended<'a>(e: &'a Ended, node: Option<&'a str>) -> EndedJson<'a> {
    EndedJson {
        schema: SCHEMA,
        kind: "namespace_ended",
        time: Time(e.time),
        mntns: e.mntns,
        pid: e.pid,
        mounts: e.mounts,
        container: ContainerJson(e.container.as_deref()),
        node,
    }
}

fn lost<'a>(l: &Lost, node: Option<&'a str>) -> LostJson<'a> {
    LostJson {
        schema: SCHEMA,
        kind: "lost",
        time: Time(l.time),
        since: Time(l.since),
        reason: l.reason.name(),
        count: l.count,
        total: l.total,
        calls: l.calls,
        reread_namespaces: l.reread,
        node,
    }
}

/// `,"key":value` into `buf` (`key` needs no escaping).
fn field<T: Serialize + ?Sized>(buf: &mut Vec<u8>, key: &str, v: &T) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
    // Into a Vec: serde_json fails only on non-string map keys or a failing
    // writer, neither here.
    serde_json::to_writer(&mut *buf, v).expect("a value serializes");
}

/// A propagation record, laid out by hand: serde_json escapes each of a
/// struct's keys as it writes it (a scan of every byte), which was ~40 % of
/// rendering a propagation into a thousand namespaces. The keys are
/// constants here; every value still goes through serde_json. The same
/// line as serde's layout (`PropagatedJson`): the tests hold it to that.
fn write_propagated(buf: &mut Vec<u8>, p: &Propagated, node: Option<&str>) {
    buf.extend_from_slice(br#"{"schema":"mnttrace/v1","kind":"propagation""#);
    field(buf, "time", &Time(p.time));
    field(buf, "cause", &p.cause);
    field(buf, "cause_pid", &p.cause_pid);
    field(buf, "mntns", &p.mntns);
    field(buf, "mnt_id", &p.mnt_id);
    field(buf, "path", &p.path);
    field(buf, "from_path", &p.from_path);
    field(buf, "action", p.action.name());
    field(buf, "relation", &p.relation.map(|r| r.name()));
    field(buf, "shared", &p.propagation.shared);
    field(buf, "master", &p.propagation.master);
    field(buf, "unbindable", &p.propagation.unbindable);
    field(buf, "fstype", &*p.fstype);
    field(buf, "source", &*p.source);
    field(buf, "evidence", p.evidence.name());
    field(buf, "via", p.via.name());
    field(buf, "container", &ContainerJson(p.container.as_deref()));
    field(buf, "node", &node);
    buf.push(b'}');
}

/// One record as one line of JSON (without the newline), appended to `buf`
/// (reused from line to line: a thousand copies of a propagation are a
/// thousand lines).
pub fn write(buf: &mut Vec<u8>, r: &Record, node: Option<&str>) {
    let out = match r {
        Record::Syscall(s) => serde_json::to_writer(&mut *buf, &syscall(s, node)),
        Record::Propagated(p) => {
            write_propagated(buf, p, node);
            Ok(())
        }
        Record::Ended(e) => serde_json::to_writer(&mut *buf, &ended(e, node)),
        Record::Lost(l) => serde_json::to_writer(&mut *buf, &lost(l, node)),
    };
    // Strings, numbers and string-keyed maps into a Vec: serde_json fails
    // only on non-string map keys or a failing writer, neither here.
    out.expect("a record serializes")
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::SystemTime};

    use super::*;
    use crate::model::{mount::Propagation, reach::Relation};
    use crate::record::{Action, Evidence, Via};

    fn serde_line(p: &Propagated, node: Option<&str>) -> String {
        serde_json::to_string(&propagated(p, node)).expect("serde's line")
    }

    fn hand_line(p: &Propagated, node: Option<&str>) -> String {
        let mut buf = Vec::new();
        write_propagated(&mut buf, p, node);
        String::from_utf8(buf).expect("UTF-8")
    }

    /// The propagation record laid out by hand is serde's line, byte for
    /// byte, whatever its values: every optional empty and set, strings that
    /// need escaping (quotes, backslashes, control and terminal escape
    /// characters, non-ASCII), a container, a node.
    #[test]
    fn hand_laid_propagation_is_serdes_line() {
        let container = Arc::new(Container {
            id: "c0ffee\"\\".into(),
            runtime: "runc".into(),
            name: Some("web\u{1b}[31m".into()),
            pod: None,
            pod_namespace: Some("default".into()),
            pod_uid: None,
            init_pid: Some(42),
            bundle: Some("/run/b\u{7}".into()),
            config: None,
        });
        let base = Propagated {
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_765_000_000_123_456),
            cause: Some(7),
            cause_pid: Some(4242),
            mntns: 4026532175,
            mnt_id: u64::MAX,
            path: Some("/tmp/x \"y\"\\z\n\t\u{0}\u{1f}\u{7f}é☃".into()),
            from_path: None,
            action: Action::Attached,
            relation: Some(Relation::Peer),
            propagation: Propagation {
                shared: Some(12),
                master: None,
                propagate_from: Some(3),
                unbindable: false,
            },
            fstype: "tmpfs".into(),
            source: "none\r".into(),
            evidence: Evidence::Observed,
            via: Via::Fanotify,
            container: None,
        };
        let mut records = vec![base.clone()];
        let mut p = base.clone();
        p.cause = None;
        p.cause_pid = None;
        p.path = None;
        p.from_path = Some("/old\u{1b}]0;t\u{7}".into());
        p.action = Action::Moved;
        p.relation = None;
        p.propagation = Propagation {
            shared: None,
            master: Some(9),
            propagate_from: None,
            unbindable: true,
        };
        p.fstype = "".into();
        p.source = "//srv/share".into();
        p.evidence = Evidence::Derived;
        p.via = Via::Listing;
        p.container = Some(container.clone());
        records.push(p);
        for (action, relation, via) in [
            (Action::Detached, Relation::Own, Via::Diff),
            (Action::Attached, Relation::Slave, Via::Fanotify),
        ] {
            let mut p = base.clone();
            p.action = action;
            p.relation = Some(relation);
            p.via = via;
            p.mntns = 0;
            p.mnt_id = 0;
            records.push(p);
        }
        for p in &records {
            for node in [None, Some("node-1"), Some("n\"ode\u{2028}")] {
                let hand = hand_line(p, node);
                assert_eq!(hand, serde_line(p, node));
                let v: serde_json::Value = serde_json::from_str(&hand).expect("valid JSON");
                assert_eq!(v["schema"], SCHEMA);
            }
        }
    }
}
