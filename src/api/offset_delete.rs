//! OffsetDelete: removes committed offsets of a group, except for topics it still consumes.

use std::rc::Rc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::group_route::coordinator_shard;
use super::{Answer, RequestContext};
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: OffsetDeleteRequest,
) -> Answer {
    let partitions: Vec<(String, i32)> = body
        .topics
        .iter()
        .flat_map(|t| {
            let topic = t.name.0.to_string();
            t.partitions
                .iter()
                .map(move |p| (topic.clone(), p.partition_index))
        })
        .collect();
    let result = match coordinator_shard(ctx, &body.group_id) {
        Err(error) => Err(error),
        Ok(owner) => {
            let group_id = body.group_id.0.to_string();
            ctx.shard
                .invoke_on(owner, move |c| async move {
                    c.groups.delete_offsets(&c, &group_id, &partitions).await
                })
                .await?
        }
    };
    let response = match result {
        Err(error) => OffsetDeleteResponse::default().with_error_code(error.code()),
        Ok(errors) => {
            let mut errors = errors.into_iter();
            OffsetDeleteResponse::default().with_topics(
                body.topics
                    .into_iter()
                    .map(|t| {
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|p| {
                                let error = errors.next().flatten();
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(error.map_or(0, |e| e.code()))
                            })
                            .collect();
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name)
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
        }
    };
    request.reply(&response)
}
