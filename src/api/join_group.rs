//! JoinGroup: a member joins (or rejoins) a group and waits for the rebalance to complete.
//! The answer can take up to the rebalance timeout; the connection keeps serving its other
//! requests meanwhile, and answers leave in request order.

use std::rc::Rc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::group_route::coordinator_shard;
use super::{str_bytes, Answer, ClientInfo, RequestContext};
use crate::group::coordinator::JoinRequest;
use crate::group::state::JoinOutcome;
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: JoinGroupRequest,
    client: ClientInfo,
) -> Answer {
    let version = request.version;
    let join = JoinRequest {
        group_id: body.group_id.0.to_string(),
        member_id: body.member_id.to_string(),
        group_instance_id: body.group_instance_id.map(|i| i.to_string()),
        client_id: client.client_id,
        client_host: client.host,
        session_timeout_ms: body.session_timeout_ms,
        // v0 has no rebalance timeout; Kafka uses the session timeout for it.
        rebalance_timeout_ms: if version >= 1 {
            body.rebalance_timeout_ms
        } else {
            body.session_timeout_ms
        },
        protocol_type: body.protocol_type.to_string(),
        protocols: body
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let outcome = match coordinator_shard(ctx, &join.group_id) {
        Err(error) => JoinOutcome::error(error, &join.member_id),
        Ok(owner) => {
            ctx.shard
                .invoke_on(owner, move |c| async move { c.groups.join(&c, join).await })
                .await?
        }
    };
    request.reply(&response(outcome, version))
}

/// Fields exist only from some versions on; kafka-protocol refuses to encode them elsewhere.
fn response(outcome: JoinOutcome, version: i16) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default()
        .with_error_code(outcome.error.map_or(0, |e| e.code()))
        .with_generation_id(outcome.generation)
        .with_leader(str_bytes(&outcome.leader))
        .with_member_id(str_bytes(&outcome.member_id))
        .with_members(
            outcome
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    let member = JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&id))
                        .with_metadata(metadata);
                    if version >= 5 {
                        member.with_group_instance_id(instance.as_deref().map(str_bytes))
                    } else {
                        member
                    }
                })
                .collect(),
        );
    if version >= 7 {
        response.protocol_type = outcome.protocol_type.as_deref().map(str_bytes);
        response.protocol_name = outcome.protocol_name.as_deref().map(str_bytes);
    } else {
        response.protocol_name = Some(str_bytes(outcome.protocol_name.as_deref().unwrap_or("")));
    }
    if version >= 9 {
        response.skip_assignment = outcome.skip_assignment;
    }
    response
}
