//! The controller: the one place (shard 0) where topics are created and deleted.
//!
//! Changes are serialized by an async lock, applied to a copy of the image, persisted, carried
//! out on the owning shards (open or delete logs), then published to every shard. A single
//! node is the quorum of one; the Raft-backed controller for clusters keeps this interface.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;
use kafka_protocol::error::ResponseError;

use super::image::least_loaded;
use super::{snapshot, topic_config, topic_name, MetadataImage, PartitionMeta, TopicMeta};
use crate::shard_context::ShardContext;

/// Kafka's limit on partitions in one CreateTopics/CreatePartitions request for a topic;
/// bounds what a request can make the broker allocate and open.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// A topic to create, as asked for by CreateTopics or by auto-creation.
#[derive(Clone, Debug)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker default.
    pub num_partitions: i32,
    /// -1: the broker default (1 on a single node).
    pub replication_factor: i16,
    /// Manual replica assignment: partition → broker ids. Empty for automatic placement.
    pub assignments: Vec<(i32, Vec<i32>)>,
    pub configs: Vec<(String, Option<String>)>,
}

/// What happened to one topic of a request.
#[derive(Clone, Debug)]
pub struct TopicOutcome {
    pub name: String,
    pub error: Option<(ResponseError, String)>,
    pub topic_id: [u8; 16],
    pub num_partitions: i32,
    pub configs: BTreeMap<String, String>,
}

pub struct Controller {
    /// Serializes metadata changes: one change is persisted and published before the next
    /// starts deciding, so no decision is made on a stale image.
    lock: Semaphore,
}

impl Default for Controller {
    fn default() -> Self {
        Self::new()
    }
}

impl Controller {
    pub fn new() -> Self {
        Controller {
            lock: Semaphore::new(1),
        }
    }

    /// The controller of shard 0, where every controller call runs.
    fn of(ctx: &ShardContext) -> &Controller {
        ctx.controller
            .as_ref()
            .expect("controller calls run on shard 0")
    }

    /// Holds off every other metadata change until the permit is dropped.
    async fn exclusive(&self) -> glommio::sync::Permit<'_> {
        self.lock
            .acquire_permit(1)
            .await
            .expect("the controller lock is never closed")
    }
}

/// Creates topics (runs on shard 0). With `validate_only`, decides everything and changes nothing.
pub async fn create_topics(
    ctx: Rc<ShardContext>,
    topics: Vec<NewTopic>,
    validate_only: bool,
) -> Vec<TopicOutcome> {
    let _permit = Controller::of(&ctx).exclusive().await;
    let mut image = (*ctx.image()).clone();
    let mut load = image.partitions_per_shard(ctx.shard.count());
    let mut outcomes = Vec::with_capacity(topics.len());
    let mut created = Vec::new();
    for topic in topics {
        let outcome = match plan_topic(&ctx, &image, &topic) {
            Err(error) => TopicOutcome {
                name: topic.name,
                error: Some(error),
                topic_id: [0; 16],
                num_partitions: -1,
                configs: BTreeMap::new(),
            },
            Ok((num_partitions, configs)) => {
                let id = *uuid::Uuid::new_v4().as_bytes();
                if !validate_only {
                    let partitions = (0..num_partitions)
                        .map(|_| {
                            let shard = least_loaded(&load);
                            load[shard] += 1;
                            PartitionMeta {
                                owner_shard: shard as u32,
                            }
                        })
                        .collect();
                    let meta = TopicMeta {
                        name: topic.name.clone(),
                        id,
                        partitions,
                        configs: configs.clone(),
                    };
                    image.topics.insert(topic.name.clone(), meta.clone());
                    created.push(meta);
                }
                TopicOutcome {
                    name: topic.name,
                    error: None,
                    topic_id: id,
                    num_partitions,
                    configs,
                }
            }
        };
        outcomes.push(outcome);
    }
    if !created.is_empty() {
        if let Err(message) = commit(&ctx, image, &created, true).await {
            for outcome in outcomes.iter_mut().filter(|o| o.error.is_none()) {
                outcome.error = Some((ResponseError::KafkaStorageError, message.clone()));
            }
        }
    }
    outcomes
}

/// Deletes topics by name (runs on shard 0). Returns an error per topic, None for success.
pub async fn delete_topics(
    ctx: Rc<ShardContext>,
    names: Vec<String>,
) -> Vec<(String, [u8; 16], Option<ResponseError>)> {
    let _permit = Controller::of(&ctx).exclusive().await;
    let mut image = (*ctx.image()).clone();
    let mut removed = Vec::new();
    let mut outcomes = Vec::with_capacity(names.len());
    for name in names {
        match image.topics.remove(&name) {
            Some(meta) => {
                outcomes.push((name, meta.id, None));
                removed.push(meta);
            }
            None => outcomes.push((name, [0; 16], Some(ResponseError::UnknownTopicOrPartition))),
        }
    }
    if !removed.is_empty() {
        if let Err(message) = commit(&ctx, image, &removed, false).await {
            tracing::error!("deleting topics: {message}");
            for outcome in outcomes.iter_mut().filter(|o| o.2.is_none()) {
                outcome.2 = Some(ResponseError::KafkaStorageError);
            }
        }
    }
    outcomes
}

