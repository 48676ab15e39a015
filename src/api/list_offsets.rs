//! ListOffsets: earliest, latest and by-timestamp offsets, answered by the owner shards.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{group_by_owner, Answer, RequestContext};
use crate::shard_context::ShardContext;

/// Kafka's special timestamps (ListOffsetsRequest.json).
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

struct Lookup {
    slot: (usize, usize),
    topic: String,
    partition: i32,
    timestamp: i64,
}

/// (offset, timestamp) found, or the error for the partition.
type Found = ((usize, usize), Result<(i64, i64), ResponseError>);

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: ListOffsetsRequest,
) -> Answer {
    let image = ctx.image();
    let mut topics = Vec::with_capacity(body.topics.len());
    let mut lookups = Vec::new();
    for (ti, topic) in body.topics.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (pi, p) in topic.partitions.into_iter().enumerate() {
            partitions.push(answer(
                p.partition_index,
                Err(ResponseError::UnknownTopicOrPartition),
                request.version,
            ));
            if let Some(owner) = image.owner(&name, p.partition_index) {
                lookups.push((
                    owner,
                    Lookup {
                        slot: (ti, pi),
                        topic: name.clone(),
                        partition: p.partition_index,
                        timestamp: p.timestamp,
                    },
                ));
            }
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    let version = request.version;
    let calls = group_by_owner(ctx.shard.count(), lookups)
        .into_iter()
        .map(|(owner, lookups)| {
            ctx.shard
                .invoke_on(owner, move |owner_ctx| look_up_all(owner_ctx, lookups))
        });
    for found in futures::future::join_all(calls).await {
        for ((ti, pi), result) in found? {
            let partition = &mut topics[ti].partitions[pi];
            *partition = answer(partition.partition_index, result, version);
        }
    }
    request.reply(&ListOffsetsResponse::default().with_topics(topics))
}

async fn look_up_all(ctx: Rc<ShardContext>, lookups: Vec<Lookup>) -> Vec<Found> {
    let mut found = Vec::with_capacity(lookups.len());
    for lookup in lookups {
        let Some(log) = ctx.partition(&lookup.topic, lookup.partition) else {
            found.push((lookup.slot, Err(ResponseError::NotLeaderOrFollower)));
            continue;
        };
        let result = match lookup.timestamp {
            LATEST => Ok((log.high_watermark(), -1)),
            EARLIEST | EARLIEST_LOCAL => Ok((log.log_start_offset(), -1)),
            // KIP-734: the first record carrying the largest timestamp, which is the first
            // record reaching that timestamp; an empty log answers "none", as Kafka does.
            MAX_TIMESTAMP => match log.max_timestamp() {
                Some(max) => offset_for_time(&log, max, &lookup).await,
                None => Ok((-1, -1)),
            },
            timestamp if timestamp < 0 => Err(ResponseError::InvalidRequest),
            timestamp => offset_for_time(&log, timestamp, &lookup).await,
        };
        found.push((lookup.slot, result));
    }
    found
}

/// The first record at or after `timestamp`, as (offset, timestamp); (-1, -1) when none is.
async fn offset_for_time(
    log: &weir_storage::PartitionLog,
    timestamp: i64,
    lookup: &Lookup,
) -> Result<(i64, i64), ResponseError> {
    match log.batch_for_timestamp(timestamp).await {
        Ok(Some(batch)) => Ok(record_at_or_after(&batch, timestamp)),
        Ok(None) => Ok((-1, -1)),
        Err(e) => {
            tracing::error!(
                "offset for timestamp in {}-{}: {e}",
                lookup.topic,
                lookup.partition
            );
            Err(ResponseError::KafkaStorageError)
        }
    }
}

/// The LogAppendTime bit of a batch's attributes.
const LOG_APPEND_TIME_FLAG: i16 = 0x08;

/// Kafka answers a lookup by time with the first record whose timestamp reaches it, which
/// may sit inside a batch (even a compressed one): read the batch and look. A stored batch
/// is read with the strict reader, since its records are a client's bytes; one that does
/// not read answers with its first offset and max timestamp, which is where a consumer would
/// start anyway.
fn record_at_or_after(batch: &[u8], timestamp: i64) -> (i64, i64) {
    use weir_storage::records;
    let Ok(header) = weir_storage::batch::parse_header(batch) else {
        return (-1, -1);
    };
    let fallback = (header.base_offset, header.max_timestamp);
    if header.attributes & LOG_APPEND_TIME_FLAG != 0 {
        // Every record of a LogAppendTime batch carries the batch's time.
        return fallback;
    }
    let found = records::with_records(batch, &header, |records| {
        for record in records {
            let record = record?;
            let at = header.base_timestamp.wrapping_add(record.timestamp_delta);
            if at >= timestamp {
                return Ok(Some((
                    header.base_offset + i64::from(record.offset_delta),
                    at,
                )));
            }
        }
        Ok(None)
    });
    match found {
        Ok(Some(hit)) => hit,
        Ok(None) => fallback,
        Err(e) => {
            tracing::warn!("offset for timestamp: batch at {}: {e}", header.base_offset);
            fallback
        }
    }
}

/// leader_epoch exists from v4; kafka-protocol rejects it set in older versions.
fn answer(
    partition: i32,
    result: Result<(i64, i64), ResponseError>,
    version: i16,
) -> ListOffsetsPartitionResponse {
    let response = ListOffsetsPartitionResponse::default()
        .with_partition_index(partition)
        .with_leader_epoch(if version >= 4 {
            weir_storage::batch::LEADER_EPOCH
        } else {
            -1
        });
    match result {
        Ok((offset, timestamp)) => response.with_offset(offset).with_timestamp(timestamp),
        Err(error) => response
            .with_error_code(error.code())
            .with_offset(-1)
            .with_timestamp(-1),
    }
}
