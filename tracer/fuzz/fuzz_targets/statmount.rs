//! statmount(2) replies (`struct statmount` and its string area) → Mount.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer::model::{source::from_stat, sys::parse_statmount};

fuzz_target!(|data: &[u8]| {
    let Ok(st) = parse_statmount(data) else {
        return;
    };
    // Each string is a lossy copy of bytes inside the reply (U+FFFD is 3
    // bytes for each invalid one at most).
    for s in [
        &st.root,
        &st.mount_point,
        &st.fstype,
        &st.source,
        &st.options,
    ] {
        assert!(s.len() <= 3 * data.len());
    }
    let m = from_stat(st);
    assert!(m.propagation.shared.is_none_or(|g| g != 0));
});
