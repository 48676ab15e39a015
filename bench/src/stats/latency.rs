//! Latency histograms (HdrHistogram): recorded in microseconds with 3 significant digits,
//! from 1 µs to one hour. Values beyond the range saturate rather than being dropped, so a
//! pathological stall still shows up as the max.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

const HIGHEST_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

#[derive(Clone, Debug)]
pub struct LatencyRecorder {
    histogram: Histogram<u64>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        LatencyRecorder::new()
    }
}

impl LatencyRecorder {
    pub fn new() -> LatencyRecorder {
        LatencyRecorder::with_digits(SIGNIFICANT_DIGITS)
    }

    /// Fewer digits for the per-second histograms: they only feed the time-series plot.
    pub fn with_digits(digits: u8) -> LatencyRecorder {
        LatencyRecorder {
            // The bounds are constants known to be valid (1 ≤ low, high ≥ 2·low, digits ≤ 5).
            histogram: Histogram::new_with_bounds(1, HIGHEST_US, digits)
                .expect("valid constant histogram bounds"),
        }
    }

    pub fn record_ns(&mut self, latency_ns: u64) {
        self.histogram.saturating_record(latency_ns / 1_000);
    }

    pub fn record_n_ns(&mut self, latency_ns: u64, count: u64) {
        // saturating_record_n does not exist; clamp first, then record the count.
        let value = (latency_ns / 1_000).min(HIGHEST_US);
        // The value is clamped into the histogram's range, so recording cannot fail.
        let _ = self.histogram.record_n(value, count);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Adds another recorder's samples (histograms of different cores, or seconds).
    pub fn merge(&mut self, other: &LatencyRecorder) {
        // Both histograms share bounds, and counts cannot overflow u64 in any real run.
        self.histogram
            .add(&other.histogram)
            .expect("histograms with equal bounds merge");
    }

    pub fn value_at_us(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50) as f64,
            p90_us: h.value_at_quantile(0.90) as f64,
            p99_us: h.value_at_quantile(0.99) as f64,
            p999_us: h.value_at_quantile(0.999) as f64,
            p9999_us: h.value_at_quantile(0.9999) as f64,
            max_us: h.max() as f64,
        }
    }

    /// The percentile distribution as HdrHistogram prints it (5 ticks per halving of the
    /// remaining tail), for the percentile plot and the JSON result.
    pub fn percentile_points(&self) -> Vec<PercentilePoint> {
        if self.histogram.is_empty() {
            return Vec::new();
        }
        self.histogram
            .iter_quantiles(5)
            .map(|v| PercentilePoint {
                percentile: v.quantile_iterated_to() * 100.0,
                latency_us: v.value_iterated_to() as f64,
            })
            .collect()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub latency_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_per_core_histograms_equals_recording_into_one() {
        let mut cores = [LatencyRecorder::new(), LatencyRecorder::new()];
        let mut single = LatencyRecorder::new();
        for i in 0..10_000u64 {
            let latency_ns = (i % 977) * 1_000 + 500;
            cores[(i % 2) as usize].record_ns(latency_ns);
            single.record_ns(latency_ns);
        }
        let mut merged = LatencyRecorder::new();
        for core in &cores {
            merged.merge(core);
        }
        assert_eq!(merged.count(), 10_000);
        assert_eq!(merged.summary(), single.summary());
    }

    #[test]
    fn merge_keeps_each_cores_tail() {
        let mut fast = LatencyRecorder::new();
        let mut slow = LatencyRecorder::new();
        fast.record_n_ns(100_000, 999); // 100 µs
        slow.record_ns(50_000_000); // one 50 ms outlier on the other core
        fast.merge(&slow);
        let summary = fast.summary();
        assert_eq!(summary.count, 1_000);
        assert_eq!(summary.p50_us, 100.0);
        assert!((summary.max_us - 50_000.0).abs() / 50_000.0 < 0.001);
        assert!(summary.p9999_us >= 49_900.0);
    }

    #[test]
    fn out_of_range_values_saturate() {
        let mut recorder = LatencyRecorder::new();
        recorder.record_ns(u64::MAX);
        recorder.record_ns(0);
        assert_eq!(recorder.count(), 2);
        assert!(recorder.summary().max_us >= HIGHEST_US as f64 * 0.999);
    }

    #[test]
    fn percentile_points_rise_to_the_max() {
        let mut recorder = LatencyRecorder::new();
        for i in 1..=1000 {
            recorder.record_ns(i * 1_000);
        }
        let points = recorder.percentile_points();
        assert!(points
            .windows(2)
            .all(|w| w[0].percentile <= w[1].percentile));
        let last = points.last().expect("non-empty");
        assert_eq!(last.percentile, 100.0);
        assert!((last.latency_us - 1000.0).abs() <= 1.0);
    }
}
