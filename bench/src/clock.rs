//! Time for the benchmark: one monotonic nanosecond clock shared by every core.
//!
//! Producers embed an intended send time in each message and consumers on other cores
//! subtract it from their own reading, so all cores must read the same clock:
//! `CLOCK_MONOTONIC` is one clock system-wide and is read through the vDSO (no syscall).
//! The `Clock` trait is the seam that lets tests drive time by hand.

use std::cell::Cell;

pub trait Clock {
    /// Nanoseconds on a monotonic clock shared by all threads of this host.
    fn now_ns(&self) -> u64;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        monotonic_now_ns()
    }
}

pub fn monotonic_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists
    // on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Wall-clock milliseconds since the Unix epoch, for record timestamps and file names.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A clock that moves only when told to: for deterministic tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ns: Cell<u64>,
}

impl ManualClock {
    pub fn new(now_ns: u64) -> ManualClock {
        ManualClock {
            now_ns: Cell::new(now_ns),
        }
    }

    pub fn advance_ns(&self, ns: u64) {
        self.now_ns.set(self.now_ns.get() + ns);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.get()
    }
}
