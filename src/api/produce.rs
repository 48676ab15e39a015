//! Produce: validate record batches on the connection's shard, append them on the owners.
//!
//! Hot path. `validate_produce_batches` checks framing, CRC32C, the header's fields and every
//! record inside (decompressing into a reused per-thread buffer, no allocation per record),
//! as Kafka's LogValidator does, on the shard that read the frame (so that work spreads over
//! the shards clients connect to). The payload then travels as a zero-copy `Bytes` slice of
//! the request frame to the owning shard, one cross-shard call per owner, where the log
//! stamps offsets and the leader epoch and appends.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use weir_storage::batch::TimestampPolicy;
use weir_storage::producer_state::ProducerError;
use weir_storage::{validate_produce_batches, BatchError, StorageError};

use super::{group_by_owner, Answer, RequestContext};
use crate::metadata::{topic_config, topic_name};
use crate::shard_context::ShardContext;

/// One partition's records on their way to the owner.
struct AppendJob {
    /// (topic index, partition index) in the request, to place the answer.
    slot: (usize, usize),
    topic: String,
    partition: i32,
    records: Bytes,
    /// The topic's `message.timestamp.type` is LogAppendTime: the owner stamps its clock.
    log_append_time: bool,
}

/// Where an append landed: base offset, log start offset, and the broker's append time for a
/// LogAppendTime topic (else -1).
type Appended = (i64, i64, i64);

/// The owner's answer for one partition.
type AppendAnswer = ((usize, usize), Result<Appended, Refusal>);

/// A partition's refusal: Kafka's error code and, for a batch refused for what it holds, why
/// (Produce v8+ `error_message`, which the Java client puts in its exception's message).
#[derive(Debug)]
struct Refusal {
    error: ResponseError,
    message: Option<String>,
}

impl From<ResponseError> for Refusal {
    fn from(error: ResponseError) -> Refusal {
        Refusal {
            error,
            message: None,
        }
    }
}

