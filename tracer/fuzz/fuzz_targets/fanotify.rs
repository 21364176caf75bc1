//! Raw read(2) buffers of a fanotify group → mount events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::propagation::fanotify::parse;

/// The fewest bytes an event can come from: a mount info record (4-byte
/// header, 8-byte id); an overflow takes a whole 24-byte metadata.
const MIN_RECORD: usize = 4 + 8;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    parse(data, &mut out);
    // More events than records would mean ids made up from other bytes.
    assert!(
        out.len() * MIN_RECORD <= data.len(),
        "{} events from {} bytes",
        out.len(),
        data.len()
    );
});
