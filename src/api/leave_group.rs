//! LeaveGroup: members leave at once instead of waiting out their session (v3+: several
//! members per request, by member id or, for static members, by instance id).

use std::rc::Rc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::group_route::coordinator_shard;
use super::{str_bytes, Answer, RequestContext};
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: LeaveGroupRequest,
) -> Answer {
    let version = request.version;
    let group_id = body.group_id.0.to_string();
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        body.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(body.member_id.to_string(), None)]
    };
    let result = match coordinator_shard(ctx, &group_id) {
        Err(error) => Err(error),
        Ok(owner) => {
            let leaving = leaving.clone();
            ctx.shard
                .invoke_on(owner, move |c| async move {
                    c.groups.leave(&c, &group_id, &leaving)
                })
                .await?
        }
    };
    let response = match result {
        Err(error) => LeaveGroupResponse::default().with_error_code(error.code()),
        Ok(errors) if version >= 3 => LeaveGroupResponse::default().with_members(
            leaving
                .into_iter()
                .zip(errors)
                .map(|((member_id, instance), error)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(&member_id))
                        .with_group_instance_id(instance.as_deref().map(str_bytes))
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect(),
        ),
        // Before v3 one member leaves, and its error is the response's.
        Ok(errors) => LeaveGroupResponse::default()
            .with_error_code(errors.first().copied().flatten().map_or(0, |e| e.code())),
    };
    request.reply(&response)
}
