//! Kernel → userspace: BTF offsets, tracefs, loading and attaching the
//! program, and reading its ring buffer and drop counters.
pub mod btf;
pub mod loader;
pub mod offsets;
pub mod privileges;
pub mod tracefs;
pub mod wake;

use std::mem::MaybeUninit;

use aya::maps::{MapData, PerCpuArray};
use tracer_ebpf::{EVENT_HEAD, Event, drop};

use crate::record::LossReason;

/// Copies an event out of a ring-buffer item: its head, then its packed
/// strings (see [`Event`]). `None` for an item shorter than what it says it
/// carries.
pub fn parse_event(bytes: &[u8]) -> Option<Event> {
    let head = bytes.get(..EVENT_HEAD)?;
    let mut e = MaybeUninit::<Event>::zeroed();
    // SAFETY: Event is plain data (all-zero is valid); `head` is its first
    // EVENT_HEAD bytes as the kernel wrote them.
    let mut e = unsafe {
        std::ptr::copy_nonoverlapping(head.as_ptr(), e.as_mut_ptr().cast::<u8>(), EVENT_HEAD);
        e.assume_init()
    };
    let carried: usize = e.str_len.iter().map(|&n| usize::from(n)).sum();
    let strs = bytes.get(EVENT_HEAD..EVENT_HEAD + carried)?;
    e.strs.get_mut(..carried)?.copy_from_slice(strs);
    Some(e)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the kernel program writes it: the head, then `strs` packed.
    fn record(strs: &[&[u8]]) -> Vec<u8> {
        // SAFETY: Event is plain data; all-zero is a valid value.
        let mut e: Event = unsafe { MaybeUninit::zeroed().assume_init() };
        e.call = tracer_ebpf::call::MOUNT;
        for (i, s) in strs.iter().enumerate() {
            e.str_len[i] = s.len() as u16;
        }
        // SAFETY: the head of a plain-data struct, viewed as bytes.
        let head =
            unsafe { std::slice::from_raw_parts((&e as *const Event).cast::<u8>(), EVENT_HEAD) };
        let mut b = head.to_vec();
        for s in strs {
            b.extend_from_slice(s);
        }
        b
    }

    #[test]
    fn packed_strings_unpack_in_slot_order() {
        let e = parse_event(&record(&[b"tmpfs", b"/mnt/x", b"", b"size=1m"])).expect("whole");
        assert_eq!(e.str_len, [5, 6, 0, 7]);
        assert_eq!(&e.strs[..18], b"tmpfs/mnt/xsize=1m");
        assert!(e.strs[18..].iter().all(|&b| b == 0));
    }

    #[test]
    fn short_records_are_refused() {
        let whole = record(&[b"tmpfs", b"/mnt/x"]);
        assert!(parse_event(&whole).is_some());
        // Fewer string bytes than the lengths say, or not even a head.
        assert!(parse_event(&whole[..whole.len() - 1]).is_none());
        assert!(parse_event(&whole[..EVENT_HEAD - 1]).is_none());
        // Lengths past what an event can hold.
        let mut bad = record(&[]);
        let at = std::mem::offset_of!(Event, str_len);
        bad[at..at + 8].copy_from_slice(&[0xff; 8]);
        assert!(parse_event(&bad).is_none());
    }
}
