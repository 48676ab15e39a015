//! The controller: the one place (shard 0) where topics are created, deleted, grown and
//! reconfigured.
//!
//! Changes are serialized by an async lock, applied to a copy of the image, persisted, carried
//! out on the owning shards (open, delete or reconfigure logs), then published to every shard.
//! A single node is the quorum of one; the Raft-backed controller for clusters keeps this
//! interface.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;
use kafka_protocol::error::ResponseError;
use weir_storage::LogConfig;

use super::config_change::{self, ConfigChange};
use super::image::least_loaded;
use super::{snapshot, topic_config, topic_name, MetadataImage, PartitionMeta, TopicMeta};
use crate::group::OFFSETS_TOPIC;
use crate::shard_context::ShardContext;

/// Why the controller refuses (part of) a request: the Kafka error and its message.
pub type Refusal = (ResponseError, String);

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

/// A topic to grow, as asked for by CreatePartitions.
#[derive(Clone, Debug)]
pub struct NewPartitions {
    pub topic: String,
    /// The partition count the topic is to have.
    pub count: i32,
    /// Replica assignment of each new partition; None for automatic placement.
    pub assignments: Option<Vec<Vec<i32>>>,
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
        let opens = created.iter().flat_map(partitions_of).collect();
        if let Err(message) = commit(&ctx, image, LogAction::Open, opens).await {
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
        if let Some(meta) = image
            .topics
            .get(&name)
            .filter(|_| topic_name::is_internal(&name))
        {
            // As Kafka: internal topics are not deleted (the groups' offsets live there).
            let id = meta.id;
            outcomes.push((name, id, Some(ResponseError::InvalidTopicException)));
            continue;
        }
        match image.topics.remove(&name) {
            Some(meta) => {
                outcomes.push((name, meta.id, None));
                removed.push(meta);
            }
            None => outcomes.push((name, [0; 16], Some(ResponseError::UnknownTopicOrPartition))),
        }
    }
    if !removed.is_empty() {
        let deletes = removed.iter().flat_map(partitions_of).collect();
        if let Err(message) = commit(&ctx, image, LogAction::Delete, deletes).await {
            tracing::error!("deleting topics: {message}");
            for outcome in outcomes.iter_mut().filter(|o| o.2.is_none()) {
                outcome.2 = Some(ResponseError::KafkaStorageError);
            }
        }
    }
    outcomes
}

