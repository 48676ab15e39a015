//! DeleteTopics: by name (v0–v5) or by name or id (v6+), carried out by the controller.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::{str_bytes, Answer, RequestContext};
use crate::metadata::controller;
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: DeleteTopicsRequest,
) -> Answer {
    let mut unknown_ids = Vec::new();
    let mut names: Vec<String> = body.topic_names.iter().map(|n| n.0.to_string()).collect();
    for topic in &body.topics {
        match (&topic.name, ctx.topic_name_by_id(topic.topic_id.as_bytes())) {
            (Some(name), _) => names.push(name.0.to_string()),
            (None, Some(name)) => names.push(name),
            (None, None) => unknown_ids.push(topic.topic_id),
        }
    }
    let outcomes = ctx
        .shard
        .invoke_on(0, move |controller_shard| {
            controller::delete_topics(controller_shard, names)
        })
        .await?;
    let mut results: Vec<DeletableTopicResult> = outcomes
        .into_iter()
        .map(|(name, id, error)| {
            DeletableTopicResult::default()
                .with_name(Some(TopicName(str_bytes(&name))))
                .with_topic_id(if request.version >= 6 {
                    Uuid::from_bytes(id)
                } else {
                    Uuid::nil()
                })
                .with_error_code(error.map_or(0, |e| e.code()))
        })
        .collect();
    results.extend(unknown_ids.into_iter().map(|id| {
        DeletableTopicResult::default()
            .with_topic_id(id)
            .with_error_code(ResponseError::UnknownTopicId.code())
    }));
    request.reply(&DeleteTopicsResponse::default().with_responses(results))
}
