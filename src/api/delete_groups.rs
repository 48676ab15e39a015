//! DeleteGroups: removes empty groups and their committed offsets.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::group_route::coordinator_shard;
use super::{Answer, RequestContext};
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: DeleteGroupsRequest,
) -> Answer {
    let mut results = Vec::with_capacity(body.groups_names.len());
    for group_id in body.groups_names {
        let result = match coordinator_shard(ctx, &group_id) {
            Err(error) => Err(error),
            Ok(owner) => {
                let id = group_id.0.to_string();
                ctx.shard
                    .invoke_on(owner, move |c| async move {
                        c.groups.delete_group(&c, &id).await
                    })
                    .await?
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(result.err().map_or(0, |e| e.code())),
        );
    }
    request.reply(&DeleteGroupsResponse::default().with_results(results))
}