/// Alters the config overrides of topics (runs on shard 0): AlterConfigs and
/// IncrementalAlterConfigs. Each topic's change applies whole or not at all; with
/// `validate_only`, decides everything and changes nothing.
pub async fn alter_topic_configs(
    ctx: Rc<ShardContext>,
    alterations: Vec<(String, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    let _permit = Controller::of(&ctx).exclusive().await;
    let mut image = (*ctx.image()).clone();
    let mut outcomes = Vec::with_capacity(alterations.len());
    let mut altered = BTreeSet::new();
    for (name, change) in alterations {
        let outcome = plan_config_change(&image, &name, &change);
        if let (Ok(configs), false) = (&outcome, validate_only) {
            let topic = image
                .topics
                .get_mut(&name)
                .expect("plan_config_change refuses topics not in the image");
            if topic.configs != *configs {
                topic.configs = configs.clone();
                altered.insert(name);
            }
        }
        outcomes.push(outcome.map(|_| ()));
    }
    if !altered.is_empty() {
        // From the final image: a topic named twice gets the result of both changes.
        let reconfigures = altered
            .iter()
            .filter_map(|name| image.topic(name))
            .flat_map(partitions_of)
            .collect();
        if let Err(message) = commit(&ctx, image, LogAction::Reconfigure, reconfigures).await {
            fail_succeeded(&mut outcomes, &message);
        }
    }
    outcomes
}

/// The overrides a topic would have after `change`, or why it cannot have them.
fn plan_config_change(
    image: &MetadataImage,
    name: &str,
    change: &ConfigChange,
) -> Result<BTreeMap<String, String>, Refusal> {
    let topic = image.topic(name).ok_or_else(|| no_such_topic(name))?;
    let configs = config_change::apply(&topic.configs, change)
        .map_err(|e| (e.error_code(), e.to_string()))?;
    if topic_name::is_internal(name) && topic_config::compaction_policy(&configs).is_none() {
        // The group coordinator keeps one record per group and partition and relies on
        // compaction for it; a `delete` policy would let retention drop every group's
        // committed offsets. Kafka leaves this to ACLs; Weir has none on AlterConfigs yet,
        // so any client could do it. Tuning the topic otherwise stays allowed.
        return Err((
            ResponseError::InvalidConfig,
            format!("The internal topic {name} must keep cleanup.policy=compact: its records are every group's committed offsets."),
        ));
    }
    Ok(configs)
}

/// Grows topics to more partitions (runs on shard 0), placed on the least-loaded shards.
/// With `validate_only`, decides everything and changes nothing.
pub async fn create_partitions(
    ctx: Rc<ShardContext>,
    requests: Vec<NewPartitions>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    let _permit = Controller::of(&ctx).exclusive().await;
    let mut image = (*ctx.image()).clone();
    let mut load = image.partitions_per_shard(ctx.shard.count());
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut opens = Vec::new();
    for request in requests {
        let outcome = plan_partitions(ctx.config.node_id, &image, &request);
        if let (Ok(current), false) = (&outcome, validate_only) {
            let topic = image
                .topics
                .get_mut(&request.topic)
                .expect("plan_partitions refuses topics not in the image");
            let log_config = topic_config::log_config(&topic.configs);
            for partition in *current..request.count {
                let shard = least_loaded(&load);
                load[shard] += 1;
                topic.partitions.push(PartitionMeta {
                    owner_shard: shard as u32,
                });
                opens.push(PartitionLogChange {
                    topic: request.topic.clone(),
                    topic_id: topic.id,
                    partition,
                    owner_shard: shard,
                    log_config: log_config.clone(),
                });
            }
        }
        outcomes.push(outcome.map(|_| ()));
    }
    if !opens.is_empty() {
        if let Err(message) = commit(&ctx, image, LogAction::Open, opens).await {
            fail_succeeded(&mut outcomes, &message);
        }
    }
    outcomes
}

/// Checks a CreatePartitions request against the topic; returns its current partition count.
fn plan_partitions(
    node_id: i32,
    image: &MetadataImage,
    request: &NewPartitions,
) -> Result<i32, Refusal> {
    if topic_name::is_internal(&request.topic) {
        // Every group's coordinator is the hash of its id modulo this count: growing the
        // topic would move groups away from their committed offsets.
        return Err((
            ResponseError::InvalidRequest,
            format!("The partition count of the internal topic {OFFSETS_TOPIC} cannot be changed; it is set by --offsets-topic-num-partitions when the topic is created."),
        ));
    }
    let topic = image
        .topic(&request.topic)
        .ok_or_else(|| no_such_topic(&request.topic))?;
    let current = topic.partitions.len() as i32;
    let invalid = |m: String| Err((ResponseError::InvalidPartitions, m));
    if request.count > PARTITIONS_PER_TOPIC_MAX {
        return invalid(format!(
            "Number of partitions {} is over the limit of {PARTITIONS_PER_TOPIC_MAX}.",
            request.count
        ));
    }
    if request.count < current {
        return invalid(format!(
            "Topic currently has {current} partitions, which is higher than the requested {}.",
            request.count
        ));
    }
    if request.count == current {
        return invalid(format!("Topic already has {current} partitions."));
    }
    if let Some(assignments) = &request.assignments {
        validate_new_assignments(node_id, request.count - current, assignments)?;
    }
    Ok(current)
}

/// Manual placement of new partitions: one assignment per new partition, each naming only
/// this broker (every topic has replication factor 1 on a single node).
fn validate_new_assignments(
    node_id: i32,
    added: i32,
    assignments: &[Vec<i32>],
) -> Result<(), Refusal> {
    let invalid = |m: String| Err((ResponseError::InvalidReplicaAssignment, m));
    if assignments.len() != added as usize {
        return invalid(format!(
            "Attempted to add {added} additional partition(s), but {} assignment(s) were specified.",
            assignments.len()
        ));
    }
    match assignments.iter().find(|a| a.as_slice() != [node_id]) {
        Some(replicas) => invalid(format!(
            "Replica assignment {replicas:?} names brokers other than the only broker, {node_id}, or a replication factor other than the topic's 1."
        )),
        None => Ok(()),
    }
}

fn no_such_topic(name: &str) -> Refusal {
    (
        ResponseError::UnknownTopicOrPartition,
        format!("The topic '{name}' does not exist."),
    )
}

/// A change whose metadata was decided but not carried out fails as a storage error.
fn fail_succeeded(outcomes: &mut [Result<(), Refusal>], message: &str) {
    for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
        *outcome = Err((ResponseError::KafkaStorageError, message.to_owned()));
    }
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

/// One partition whose log a change touches on its owner shard.
#[derive(Clone, Debug)]
struct PartitionLogChange {
    topic: String,
    topic_id: [u8; 16],
    partition: i32,
    owner_shard: usize,
    log_config: LogConfig,
}

/// What a committed change does to partition logs on their owner shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LogAction {
    /// New topics or partitions: their logs are created.
    Open,
    /// Deleted topics: their logs and files go.
    Delete,
    /// Altered configs: the open logs take the new config.
    Reconfigure,
}

