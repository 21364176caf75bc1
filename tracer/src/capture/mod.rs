//! Kernel → userspace: BTF offsets, tracefs, loading and attaching the
//! program, and reading its ring buffer and drop counters.
pub mod btf;
pub mod loader;
pub mod offsets;
pub mod privileges;
pub mod tracefs;

use std::mem::size_of;

use aya::maps::{MapData, PerCpuArray};
use tracer_ebpf::{Event, drop};

use crate::record::LossReason;

/// Copies an event out of a ring-buffer item; `None` for a short item.
pub fn parse_event(bytes: &[u8]) -> Option<Event> {
    if bytes.len() < size_of::<Event>() {
        return None;
    }
    // SAFETY: length checked; Event is plain data, read unaligned.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) })
}

/// Running totals of the kernel's per-CPU drop counters.
pub fn drop_totals(drops: &PerCpuArray<MapData, u64>) -> [(LossReason, u64); 2] {
    let sum = |idx: u32| -> u64 {
        drops
            .get(&idx, 0)
            .map(|v| v.iter().sum())
            .unwrap_or_else(|e| {
                log::warn!("cannot read drop counter {idx}: {e}");
                0
            })
    };
    [
        (LossReason::RingbufFull, sum(drop::RINGBUF_FULL)),
        (LossReason::EnterMapFull, sum(drop::ENTER_MAP_FULL)),
    ]
}
