//! Where the stream's lines go: stdout, or `--output FILE` (mode 0600,
//! rotated by size). Lines are buffered and written whole. When a write fails
//! part-way (disk full, quota, I/O error), a regular file is cut back to its
//! last whole line, and the lines that did not fit are counted, reported on
//! stderr once, and written as a `lost` record as soon as writing works again:
//! a reader never sees a torn line, and nothing goes missing in silence.
//!
//! Hand-written: the crates for rotating logs (e.g. file-rotate) write
//! through `io::Write` and neither cut back a torn line nor report what they
//! could not write.
use std::{
    fs::{File, OpenOptions},
    io::{self, Seek as _, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::SystemTime,
};

/// Size-based rotation of `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotate {
    /// Rotate before a line would take the file past this many bytes.
    pub size: u64,
    /// Rotated files kept: FILE.1 (newest) … FILE.keep.
    pub keep: u32,
}

/// Lines that could not be written: reported once writing works again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    pub since: SystemTime,
    /// Records (lines) lost.
    pub records: u64,
    /// Of those, syscall records.
    pub calls: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    Record,
    Call,
    /// A `lost` line: not itself counted if it cannot be written.
    Meta,
}

enum Target {
    Stdout,
    File {
        path: PathBuf,
        rotate: Option<Rotate>,
    },
}

pub struct Sink {
    file: File,
    target: Target,
    /// Whole lines not yet written.
    buf: Vec<u8>,
    /// Where each line in `buf` ends, and what it is.
    lines: Vec<(usize, Line)>,
    /// Bytes in the current file (regular files only).
    size: u64,
    /// A regular file: a torn write can be cut back.
    seekable: bool,
    dropped: Option<Dropped>,
    /// Reported so far: records, syscall records.
    dropped_total: (u64, u64),
    /// The error that keeps lines out.
    failing: Option<io::ErrorKind>,
    /// How much is queued before a write.
    write_at: usize,
    /// When a failure was last told on stderr, and whether its recovery was.
    told: Option<(std::time::Instant, bool)>,
}

/// A nearly full disk takes some writes and refuses others: stderr hears of
/// it at most this often.
const TELL_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

