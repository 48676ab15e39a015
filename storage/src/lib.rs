//! Weir's partition log: segments in Kafka's on-disk format, sparse indexes, io_uring
//! appends with per-partition group commit, reads as file ranges for zero-copy sends, and
//! crash recovery.
//!
//! This crate knows nothing of the network or of Kafka requests: it speaks offsets, record
//! batches and file ranges. Everything in it runs on the one shard that owns the partition;
//! it must never block that shard's reactor on the append or read path.
//!
//! Where things are: `batch` (the v2 batch format, produce validation), `records` (the one
//! strict reader of the records inside a batch), `index` (the sparse `.index`/`.timeindex`),
//! `segment` (one segment's files and scan), `log` (the partition log: `append`, `read`,
//! `recovery`, `retention`, `compaction`), `partition_dir` (a partition directory's topic id,
//! durable creation and removal), `flush_gate` (a shard's limit on flushes in
//! flight, and its flush-stage times), `histogram` (the cells those times are kept in),
//! `error`.

pub mod archive_file;
pub mod batch;
pub mod error;
pub mod flush_gate;
pub mod histogram;
pub mod index;
pub mod log;
pub mod partition_dir;
pub mod producer_state;
pub mod records;
pub mod segment;

pub use batch::{
    parse_header, stamp_base_offset, validate_produce_batches, BatchError, BatchHeader,
    BatchSummary, BATCH_BYTES_MAX,
};
pub use error::StorageError;
pub use flush_gate::FlushGate;
pub use log::{
    every_record_has_a_key, AppendOutcome, CompactionPolicy, CompactionStats, FileSlice,
    LastShutdown, LogConfig, PartitionLog, RetentionPolicy, INDEX_INTERVAL_BYTES_DEFAULT,
    SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX,
};
