//! A fixed-bucket histogram kept in cells: what the broker's metrics and the log's flush
//! stages observe on the data path (no atomics, no locks, no allocation per observation),
//! snapshotted as plain numbers when the metrics endpoint is scraped.

use std::cell::Cell;
use std::time::Duration;

/// Upper bounds (seconds) of the request latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

/// A histogram with fixed buckets, in cells: observing is a bucket search and two adds.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    /// Per bucket (not cumulative); the last slot counts what exceeds every bound.
    counts: [Cell<u64>; N],
    overflow: Cell<u64>,
    sum: Cell<f64>,
}

impl<const N: usize> Histogram<N> {
    pub fn new(bounds: &'static [f64; N]) -> Self {
        Histogram {
            bounds,
            counts: std::array::from_fn(|_| Cell::new(0)),
            overflow: Cell::new(0),
            sum: Cell::new(0.0),
        }
    }

    pub fn observe(&self, value: f64) {
        match self.bounds.iter().position(|&b| value <= b) {
            Some(i) => self.counts[i].set(self.counts[i].get() + 1),
            None => self.overflow.set(self.overflow.get() + 1),
        }
        self.sum.set(self.sum.get() + value);
    }

    /// Observes a duration in seconds (the unit of every latency histogram).
    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            counts: self
                .counts
                .iter()
                .map(Cell::get)
                .chain(std::iter::once(self.overflow.get()))
                .collect(),
            sum: self.sum.get(),
        }
    }
}

/// A histogram's numbers, to be merged across shards.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: Vec<f64>,
    /// Per bucket, then the overflow.
    pub counts: Vec<u64>,
    pub sum: f64,
}

impl HistogramSnapshot {
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if self.counts.is_empty() {
            *self = other.clone();
            return;
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_bucket_and_merge() {
        let h = Histogram::new(&LATENCY_BUCKETS);
        h.observe(0.000_01);
        h.observe_duration(Duration::from_millis(3));
        h.observe(10.0);
        let mut a = h.snapshot();
        assert_eq!(a.count(), 3);
        assert_eq!(a.counts[0], 1);
        assert_eq!(a.counts[6], 1, "3 ms lands in the 5 ms bucket");
        assert_eq!(*a.counts.last().unwrap(), 1, "10 s overflows");
        a.merge(&h.snapshot());
        assert_eq!(a.count(), 6);
        assert!((a.sum - 2.0 * (0.000_01 + 0.003 + 10.0)).abs() < 1e-9);
    }
}
