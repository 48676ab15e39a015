//! `weir-bench`: throughput and latency benchmark for any Kafka-compatible broker.
//!
//! The native client is a thread-per-core load generator (one pinned glommio executor per
//! core) that speaks the Kafka protocol directly. Rate control is open-loop: every message
//! has an intended send time from a schedule, and latency is measured from that time, so a
//! stalled broker shows up in the percentiles instead of silently slowing the producer down
//! (no coordinated omission).
//!
//! Layout: `workload` (what to run) → `runner` (executors, progress) → `producer` /
//! `consumer` (the hot path) → `stats` (histograms, delivery check) → `report` (table, JSON,
//! SVG). `compare` runs one workload against several targets; `host_limits` measures the
//! machine so results can be read as a fraction of what the hardware allows;
//! `broker_stages` reads Weir's own produce-stage breakdown from its metrics endpoint.

pub mod broker_stages;
pub mod broker_usage;
pub mod cli;
pub mod client;
pub mod clock;
pub mod compare;
pub mod consumer;
pub mod error;
pub mod host_limits;
pub mod notify;
pub mod payload;
pub mod presets;
pub mod producer;
pub mod protocol;
pub mod rdkafka_client;
pub mod report;
pub mod rng;
pub mod runner;
pub mod schedule;
pub mod stats;
pub mod workload;

pub use error::BenchError;
