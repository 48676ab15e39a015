//! Metrics: per-shard counters and histograms kept in plain cells on the data path (no
//! atomics, no locks, no allocation per request), merged only when the Prometheus endpoint
//! is scraped: each shard then takes a `Send` snapshot of its own numbers (`snapshot.rs`),
//! shard 0 gathers them with one cross-shard call per shard and renders the text format
//! (`render.rs`), served by a minimal HTTP listener (`http.rs`).

pub mod http;
pub mod render;
pub mod snapshot;

pub use weir_storage::histogram::{Histogram, HistogramSnapshot, LATENCY_BUCKETS};

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

/// Highest Kafka API key counted; requests are counted in an array indexed by key.
pub const API_KEYS: usize = 96;

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
    pub produce_stages: ProduceStages,
    /// `__consumer_offsets` records the group load at start could not decode and skipped.
    pub offsets_records_skipped: Cell<u64>,
}

/// Where a produce request's time goes outside the log (the log's own stages are the flush
/// gate's `FlushStages`): each stage one histogram, observed once per partition payload.
#[derive(Debug)]
pub struct ProduceStages {
    /// Validating a partition's batches (CRC, framing, every record) on the connection's
    /// shard.
    pub validate: Histogram<14>,
    /// From the connection's shard sending the appends to the owner shard running them.
    pub hop: Histogram<14>,
    /// One partition's append on its owner, staged until durable (acks=all): the log's
    /// queued, gate, write and fdatasync stages together.
    pub append: Histogram<14>,
}

impl Default for ProduceStages {
    fn default() -> Self {
        ProduceStages {
            validate: Histogram::new(&LATENCY_BUCKETS),
            hop: Histogram::new(&LATENCY_BUCKETS),
            append: Histogram::new(&LATENCY_BUCKETS),
        }
    }
}

impl ProduceStages {
    pub fn snapshot(&self) -> [(&'static str, HistogramSnapshot); 3] {
        [
            ("validate", self.validate.snapshot()),
            ("hop", self.hop.snapshot()),
            ("append", self.append.snapshot()),
        ]
    }
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
            produce_stages: ProduceStages::default(),
            offsets_records_skipped: Cell::new(0),
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
