//! One mount as the model holds it, whichever interface it was read from.
use std::{fmt, sync::Arc};

/// How a mount takes part in propagation (mount_namespaces(7)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Propagation {
    /// Peer group it shares events with (`shared:N`).
    pub shared: Option<u64>,
    /// Peer group it receives events from (`master:N`).
    pub master: Option<u64>,
    /// Closest dominant peer group in the reader's namespace (`propagate_from:N`).
    pub propagate_from: Option<u64>,
    pub unbindable: bool,
}

impl Propagation {
    pub fn is_private(&self) -> bool {
        self.shared.is_none() && self.master.is_none() && !self.unbindable
    }
}

impl fmt::Display for Propagation {
    /// As in mountinfo's optional fields, or `private`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(g) = self.shared {
            parts.push(format!("shared:{g}"));
        }
        if let Some(g) = self.master {
            parts.push(format!("master:{g}"));
        }
        if let Some(g) = self.propagate_from {
            parts.push(format!("propagate_from:{g}"));
        }
        if self.unbindable {
            parts.push("unbindable".into());
        }
        if parts.is_empty() {
            parts.push("private".into());
        }
        f.write_str(&parts.join(" "))
    }
}

/// A mount's string that its copies share: a propagation into a thousand
/// namespaces makes a thousand mounts with the same root, type, source and
/// options, and each was four allocations and copies where it is now four
/// reference counts. (`mount_point` differs from copy to copy.)
pub fn shared(s: String) -> Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    if s.is_empty() {
        // Read without strings (statmount in numbers): no allocation each.
        EMPTY.clone()
    } else {
        s.into()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Unique 64-bit id where statmount(2) exists; mountinfo's id otherwise.
    pub id: u64,
    pub parent: u64,
    /// mountinfo's (reusable) id.
    pub old_id: u32,
    pub mount_point: String,
    /// Root of the mount within its filesystem.
    pub root: Arc<str>,
    pub fstype: Arc<str>,
    pub source: Arc<str>,
    pub options: Arc<str>,
    pub dev: (u32, u32),
    pub propagation: Propagation,
}

impl Mount {
    /// Whether `path` is at or below this mount's mount point.
    pub fn contains(&self, path: &str) -> bool {
        below(&self.mount_point, path).is_some()
    }
}

/// `path` relative to `base` ("" when equal), if it lies at or below it.
pub fn below<'a>(base: &str, path: &'a str) -> Option<&'a str> {
    if base == "/" {
        return Some(path.trim_start_matches('/'));
    }
    let rest = path.strip_prefix(base)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

/// `base` joined with a relative `rest`.
pub fn join(base: &str, rest: &str) -> String {
    join_parts(base, rest).concat()
}

/// The pieces of [`join`]'s result, for comparing joined paths without
/// building them.
pub fn join_parts<'a>(base: &'a str, rest: &'a str) -> [&'a str; 3] {
    let slash = if rest.is_empty() || base == "/" {
        ""
    } else {
        "/"
    };
    [base, slash, rest]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(below("/", "/a/b"), Some("a/b"));
        assert_eq!(below("/a", "/a"), Some(""));
        assert_eq!(below("/a", "/a/b"), Some("b"));
        assert_eq!(below("/a", "/ab"), None);
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("/a", ""), "/a");
        assert_eq!(join("/a", "x/y"), "/a/x/y");
    }

    #[test]
    fn propagation_text() {
        let p = Propagation {
            shared: Some(42),
            master: Some(7),
            ..Default::default()
        };
        assert_eq!(p.to_string(), "shared:42 master:7");
        assert_eq!(Propagation::default().to_string(), "private");
    }
}
