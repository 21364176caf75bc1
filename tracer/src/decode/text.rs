//! Bytes from user memory made safe to show: lossy UTF-8, and for terminals
//! every control character escaped so nothing a process passes to mount(2)
//! can drive the user's terminal.

pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// For the human stream: quoted, with control characters, quotes and
/// backslashes escaped (`escape_debug` covers C0, C1, DEL and bidi controls).
pub fn quoted(bytes: &[u8]) -> String {
    format!("\"{}\"", lossy(bytes).escape_debug())
}

pub fn comm(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    lossy(&raw[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_are_neutralised() {
        let s = quoted(b"a\x1b[31mred\x07\n\xff\"");
        assert!(!s.contains('\x1b') && !s.contains('\x07') && !s.contains('\n'));
        assert_eq!(s, "\"a\\u{1b}[31mred\\u{7}\\n\u{fffd}\\\"\"");
    }

    #[test]
    fn comm_stops_at_nul() {
        assert_eq!(comm(b"mount\0garbage\0\0\0"), "mount");
    }
}
