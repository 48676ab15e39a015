//! Per-second time series: counts and coarse latency histograms per second of the run, from
//! the start of warm-up. Each core keeps its own and the runner merges them by second.

use serde::{Deserialize, Serialize};

use super::latency::LatencyRecorder;

/// Two significant digits are plenty for a p50/p99 line on a plot and keep each second's
/// histograms small.
const SECOND_DIGITS: u8 = 2;

#[derive(Clone, Debug, Default)]
pub struct SecondBucket {
    pub acked_msgs: u64,
    pub acked_bytes: u64,
    pub consumed_msgs: u64,
    pub consumed_bytes: u64,
    pub produce_latency: Option<LatencyRecorder>,
    pub end_to_end_latency: Option<LatencyRecorder>,
}

impl SecondBucket {
    fn merge(&mut self, other: &SecondBucket) {
        self.acked_msgs += other.acked_msgs;
        self.acked_bytes += other.acked_bytes;
        self.consumed_msgs += other.consumed_msgs;
        self.consumed_bytes += other.consumed_bytes;
        merge_optional(&mut self.produce_latency, &other.produce_latency);
        merge_optional(&mut self.end_to_end_latency, &other.end_to_end_latency);
    }
}

fn merge_optional(into: &mut Option<LatencyRecorder>, from: &Option<LatencyRecorder>) {
    if let Some(from) = from {
        into.get_or_insert_with(|| LatencyRecorder::with_digits(SECOND_DIGITS))
            .merge(from);
    }
}

#[derive(Clone, Debug, Default)]
pub struct TimeSeries {
    start_ns: u64,
    seconds: Vec<SecondBucket>,
}

impl TimeSeries {
    pub fn new(start_ns: u64) -> TimeSeries {
        TimeSeries {
            start_ns,
            seconds: Vec::new(),
        }
    }

    pub fn bucket(&mut self, at_ns: u64) -> &mut SecondBucket {
        let second = (at_ns.saturating_sub(self.start_ns) / 1_000_000_000) as usize;
        if self.seconds.len() <= second {
            self.seconds.resize_with(second + 1, SecondBucket::default);
        }
        &mut self.seconds[second]
    }

    pub fn record_acks(&mut self, at_ns: u64, msgs: u64, bytes: u64) {
        let bucket = self.bucket(at_ns);
        bucket.acked_msgs += msgs;
        bucket.acked_bytes += bytes;
    }

    pub fn record_consumed(&mut self, at_ns: u64, msgs: u64, bytes: u64) {
        let bucket = self.bucket(at_ns);
        bucket.consumed_msgs += msgs;
        bucket.consumed_bytes += bytes;
    }

    pub fn produce_latency(&mut self, at_ns: u64) -> &mut LatencyRecorder {
        self.bucket(at_ns)
            .produce_latency
            .get_or_insert_with(|| LatencyRecorder::with_digits(SECOND_DIGITS))
    }

    pub fn end_to_end_latency(&mut self, at_ns: u64) -> &mut LatencyRecorder {
        self.bucket(at_ns)
            .end_to_end_latency
            .get_or_insert_with(|| LatencyRecorder::with_digits(SECOND_DIGITS))
    }

    pub fn merge(&mut self, other: &TimeSeries) {
        debug_assert_eq!(self.start_ns, other.start_ns, "series of one run");
        if self.seconds.len() < other.seconds.len() {
            self.seconds
                .resize_with(other.seconds.len(), SecondBucket::default);
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.merge(theirs);
        }
    }

    /// One sample per second for the report.
    pub fn samples(&self) -> Vec<SecondSample> {
        self.seconds
            .iter()
            .enumerate()
            .map(|(second, b)| {
                let quantile =
                    |h: &Option<LatencyRecorder>, q| h.as_ref().map(|h| h.value_at_us(q));
                SecondSample {
                    second: second as u64,
                    acked_msgs: b.acked_msgs,
                    acked_bytes: b.acked_bytes,
                    consumed_msgs: b.consumed_msgs,
                    consumed_bytes: b.consumed_bytes,
                    produce_p50_us: quantile(&b.produce_latency, 0.5),
                    produce_p99_us: quantile(&b.produce_latency, 0.99),
                    end_to_end_p50_us: quantile(&b.end_to_end_latency, 0.5),
                    end_to_end_p99_us: quantile(&b.end_to_end_latency, 0.99),
                }
            })
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecondSample {
    /// Seconds since the start of the run (warm-up included).
    pub second: u64,
    pub acked_msgs: u64,
    pub acked_bytes: u64,
    pub consumed_msgs: u64,
    pub consumed_bytes: u64,
    pub produce_p50_us: Option<f64>,
    pub produce_p99_us: Option<f64>,
    pub end_to_end_p50_us: Option<f64>,
    pub end_to_end_p99_us: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_merge_by_second() {
        let start = 1_000_000_000;
        let mut a = TimeSeries::new(start);
        let mut b = TimeSeries::new(start);
        a.record_acks(start + 100, 10, 1_000);
        b.record_acks(start + 1_500_000_000, 5, 500);
        b.produce_latency(start + 1_500_000_000)
            .record_ns(2_000_000);
        a.merge(&b);
        let samples = a.samples();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].acked_msgs, 10);
        assert_eq!(samples[1].acked_msgs, 5);
        assert_eq!(samples[0].produce_p99_us, None);
        let p99 = samples[1].produce_p99_us.expect("recorded");
        assert!((p99 - 2_000.0).abs() / 2_000.0 < 0.01);
    }
}
