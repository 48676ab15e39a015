//! SyncGroup: the leader hands in the assignment; every member gets its part.

use std::rc::Rc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::group_route::coordinator_shard;
use super::{str_bytes, Answer, RequestContext};
use crate::group::coordinator::SyncRequest;
use crate::group::state::SyncOutcome;
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: SyncGroupRequest,
) -> Answer {
    let version = request.version;
    let sync = SyncRequest {
        group_id: body.group_id.0.to_string(),
        generation: body.generation_id,
        member_id: body.member_id.to_string(),
        group_instance_id: body.group_instance_id.map(|i| i.to_string()),
        protocol_type: body.protocol_type.map(|p| p.to_string()),
        protocol_name: body.protocol_name.map(|p| p.to_string()),
        assignments: body
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let outcome = match coordinator_shard(ctx, &sync.group_id) {
        Err(error) => SyncOutcome::error(error),
        Ok(owner) => {
            ctx.shard
                .invoke_on(owner, move |c| async move { c.groups.sync(&c, sync).await })
                .await?
        }
    };
    let mut response = SyncGroupResponse::default()
        .with_error_code(outcome.error.map_or(0, |e| e.code()))
        .with_assignment(outcome.assignment);
    if version >= 5 {
        response.protocol_type = outcome.protocol_type.as_deref().map(str_bytes);
        response.protocol_name = outcome.protocol_name.as_deref().map(str_bytes);
    }
    request.reply(&response)
}
