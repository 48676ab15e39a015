//! Fetch: read file ranges on the owner shards, long-poll until `min_bytes` or `max_wait_ms`,
//! and answer with a response whose record data go to the socket by sendfile.
//!
//! Hot path. One cross-shard call per owner shard per round (not per partition); the owner
//! returns `FileSlice`s (an fd and a byte range), never record bytes.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::future::{select, select_all, FutureExt, LocalBoxFuture};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::FetchRequest;
use weir_storage::{FileSlice, StorageError};

use super::fetch_response::{self, FetchResponseHead, FetchedPartition, FetchedTopic};
use super::{group_by_owner, Answer, RequestContext};
use crate::shard_context::ShardContext;

/// Upper bound on a long poll, whatever the client asks: a fetch parks at most this long.
pub const FETCH_MAX_WAIT_MS_MAX: i32 = 30_000;

/// One partition to read on its owner.
#[derive(Clone)]
struct ReadJob {
    slot: (usize, usize),
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: u32,
}

/// What the owner found.
struct ReadAnswer {
    slot: (usize, usize),
    error: Option<ResponseError>,
    high_watermark: i64,
    log_start_offset: i64,
    records: Option<FileSlice>,
}

pub async fn handle(ctx: &Rc<ShardContext>, request: RequestContext, body: FetchRequest) -> Answer {
    let head = FetchResponseHead {
        correlation_id: request.correlation_id,
        version: request.version,
        header_version: request.response_header_version(),
        error_code: 0,
        session_id: 0,
        read_committed: body.isolation_level == 1,
    };
    // Fetch sessions (KIP-227) are not kept: answering session id 0 tells clients to send
    // full fetches. A client naming a session we never gave out is told it does not exist.
    if body.session_id != 0 {
        let head = FetchResponseHead {
            error_code: ResponseError::FetchSessionIdNotFound.code(),
            ..head
        };
        return Ok(Some(fetch_response::encode(&head, &[])));
    }
    let (mut topics, jobs) = plan(ctx, &body, request.version);
    let deadline = Instant::now()
        + Duration::from_millis(body.max_wait_ms.clamp(0, FETCH_MAX_WAIT_MS_MAX) as u64);
    let min_bytes = body.min_bytes.max(0) as u64;
    loop {
        let answers = read_all(ctx, &jobs).await?;
        let total: u64 = answers
            .iter()
            .filter_map(|a| a.records.as_ref())
            .map(|s| u64::from(s.len))
            .sum();
        let any_error = answers.iter().any(|a| a.error.is_some());
        // min_bytes 0 answers at once, as in Kafka; an error is reported without waiting.
        if total >= min_bytes || any_error || Instant::now() >= deadline || jobs.is_empty() {
            place(&mut topics, answers, body.max_bytes);
            count_bytes_out(ctx, &topics);
            return Ok(Some(fetch_response::encode(&head, &topics)));
        }
        wait_for_data(ctx, &jobs, &answers, deadline).await;
    }
}

/// Lays out the response skeleton in request order and lists what to read.
fn plan(
    ctx: &ShardContext,
    body: &FetchRequest,
    version: i16,
) -> (Vec<FetchedTopic>, Vec<(usize, ReadJob)>) {
    let image = ctx.image();
    let mut topics = Vec::with_capacity(body.topics.len());
    let mut jobs = Vec::new();
    for (ti, topic) in body.topics.iter().enumerate() {
        let meta = if version >= 13 {
            ctx.topic_name_by_id(topic.topic_id.as_bytes())
                .and_then(|name| image.topic(&name))
        } else {
            image.topic(&topic.topic.0)
        };
        let unknown = if version >= 13 {
            ResponseError::UnknownTopicId
        } else {
            ResponseError::UnknownTopicOrPartition
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (pi, p) in topic.partitions.iter().enumerate() {
            let owner = meta.and_then(|m| image.owner(&m.name, p.partition));
            partitions.push(FetchedPartition {
                partition: p.partition,
                error_code: if owner.is_some() { 0 } else { unknown.code() },
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                records: None,
            });
            if let (Some(meta), Some(owner)) = (meta, owner) {
                let job = ReadJob {
                    slot: (ti, pi),
                    topic: meta.name.clone(),
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes.max(0) as u32,
                };
                jobs.push((owner, job));
            }
        }
        topics.push(FetchedTopic {
            name: meta.map_or_else(|| topic.topic.0.to_string(), |m| m.name.clone()),
            id: *topic.topic_id.as_bytes(),
            partitions,
        });
    }
    (topics, jobs)
}

async fn read_all(
    ctx: &Rc<ShardContext>,
    jobs: &[(usize, ReadJob)],
) -> Result<Vec<ReadAnswer>, anyhow::Error> {
    let groups = group_by_owner(ctx.shard.count(), jobs.iter().cloned());
    let calls = groups.into_iter().map(|(owner, jobs)| {
        ctx.shard
            .invoke_on(owner, move |owner_ctx| read_on_owner(owner_ctx, jobs))
    });
    let mut answers = Vec::with_capacity(jobs.len());
    for group in futures::future::join_all(calls).await {
        answers.extend(group?);
    }
    Ok(answers)
}

/// Runs on the owner shard.
async fn read_on_owner(ctx: Rc<ShardContext>, jobs: Vec<ReadJob>) -> Vec<ReadAnswer> {
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut answer = ReadAnswer {
            slot: job.slot,
            error: None,
            high_watermark: -1,
            log_start_offset: -1,
            records: None,
        };
        match ctx.partition(&job.topic, job.partition) {
            None => answer.error = Some(ResponseError::NotLeaderOrFollower),
            Some(log) => {
                // Every partition may return one whole batch over its limit (KIP-74); the
                // response-level max_bytes is applied when the answers are placed.
                match log.read(job.offset, job.max_bytes, true).await {
                    Ok(records) => answer.records = records,
                    Err(StorageError::OffsetOutOfRange { .. }) => {
                        answer.error = Some(ResponseError::OffsetOutOfRange)
                    }
                    Err(e) => {
                        tracing::error!("fetch from {}-{}: {e}", job.topic, job.partition);
                        answer.error = Some(ResponseError::KafkaStorageError);
                    }
                }
                answer.high_watermark = log.high_watermark();
                answer.log_start_offset = log.log_start_offset();
            }
        }
        answers.push(answer);
    }
    answers
}

