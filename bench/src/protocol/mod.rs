//! Kafka wire pieces the benchmark builds itself rather than through kafka-protocol's
//! record types, because those allocate per record: batch encoding, batch reading,
//! varints, Kafka's key partitioner, and batch compression.

pub mod compression;
pub mod murmur2;
pub mod record_batch;
pub mod record_reader;
pub mod varint;