/// Every partition of `topic`, with the log config of its overrides.
fn partitions_of(topic: &TopicMeta) -> impl Iterator<Item = PartitionLogChange> + '_ {
    let log_config = topic_config::log_config(&topic.configs);
    topic
        .partitions
        .iter()
        .enumerate()
        .map(move |(index, placement)| PartitionLogChange {
            topic: topic.name.clone(),
            topic_id: topic.id,
            partition: index as i32,
            owner_shard: placement.owner_shard as usize,
            log_config: log_config.clone(),
        })
}

/// Persists `image`, carries out `action` on the logs of `partitions` on their owner shards,
/// and publishes the image to every shard.
async fn commit(
    ctx: &Rc<ShardContext>,
    mut image: MetadataImage,
    action: LogAction,
    partitions: Vec<PartitionLogChange>,
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
    if action == LogAction::Delete {
        // Deletion publishes first, so no shard routes to a log being deleted.
        publish(ctx, image).await;
        apply_to_owners(ctx, action, partitions).await
    } else {
        // Logs open before the image is published, so no shard routes to a log not yet
        // there. Reconfigured logs change first too: once the image shows the new configs,
        // every log already runs by them.
        let result = apply_to_owners(ctx, action, partitions).await;
        publish(ctx, image).await;
        result
    }
}

/// Returns the first failure; every partition is attempted regardless.
async fn apply_to_owners(
    ctx: &Rc<ShardContext>,
    action: LogAction,
    partitions: Vec<PartitionLogChange>,
) -> Result<(), String> {
    let calls = partitions.into_iter().map(|change| {
        ctx.shard.invoke_on(
            change.owner_shard,
            move |owner: Rc<ShardContext>| async move {
                let PartitionLogChange {
                    topic,
                    topic_id,
                    partition,
                    log_config,
                    ..
                } = change;
                let result = match action {
                    LogAction::Open => {
                        owner
                            .open_partition(&topic, topic_id, partition, log_config)
                            .await
                    }
                    LogAction::Delete => owner.delete_partition(&topic, partition).await,
                    LogAction::Reconfigure => {
                        owner.reconfigure_partition(&topic, partition, log_config);
                        Ok(())
                    }
                };
                result.map_err(|e| format!("{topic}-{partition}: {e}"))
            },
        )
    });
    let mut first_error = None;
    for result in futures::future::join_all(calls).await {
        if let Err(e) = result.map_err(|e| e.to_string()).and_then(|r| r) {
            tracing::error!("metadata change on owner shard failed: {e}");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with(name: &str, partitions: usize) -> MetadataImage {
        let mut image = MetadataImage::default();
        let meta = TopicMeta {
            name: name.into(),
            id: [1; 16],
            partitions: vec![PartitionMeta { owner_shard: 0 }; partitions],
            configs: BTreeMap::new(),
        };
        image.topics.insert(name.into(), meta);
        image
    }

    fn grow(
        image: &MetadataImage,
        topic: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
    ) -> Result<i32, ResponseError> {
        let request = NewPartitions {
            topic: topic.into(),
            count,
            assignments,
        };
        plan_partitions(0, image, &request).map_err(|(error, _)| error)
    }

    #[test]
    fn growing_needs_more_partitions_within_the_limit() {
        let image = image_with("t", 2);
        assert_eq!(grow(&image, "t", 3, None), Ok(2), "the current count");
        assert_eq!(
            grow(&image, "t", 2, None),
            Err(ResponseError::InvalidPartitions)
        );
        assert_eq!(
            grow(&image, "t", 1, None),
            Err(ResponseError::InvalidPartitions)
        );
        let over = PARTITIONS_PER_TOPIC_MAX + 1;
        assert_eq!(
            grow(&image, "t", over, None),
            Err(ResponseError::InvalidPartitions)
        );
        assert_eq!(
            grow(&image, "u", 3, None),
            Err(ResponseError::UnknownTopicOrPartition)
        );
    }

    #[test]
    fn manual_assignments_name_only_this_broker_once_per_new_partition() {
        let image = image_with("t", 1);
        assert_eq!(grow(&image, "t", 3, Some(vec![vec![0], vec![0]])), Ok(1));
        let refused = Err(ResponseError::InvalidReplicaAssignment);
        assert_eq!(grow(&image, "t", 3, Some(vec![vec![0]])), refused);
        assert_eq!(
            grow(&image, "t", 2, Some(vec![])),
            refused,
            "empty is not null"
        );
        assert_eq!(grow(&image, "t", 2, Some(vec![vec![1]])), refused);
        assert_eq!(grow(&image, "t", 2, Some(vec![vec![0, 0]])), refused);
    }

    #[test]
    fn the_offsets_topic_never_grows() {
        let image = image_with(OFFSETS_TOPIC, 50);
        assert_eq!(
            grow(&image, OFFSETS_TOPIC, 60, None),
            Err(ResponseError::InvalidRequest)
        );
    }
}
