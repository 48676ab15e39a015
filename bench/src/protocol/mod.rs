//! Kafka wire pieces the benchmark builds itself rather than through kafka-protocol's
//! record types, because those allocate per record: batch encoding, batch reading,
//! varints, and Kafka's key partitioner.

pub mod murmur2;
pub mod record_batch;
pub mod record_reader;
pub mod varint;
