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

    fn render(&self, r: &Record) -> String {
        match &self.format {
            Format::Human(h) => h.line(r),
            Format::Json { node } => json::line(r, node.as_deref()),
        }
    }

    pub fn header(&mut self) -> io::Result<()> {
        if let Format::Human(h) = &self.format {
            let header = h.header();
            self.sink.push_meta(&header)?;
        }
        self.flush()
    }

    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        let call = matches!(r, Record::Syscall(_));
        match &self.format {
            Format::Human(h) => self.sink.push(&h.line(r), call),
            Format::Json { node } => {
                self.scratch.clear();
                json::write(&mut self.scratch, r, node.as_deref());
                let line = std::str::from_utf8(&self.scratch).map_err(io::Error::other)?;
                self.sink.push(line, call)
            }
        }
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
            let line = self.render(&Record::Lost(lost));
            self.sink.push_meta(&line)?;
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
