//! The plain requests many tests make: create a topic, produce one batch, fetch it back.

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{batches, record_batch, Client};

pub fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// CreateTopics v5 of one topic; asserts it succeeded.
pub fn create_topic(client: &mut Client, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(s(k))
                .with_value(Some(s(v)))
        })
        .collect();
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(configs)]);
    let r: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 5, &request);
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

/// An acks=all Produce of one single-record batch: (error code, base offset).
pub fn produce(client: &mut Client, topic: &str, partition: i32, value: &[u8]) -> (i16, i64) {
    produce_batch(client, topic, partition, record_batch(&[value]))
}

/// An acks=all Produce of `records` (batches as the test built them) to one partition:
/// (error code, base offset).
pub fn produce_batch(
    client: &mut Client,
    topic: &str,
    partition: i32,
    records: Vec<u8>,
) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(records)))])]);
    let r: ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Base offsets of the batches one fetch from `offset` returns.
pub fn fetch_bases(client: &mut Client, topic: &str, partition: i32, offset: i64) -> Vec<i64> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = client.call(ApiKey::Fetch, 11, &request);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    batches(p.records.clone().unwrap_or_default())
        .into_iter()
        .map(|(base, _)| base)
        .collect()
}

/// Base offsets of every batch of `partition` (single-record batches), fetch after fetch.
pub fn fetched_bases(client: &mut Client, topic: &str, partition: i32) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::new();
    loop {
        let next = out.last().map_or(0, |last| last + 1);
        let found = fetch_bases(client, topic, partition, next);
        if found.is_empty() {
            return out;
        }
        out.extend(found);
    }
}
