//! Metrics: per-shard counters and histograms kept in plain cells on the data path (no
//! atomics, no locks, no allocation per request), merged only when the Prometheus endpoint
//! is scraped: each shard then takes a `Send` snapshot of its own numbers (`snapshot.rs`),
//! shard 0 gathers them with one cross-shard call per shard and renders the text format
//! (`render.rs`), served by a minimal HTTP listener (`http.rs`).

pub mod http;
pub mod render;
pub mod snapshot;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

/// Highest Kafka API key counted; requests are counted in an array indexed by key.
pub const API_KEYS: usize = 96;

/// Upper bounds (seconds) of the request latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

/// Upper bounds (bytes) of the produce batch size histogram's buckets.
pub const BATCH_SIZE_BUCKETS: [f64; 10] = [
    128.0,
    512.0,
    1024.0,
    4096.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
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

/// One API's request numbers on one shard.
#[derive(Debug)]
pub struct ApiStats {
    pub requests: Cell<u64>,
    /// Requests that could not be answered (the connection was closed instead).
    pub failures: Cell<u64>,
    pub latency: Histogram<14>,
}

/// The counters a shard updates as it works.
pub struct ShardMetrics {
    pub apis: Vec<ApiStats>,
    /// Record-batch bytes produced to / fetched from each topic through this shard.
    pub bytes_in: RefCell<HashMap<String, u64>>,
    pub bytes_out: RefCell<HashMap<String, u64>>,
    pub produce_batch_bytes: Histogram<10>,
    pub connections_open: Cell<u64>,
    pub connections_accepted: Cell<u64>,
    /// (API key, error code) → error codes answered (Kafka's `ErrorsPerSec`).
    pub errors: RefCell<HashMap<(i16, i16), u64>>,
    /// Flush windows, fdatasyncs and their seconds of partitions deleted from this shard, so
    /// the per-shard counters (sums over the partitions) never go down.
    pub retired_log_io: Cell<LogIo>,
}

/// A log's flush and sync counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LogIo {
    pub flushes: u64,
    pub syncs: u64,
    pub sync_seconds: f64,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            apis: (0..API_KEYS)
                .map(|_| ApiStats {
                    requests: Cell::new(0),
                    failures: Cell::new(0),
                    latency: Histogram::new(&LATENCY_BUCKETS),
                })
                .collect(),
            bytes_in: RefCell::default(),
            bytes_out: RefCell::default(),
            produce_batch_bytes: Histogram::new(&BATCH_SIZE_BUCKETS),
            connections_open: Cell::new(0),
            connections_accepted: Cell::new(0),
            errors: RefCell::default(),
            retired_log_io: Cell::default(),
        }
    }
}

impl ShardMetrics {
    /// Hot path: one per request.
    pub fn record_request(&self, api_key: i16, elapsed: Duration, failed: bool) {
        let Some(stats) = usize::try_from(api_key).ok().and_then(|k| self.apis.get(k)) else {
            return;
        };
        stats.requests.set(stats.requests.get() + 1);
        if failed {
            stats.failures.set(stats.failures.get() + 1);
        }
        stats.latency.observe(elapsed.as_secs_f64());
    }

    /// Keeps a deleted partition's flush and sync counts in the shard's totals.
    pub fn retire_log(&self, log: &weir_storage::PartitionLog) {
        let (syncs, sync_time) = log.syncs();
        let retired = self.retired_log_io.get();
        self.retired_log_io.set(LogIo {
            flushes: retired.flushes + log.windows_flushed(),
            syncs: retired.syncs + syncs,
            sync_seconds: retired.sync_seconds + sync_time.as_secs_f64(),
        });
    }

    /// Counts the nonzero error codes of one response; nothing to do for one without.
    pub fn count_errors(&self, api_key: i16, codes: &[i16]) {
        if codes.is_empty() {
            return;
        }
        let mut errors = self.errors.borrow_mut();
        for &code in codes {
            *errors.entry((api_key, code)).or_default() += 1;
        }
    }

    /// Adds to a per-topic byte counter; allocates only the first time a topic is seen.
    pub fn add_bytes(counters: &RefCell<HashMap<String, u64>>, topic: &str, bytes: u64) {
        let mut counters = counters.borrow_mut();
        match counters.get_mut(topic) {
            Some(total) => *total += bytes,
            None => {
                counters.insert(topic.to_owned(), bytes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_bucket_and_merge() {
        let h = Histogram::new(&LATENCY_BUCKETS);
        h.observe(0.000_01);
        h.observe(0.003);
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

    #[test]
    fn requests_are_counted_per_api() {
        let m = ShardMetrics::default();
        m.record_request(0, Duration::from_micros(300), false);
        m.record_request(0, Duration::from_micros(300), true);
        m.record_request(-5, Duration::ZERO, false);
        m.record_request(500, Duration::ZERO, false);
        assert_eq!(m.apis[0].requests.get(), 2);
        assert_eq!(m.apis[0].failures.get(), 1);
        ShardMetrics::add_bytes(&m.bytes_in, "t", 10);
        ShardMetrics::add_bytes(&m.bytes_in, "t", 5);
        assert_eq!(m.bytes_in.borrow()["t"], 15);
    }
}
