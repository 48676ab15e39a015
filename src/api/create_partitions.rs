//! CreatePartitions: grows topics, placing the new partitions on the least-loaded shards.
//! Decided and carried out by the controller on shard 0.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, TopicName};

use super::{str_bytes, Answer, RequestContext};
use crate::metadata::controller::{self, NewPartitions, Refusal};
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: RequestContext,
    body: CreatePartitionsRequest,
) -> Answer {
    let requests: Vec<NewPartitions> = body
        .topics
        .into_iter()
        .map(|t| NewPartitions {
            topic: t.name.0.to_string(),
            count: t.count,
            assignments: t.assignments.map(|assignments| {
                assignments
                    .into_iter()
                    .map(|a| a.broker_ids.into_iter().map(|b| b.0).collect())
                    .collect()
            }),
        })
        .collect();
    let names: Vec<String> = requests.iter().map(|r| r.topic.clone()).collect();
    let results = decide(ctx, requests, body.validate_only).await?;
    let results = names
        .iter()
        .zip(results)
        .map(|(name, result)| {
            let topic =
                CreatePartitionsTopicResult::default().with_name(TopicName(str_bytes(name)));
            match result {
                Ok(()) => topic,
                Err((error, message)) => topic
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(&message))),
            }
        })
        .collect();
    request.reply(&CreatePartitionsResponse::default().with_results(results))
}

/// One result per request entry, in order; a topic named twice is refused in every entry, as
/// Kafka does, and the rest go to the controller in one call.
async fn decide(
    ctx: &Rc<ShardContext>,
    requests: Vec<NewPartitions>,
    validate_only: bool,
) -> anyhow::Result<Vec<Result<(), Refusal>>> {
    let mut count = BTreeMap::new();
    for r in &requests {
        *count.entry(r.topic.clone()).or_insert(0) += 1;
    }
    let mut results = Vec::with_capacity(requests.len());
    let mut slots = Vec::new();
    let mut unique = Vec::new();
    for r in requests {
        if count[&r.topic] > 1 {
            results.push(Err((
                ResponseError::InvalidRequest,
                "Duplicate topic in request.".to_owned(),
            )));
        } else {
            slots.push(results.len());
            results.push(Ok(()));
            unique.push(r);
        }
    }
    if !unique.is_empty() {
        let decided = ctx
            .shard
            .invoke_on(0, move |controller_shard| {
                controller::create_partitions(controller_shard, unique, validate_only)
            })
            .await?;
        for (slot, result) in slots.into_iter().zip(decided) {
            results[slot] = result;
        }
    }
    Ok(results)
}
