//! The pipes to a running `nsfarm` (src/bin/nsfarm.rs), for the bench and
//! the tests alike: its hello line, then one request and one reply at a
//! time. Closing them (dropping the link) has the farm kill and reap every
//! namespace's process and exit.
use std::{
    io::{self, BufRead as _, BufReader, Lines, Write as _},
    process::{Child, ChildStdin, ChildStdout},
};

use serde_json::Value;

pub struct FarmLink {
    go: ChildStdin,
    said: Lines<BufReader<ChildStdout>>,
}

impl FarmLink {
    /// Takes `child`'s stdin and stdout (both piped) and reads its hello:
    /// `pid` (the process in the farm's first namespace), `mounts`, `setup_ms`.
    pub fn open(child: &mut Child) -> io::Result<(FarmLink, Value)> {
        let piped = |what| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("nsfarm's {what} is not piped"),
            )
        };
        let go = child.stdin.take().ok_or_else(|| piped("stdin"))?;
        let said = BufReader::new(child.stdout.take().ok_or_else(|| piped("stdout"))?).lines();
        let mut link = FarmLink { go, said };
        let hello = link.line()?;
        Ok((link, hello))
    }

    /// Sends one request (see nsfarm) and returns its reply, `{"ret": N}`
    /// (0 or -errno).
    pub fn ask(&mut self, request: &str) -> io::Result<Value> {
        writeln!(self.go, "{request}")?;
        self.go.flush()?;
        self.line()
    }

    fn line(&mut self) -> io::Result<Value> {
        let l = self
            .said
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "nsfarm ended"))??;
        serde_json::from_str(&l).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("nsfarm said {l:?}: {e}"),
            )
        })
    }
}
