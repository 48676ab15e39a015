//! Metadata: brokers, topics and partition leaders; auto-creates topics when allowed.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

use super::{authorized_operations, str_bytes, Answer, RequestContext};
use crate::metadata::controller::{self, NewTopic};
use crate::metadata::{topic_name, MetadataImage, TopicMeta};
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: MetadataRequest,
) -> Answer {
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let wanted: Option<Vec<String>> = match body.topics {
        None => None,
        Some(topics) if topics.is_empty() && request.version == 0 => None,
        Some(topics) => Some(names_of(ctx, topics)),
    };
    // Before v4 there is no flag: clients always allowed auto-creation.
    let allow_auto_create = request.version < 4 || body.allow_auto_topic_creation;
    if let Some(names) = &wanted {
        if allow_auto_create && ctx.config.auto_create_topics_enable {
            auto_create(ctx, names).await;
        }
    }
    let image = ctx.image();
    // The include flags exist from v8 (cluster: v8-10); kafka-protocol reads them as false
    // before.
    let topic_operations = authorized_operations::topic(body.include_topic_authorized_operations);
    let topics = match &wanted {
        None => image
            .topics
            .values()
            .map(|t| describe(ctx, t, request.version, topic_operations))
            .collect(),
        Some(names) => names
            .iter()
            .map(|n| describe_named(ctx, &image, n, request.version, topic_operations))
            .collect(),
    };
    let config = &ctx.config;
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(config.node_id))
        .with_host(str_bytes(&config.advertised_host))
        .with_port(config.advertised_port);
    let response = MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id((request.version >= 2).then(|| str_bytes(&image.cluster_id)))
        .with_controller_id(BrokerId(if request.version >= 1 {
            config.node_id
        } else {
            -1
        }))
        .with_topics(topics)
        .with_cluster_authorized_operations(if (8..=10).contains(&request.version) {
            authorized_operations::cluster(body.include_cluster_authorized_operations)
        } else {
            authorized_operations::OMITTED
        });
    request.reply(&response)
}

/// Requested names; a v10+ request may name a topic by id only.
fn names_of(
    ctx: &ShardContext,
    topics: Vec<kafka_protocol::messages::metadata_request::MetadataRequestTopic>,
) -> Vec<String> {
    topics
        .into_iter()
        .map(|t| match t.name {
            Some(name) => name.0.to_string(),
            None => ctx
                .topic_name_by_id(t.topic_id.as_bytes())
                .unwrap_or_default(),
        })
        .collect()
}

async fn auto_create(ctx: &Rc<ShardContext>, names: &[String]) {
    let image = ctx.image();
    let missing: Vec<NewTopic> = names
        .iter()
        // `__consumer_offsets` is made by FindCoordinator, with its own partition count and
        // compaction, never as an ordinary auto-created topic.
        .filter(|n| {
            image.topic(n).is_none()
                && topic_name::validate(n).is_ok()
                && n.as_str() != crate::group::OFFSETS_TOPIC
        })
        .map(|n| NewTopic {
            name: n.clone(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: Vec::new(),
            configs: Vec::new(),
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    // Another request may create the same topic first; TOPIC_ALREADY_EXISTS is fine here.
    let created = ctx
        .shard
        .invoke_on(0, move |controller_shard| {
            controller::create_topics(controller_shard, missing, false)
        })
        .await;
    if let Err(e) = created {
        tracing::warn!("auto-creating topics: {e}");
    }
}

fn describe_named(
    ctx: &ShardContext,
    image: &MetadataImage,
    name: &str,
    version: i16,
    operations: i32,
) -> MetadataResponseTopic {
    match image.topic(name) {
        Some(topic) => describe(ctx, topic, version, operations),
        None => {
            let error = if topic_name::validate(name).is_err() {
                ResponseError::InvalidTopicException
            } else {
                ResponseError::UnknownTopicOrPartition
            };
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(super::str_bytes(name))))
                .with_error_code(error.code())
                .with_topic_authorized_operations(authorized_operations::OMITTED)
        }
    }
}

/// kafka-protocol refuses to encode a field set in a version that lacks it, so version-bound
/// fields are set only where they exist (leader_epoch v7+, topic_id v10+, is_internal v1+).
fn describe(
    ctx: &ShardContext,
    topic: &TopicMeta,
    version: i16,
    operations: i32,
) -> MetadataResponseTopic {
    let node = BrokerId(ctx.config.node_id);
    let partitions = (0..topic.partitions.len() as i32)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(node)
                .with_leader_epoch(if version >= 7 {
                    weir_storage::batch::LEADER_EPOCH
                } else {
                    -1
                })
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&topic.name))))
        .with_topic_id(if version >= 10 {
            Uuid::from_bytes(topic.id)
        } else {
            Uuid::nil()
        })
        .with_is_internal(version >= 1 && crate::metadata::topic_name::is_internal(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(operations)
}
