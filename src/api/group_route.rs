//! Finding a group's coordinator shard, and making `__consumer_offsets` on first use.
//!
//! Every group API runs on the shard owning the group's `__consumer_offsets` partition; the
//! handlers here forward to it and build the response from what it answers.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;

use crate::group::{partition_for, OFFSETS_TOPIC, OFFSETS_TOPIC_SEGMENT_BYTES};
use crate::metadata::controller::{self, NewTopic};
use crate::shard_context::ShardContext;

/// The shard coordinating `group_id`. NOT_COORDINATOR while `__consumer_offsets` does not
/// exist, which sends the client back to FindCoordinator (which creates it).
pub fn coordinator_shard(ctx: &ShardContext, group_id: &str) -> Result<usize, ResponseError> {
    let image = ctx.image();
    let topic = image
        .topic(OFFSETS_TOPIC)
        .ok_or(ResponseError::NotCoordinator)?;
    let partition = partition_for(group_id, topic.partitions.len() as i32);
    image
        .owner(OFFSETS_TOPIC, partition)
        .ok_or(ResponseError::NotCoordinator)
}

/// Creates `__consumer_offsets` if it does not exist yet (as Kafka does on the first
/// FindCoordinator): `offsets.topic.num.partitions` partitions, compacted.
pub async fn ensure_offsets_topic(ctx: &Rc<ShardContext>) -> Result<(), ResponseError> {
    if ctx.image().topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let topic = NewTopic {
        name: OFFSETS_TOPIC.to_owned(),
        num_partitions: ctx.groups.config().offsets_partitions,
        replication_factor: -1,
        assignments: Vec::new(),
        configs: vec![
            ("cleanup.policy".to_owned(), Some("compact".to_owned())),
            (
                "segment.bytes".to_owned(),
                Some(OFFSETS_TOPIC_SEGMENT_BYTES.to_owned()),
            ),
        ],
    };
    let outcomes = ctx
        .shard
        .invoke_on(0, move |controller_shard| {
            controller::create_topics(controller_shard, vec![topic], false)
        })
        .await
        .map_err(|e| {
            tracing::error!("creating {OFFSETS_TOPIC}: {e}");
            ResponseError::CoordinatorNotAvailable
        })?;
    match outcomes.first().and_then(|o| o.error.clone()) {
        // Another request created it first.
        None | Some((ResponseError::TopicAlreadyExists, _)) => Ok(()),
        Some((error, message)) => {
            tracing::error!("creating {OFFSETS_TOPIC}: {error:?}: {message}");
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }
}
