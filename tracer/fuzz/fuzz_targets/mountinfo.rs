//! /proc/PID/mountinfo text → procfs's parse → Mount, as the mountinfo
//! source reads it: the whole file at once, and line by line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procfs::{FromBufRead as _, process::MountInfo, process::MountInfos};
use tracer::model::source::from_mountinfo;

fuzz_target!(|data: &[u8]| {
    // What Process::mountinfo() does: all lines or an error.
    if let Ok(infos) = MountInfos::from_buf_read(data) {
        for mi in infos {
            let _ = from_mountinfo(mi);
        }
    }
    // Each line alone, so one bad line does not hide the rest.
    for line in String::from_utf8_lossy(data).lines() {
        if let Ok(mi) = MountInfo::from_line(line) {
            let id = mi.mnt_id;
            let m = from_mountinfo(mi);
            assert_eq!(m.old_id, id as u32);
        }
    }
});