impl Refusal {
    fn because(error: ResponseError, why: impl std::fmt::Display) -> Refusal {
        Refusal {
            error,
            message: Some(why.to_string()),
        }
    }
}

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: ProduceRequest,
) -> Answer {
    let acks = body.acks;
    let image = ctx.image();
    let mut responses: Vec<TopicProduceResponse> = Vec::with_capacity(body.topic_data.len());
    let mut jobs = Vec::new();
    // One clock reading per request for the timestamp bounds, as Kafka's validation takes.
    let now = crate::clock::now_ms();
    for (ti, topic) in body.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let meta = image.topic(&name);
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (pi, data) in topic.partition_data.into_iter().enumerate() {
            partitions.push(partition_response(
                data.index,
                Err(ResponseError::UnknownTopicOrPartition.into()),
                request.version,
            ));
            let checked = if !matches!(acks, -1..=1) {
                Err(ResponseError::InvalidRequiredAcks.into())
            } else if topic_name::is_internal(&name) {
                // Kafka: "Cannot append to internal topic". Only the broker writes them;
                // a client's bytes there would be replayed by the group load at every start.
                Err(Refusal::because(
                    ResponseError::InvalidTopicException,
                    format!("Cannot append to internal topic {name}"),
                ))
            } else {
                match (meta, image.owner(&name, data.index)) {
                    (Some(meta), Some(owner)) => {
                        let started = std::time::Instant::now();
                        let timestamps = topic_config::timestamp_policy(&meta.configs, now);
                        let checked = check_records(
                            data.records,
                            topic_config::max_message_bytes(&meta.configs),
                            &timestamps,
                        )
                        .and_then(|records| {
                            check_keys(&records, &meta.configs, &name, data.index)?;
                            Ok((owner, records, timestamps.log_append_time))
                        });
                        let stages = &ctx.metrics.produce_stages;
                        stages.validate.observe_duration(started.elapsed());
                        checked
                    }
                    _ => Err(ResponseError::UnknownTopicOrPartition.into()),
                }
            };
            match checked {
                Ok((owner, records, log_append_time)) => {
                    count_bytes_in(ctx, &name, &records);
                    jobs.push((
                        owner,
                        AppendJob {
                            slot: (ti, pi),
                            topic: name.clone(),
                            partition: data.index,
                            records,
                            log_append_time,
                        },
                    ));
                }
                Err(error) => {
                    partitions[pi] = partition_response(data.index, Err(error), request.version)
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    let calls = group_by_owner(ctx.shard.count(), jobs)
        .into_iter()
        .map(|(owner, jobs)| {
            let sent = std::time::Instant::now();
            ctx.shard.invoke_on(owner, move |owner_ctx| {
                let stages = &owner_ctx.metrics.produce_stages;
                stages.hop.observe_duration(sent.elapsed());
                append_all(owner_ctx, jobs)
            })
        });
    for answers in futures::future::join_all(calls).await {
        for ((ti, pi), result) in answers? {
            let partition = &mut responses[ti].partition_responses[pi];
            *partition = partition_response(partition.index, result, request.version);
        }
    }
    if acks == 0 {
        // acks=0: the producer does not read a response, so none is sent.
        return Ok(None);
    }
    request.reply(&ProduceResponse::default().with_responses(responses))
}

/// Metrics: bytes in per topic and the size of each batch (a walk over batch headers only).
fn count_bytes_in(ctx: &ShardContext, topic: &str, records: &[u8]) {
    crate::metrics::ShardMetrics::add_bytes(&ctx.metrics.bytes_in, topic, records.len() as u64);
    for len in batch_lengths(records) {
        ctx.metrics.produce_batch_bytes.observe(len as f64);
    }
}

/// Validates the batches of one partition's payload before anything is appended.
fn check_records(
    records: Option<Bytes>,
    max_message_bytes: usize,
    timestamps: &TimestampPolicy,
) -> Result<Bytes, Refusal> {
    let records = records
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Refusal::because(ResponseError::CorruptMessage, "no records"))?;
    let summary = validate_produce_batches(&records, timestamps).map_err(batch_refusal)?;
    if let Some(len) = batch_lengths(&records).find(|&len| len > max_message_bytes) {
        return Err(Refusal::because(
            ResponseError::MessageTooLarge,
            format!(
                "a batch of {len} bytes is larger than max.message.bytes ({max_message_bytes})"
            ),
        ));
    }
    if summary.stale_max_timestamps > 0 {
        // A header maxTimestamp the records contradict (Sarama sends -1) would make retention
        // take fresh data for ancient. Rare, so only then is the payload copied to be fixed.
        let mut fixed = bytes::BytesMut::from(&records[..]);
        weir_storage::batch::correct_max_timestamps(&mut fixed);
        return Ok(fixed.freeze());
    }
    Ok(records)
}

/// Kafka's code for a batch that failed validation, with the reason.
fn batch_refusal(error: BatchError) -> Refusal {
    let code = match error {
        BatchError::TimestampOutOfRange { .. } => ResponseError::InvalidTimestamp,
        ref e if e.is_corrupt() => ResponseError::CorruptMessage,
        _ => ResponseError::InvalidRecord,
    };
    Refusal::because(code, error)
}

/// A compacted topic keeps one record per key, so, as Kafka, it refuses records without one
/// (INVALID_RECORD). Only compacted topics pay for this per-record walk (and decompression).
fn check_keys(
    records: &[u8],
    configs: &std::collections::BTreeMap<String, String>,
    topic: &str,
    partition: i32,
) -> Result<(), Refusal> {
    if topic_config::compaction_policy(configs).is_none() {
        return Ok(());
    }
    match weir_storage::every_record_has_a_key(records) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refusal::because(
            ResponseError::InvalidRecord,
            format!("Compacted topic cannot accept message without key in topic partition {topic}-{partition}."),
        )),
        Err(StorageError::Batch(e)) => Err(batch_refusal(e)),
        // Validation read these batches a moment ago; anything else is corruption too.
        Err(e) => Err(Refusal::because(ResponseError::CorruptMessage, e)),
    }
}

/// Lengths of the batches in an already-validated payload (offset 8: batchLength).
fn batch_lengths(records: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let field = records.get(at + 8..at + 12)?;
        let len = 12 + i32::from_be_bytes(field.try_into().ok()?) as usize;
        at += len;
        Some(len)
    })
}

