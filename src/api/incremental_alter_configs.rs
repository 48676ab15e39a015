//! IncrementalAlterConfigs (KIP-339): SET, DELETE, APPEND and SUBTRACT on single topic
//! configs, leaving the others as they are. Decided by the controller on shard 0.

use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::config_resources::{self, ConfigResource};
use super::{str_bytes, Answer, RequestContext};
use crate::metadata::config_change::{ConfigChange, ConfigOp, OpType};
use crate::metadata::controller::Refusal;
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: IncrementalAlterConfigsRequest,
) -> Answer {
    let resources = body
        .resources
        .into_iter()
        .map(|r| ConfigResource {
            resource_type: r.resource_type,
            name: r.resource_name.to_string(),
            change: ops_of(r.configs).map(ConfigChange::Incremental),
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
    request.reply(&IncrementalAlterConfigsResponse::default().with_responses(responses))
}

/// The resource's operations; an unknown operation id refuses the whole resource.
fn ops_of(configs: Vec<AlterableConfig>) -> Result<Vec<ConfigOp>, Refusal> {
    configs
        .into_iter()
        .map(|c| {
            let op = OpType::from_code(c.config_operation)
                .map_err(|e| (e.error_code(), e.to_string()))?;
            Ok(ConfigOp {
                name: c.name.to_string(),
                op,
                value: c.value.map(|v| v.to_string()),
            })
        })
        .collect()
}
