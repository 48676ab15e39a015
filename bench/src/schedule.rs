//! Open-loop send schedule: when each message *should* be sent.
//!
//! At a fixed rate, message `k` of the whole workload is intended for
//! `start + k * 1e9 / rate` ns; producer `i` of `P` owns every `k ≡ i (mod P)`, so the
//! producers interleave evenly and together send exactly `rate × seconds` messages. The
//! schedule never looks at what the broker does: after a stall, every message whose time has
//! passed is due at once, still carrying its original intended time, and latency is measured
//! from that time. This is what avoids coordinated omission (Gil Tene's term): a closed-loop
//! producer that waits for the broker would send fewer messages during a stall and hide it.
//!
//! At max rate there is no schedule: a message's intended time is the moment it is created,
//! as in kafka-producer-perf-test.

use crate::workload::Workload;

/// One message's place in the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Dense per producer, from 0: the sequence number embedded in the message.
    pub seq: u64,
    pub intended_ns: u64,
}

#[derive(Clone, Debug)]
pub struct FixedRateSchedule {
    start_ns: u64,
    rate_msgs_per_s: u64,
    /// Global index of this producer's first message.
    first_index: u64,
    /// Global index of this producer's next message.
    next_index: u64,
    stride: u64,
    /// One past the last global index of the whole run.
    end_index: u64,
    next_seq: u64,
}

impl FixedRateSchedule {
    /// The schedule of producer `producer` of `producers` for a run of `seconds` seconds.
    pub fn new(
        start_ns: u64,
        rate_msgs_per_s: u64,
        seconds: u64,
        producer: u64,
        producers: u64,
    ) -> FixedRateSchedule {
        assert!(rate_msgs_per_s > 0, "a fixed-rate schedule needs a rate");
        assert!(producer < producers, "producer index out of range");
        FixedRateSchedule {
            start_ns,
            rate_msgs_per_s,
            first_index: producer,
            next_index: producer,
            stride: producers,
            end_index: rate_msgs_per_s * seconds,
            next_seq: 0,
        }
    }

    fn intended_ns(&self, index: u64) -> u64 {
        // u128: index × 1e9 overflows u64 after ~18 billion messages.
        self.start_ns + (index as u128 * 1_000_000_000 / self.rate_msgs_per_s as u128) as u64
    }

    /// When the next message is intended, or None once the schedule is exhausted.
    pub fn next_intended_ns(&self) -> Option<u64> {
        (self.next_index < self.end_index).then(|| self.intended_ns(self.next_index))
    }

    /// The next message if its intended time is at or before `now_ns`.
    pub fn next_due(&mut self, now_ns: u64) -> Option<Slot> {
        let intended_ns = self.next_intended_ns()?;
        if intended_ns > now_ns {
            return None;
        }
        let slot = Slot {
            seq: self.next_seq,
            intended_ns,
        };
        self.next_seq += 1;
        self.next_index += self.stride;
        Some(slot)
    }

    pub fn is_exhausted(&self) -> bool {
        self.next_index >= self.end_index
    }

    /// How many messages this producer sends in the whole run.
    pub fn total_messages(&self) -> u64 {
        self.end_index
            .saturating_sub(self.first_index)
            .div_ceil(self.stride)
    }
}

/// How a producer paces itself.
#[derive(Clone, Debug)]
pub enum Pace {
    Fixed(FixedRateSchedule),
    /// As fast as the buffer allows; intended time = creation time.
    Max {
        next_seq: u64,
        end_ns: u64,
    },
}

impl Pace {
    /// The pace of producer `producer_id` of the workload's producers: its share of the
    /// fixed-rate schedule over warm-up and measurement from `start_ns`, or max rate until
    /// `end_ns` when the workload's rate is 0.
    pub fn for_producer(workload: &Workload, producer_id: u32, start_ns: u64, end_ns: u64) -> Pace {
        match workload.rate_msgs_per_s {
            0 => Pace::Max {
                next_seq: 0,
                end_ns,
            },
            rate => Pace::Fixed(FixedRateSchedule::new(
                start_ns,
                rate,
                workload.warmup_s + workload.duration_s,
                u64::from(producer_id),
                u64::from(workload.producers),
            )),
        }
    }

    pub fn next_due(&mut self, now_ns: u64) -> Option<Slot> {
        match self {
            Pace::Fixed(schedule) => schedule.next_due(now_ns),
            Pace::Max { next_seq, end_ns } => {
                if now_ns >= *end_ns {
                    return None;
                }
                let slot = Slot {
                    seq: *next_seq,
                    intended_ns: now_ns,
                };
                *next_seq += 1;
                Some(slot)
            }
        }
    }

    /// When to wake up for the next message; None at max rate (always due) or when done.
    pub fn next_intended_ns(&self) -> Option<u64> {
        match self {
            Pace::Fixed(schedule) => schedule.next_intended_ns(),
            Pace::Max { .. } => None,
        }
    }

