//! NDJSON: one object per line, schema `mnttrace/v1` (docs/json.md,
//! docs/mnttrace-v1.schema.json).
use serde_json::{Map, Value as J, json};

use crate::decode::text::lossy;
use crate::record::{Lost, Propagated, Record, Syscall, Value};

pub const SCHEMA: &str = "mnttrace/v1";

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

fn value(v: &Value) -> J {
    match v {
        Value::Str { bytes, .. } => J::String(lossy(bytes)),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Flags { raw, names } => json!({ "raw": raw, "names": names }),
        Value::Enum { raw, name } => json!({ "raw": raw, "name": name }),
        Value::Null => J::Null,
    }
}

pub fn syscall(s: &Syscall) -> J {
    let mut args = Map::new();
    let mut truncated = Vec::new();
    let mut unreadable = Vec::new();
    for a in &s.args {
        if let Value::Str {
            truncated: t,
            unreadable: u,
            ..
        } = &a.value
        {
            if *t {
                truncated.push(a.name);
            }
            if *u {
                unreadable.push(a.name);
            }
        }
        args.insert(a.name.to_string(), value(&a.value));
    }
    json!({
        "schema": SCHEMA,
        "kind": "syscall",
        "id": s.id,
        "time": rfc3339(s.time),
        "ktime_ns": s.ktime_ns,
        "latency_ns": s.latency_ns,
        "pid": s.pid,
        "tid": s.tid,
        "ppid": s.ppid,
        "uid": s.uid,
        "gid": s.gid,
        "comm": s.comm,
        "cgroup_id": s.cgroup_id,
        "call": s.call.name(),
        "ret": s.ret,
        "errno": s.errno(),
        "mntns_before": s.mntns_before,
        "mntns_after": s.mntns_after,
        "args": args,
        "truncated": truncated,
        "unreadable": unreadable,
        "redacted": s.redacted,
        "container": container(s.container.as_deref()),
    })
}

pub fn lost(l: &Lost) -> J {
    let mut v = json!({
        "schema": SCHEMA,
        "kind": "lost",
        "time": rfc3339(l.time),
        "since": rfc3339(l.since),
        "reason": l.reason.name(),
        "count": l.count,
        "total": l.total,
    });
    if let J::Object(o) = &mut v {
        if let Some(c) = l.calls {
            o.insert("calls".into(), json!(c));
        }
        if let Some(n) = l.reread {
            o.insert("reread_namespaces".into(), json!(n));
        }
    }
    v
}

pub fn line(r: &Record, node: Option<&str>) -> String {
    let mut v = match r {
        Record::Syscall(s) => syscall(s),
        Record::Lost(l) => lost(l),
        Record::Propagated(p) => propagated(p),
        Record::Ended(e) => json!({
            "schema": SCHEMA,
            "kind": "namespace_ended",
            "time": rfc3339(e.time),
            "mntns": e.mntns,
            "pid": e.pid,
            "mounts": e.mounts,
            "container": container(e.container.as_deref()),
        }),
    };
    if let J::Object(o) = &mut v {
        o.insert("node".into(), node.map_or(J::Null, |n| J::String(n.into())));
    }
    v.to_string()
}

pub fn propagated(p: &Propagated) -> J {
    json!({
        "schema": SCHEMA,
        "kind": "propagation",
        "time": rfc3339(p.time),
        "cause": p.cause,
        "cause_pid": p.cause_pid,
        "mntns": p.mntns,
        "mnt_id": p.mnt_id,
        "path": p.path,
        "from_path": p.from_path,
        "action": p.action.name(),
        "relation": p.relation.map(|r| r.name()),
        "shared": p.propagation.shared,
        "master": p.propagation.master,
        "unbindable": p.propagation.unbindable,
        "fstype": p.fstype,
        "source": p.source,
        "evidence": p.evidence.name(),
        "via": p.via.name(),
        "container": container(p.container.as_deref()),
    })
}

fn container(c: Option<&crate::container::Container>) -> J {
    c.map_or(J::Null, |c| c.json())
}
