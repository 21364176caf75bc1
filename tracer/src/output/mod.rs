//! Writes records to the user: human lines or NDJSON.
pub mod human;
pub mod json;

use std::io::{self, Write};

use crate::record::Record;

pub enum Format {
    Human(human::Human),
    /// NDJSON; `node` goes into every record.
    Json {
        node: Option<String>,
    },
}

pub struct Output<W: Write> {
    out: W,
    format: Format,
}

impl<W: Write> Output<W> {
    pub fn new(out: W, format: Format) -> Self {
        Output { out, format }
    }

    pub fn header(&mut self) -> io::Result<()> {
        if let Format::Human(h) = &self.format {
            writeln!(self.out, "{}", h.header())?;
        }
        Ok(())
    }

    pub fn write(&mut self, r: &Record) -> io::Result<()> {
        let line = match &self.format {
            Format::Human(h) => h.line(r),
            Format::Json { node } => json::line(r, node.as_deref()),
        };
        writeln!(self.out, "{line}")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
