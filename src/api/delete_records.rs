//! DeleteRecords: moves partitions' log start offsets forward (the admin client's
//! `delete_records`). Data below the new start is no longer served, and segments wholly below
//! it are deleted. As on Kafka, a compact-only topic refuses it (POLICY_VIOLATION).

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use weir_storage::StorageError;

use super::{group_by_owner, Answer, RequestContext};
use crate::metadata::{topic_config, topic_name};
use crate::shard_context::ShardContext;

struct Job {
    slot: (usize, usize),
    topic: String,
    partition: i32,
    offset: i64,
}

type Outcome = ((usize, usize), Result<i64, ResponseError>);

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: DeleteRecordsRequest,
) -> Answer {
    let image = ctx.image();
    let mut topics = Vec::with_capacity(body.topics.len());
    let mut jobs = Vec::new();
    for (ti, topic) in body.topics.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let meta = image.topic(&name);
        let compact_only =
            meta.is_some_and(|m| topic_config::retention_policy(&m.configs).is_none());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (pi, p) in topic.partitions.iter().enumerate() {
            let error = match image.owner(&name, p.partition_index) {
                None => Some(ResponseError::UnknownTopicOrPartition),
                // Kafka: "Cannot delete records of internal topic".
                Some(_) if topic_name::is_internal(&name) => {
                    Some(ResponseError::InvalidTopicException)
                }
                Some(_) if compact_only => Some(ResponseError::PolicyViolation),
                Some(_) if p.offset < -1 => Some(ResponseError::OffsetOutOfRange),
                Some(owner) => {
                    jobs.push((
                        owner,
                        Job {
                            slot: (ti, pi),
                            topic: name.clone(),
                            partition: p.partition_index,
                            offset: p.offset,
                        },
                    ));
                    None
                }
            };
            partitions.push(result(p.partition_index, error.map_or(Ok(-1), Err)));
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    let calls = group_by_owner(ctx.shard.count(), jobs)
        .into_iter()
        .map(|(owner, jobs)| ctx.shard.invoke_on(owner, move |c| delete_all(c, jobs)));
    for outcomes in futures::future::join_all(calls).await {
        for ((ti, pi), outcome) in outcomes? {
            let partition = &mut topics[ti].partitions[pi];
            *partition = result(partition.partition_index, outcome);
        }
    }
    request.reply(&DeleteRecordsResponse::default().with_topics(topics))
}

/// On the owner shard: one partition after another (each may delete segment files).
async fn delete_all(ctx: Rc<ShardContext>, jobs: Vec<Job>) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        let outcome = match ctx.partition(&job.topic, job.partition) {
            None => Err(ResponseError::NotLeaderOrFollower),
            Some(log) => match log.delete_records_before(job.offset).await {
                Ok(start) => Ok(start),
                Err(StorageError::OffsetOutOfRange { .. }) => Err(ResponseError::OffsetOutOfRange),
                Err(e) => {
                    tracing::error!("delete records in {}-{}: {e}", job.topic, job.partition);
                    Err(ResponseError::KafkaStorageError)
                }
            },
        };
        outcomes.push((job.slot, outcome));
    }
    outcomes
}

fn result(partition: i32, outcome: Result<i64, ResponseError>) -> DeleteRecordsPartitionResult {
    let r = DeleteRecordsPartitionResult::default().with_partition_index(partition);
    match outcome {
        Ok(low_watermark) => r.with_low_watermark(low_watermark),
        Err(error) => r.with_low_watermark(-1).with_error_code(error.code()),
    }
}
