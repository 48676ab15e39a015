//! Counters every core bumps once per request (not per message) so the runner's thread can
//! print a progress line and decide when consumers have drained. Relaxed ordering: they are
//! statistics and a stop flag, not synchronisation of data.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct LiveCounters {
    pub sent_msgs: AtomicU64,
    pub acked_msgs: AtomicU64,
    pub acked_bytes: AtomicU64,
    pub failed_msgs: AtomicU64,
    pub consumed_msgs: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub producers_done: AtomicU64,
    pub stop_consumers: AtomicBool,
    pub errors: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LiveSnapshot {
    pub sent_msgs: u64,
    pub acked_msgs: u64,
    pub acked_bytes: u64,
    pub failed_msgs: u64,
    pub consumed_msgs: u64,
    pub consumed_bytes: u64,
    pub producers_done: u64,
    pub errors: u64,
}

impl LiveCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> LiveSnapshot {
        LiveSnapshot {
            sent_msgs: self.sent_msgs.load(Relaxed),
            acked_msgs: self.acked_msgs.load(Relaxed),
            acked_bytes: self.acked_bytes.load(Relaxed),
            failed_msgs: self.failed_msgs.load(Relaxed),
            consumed_msgs: self.consumed_msgs.load(Relaxed),
            consumed_bytes: self.consumed_bytes.load(Relaxed),
            producers_done: self.producers_done.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }

    pub fn stop_consumers(&self) {
        self.stop_consumers.store(true, Relaxed);
    }

    pub fn consumers_should_stop(&self) -> bool {
        self.stop_consumers.load(Relaxed)
    }
}