fn open(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        // Root writing where others may write (/tmp): never follow a link.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    // An existing file keeps its mode on open: records may carry paths and
    // mount data a user should not read, so 0600 whatever it was. Only a
    // regular file: --output /dev/null or a FIFO keeps its mode.
    if file.metadata()?.file_type().is_file() {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// What a pipe to the reader is asked to hold (the kernel's default is
/// 64 KiB). A propagation into a thousand namespaces is ~500 KiB of NDJSON:
/// in a 64 KiB pipe mnttrace stalls on each of its flushes until the reader
/// catches up, and meanwhile reads neither the ring nor fanotify.
const PIPE_SIZE: i32 = 1 << 20;

/// Queued lines are written once they fill this much, else at the end of
/// each batch. Into a pipe, as much as it takes: each write wakes the
/// reader, who may take mnttrace's CPU (with 64 KiB writes, 867 times in 100
/// mounts into 1,000 namespaces and their umounts, ~100 µs each: the
/// bench's reader, on two CPUs, sched_switch traced; the last copy came 12 %
/// sooner with 1 MiB). A file wakes no one: 1 MiB writes there cost a mount
/// storm more CPU than 64 KiB ones (1.14 and 1.19 against 1.04 and 1.05).
const WRITE_AT_PIPE: usize = PIPE_SIZE as usize;
const WRITE_AT: usize = 1 << 16;

/// Asks for a pipe of `PIPE_SIZE`; the default stays where that is refused
/// (above /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE, or memory
/// the user's pipes may not take).
fn widen_pipe(file: &File) {
    use nix::fcntl::{FcntlArg, fcntl};
    match fcntl(file, FcntlArg::F_GETPIPE_SZ) {
        Ok(size) if size >= PIPE_SIZE => {}
        _ => {
            if let Err(e) = fcntl(file, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE)) {
                log::debug!("output pipe left at its size: F_SETPIPE_SZ: {e}");
            }
        }
    }
}

impl Sink {
    pub fn stdout() -> io::Result<Sink> {
        use std::os::fd::AsFd as _;
        let file = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
        Sink::new(file, Target::Stdout)
    }

    pub fn file(path: &Path, rotate: Option<Rotate>) -> io::Result<Sink> {
        let file = open(path)?;
        Sink::new(
            file,
            Target::File {
                path: path.to_path_buf(),
                rotate,
            },
        )
    }

    fn new(mut file: File, target: Target) -> io::Result<Sink> {
        let meta = file.metadata()?;
        let seekable = meta.file_type().is_file();
        let fifo = std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type());
        if fifo {
            widen_pipe(&file);
        }
        let size = if seekable {
            file.seek(io::SeekFrom::End(0))?
        } else {
            0
        };
        Ok(Sink {
            file,
            target,
            buf: Vec::with_capacity(1 << 16),
            lines: Vec::new(),
            size,
            seekable,
            dropped: None,
            dropped_total: (0, 0),
            failing: None,
            told: None,
            write_at: if fifo { WRITE_AT_PIPE } else { WRITE_AT },
        })
    }

    fn name(&self) -> String {
        match &self.target {
            Target::Stdout => "standard output".into(),
            Target::File { path, .. } => path.display().to_string(),
        }
    }

    /// Queues one record's line (UTF-8, no newline); `call`: it is a
    /// syscall record.
    pub fn push(&mut self, line: &[u8], call: bool) -> io::Result<()> {
        self.queue(line, if call { Line::Call } else { Line::Record })?;
        if self.buf.len() >= self.write_at {
            self.flush()?;
        }
        Ok(())
    }

    /// Queues a `lost` line, not itself counted if it cannot be written.
    pub fn push_meta(&mut self, line: &[u8]) -> io::Result<()> {
        self.queue(line, Line::Meta)
    }

    fn queue(&mut self, line: &[u8], kind: Line) -> io::Result<()> {
        self.rotate_for(line.len() as u64 + 1)?;
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        self.lines.push((self.buf.len(), kind));
        Ok(())
    }

    /// Rotates first if `more` bytes would take the file past the limit.
    fn rotate_for(&mut self, more: u64) -> io::Result<()> {
        let Target::File {
            path,
            rotate: Some(rotate),
        } = &self.target
        else {
            return Ok(());
        };
        let pending = self.size + self.buf.len() as u64;
        if pending == 0 || pending + more <= rotate.size {
            return Ok(());
        }
        let (path, rotate) = (path.clone(), *rotate);
        self.flush()?;
        if self.size == 0 {
            return Ok(()); // nothing was written: a full disk, not a full file
        }
        let numbered = |n: u32| -> PathBuf {
            let mut p = path.clone().into_os_string();
            p.push(format!(".{n}"));
            p.into()
        };
        // FILE.keep-1 → FILE.keep … FILE → FILE.1; the oldest is overwritten.
        let result = (|| -> io::Result<()> {
            if rotate.keep == 0 {
                std::fs::remove_file(&path)?;
            } else {
                for n in (1..rotate.keep).rev() {
                    match std::fs::rename(numbered(n), numbered(n + 1)) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                }
                std::fs::rename(&path, numbered(1))?;
            }
            self.file = open(&path)?;
            self.size = 0;
            Ok(())
        })();
        if let Err(e) = result {
            // Keep writing to the file we have rather than lose records.
            log::warn!("cannot rotate {}: {e}", path.display());
        }
        Ok(())
    }

    /// `--output` again from its path (SIGHUP, after an outside logrotate).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.flush()?;
        if let Target::File { path, .. } = &self.target {
            let reopened = open(path).and_then(|mut f| Ok((f.seek(io::SeekFrom::End(0))?, f)));
            match reopened {
                Ok((size, file)) => {
                    self.size = size;
                    self.file = file;
                }
                // The old file still takes records: keep it rather than stop.
                Err(e) => eprintln!(
                    "mnttrace: cannot reopen {}: {e}; still writing to the file already open",
                    path.display()
                ),
            }
        }
        Ok(())
    }

    /// Writes what is queued, whole lines only. A broken pipe is an error
    /// (the reader left); on any other failure the lines that did not make it
    /// whole are dropped, counted, and a torn one is cut back.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut done = 0;
        let failure = loop {
            if done == self.buf.len() {
                break None;
            }
            match self.file.write(&self.buf[done..]) {
                Ok(0) => break Some(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        let lines = std::mem::take(&mut self.lines);
        let len = self.buf.len();
        self.buf.clear();
        let Some(e) = failure else {
            self.size += len as u64;
            self.failing = None;
            if let Some((at, false)) = self.told {
                eprintln!("mnttrace: writing to {} again", self.name());
                self.told = Some((at, true));
            }
            return Ok(());
        };
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Err(e);
        }
        // The lines written whole stay; the rest is lost.
        let whole = lines.iter().take_while(|(end, _)| *end <= done).count();
        let kept = whole.checked_sub(1).map_or(0, |i| lines[i].0);
        if self.seekable && kept < done {
            // Cut back the torn line; the append offset follows.
            if let Err(e) = self.file.set_len(self.size + kept as u64) {
                log::warn!("cannot cut back a torn line: {e}");
            }
        }
        self.size += if self.seekable { kept } else { done } as u64;
        let lost = &lines[whole..];
        let records = lost.iter().filter(|(_, l)| *l != Line::Meta).count() as u64;
        let calls = lost.iter().filter(|(_, l)| *l == Line::Call).count() as u64;
        if records > 0 {
            let d = self.dropped.get_or_insert(Dropped {
                since: SystemTime::now(),
                records: 0,
                calls: 0,
            });
            d.records += records;
            d.calls += calls;
        }
        let quiet = self
            .told
            .is_some_and(|(at, _)| at.elapsed() < TELL_EVERY && self.failing.is_none());
        if self.failing != Some(e.kind()) && !quiet {
            eprintln!(
                "mnttrace: cannot write to {}: {e}; records are counted as lost until it works again",
                self.name()
            );
            self.told = Some((std::time::Instant::now(), false));
        }
        self.failing = Some(e.kind());
        Ok(())
    }

    /// Lines dropped and not yet reported.
    pub fn dropped(&self) -> Option<Dropped> {
        self.dropped
    }

    /// The last write failed.
    pub fn failing(&self) -> bool {
        self.failing.is_some()
    }

    /// `d`'s report was written: forget it.
    pub fn reported(&mut self, d: Dropped) {
        self.dropped_total.0 += d.records;
        self.dropped_total.1 += d.calls;
        if let Some(cur) = &mut self.dropped {
            cur.records -= d.records.min(cur.records);
            cur.calls -= d.calls.min(cur.calls);
            if cur.records == 0 {
                self.dropped = None;
            }
        }
    }

    /// Records and syscall records lost to the output so far, reported or not.
    pub fn lost_total(&self) -> (u64, u64) {
        let pending = self.dropped.map_or((0, 0), |d| (d.records, d.calls));
        (
            self.dropped_total.0 + pending.0,
            self.dropped_total.1 + pending.1,
        )
    }

    /// Records lost to the output that were already reported in the stream.
    pub fn reported_total(&self) -> u64 {
        self.dropped_total.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// A pipe as stdout is widened, as far as the kernel allows: it is the
    /// judge of the size (F_GETPIPE_SZ after the Sink took the pipe).
    #[test]
    fn pipe_is_widened() {
        use nix::fcntl::{FcntlArg, fcntl};
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let before = fcntl(&w, FcntlArg::F_GETPIPE_SZ).expect("size");
        let max: i32 = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let sink = Sink::new(File::from(w), Target::Stdout).expect("sink");
        let after = fcntl(&sink.file, FcntlArg::F_GETPIPE_SZ).expect("size");
        if max >= PIPE_SIZE || nix::unistd::geteuid().is_root() {
            assert_eq!(after, PIPE_SIZE, "was {before}");
        } else {
            assert!(after >= before);
        }
        drop(r);
    }

    #[test]
    fn rotates_whole_lines_and_keeps_n() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.json");
        let mut s = Sink::file(&path, Some(Rotate { size: 100, keep: 2 })).expect("open");
        for i in 0..40 {
            s.push(
                format!("{{\"n\":{i},\"pad\":\"xxxxxxxxxx\"}}").as_bytes(),
                true,
            )
            .expect("push");
        }
        s.flush().expect("flush");
        let mut all = Vec::new();
        for name in ["out.json.2", "out.json.1", "out.json"] {
            let p = dir.path().join(name);
            let meta = std::fs::metadata(&p).expect("rotated file");
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
            assert!(meta.len() <= 100, "{name}: {}", meta.len());
            all.extend(lines(&p));
        }
        assert!(!dir.path().join("out.json.3").exists());
        // The newest lines, whole and in order, across the kept files.
        let n: Vec<u64> = all
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("whole line");
                v["n"].as_u64().expect("n")
            })
            .collect();
        assert_eq!(n.last(), Some(&39));
        assert!(n.windows(2).all(|w| w[1] == w[0] + 1), "{n:?}");
    }

    #[test]
    fn an_existing_file_becomes_private_and_links_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out");
        std::fs::write(&path, "old\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut s = Sink::file(&path, None).expect("open");
        s.push(b"new", false).expect("push");
        s.flush().expect("flush");
        assert_eq!(lines(&path), ["old", "new"]);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        assert!(Sink::file(&link, None).is_err());
    }
}
