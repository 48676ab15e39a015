//! CreateTopics: validated and carried out by the controller on shard 0.

use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
use uuid::Uuid;

use super::{str_bytes, Answer, RequestContext};
use crate::metadata::controller::{self, NewTopic, TopicOutcome};
use crate::metadata::topic_config::TOPIC_CONFIGS;
use crate::shard_context::ShardContext;

/// DescribeConfigs/CreateTopics config sources (KIP-226).
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: CreateTopicsRequest,
) -> Answer {
    let topics: Vec<NewTopic> = body
        .topics
        .into_iter()
        .map(|t| NewTopic {
            name: t.name.0.to_string(),
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .into_iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.into_iter().map(|b| b.0).collect(),
                    )
                })
                .collect(),
            configs: t
                .configs
                .into_iter()
                .map(|c| (c.name.to_string(), c.value.map(|v| v.to_string())))
                .collect(),
        })
        .collect();
    let validate_only = body.validate_only;
    let outcomes = ctx
        .shard
        .invoke_on(0, move |controller_shard| {
            controller::create_topics(controller_shard, topics, validate_only)
        })
        .await?;
    let results = outcomes
        .into_iter()
        .map(|o| result_of(o, request.version))
        .collect();
    request.reply(&CreateTopicsResponse::default().with_topics(results))
}

/// Version-bound fields only where the version has them: topic_id v7, the topic's
/// partitions, replication factor and configs v5+ (kafka-protocol rejects them elsewhere).
fn result_of(outcome: TopicOutcome, version: i16) -> CreatableTopicResult {
    let result = CreatableTopicResult::default().with_name(TopicName(str_bytes(&outcome.name)));
    if let Some((error, message)) = outcome.error {
        return result
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(&message)))
            .with_num_partitions(-1)
            .with_replication_factor(-1);
    }
    if version < 5 {
        return result;
    }
    let configs = TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source) = match outcome.configs.get(def.name) {
                Some(v) => (v.as_str(), SOURCE_DYNAMIC_TOPIC),
                None => (def.default, SOURCE_DEFAULT),
            };
            CreatableTopicConfigs::default()
                .with_name(str_bytes(def.name))
                .with_value(Some(str_bytes(value)))
                .with_config_source(source)
        })
        .collect();
    result
        .with_topic_id(if version >= 7 {
            Uuid::from_bytes(outcome.topic_id)
        } else {
            Uuid::nil()
        })
        .with_num_partitions(outcome.num_partitions)
        .with_replication_factor(1)
        .with_configs(Some(configs))
}
