//! OffsetFetch: a group's committed offsets, of named partitions or all of them; from v8 for
//! several groups in one request (KIP-709), each answered by its own coordinator shard.
//! A partition with nothing committed answers offset -1, as Kafka does.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::group_route::coordinator_shard;
use super::{str_bytes, Answer, RequestContext};
use crate::group::coordinator::TopicOffsets;
use crate::shard_context::ShardContext;

type TopicRequest = Option<Vec<(String, Vec<i32>)>>;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: OffsetFetchRequest,
) -> Answer {
    let version = request.version;
    if version >= 8 {
        let lookups = body.groups.into_iter().map(|g| {
            let topics = g.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let group_id = g.group_id;
            async move {
                let found = committed(ctx, group_id.0.to_string(), topics).await;
                (group_id, found)
            }
        });
        let mut groups = Vec::new();
        for (group_id, found) in futures::future::join_all(lookups).await {
            groups.push(group_response(group_id, found?));
        }
        return request.reply(&OffsetFetchResponse::default().with_groups(groups));
    }
    let topics: TopicRequest = body.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let requested = topics.clone();
    let response = match committed(ctx, body.group_id.0.to_string(), topics).await? {
        Ok(found) => OffsetFetchResponse::default().with_topics(
            found
                .into_iter()
                .map(|(topic, partitions)| topic_response(&topic, partitions, version, None))
                .collect(),
        ),
        // Before v2 there is no top-level error: it goes on every partition asked about.
        Err(error) if version < 2 => OffsetFetchResponse::default().with_topics(
            requested
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, partitions)| {
                    let none = partitions.into_iter().map(|p| (p, None)).collect();
                    topic_response(&topic, none, version, Some(error))
                })
                .collect(),
        ),
        Err(error) => OffsetFetchResponse::default().with_error_code(error.code()),
    };
    request.reply(&response)
}

async fn committed(
    ctx: &Rc<ShardContext>,
    group_id: String,
    topics: TopicRequest,
) -> anyhow::Result<Result<Vec<TopicOffsets>, ResponseError>> {
    let owner = match coordinator_shard(ctx, &group_id) {
        Ok(owner) => owner,
        Err(error) => return Ok(Err(error)),
    };
    let found = ctx
        .shard
        .invoke_on(owner, move |c| async move {
            c.groups.committed(&group_id, topics)
        })
        .await?;
    Ok(Ok(found))
}

/// (offset, leader epoch, metadata) of a committed offset; -1s and "" where there is none,
/// as Kafka answers.
fn fields(committed: Option<crate::group::state::Committed>) -> (i64, i32, String) {
    match committed {
        Some(c) => (c.offset, c.leader_epoch, c.metadata),
        None => (-1, -1, String::new()),
    }
}

fn topic_response(
    topic: &str,
    partitions: Vec<(i32, Option<crate::group::state::Committed>)>,
    version: i16,
    error: Option<ResponseError>,
) -> OffsetFetchResponseTopic {
    OffsetFetchResponseTopic::default()
        .with_name(TopicName(str_bytes(topic)))
        .with_partitions(
            partitions
                .into_iter()
                .map(|(partition, committed)| {
                    let (offset, epoch, metadata) = fields(committed);
                    let p = OffsetFetchResponsePartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(offset)
                        .with_metadata(Some(str_bytes(&metadata)))
                        .with_error_code(error.map_or(0, |e| e.code()));
                    if version >= 5 {
                        p.with_committed_leader_epoch(epoch)
                    } else {
                        p
                    }
                })
                .collect(),
        )
}

fn group_response(
    group_id: GroupId,
    found: Result<Vec<TopicOffsets>, ResponseError>,
) -> OffsetFetchResponseGroup {
    let group = OffsetFetchResponseGroup::default().with_group_id(group_id);
    match found {
        Err(error) => group.with_error_code(error.code()),
        Ok(found) => group.with_topics(
            found
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(str_bytes(&topic)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(partition, committed)| {
                                    let (offset, epoch, metadata) = fields(committed);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(partition)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(str_bytes(&metadata)))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}
