//! Absolute paths for relative arguments and dirfds, as the calling process
//! sees them, read from /proc while it still exists ("where it can be known").
use std::path::{Path, PathBuf};

use crate::record::Value;

const AT_FDCWD: i64 = -100;

/// Pushes `name` = the absolute form of `path` relative to `dirfd` of `pid`,
/// when `path` is relative or a dirfd is in play and /proc still tells.
pub fn resolve(
    pid: u32,
    dirfd: i64,
    path: &Value,
    push: &mut impl FnMut(&'static str, Value),
    name: &'static str,
) {
    let Value::Str {
        bytes,
        truncated: false,
        unreadable: false,
    } = path
    else {
        return;
    };
    if bytes.first() == Some(&b'/') {
        return;
    }
    let base = if dirfd == AT_FDCWD {
        if bytes.is_empty() {
            return;
        }
        format!("/proc/{pid}/cwd")
    } else if dirfd >= 0 {
        format!("/proc/{pid}/fd/{dirfd}")
    } else {
        return;
    };
    let Ok(base) = std::fs::read_link(&base) else {
        return;
    };
    let joined = join(&base, bytes);
    push(
        name,
        Value::Str {
            bytes: joined.into_os_string().into_encoded_bytes(),
            truncated: false,
            unreadable: false,
        },
    );
}

fn join(base: &Path, rel: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut out = base.to_path_buf();
    for part in rel.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            p => out.push(std::ffi::OsStr::from_bytes(p)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_lexically() {
        assert_eq!(join(Path::new("/a/b"), b"c/./d"), Path::new("/a/b/c/d"));
        assert_eq!(join(Path::new("/a/b"), b"../c"), Path::new("/a/c"));
        assert_eq!(join(Path::new("/a"), b""), Path::new("/a"));
    }

    #[test]
    fn resolves_against_own_cwd() {
        let cwd = std::env::current_dir().expect("cwd");
        let mut got = Vec::new();
        let v = Value::Str {
            bytes: b"x/y".to_vec(),
            truncated: false,
            unreadable: false,
        };
        resolve(
            std::process::id(),
            AT_FDCWD,
            &v,
            &mut |n, v| got.push((n, v)),
            "p",
        );
        let Some(("p", Value::Str { bytes, .. })) = got.pop() else {
            panic!("no resolution")
        };
        assert_eq!(
            Path::new(std::str::from_utf8(&bytes).expect("utf8")),
            cwd.join("x/y")
        );
    }
}
