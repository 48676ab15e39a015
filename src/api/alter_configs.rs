//! AlterConfigs: replaces a topic's whole set of config overrides (configs not named go back
//! to their defaults, Kafka's legacy semantics). Decided by the controller on shard 0.

use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::config_resources::{self, ConfigResource};
use super::{str_bytes, Answer, RequestContext};
use crate::metadata::config_change::ConfigChange;
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: AlterConfigsRequest,
) -> Answer {
    let resources = body
        .resources
        .into_iter()
        .map(|r| ConfigResource {
            resource_type: r.resource_type,
            name: r.resource_name.to_string(),
            change: Ok(ConfigChange::Replace(
                r.configs
                    .into_iter()
                    .map(|c| (c.name.to_string(), c.value.map(|v| v.to_string())))
                    .collect(),
            )),
        })
        .collect();
    let outcomes = config_resources::alter(ctx, resources, body.validate_only).await?;
    let responses = outcomes
        .iter()
        .map(|o| {
            let (code, message) = o.error();
            AlterConfigsResourceResponse::default()
                .with_resource_type(o.resource_type)
                .with_resource_name(str_bytes(&o.name))
                .with_error_code(code)
                .with_error_message(message.map(str_bytes))
        })
        .collect();
    request.reply(&AlterConfigsResponse::default().with_responses(responses))
}