/// Decides a new topic's partition count and configs, or why it cannot be created.
fn plan_topic(
    ctx: &ShardContext,
    image: &MetadataImage,
    topic: &NewTopic,
) -> Result<(i32, BTreeMap<String, String>), (ResponseError, String)> {
    topic_name::validate(&topic.name).map_err(|m| (ResponseError::InvalidTopicException, m))?;
    if image.topic(&topic.name).is_some() {
        return Err((
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", topic.name),
        ));
    }
    let num_partitions = if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest,
                "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
            ));
        }
        validate_assignments(ctx.config.node_id, &topic.assignments)?
    } else {
        let n = if topic.num_partitions == -1 {
            ctx.config.num_partitions
        } else {
            topic.num_partitions
        };
        if n < 1 {
            return Err((
                ResponseError::InvalidPartitions,
                "Number of partitions must be larger than 0.".into(),
            ));
        }
        if n > PARTITIONS_PER_TOPIC_MAX {
            return Err((
                ResponseError::InvalidPartitions,
                format!(
                    "Number of partitions {n} is over the limit of {PARTITIONS_PER_TOPIC_MAX}."
                ),
            ));
        }
        let rf = if topic.replication_factor == -1 {
            1
        } else {
            topic.replication_factor
        };
        if rf < 1 {
            return Err((
                ResponseError::InvalidReplicationFactor,
                "Replication factor must be larger than 0.".into(),
            ));
        }
        if rf > 1 {
            return Err((
                ResponseError::InvalidReplicationFactor,
                format!("Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered."),
            ));
        }
        n
    };
    let mut configs = BTreeMap::new();
    for (name, value) in &topic.configs {
        let Some(value) = value else {
            return Err((
                ResponseError::InvalidConfig,
                format!("Null value not supported for topic config {name}"),
            ));
        };
        topic_config::validate(name, value).map_err(|m| (ResponseError::InvalidConfig, m))?;
        configs.insert(name.clone(), value.clone());
    }
    Ok((num_partitions, configs))
}

fn validate_assignments(
    node_id: i32,
    assignments: &[(i32, Vec<i32>)],
) -> Result<i32, (ResponseError, String)> {
    let invalid = |m: String| (ResponseError::InvalidReplicaAssignment, m);
    let count = assignments.len() as i32;
    if count > PARTITIONS_PER_TOPIC_MAX {
        return Err((
            ResponseError::InvalidPartitions,
            format!("{count} partitions is over the limit"),
        ));
    }
    let mut seen = vec![false; assignments.len()];
    for (partition, replicas) in assignments {
        let slot = usize::try_from(*partition)
            .ok()
            .and_then(|p| seen.get_mut(p))
            .ok_or_else(|| {
                invalid(format!(
                    "Partitions should be consecutive, starting at 0; got {partition}"
                ))
            })?;
        if std::mem::replace(slot, true) {
            return Err(invalid(format!("Partition {partition} is assigned twice")));
        }
        if replicas.as_slice() != [node_id] {
            return Err(invalid(format!(
                "Replica assignment {replicas:?} for partition {partition} names brokers other than the only broker, {node_id}"
            )));
        }
    }
    Ok(count)
}

/// Persists `image`, opens (`create`) or deletes the logs of `topics` on their owners, and
/// publishes the image to every shard.
async fn commit(
    ctx: &Rc<ShardContext>,
    mut image: MetadataImage,
    topics: &[TopicMeta],
    create: bool,
) -> Result<(), String> {
    image.version += 1;
    let image = Arc::new(image);
    let data_dir = ctx.config.data_dir.clone();
    let to_store = image.clone();
    // Blocking file I/O (write, fsync, rename) goes to glommio's blocking pool, off the reactor.
    glommio::executor()
        .spawn_blocking(move || snapshot::store(&data_dir, &to_store))
        .await
        .map_err(|e| e.to_string())?;
    let mut first_error = None;
    if create {
        // Logs open before the image is published, so no shard routes to a log not yet there.
        apply_to_owners(ctx, topics, create, &mut first_error).await;
        publish(ctx, image).await;
    } else {
        // Deletion publishes first, so no shard routes to a log being deleted.
        publish(ctx, image).await;
        apply_to_owners(ctx, topics, create, &mut first_error).await;
    }
    first_error.map_or(Ok(()), Err)
}

async fn apply_to_owners(
    ctx: &Rc<ShardContext>,
    topics: &[TopicMeta],
    create: bool,
    first_error: &mut Option<String>,
) {
    let mut calls = Vec::new();
    for topic in topics {
        let log_config = topic_config::log_config(&topic.configs);
        for (index, placement) in topic.partitions.iter().enumerate() {
            let name = topic.name.clone();
            let partition = index as i32;
            let log_config = log_config.clone();
            calls.push(ctx.shard.invoke_on(
                placement.owner_shard as usize,
                move |owner: Rc<ShardContext>| async move {
                    let result = if create {
                        owner.open_partition(&name, partition, log_config).await
                    } else {
                        owner.delete_partition(&name, partition).await
                    };
                    result.map_err(|e| format!("{name}-{partition}: {e}"))
                },
            ));
        }
    }
    for result in futures::future::join_all(calls).await {
        if let Err(e) = result.map_err(|e| e.to_string()).and_then(|r| r) {
            tracing::error!("metadata change on owner shard failed: {e}");
            first_error.get_or_insert(e);
        }
    }
}

async fn publish(ctx: &Rc<ShardContext>, image: Arc<MetadataImage>) {
    for result in ctx
        .shard
        .broadcast(move |shard: Rc<ShardContext>| async move { shard.install_image(image) })
        .await
    {
        if let Err(e) = result {
            tracing::warn!("publishing metadata: {e}");
        }
    }
}
