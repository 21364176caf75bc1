//! Writes records to the user: human lines or NDJSON, to stdout or a file.
pub mod human;
pub mod json;
pub mod sink;

use std::{io, time::SystemTime};

use crate::record::{LossReason, Lost, Record};
use sink::Sink;

pub enum Format {
    Human(human::Human),
    /// NDJSON; `node` goes into every record.
    Json {
        node: Option<String>,
    },
}

pub struct Output {
    sink: Sink,
    format: Format,
    /// A JSON line being written.
    scratch: Vec<u8>,
}

impl Output {
    pub fn new(sink: Sink, format: Format) -> Self {
        Output {
            sink,
            format,
            scratch: Vec::new(),
        }
    }

    pub fn header(&mut self) -> io::Result<()> {
        if let Format::Human(h) = &self.format {
            let header = h.header();
            self.sink.push_meta(header.as_bytes())?;
        }
        self.flush()
    }

    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        let line = render(&self.format, &mut self.scratch, r);
        self.sink.push(line, matches!(r, Record::Syscall(_)))
    }

    /// Writes what is queued; once writing works again after a failure, a
    /// `lost` record says how many records did not make it.
    pub fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()?;
        if let Some(d) = self.sink.dropped() {
            let lost = Lost {
                time: SystemTime::now(),
                since: d.since,
                reason: LossReason::OutputFailed,
                count: d.records,
                total: self.sink.reported_total() + d.records,
                calls: Some(d.calls),
                reread: None,
            };
            // Also the probe: while the output fails, this line is tried on
            // every flush, and writing it is how recovery is noticed.
            let line = render(&self.format, &mut self.scratch, &Record::Lost(lost));
            self.sink.push_meta(line)?;
            self.sink.flush()?;
            if !self.sink.failing() {
                self.sink.reported(d);
            }
        }
        Ok(())
    }

    /// SIGHUP: open `--output` again at its path.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.sink.reopen()
    }

    /// Records and syscall records the output could not take, so far.
    pub fn lost(&self) -> (u64, u64) {
        self.sink.lost_total()
    }
}

/// One record as a line of UTF-8 (without the newline), in `scratch`,
/// which is reused from line to line.
fn render<'a>(format: &Format, scratch: &'a mut Vec<u8>, r: &Record) -> &'a [u8] {
    scratch.clear();
    match format {
        Format::Human(h) => scratch.extend_from_slice(h.line(r).as_bytes()),
        Format::Json { node } => json::write(scratch, r, node.as_deref()),
    }
    scratch
}
