//! Mount data often carries secrets: cifs `password=` (and `username=user%pass`),
//! ceph `secret=`, `token=`, credentials files, passwords in URL sources
//! (`https://user:pass@host/dav`). Their values are replaced by `<redacted>`
//! before a record is built, so no output (human, JSON, views) can leak them;
//! `--show-secrets` turns this off.
//!
//! Hand-written: option strings are the kernel's comma lists (with cifs's
//! `,,` for a literal comma), which no crate parses.

pub const REDACTED: &[u8] = b"<redacted>";

/// Option names whose values are secrets (compared without case).
fn secret_key(key: &[u8]) -> bool {
    let k = key.trim_ascii().to_ascii_lowercase();
    const EXACT: &[&[u8]] = &[b"pass", b"pwd", b"key", b"auth", b"cred", b"creds"];
    const PART: &[&[u8]] = &[
        b"password",
        b"passwd",
        b"passphrase",
        b"secret",
        b"token",
        b"credential",
        b"apikey",
        b"api_key",
        b"access_key",
        b"private_key",
        b"sessionkey",
    ];
    EXACT.contains(&k.as_slice()) || PART.iter().any(|p| k.windows(p.len()).any(|w| w == *p))
}

/// `user=name%password` (cifs): the part after `%` is a password.
fn user_key(key: &[u8]) -> bool {
    matches!(
        key.trim_ascii().to_ascii_lowercase().as_slice(),
        b"user" | b"username"
    )
}

/// A comma-separated option list (mount(2) data, statmount's options) with
/// secret values redacted; `None` when there was nothing to redact.
pub fn options(data: &[u8]) -> Option<Vec<u8>> {
    let comma = |from: usize| {
        data[from..]
            .iter()
            .position(|&b| b == b',')
            .map_or(data.len(), |p| from + p)
    };
    let mut out = Vec::with_capacity(data.len() + REDACTED.len());
    let mut changed = false;
    let mut start = 0;
    loop {
        let mut end = comma(start);
        let opt = &data[start..end];
        let eq = opt.iter().position(|&b| b == b'=');
        let pct = eq.and_then(|eq| opt[eq..].iter().position(|&b| b == b'%').map(|p| eq + p));
        match (eq, pct) {
            (Some(eq), _) if secret_key(&opt[..eq]) => {
                // The value runs on over cifs's doubled commas.
                while data.get(end..end + 2) == Some(b",,") {
                    end = comma(end + 2);
                }
                out.extend_from_slice(&opt[..=eq]);
                out.extend_from_slice(REDACTED);
                changed = true;
            }
            (Some(eq), Some(pct)) if user_key(&opt[..eq]) => {
                out.extend_from_slice(&opt[..=pct]);
                out.extend_from_slice(REDACTED);
                changed = true;
            }
            _ => match url(opt) {
                Some(r) => {
                    out.extend_from_slice(&r);
                    changed = true;
                }
                None => out.extend_from_slice(opt),
            },
        }
        if end >= data.len() {
            break;
        }
        out.push(b',');
        start = end + 1;
    }
    changed.then_some(out)
}

/// `scheme://user:password@host…` with the password redacted; `None` when
/// there is none.
pub fn url(s: &[u8]) -> Option<Vec<u8>> {
    let scheme = s.windows(3).position(|w| w == b"://")? + 3;
    let auth_end = s[scheme..]
        .iter()
        .position(|&b| b == b'/')
        .map_or(s.len(), |p| scheme + p);
    let at = scheme + s[scheme..auth_end].iter().rposition(|&b| b == b'@')?;
    let colon = scheme + s[scheme..at].iter().position(|&b| b == b':')?;
    let mut out = s[..=colon].to_vec();
    out.extend_from_slice(REDACTED);
    out.extend_from_slice(&s[at..]);
    Some(out)
}

/// fsconfig(2)'s value for `key`: all of it when the key names a secret.
pub fn fsconfig_value(key: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    if secret_key(key) {
        return Some(REDACTED.to_vec());
    }
    if user_key(key)
        && let Some(pct) = value.iter().position(|&b| b == b'%')
    {
        let mut out = value[..=pct].to_vec();
        out.extend_from_slice(REDACTED);
        return Some(out);
    }
    url(value)
}

/// A mount's source and options (statmount, mountinfo) with secrets redacted.
pub fn mount(m: &mut crate::model::Mount) {
    if let Some(o) = options(m.options.as_bytes()) {
        m.options = String::from_utf8_lossy(&o).into();
    }
    if let Some(s) = url(m.source.as_bytes()) {
        m.source = String::from_utf8_lossy(&s).into();
    }
}

use std::sync::Arc;

/// A string (a mount's source as the kernel shows it) with a URL password redacted.
pub fn source(s: &mut Arc<str>) {
    if let Some(r) = url(s.as_bytes()) {
        *s = String::from_utf8_lossy(&r).into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> String {
        options(s.as_bytes()).map_or_else(
            || "unchanged".into(),
            |v| String::from_utf8_lossy(&v).into(),
        )
    }

    #[test]
    fn secret_options_are_redacted() {
        assert_eq!(
            opts("username=bob,password=hunter2,vers=3.0"),
            "username=bob,password=<redacted>,vers=3.0"
        );
        assert_eq!(opts("pass=x"), "pass=<redacted>");
        assert_eq!(opts("credentials=/root/.smb"), "credentials=<redacted>");
        assert_eq!(
            opts("name=admin,secret=AQBx=="),
            "name=admin,secret=<redacted>"
        );
        assert_eq!(opts("ro,token=abc,noatime"), "ro,token=<redacted>,noatime");
        assert_eq!(opts("PASSWORD=Zz"), "PASSWORD=<redacted>");
        assert_eq!(
            opts("user=bob%hunter2,sec=ntlmssp"),
            "user=bob%<redacted>,sec=ntlmssp"
        );
        // cifs: a doubled comma is a comma in the password.
        assert_eq!(opts("password=a,,b,,c,uid=0"), "password=<redacted>,uid=0");
        assert_eq!(opts("password=a,,b"), "password=<redacted>");
        assert_eq!(opts("size=1m,mode=755"), "unchanged");
        assert_eq!(opts(""), "unchanged");
        assert_eq!(opts(",,,"), "unchanged");
        assert_eq!(
            opts("sec=krb5,secretfile=/etc/ceph/s"),
            "sec=krb5,secretfile=<redacted>"
        );
        assert_eq!(opts("password=,x"), "password=<redacted>,x");
    }

    #[test]
    fn url_passwords_are_redacted() {
        let u = |s: &str| url(s.as_bytes()).map(|v| String::from_utf8_lossy(&v).into_owned());
        assert_eq!(
            u("https://bob:hunter2@dav.example/x").as_deref(),
            Some("https://bob:<redacted>@dav.example/x")
        );
        assert_eq!(u("https://dav.example/x@y"), None);
        assert_eq!(u("https://bob@dav.example/"), None);
        assert_eq!(u("/dev/sda1"), None);
        assert_eq!(
            opts("url=https://a:b@h/,ro"),
            "url=https://a:<redacted>@h/,ro"
        );
    }

    #[test]
    fn fsconfig_values() {
        let v = |k: &str, s: &str| {
            fsconfig_value(k.as_bytes(), s.as_bytes())
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        };
        assert_eq!(v("password", "x").as_deref(), Some("<redacted>"));
        assert_eq!(v("source", "//srv/share"), None);
        assert_eq!(v("username", "bob%pw").as_deref(), Some("bob%<redacted>"));
        assert_eq!(v("size", "1m"), None);
    }
}