/// Parks until any fetched partition gets data past what was read, or the deadline.
async fn wait_for_data(
    ctx: &Rc<ShardContext>,
    jobs: &[(usize, ReadJob)],
    answers: &[ReadAnswer],
    deadline: Instant,
) {
    let waits = jobs.iter().map(|(owner, job)| {
        // Wake when the high watermark moves past where it was at this read.
        let seen = answers
            .iter()
            .find(|a| a.slot == job.slot)
            .map_or(job.offset, |a| a.high_watermark.max(job.offset));
        (*owner, (job.topic.clone(), job.partition, seen))
    });
    let mut parked: Vec<LocalBoxFuture<'_, ()>> = Vec::new();
    for (owner, partitions) in group_by_owner(ctx.shard.count(), waits) {
        let call = ctx.shard.invoke_on(owner, move |owner_ctx| {
            wait_on_owner(owner_ctx, partitions, deadline)
        });
        parked.push(Box::pin(call.map(|_| ())));
    }
    let timeout = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
    if parked.is_empty() {
        timeout.await;
        return;
    }
    let _ = select(Box::pin(timeout), select_all(parked)).await;
}

/// Runs on the owner: resolves when any partition's high watermark passes `seen`, or at the
/// deadline (so an abandoned wait never outlives its fetch).
async fn wait_on_owner(
    ctx: Rc<ShardContext>,
    partitions: Vec<(String, i32, i64)>,
    deadline: Instant,
) {
    let mut waits: Vec<LocalBoxFuture<'static, ()>> = Vec::new();
    for (topic, partition, seen) in partitions {
        if let Some(log) = ctx.partition(&topic, partition) {
            waits.push(Box::pin(async move { log.wait_for_data(seen).await }));
        }
    }
    let timeout = Box::pin(glommio::timer::sleep(
        deadline.saturating_duration_since(Instant::now()),
    ));
    if waits.is_empty() {
        timeout.await;
        return;
    }
    let _ = select(timeout, select_all(waits)).await;
}

/// Metrics: record bytes sent per topic (one counter update per topic per response).
fn count_bytes_out(ctx: &ShardContext, topics: &[FetchedTopic]) {
    for topic in topics {
        let bytes: u64 = topic
            .partitions
            .iter()
            .filter_map(|p| p.records.as_ref())
            .map(|slice| u64::from(slice.len))
            .sum();
        if bytes > 0 {
            crate::metrics::ShardMetrics::add_bytes(&ctx.metrics.bytes_out, &topic.name, bytes);
        }
    }
}

/// Puts the answers into the response under the response-level `max_bytes`: the first
/// partition with data is kept whole (KIP-74), later ones are cut to what budget remains.
fn place(topics: &mut [FetchedTopic], mut answers: Vec<ReadAnswer>, max_bytes: i32) {
    answers.sort_by_key(|a| a.slot);
    let mut budget = max_bytes.max(0) as u64;
    let mut first = true;
    for answer in answers {
        let (ti, pi) = answer.slot;
        let partition = &mut topics[ti].partitions[pi];
        partition.error_code = answer.error.map_or(0, |e| e.code());
        partition.high_watermark = answer.high_watermark;
        partition.last_stable_offset = answer.high_watermark;
        partition.log_start_offset = answer.log_start_offset;
        partition.records = answer.records.and_then(|mut slice| {
            if !first {
                slice.len = slice.len.min(budget.min(u64::from(u32::MAX)) as u32);
            }
            first = false;
            budget = budget.saturating_sub(u64::from(slice.len));
            (slice.len > 0).then_some(slice)
        });
    }
}
