//! OffsetCommit: stores a group's consumed positions in `__consumer_offsets`, answered once
//! they are durable.

use std::rc::Rc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::group_route::coordinator_shard;
use super::{Answer, RequestContext};
use crate::group::coordinator::CommitRequest;
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: OffsetCommitRequest,
) -> Answer {
    let offsets: Vec<(String, i32, i64, i32, Option<String>)> = body
        .topics
        .iter()
        .flat_map(|t| {
            let topic = t.name.0.to_string();
            t.partitions.iter().map(move |p| {
                (
                    topic.clone(),
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    p.committed_metadata.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect();
    let commit = CommitRequest {
        group_id: body.group_id.0.to_string(),
        generation: body.generation_id_or_member_epoch,
        member_id: body.member_id.to_string(),
        group_instance_id: body.group_instance_id.map(|i| i.to_string()),
        offsets,
    };
    let count = commit.offsets.len();
    let results = match coordinator_shard(ctx, &commit.group_id) {
        Err(error) => vec![Err(error); count],
        Ok(owner) => {
            ctx.shard
                .invoke_on(
                    owner,
                    move |c| async move { c.groups.commit(&c, commit).await },
                )
                .await?
        }
    };
    let mut results = results.into_iter();
    let topics = body
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error = results.next().and_then(Result::err);
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    request.reply(&OffsetCommitResponse::default().with_topics(topics))
}
