//! Weir: a Kafka-wire-compatible broker, thread-per-core on glommio and io_uring.
//!
//! `server` accepts and frames requests, `api` has one handler per Kafka API, `metadata`
//! holds topics and placement, `shard_context` is what each shard owns. Logs live in the
//! `weir-storage` crate; cross-shard calls in `weir-shard`.

pub mod admin;
pub mod api;
pub mod broker;
pub mod clean_shutdown;
pub mod cleaner;
pub mod clock;
pub mod config;
pub mod fault;
pub mod fuzzing;
pub mod group;
pub mod host_checks;
pub mod metadata;
pub mod metrics;
pub mod plain_batch;
pub mod producer_ids;
pub mod retention;
pub mod server;
pub mod shard_context;
pub mod shutdown;
pub mod stray_partitions;
