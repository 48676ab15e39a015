//! FindCoordinator: every group is coordinated by this node (the shard behind it is found per
//! request). The first lookup creates `__consumer_offsets`, as on Kafka. Batched lookups
//! (v4+, KIP-699) answer each key.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::group_route::ensure_offsets_topic;
use super::{str_bytes, Answer, RequestContext};
use crate::shard_context::ShardContext;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: FindCoordinatorRequest,
) -> Answer {
    let version = request.version;
    let key_type = if version >= 1 {
        body.key_type
    } else {
        KEY_TYPE_GROUP
    };
    let error: Option<(ResponseError, &str)> = match key_type {
        KEY_TYPE_GROUP => ensure_offsets_topic(ctx)
            .await
            .err()
            .map(|e| (e, "the group coordinator is not available yet")),
        KEY_TYPE_TRANSACTION => Some((
            ResponseError::InvalidRequest,
            "transactions are not supported by this broker yet",
        )),
        _ => Some((
            ResponseError::InvalidRequest,
            "unknown coordinator key type",
        )),
    };
    let (node_id, host, port) = match error {
        None => (
            ctx.config.node_id,
            str_bytes(&ctx.config.advertised_host),
            ctx.config.advertised_port,
        ),
        Some(_) => (-1, StrBytes::default(), -1),
    };
    let error_code = error.map_or(0, |(e, _)| e.code());
    let message = error.map(|(_, m)| str_bytes(m));
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = body
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node_id))
                    .with_host(host.clone())
                    .with_port(port)
                    .with_error_code(error_code)
                    .with_error_message(message.clone())
            })
            .collect();
    } else {
        response = response
            .with_error_code(error_code)
            .with_node_id(BrokerId(node_id))
            .with_host(host)
            .with_port(port);
        if version >= 1 {
            response = response.with_error_message(message);
        }
    }
    request.reply(&response)
}