    pub fn is_done(&self, now_ns: u64) -> bool {
        match self {
            Pace::Fixed(schedule) => schedule.is_exhausted(),
            Pace::Max { end_ns, .. } => now_ns >= *end_ns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::stats::latency::LatencyRecorder;

    const MS: u64 = 1_000_000;

    #[test]
    fn intended_times_are_evenly_spaced_and_exact_in_count() {
        let mut schedule = FixedRateSchedule::new(1_000, 1_000, 2, 0, 1);
        assert_eq!(schedule.total_messages(), 2_000);
        let mut slots = Vec::new();
        while let Some(slot) = schedule.next_due(u64::MAX) {
            slots.push(slot);
        }
        assert_eq!(slots.len(), 2_000);
        assert_eq!(slots[0].intended_ns, 1_000);
        assert_eq!(slots[1].intended_ns, 1_000 + MS);
        assert_eq!(slots[1_999].intended_ns, 1_000 + 1_999 * MS);
        assert!(slots.iter().enumerate().all(|(i, s)| s.seq == i as u64));
    }

    #[test]
    fn producers_interleave_and_share_the_total() {
        let mut all = Vec::new();
        let mut total = 0;
        for producer in 0..3 {
            let mut schedule = FixedRateSchedule::new(0, 1_000, 1, producer, 3);
            total += schedule.total_messages();
            let mut seq = 0;
            while let Some(slot) = schedule.next_due(u64::MAX) {
                assert_eq!(slot.seq, seq, "seq is dense per producer");
                seq += 1;
                all.push(slot.intended_ns);
            }
        }
        all.sort_unstable();
        assert_eq!(total, 1_000);
        assert_eq!(all.len(), 1_000);
        let expected: Vec<u64> = (0..1_000).map(|k| k * MS).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn nothing_is_due_before_its_time() {
        let mut schedule = FixedRateSchedule::new(10 * MS, 100, 1, 0, 1);
        assert_eq!(schedule.next_due(10 * MS - 1), None);
        assert_eq!(schedule.next_due(10 * MS).map(|s| s.seq), Some(0));
        assert_eq!(schedule.next_due(10 * MS + 9 * MS), None);
        assert_eq!(schedule.next_intended_ns(), Some(20 * MS));
    }

    /// The broker stalls for 200 ms. An open-loop schedule does not slow down: when the
    /// producer runs again every message of the stall is due at once with its original
    /// intended time, and the latency recorded from those times contains the stall.
    #[test]
    fn a_stall_does_not_slow_the_schedule_and_latency_counts_it() {
        let clock = ManualClock::new(0);
        let mut schedule = FixedRateSchedule::new(0, 1_000, 1, 0, 1);
        let mut latency = LatencyRecorder::new();

        // 100 ms of normal operation: each message acked 100 µs after its intended time.
        for _ in 0..100 {
            let slot = schedule
                .next_due(clock.now_ns())
                .expect("one message per ms");
            latency.record_ns(clock.now_ns() + 100_000 - slot.intended_ns);
            clock.advance_ns(MS);
        }
        // The broker stalls for 200 ms: nothing is sent or acknowledged meanwhile.
        clock.advance_ns(200 * MS);
        let mut caught_up = Vec::new();
        while let Some(slot) = schedule.next_due(clock.now_ns()) {
            caught_up.push(slot);
        }
        // Every message intended during the stall is due now, none was dropped or shifted.
        assert_eq!(caught_up.len(), 201);
        assert_eq!(caught_up[0].intended_ns, 100 * MS);
        assert_eq!(caught_up[200].intended_ns, 300 * MS);
        for slot in &caught_up {
            latency.record_ns(clock.now_ns() - slot.intended_ns);
        }
        let summary = latency.summary();
        assert_eq!(summary.count, 301);
        // The first message of the stall waited the whole 200 ms.
        assert!(summary.max_us >= 199_000.0, "max {}", summary.max_us);
        // A third of the messages were caught in the stall: p90 is far above 100 µs.
        assert!(summary.p90_us > 10_000.0, "p90 {}", summary.p90_us);
        // And the schedule carries on at the same rate afterwards.
        clock.advance_ns(MS);
        assert_eq!(schedule.next_due(clock.now_ns()).map(|s| s.seq), Some(301));
    }

    #[test]
    fn a_producers_pace_follows_the_workload_rate() {
        let fixed = Workload {
            rate_msgs_per_s: 1_000,
            producers: 2,
            warmup_s: 1,
            duration_s: 2,
            ..Workload::default()
        };
        let Pace::Fixed(schedule) = Pace::for_producer(&fixed, 1, 0, 3_000 * MS) else {
            panic!("a rate gives a schedule");
        };
        // 3 s at 1,000 msg/s shared by two producers.
        assert_eq!(schedule.total_messages(), 1_500);
        assert_eq!(schedule.next_intended_ns(), Some(MS));
        let max = Workload {
            rate_msgs_per_s: 0,
            ..Workload::default()
        };
        assert!(matches!(
            Pace::for_producer(&max, 0, 0, 42),
            Pace::Max {
                next_seq: 0,
                end_ns: 42
            }
        ));
    }

    #[test]
    fn max_pace_stamps_creation_time_and_stops_at_the_end() {
        let mut pace = Pace::Max {
            next_seq: 0,
            end_ns: 50,
        };
        assert_eq!(
            pace.next_due(10),
            Some(Slot {
                seq: 0,
                intended_ns: 10
            })
        );
        assert_eq!(pace.next_due(20).map(|s| s.seq), Some(1));
        assert_eq!(pace.next_due(50), None);
        assert!(pace.is_done(50));
    }
}
