//! Per-second time series: counts and coarse latency histograms per second of the run, from
//! the start of warm-up. Each core keeps its own and the runner merges them by second.

use serde::{Deserialize, Serialize};

use super::latency::{LatencyRecorder, LatencySummary};

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

    /// The measured part of the run cut into windows of `window_s` seconds (the last one may
    /// be shorter), each with throughput and latency over just that window: what a long soak
    /// reports to show that nothing drifts. Seconds are counted from the run's start, so the
    /// measured part starts at `warmup_s`.
    pub fn windows(&self, warmup_s: u64, duration_s: u64, window_s: u64) -> Vec<WindowSummary> {
        if window_s == 0 {
            return Vec::new();
        }
        let end_s = warmup_s + duration_s;
        let mut out = Vec::new();
        let mut from_s = warmup_s;
        while from_s < end_s {
            let to_s = (from_s + window_s).min(end_s);
            let mut bucket = SecondBucket::default();
            for second in &self.seconds
                [(from_s as usize).min(self.seconds.len())..(to_s as usize).min(self.seconds.len())]
            {
                bucket.merge(second);
            }
            let span = (to_s - from_s) as f64;
            let summary = |h: &Option<LatencyRecorder>| {
                h.as_ref().map(LatencyRecorder::summary).unwrap_or_default()
            };
            out.push(WindowSummary {
                from_s: from_s - warmup_s,
                to_s: to_s - warmup_s,
                produce_msgs_per_s: bucket.acked_msgs as f64 / span,
                consume_msgs_per_s: bucket.consumed_msgs as f64 / span,
                produce_latency: summary(&bucket.produce_latency),
                end_to_end_latency: summary(&bucket.end_to_end_latency),
            });
            from_s = to_s;
        }
        out
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

/// One window of the measured part of a run (`--window-s`). Latencies come from the
/// per-second histograms (two significant digits), so they are within 1% of exact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    /// Seconds since the end of warm-up.
    pub from_s: u64,
    pub to_s: u64,
    pub produce_msgs_per_s: f64,
    pub consume_msgs_per_s: f64,
    pub produce_latency: LatencySummary,
    pub end_to_end_latency: LatencySummary,
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

    #[test]
    fn windows_cover_the_measured_seconds_only() {
        let start = 0;
        let mut series = TimeSeries::new(start);
        let at = |second: u64| start + second * 1_000_000_000 + 1;
        // Warm-up second 0 has a stall that must not show up in any window.
        series.record_acks(at(0), 1, 10);
        series.produce_latency(at(0)).record_ns(900_000_000);
        for second in 1..=5 {
            series.record_acks(at(second), 10 * second, 100);
            series
                .produce_latency(at(second))
                .record_ns(second * 1_000_000);
        }
        let windows = series.windows(1, 5, 2);
        let spans: Vec<(u64, u64)> = windows.iter().map(|w| (w.from_s, w.to_s)).collect();
        assert_eq!(
            spans,
            [(0, 2), (2, 4), (4, 5)],
            "the last window is the rest"
        );
        assert_eq!(windows[0].produce_msgs_per_s, 15.0, "(10 + 20) / 2 s");
        assert_eq!(windows[2].produce_msgs_per_s, 50.0);
        let max_ms = |w: &WindowSummary| (w.produce_latency.max_us / 1e3).round();
        assert_eq!(
            windows.iter().map(max_ms).collect::<Vec<_>>(),
            [2.0, 4.0, 5.0]
        );
        assert_eq!(windows[1].produce_latency.count, 2);
        assert_eq!(windows[0].end_to_end_latency.count, 0, "nothing consumed");
        assert!(series.windows(1, 5, 0).is_empty(), "0 means no windows");
    }
}
