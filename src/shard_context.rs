//! What one shard owns: its partitions' logs, its copy of the metadata image, and (on shard 0)
//! the controller. Built on the shard's own thread; never touched by another.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use weir_shard::Shard;
use weir_storage::{FlushGate, LastShutdown, LogConfig, PartitionLog, StorageError};

use crate::config::Config;
use crate::group::coordinator::GroupCoordinator;
use crate::group::GroupConfig;
use crate::metadata::controller::Controller;
use crate::metadata::MetadataImage;

pub struct ShardContext {
    pub shard: Rc<Shard<ShardContext>>,
    pub config: Arc<Config>,
    image: RefCell<Arc<MetadataImage>>,
    /// Topic id → name for the installed image, so Fetch v13+ (which names topics by id)
    /// resolves them with a hash lookup instead of a scan over every topic.
    topic_ids: RefCell<HashMap<[u8; 16], String>>,
    /// topic → partition → log, for the partitions this shard owns.
    partitions: RefCell<HashMap<String, HashMap<i32, Rc<PartitionLog>>>>,
    /// Present on shard 0 only: the one place metadata changes are decided.
    pub controller: Option<Controller>,
    /// Present on shard 0 only: hands out idempotent producers' ids (InitProducerId).
    pub producer_ids: Option<crate::producer_ids::ProducerIdManager>,
    /// The consumer groups whose `__consumer_offsets` partition this shard owns.
    pub groups: GroupCoordinator,
    /// This shard's counters, read at a metrics scrape.
    pub metrics: crate::metrics::ShardMetrics,
    /// How many of this shard's partitions may flush at once (`--log-flush-concurrency`).
    flush_gate: Rc<FlushGate>,
    /// Bytes of requests read and not yet answered (`--queued-max-request-bytes`).
    pub request_budget: Rc<crate::server::budget::RequestBudget>,
}

impl ShardContext {
    pub fn new(
        shard: Rc<Shard<ShardContext>>,
        config: Arc<Config>,
        image: Arc<MetadataImage>,
    ) -> Self {
        let controller = (shard.id() == 0).then(Controller::new);
        let producer_ids = (shard.id() == 0)
            .then(|| crate::producer_ids::ProducerIdManager::load(&config.data_dir));
        let flush_depth = std::num::NonZeroUsize::new(config.log_flush_concurrency.unwrap_or(0));
        ShardContext {
            flush_gate: FlushGate::new(flush_depth),
            request_budget: crate::server::budget::RequestBudget::new(
                config.queued_max_request_bytes,
            ),
            shard,
            groups: GroupCoordinator::new(GroupConfig::from_config(&config)),
            metrics: crate::metrics::ShardMetrics::default(),
            config,
            topic_ids: RefCell::new(index_topic_ids(&image)),
            image: RefCell::new(image),
            partitions: RefCell::new(HashMap::new()),
            controller,
            producer_ids,
        }
    }

    /// The gate this shard's logs flush through (and its flush-stage times).
    pub fn flush_gate(&self) -> &FlushGate {
        &self.flush_gate
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Installs a newer image; an older one (a reordered publish) is ignored.
    pub fn install_image(&self, image: Arc<MetadataImage>) {
        let mut current = self.image.borrow_mut();
        if image.version >= current.version {
            *self.topic_ids.borrow_mut() = index_topic_ids(&image);
            *current = image;
        }
    }

    /// The name of the topic with this id in the installed image.
    pub fn topic_name_by_id(&self, id: &[u8; 16]) -> Option<String> {
        self.topic_ids.borrow().get(id).cloned()
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<PartitionLog>> {
        self.partitions
            .borrow()
            .get(topic)?
            .get(&partition)
            .cloned()
    }

    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.config.data_dir.join(format!("{topic}-{partition}"))
    }

    /// Opens (recovering, or creating) a partition log this shard owns.
    pub async fn open_partition(
        &self,
        topic: &str,
        topic_id: [u8; 16],
        partition: i32,
        config: LogConfig,
    ) -> Result<(), StorageError> {
        self.open_partition_after(topic, topic_id, partition, config, LastShutdown::Unclean)
            .await
    }

    /// Opens a partition at start-up, trusting its files as far as `last` allows.
    pub async fn open_partition_after(
        &self,
        topic: &str,
        topic_id: [u8; 16],
        partition: i32,
        config: LogConfig,
        last: LastShutdown,
    ) -> Result<(), StorageError> {
        debug_assert_eq!(
            self.image()
                .owner(topic, partition)
                .unwrap_or(self.shard.id()),
            self.shard.id(),
            "a partition's log is opened only by its owner shard"
        );
        let dir = self.partition_dir(topic, partition);
        // Names the directory for this topic (durably) before its log opens, so a directory
        // left by a deleted topic of the same name is never adopted. Blocking syscalls, once
        // per partition: off the reactor.
        let claimed = dir.clone();
        glommio::executor()
            .spawn_blocking(move || weir_storage::partition_dir::claim(&claimed, topic_id))
            .await?;
        let log = PartitionLog::open_after(dir, config, last, self.flush_gate.clone()).await?;
        self.partitions
            .borrow_mut()
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, log);
        Ok(())
    }

    /// Gives an open partition log the config of its topic's altered overrides. A log not
    /// open here has nothing to change: it is opened with the configs of the image.
    pub fn reconfigure_partition(&self, topic: &str, partition: i32, config: LogConfig) {
        if let Some(log) = self.partition(topic, partition) {
            log.set_config(config);
        }
    }

    /// Removes a partition from this shard and deletes its files.
    pub async fn delete_partition(&self, topic: &str, partition: i32) -> Result<(), StorageError> {
        let log = {
            let mut partitions = self.partitions.borrow_mut();
            let Some(logs) = partitions.get_mut(topic) else {
                return Ok(());
            };
            let log = logs.remove(&partition);
            if logs.is_empty() {
                partitions.remove(topic);
            }
            log
        };
        let Some(log) = log else {
            return Ok(());
        };
        let deleted = log.clone().delete().await;
        // After the delete: it writes what was accepted first, and those flushes count too.
        self.metrics.retire_log(&log);
        deleted
    }

    /// (topic, partition, log) of every partition this shard owns.
    pub fn owned_partitions(&self) -> Vec<(String, i32, Rc<PartitionLog>)> {
        self.partitions
            .borrow()
            .iter()
            .flat_map(|(topic, logs)| {
                logs.iter()
                    .map(|(&partition, log)| (topic.clone(), partition, log.clone()))
            })
            .collect()
    }

    /// Every log this shard owns, for shutdown.
    pub fn all_partitions(&self) -> Vec<Rc<PartitionLog>> {
        self.partitions
            .borrow()
            .values()
            .flat_map(|logs| logs.values().cloned())
            .collect()
    }
}

fn index_topic_ids(image: &MetadataImage) -> HashMap<[u8; 16], String> {
    image
        .topics
        .values()
        .map(|t| (t.id, t.name.clone()))
        .collect()
}
