//! Weir's partition log: segments in Kafka's on-disk format, sparse indexes, io_uring
//! appends with per-partition group commit, reads as file ranges for zero-copy sends, and
//! crash recovery.
//!
//! This crate knows nothing of the network or of Kafka requests: it speaks offsets, record
//! batches and file ranges. Everything in it runs on the one shard that owns the partition;
//! it must never block that shard's reactor on the append or read path.

pub mod batch;
pub mod error;
pub mod index;
pub mod log;
pub mod segment;

pub use batch::{validate_produce_batches, BatchError, BatchHeader, BatchSummary};
pub use error::StorageError;
pub use log::{AppendOutcome, FileSlice, LogConfig, PartitionLog};
