//! The agent's half of the wake-up handshake with the probes (`WAKE` in the
//! kernel program): while it says it is awake the probes send no wake-up and
//! it reads the ring on its own; before it waits it says so and then looks
//! once more. The same pattern as io_uring's SQ_NEED_WAKEUP.

use std::sync::atomic::{Ordering, fence};

use aya::maps::{Array, MapData};

pub struct Wake {
    map: Array<MapData, u32>,
    waiting: bool,
    /// A write failed: the probes' view is unknown, so the agent reads the
    /// ring at each tick as well.
    broken: bool,
}

impl Wake {
    pub fn new(map: Array<MapData, u32>) -> Wake {
        Wake {
            map,
            waiting: false,
            broken: false,
        }
    }

    /// Tells the probes whether to wake the agent; true if that changed
    /// what they were told (or may have: a failed write). Saying `true` must
    /// come before the last look at the ring: the fence orders the map write
    /// before the reads of it.
    pub fn set(&mut self, waiting: bool) -> bool {
        if self.waiting == waiting && !self.broken {
            return false;
        }
        match self.map.set(0, u32::from(waiting), 0) {
            Ok(()) => {
                self.waiting = waiting;
                self.broken = false;
            }
            // Not expected (an array slot, written by its owner).
            Err(e) => {
                if !self.broken {
                    log::warn!(
                        "cannot tell the probes when to wake mnttrace ({e}): the ring is also read every second"
                    );
                }
                self.broken = true;
            }
        }
        fence(Ordering::SeqCst);
        true
    }

    /// Whether the ring must be read at each tick too.
    pub fn broken(&self) -> bool {
        self.broken
    }
}
