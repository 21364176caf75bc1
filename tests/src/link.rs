//! JSON lines over a child's pipes, the way the test drivers talk (nsfarm,
//! mntdrive, mntdrive --serve): a hello line first, then requests on stdin
//! and replies on stdout. Dropping the link closes the child's stdin, which
//! has a driver finish and exit.
use std::{
    io::{self, BufRead as _, BufReader, Lines, Write as _},
    process::{Child, ChildStdin, ChildStdout},
};

use serde_json::Value;

pub struct Link {
    who: &'static str,
    go: ChildStdin,
    said: Lines<BufReader<ChildStdout>>,
}

impl Link {
    /// Takes `child`'s stdin and stdout (both piped) and reads its hello.
    pub fn open(child: &mut Child, who: &'static str) -> io::Result<(Link, Value)> {
        let piped = |what| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{who}'s {what} is not piped"),
            )
        };
        let go = child.stdin.take().ok_or_else(|| piped("stdin"))?;
        let said = BufReader::new(child.stdout.take().ok_or_else(|| piped("stdout"))?).lines();
        let mut link = Link { who, go, said };
        let hello = link.line()?;
        Ok((link, hello))
    }

    /// Sends one line.
    pub fn send(&mut self, request: &str) -> io::Result<()> {
        writeln!(self.go, "{request}")?;
        self.go.flush()
    }

    /// Sends one request and returns its reply.
    pub fn ask(&mut self, request: &str) -> io::Result<Value> {
        self.send(request)?;
        self.line()
    }

    /// The next line the child wrote.
    pub fn line(&mut self) -> io::Result<Value> {
        let who = self.who;
        let l = self.said.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, format!("{who} ended"))
        })??;
        serde_json::from_str(&l).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{who} said {l:?}: {e}"))
        })
    }
}
