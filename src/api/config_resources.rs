//! What AlterConfigs and IncrementalAlterConfigs share: which resources may be altered, the
//! refusal of a resource named twice, and the one controller call for the topic resources.
//!
//! Topic configs are dynamic, as in Kafka. Broker configs are static in Weir: they come from
//! the config file and flags and are read once at start, so altering one is refused rather
//! than accepted and silently lost at the next restart.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;

use crate::metadata::config_change::ConfigChange;
use crate::metadata::controller::{self, Refusal};
use crate::shard_context::ShardContext;

/// Kafka's `ConfigResource.Type` ids.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;

/// One resource of an alter request: its change, or why the request's entry for it is
/// already refused (an unknown operation, say).
pub struct ConfigResource {
    pub resource_type: i8,
    pub name: String,
    pub change: Result<ConfigChange, Refusal>,
}

/// The answer for one resource, in request order.
pub struct ResourceOutcome {
    pub resource_type: i8,
    pub name: String,
    pub result: Result<(), Refusal>,
}

impl ResourceOutcome {
    /// (error_code, error_message) as both responses carry them: no message on success.
    pub fn error(&self) -> (i16, Option<&str>) {
        match &self.result {
            Ok(()) => (0, None),
            Err((error, message)) => (error.code(), Some(message)),
        }
    }
}

/// Decides every resource, sending the topic changes to the controller on shard 0 in one call.
pub async fn alter(
    ctx: &Rc<ShardContext>,
    resources: Vec<ConfigResource>,
    validate_only: bool,
) -> anyhow::Result<Vec<ResourceOutcome>> {
    let mut seen = BTreeMap::new();
    for r in &resources {
        *seen.entry((r.resource_type, r.name.clone())).or_insert(0) += 1;
    }
    let mut outcomes = Vec::with_capacity(resources.len());
    let mut topic_changes = Vec::new();
    let mut topic_slots = Vec::new();
    for resource in resources {
        let result = if seen[&(resource.resource_type, resource.name.clone())] > 1 {
            // Kafka refuses every copy: which of them should win is not for the broker to guess.
            Err((
                ResponseError::InvalidRequest,
                "Duplicate resource.".to_owned(),
            ))
        } else {
            refusal_before_controller(&resource).map_or(Ok(()), Err)
        };
        if let (Ok(()), Ok(change)) = (&result, resource.change) {
            topic_slots.push(outcomes.len());
            topic_changes.push((resource.name.clone(), change));
        }
        outcomes.push(ResourceOutcome {
            resource_type: resource.resource_type,
            name: resource.name,
            result,
        });
    }
    if !topic_changes.is_empty() {
        let results = ctx
            .shard
            .invoke_on(0, move |controller_shard| {
                controller::alter_topic_configs(controller_shard, topic_changes, validate_only)
            })
            .await?;
        for (slot, result) in topic_slots.into_iter().zip(results) {
            outcomes[slot].result = result;
        }
    }
    Ok(outcomes)
}

/// Why a resource is refused without asking the controller, or None for a topic change the
/// controller decides.
fn refusal_before_controller(resource: &ConfigResource) -> Option<Refusal> {
    match resource.resource_type {
        RESOURCE_TOPIC if resource.name.is_empty() => Some((
            ResponseError::InvalidRequest,
            "Default topic resources are not allowed.".to_owned(),
        )),
        RESOURCE_TOPIC => resource.change.as_ref().err().cloned(),
        RESOURCE_BROKER | RESOURCE_BROKER_LOGGER => Some((
            ResponseError::InvalidRequest,
            "Broker configs are static in Weir; set them in the config file or with flags and restart the broker.".to_owned(),
        )),
        other => Some((
            ResponseError::InvalidRequest,
            format!("Unsupported resource type {other}"),
        )),
    }
}
