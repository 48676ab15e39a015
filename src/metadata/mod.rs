//! Cluster metadata: the topics, their partitions and which shard owns each partition.
//!
//! Control plane, clarity first. The authoritative copy is changed only by the controller on
//! shard 0 (`controller.rs`), persisted (`snapshot.rs`), then published to every shard as an
//! immutable [`MetadataImage`] behind an `Arc`. Request handlers read their shard's image and
//! never lock.

pub mod config_change;
pub mod controller;
pub mod image;
pub mod snapshot;
pub mod topic_config;
pub mod topic_name;

pub use image::{MetadataImage, PartitionMeta, TopicMeta};
