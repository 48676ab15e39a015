//! `weirctl produce` / `weirctl consume`: a few records, for debugging.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::records::RecordBatchDecoder;
use serde_json::json;

use super::client::Client;
use super::output::{Output, Table};
use super::{check, list_offsets, s, AdminError, EARLIEST, LATEST};

/// Produces `values` (with an optional key) as one batch to one partition, acks=all.
pub fn produce(
    client: &mut Client,
    topic: &str,
    partition: i32,
    key: Option<&str>,
    values: &[String],
) -> Result<Output, AdminError> {
    let key = key.map(|k| Bytes::from(k.to_owned()));
    let batch = crate::plain_batch::encode_batch(
        values
            .iter()
            .map(|v| (key.clone(), Some(Bytes::from(v.clone()))))
            .collect(),
        crate::clock::now_ms(),
    );
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request)?;
    let p = response
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .ok_or_else(|| AdminError::Failed("no Produce result".into()))?;
    check(p.error_code, &format!("producing to {topic}-{partition}"))?;
    Ok(Output {
        json: json!({"topic": topic, "partition": partition, "base_offset": p.base_offset, "count": values.len()}),
        table: None,
        message: Some(format!(
            "produced {} record(s) to {topic}-{partition} at offset {}",
            values.len(),
            p.base_offset
        )),
    })
}

/// Where consume starts.
#[derive(Clone, Copy, Debug)]
pub enum StartAt {
    Earliest,
    Latest,
    Offset(i64),
}

/// Reads up to `count` records of one partition from `start`, waiting up to `timeout_ms`.
pub fn consume(
    client: &mut Client,
    topic: &str,
    partition: i32,
    start: StartAt,
    count: usize,
    timeout_ms: i32,
) -> Result<Output, AdminError> {
    let mut offset = match start {
        StartAt::Offset(o) => o,
        StartAt::Earliest => list_offsets(client, topic, &[partition], EARLIEST)?[&partition],
        StartAt::Latest => list_offsets(client, topic, &[partition], LATEST)?[&partition],
    };
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms.max(0) as u64);
    let mut table = Table::new(&["OFFSET", "TIMESTAMP", "KEY", "VALUE"]);
    let mut rows = Vec::new();
    while rows.len() < count && std::time::Instant::now() < deadline {
        let wait = deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_millis()
            .min(1000) as i32;
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(wait)
            .with_min_bytes(1)
            .with_max_bytes(4 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(s(topic)))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let response: FetchResponse = client.call(ApiKey::Fetch, 12, &request)?;
        check(response.error_code, "fetch")?;
        let Some(p) = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
        else {
            break;
        };
        check(
            p.error_code,
            &format!("fetching {topic}-{partition} at {offset}"),
        )?;
        let Some(mut bytes) = p.records.clone().filter(|b| !b.is_empty()) else {
            continue;
        };
        let sets = RecordBatchDecoder::decode_all(&mut bytes)
            .map_err(|e| AdminError::Failed(format!("decoding records: {e}")))?;
        for record in sets.into_iter().flat_map(|set| set.records) {
            if record.offset < offset || rows.len() >= count {
                continue;
            }
            offset = record.offset + 1;
            let text =
                |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
            let (key, value) = (text(&record.key), text(&record.value));
            table.row(vec![
                record.offset.to_string(),
                record.timestamp.to_string(),
                key.clone().unwrap_or_else(|| "(null)".into()),
                value.clone().unwrap_or_else(|| "(null)".into()),
            ]);
            rows.push(json!({"offset": record.offset, "timestamp": record.timestamp, "key": key, "value": value}));
        }
    }
    Ok(Output {
        json: json!({"topic": topic, "partition": partition, "records": rows}),
        message: Some(format!("{} record(s) from {topic}-{partition}", rows.len())),
        table: Some(table),
    })
}