/// Runs on the owner shard: appends every job concurrently; each completes once durable.
async fn append_all(ctx: Rc<ShardContext>, jobs: Vec<AppendJob>) -> Vec<AppendAnswer> {
    // One clock reading per request, as Kafka stamps one time per produce request.
    let now = crate::clock::now_ms();
    let ctx = &ctx;
    let appends = jobs.into_iter().map(|job| {
        let log = ctx.partition(&job.topic, job.partition);
        async move {
            let Some(log) = log else {
                return (job.slot, Err(ResponseError::NotLeaderOrFollower.into()));
            };
            let append_time = job.log_append_time.then_some(now);
            let started = std::time::Instant::now();
            let appended = log.append_with_time(&job.records, append_time).await;
            let stages = &ctx.metrics.produce_stages;
            stages.append.observe_duration(started.elapsed());
            let result = match appended {
                Ok(outcome) => Ok((
                    outcome.base_offset,
                    log.log_start_offset(),
                    append_time.unwrap_or(-1),
                )),
                Err(StorageError::Batch(e)) => Err(batch_refusal(e)),
                Err(StorageError::Producer(e)) => {
                    tracing::debug!("produce to {}-{}: {e}", job.topic, job.partition);
                    Err(Refusal::because(producer_error(&e), e))
                }
                Err(e) => {
                    tracing::error!("append to {}-{}: {e}", job.topic, job.partition);
                    Err(ResponseError::KafkaStorageError.into())
                }
            };
            (job.slot, result)
        }
    });
    futures::future::join_all(appends).await
}

/// Kafka's codes for an idempotent producer's refused batch.
fn producer_error(error: &ProducerError) -> ResponseError {
    match error {
        ProducerError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        ProducerError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
    }
}

/// log_start_offset exists from v5 and error_message from v8; kafka-protocol rejects them set
/// in older versions.
fn partition_response(
    index: i32,
    result: Result<Appended, Refusal>,
    version: i16,
) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(index)
        .with_log_append_time_ms(-1);
    match result {
        Ok((base_offset, log_start_offset, append_time)) => response
            .with_base_offset(base_offset)
            .with_log_append_time_ms(append_time)
            .with_log_start_offset(if version >= 5 { log_start_offset } else { -1 }),
        Err(refusal) => response
            .with_error_code(refusal.error.code())
            .with_error_message(
                refusal
                    .message
                    .filter(|_| version >= 8)
                    .map(StrBytes::from_string),
            )
            .with_base_offset(-1)
            .with_log_start_offset(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lengths_walks_concatenated_batches() {
        let mut records = vec![0u8; 12 + 50 + 12 + 70];
        records[8..12].copy_from_slice(&50i32.to_be_bytes());
        records[62 + 8..62 + 12].copy_from_slice(&70i32.to_be_bytes());
        assert_eq!(batch_lengths(&records).collect::<Vec<_>>(), vec![62, 82]);
    }

    #[test]
    fn null_or_empty_records_are_corrupt() {
        let code = |records| {
            check_records(records, 1 << 20, &TimestampPolicy::create_time_unbounded())
                .map_err(|r| r.error)
        };
        assert_eq!(code(None), Err(ResponseError::CorruptMessage));
        assert_eq!(code(Some(Bytes::new())), Err(ResponseError::CorruptMessage));
        assert!(code(Some(Bytes::from_static(&[1, 2, 3]))).is_err());
    }

    #[test]
    fn a_refusal_carries_its_reason_from_version_8() {
        let refusal = || {
            check_records(
                Some(Bytes::from_static(&[0; 70])),
                1 << 20,
                &TimestampPolicy::create_time_unbounded(),
            )
            .unwrap_err()
        };
        let v8 = partition_response(3, Err(refusal()), 8);
        assert_eq!(v8.error_code, ResponseError::CorruptMessage.code());
        let message = v8.error_message.expect("v8 has error_message");
        assert!(message.contains("batch at byte 0"), "{message}");
        let v7 = partition_response(3, Err(refusal()), 7);
        assert_eq!(v7.error_code, ResponseError::CorruptMessage.code());
        assert_eq!(v7.error_message, None, "v7 has no such field");
    }
}
