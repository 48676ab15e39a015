//! Heartbeat: keeps a member's session alive and tells it when to rejoin.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::group_route::coordinator_shard;
use super::{Answer, RequestContext};
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: HeartbeatRequest,
) -> Answer {
    let result = match coordinator_shard(ctx, &body.group_id) {
        Err(e) => Err(e),
        Ok(owner) => {
            let group_id = body.group_id.0.to_string();
            let member_id = body.member_id.to_string();
            let instance = body.group_instance_id.map(|i| i.to_string());
            let generation = body.generation_id;
            ctx.shard
                .invoke_on(owner, move |c| async move {
                    c.groups
                        .heartbeat(&group_id, generation, &member_id, instance.as_deref())
                })
                .await?
        }
    };
    let error_code = result.err().map_or(0, |e: ResponseError| e.code());
    request.reply(&HeartbeatResponse::default().with_error_code(error_code))
}
