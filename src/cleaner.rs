//! The log cleaner: every `log.cleaner.backoff.ms`, each shard compacts the partitions it
//! owns whose topic's `cleanup.policy` includes `compact` and that are dirty enough
//! (Kafka's log cleaner threads, one per shard here, working on its own partitions only).
//! Partitions are cleaned one at a time and the storage layer reads and rewrites in bounded
//! chunks, so produce and fetch on the shard keep their share of the reactor.

use std::rc::Rc;
use std::time::Duration;

use crate::clock::now_ms;
use crate::metadata::topic_config;
use crate::shard_context::ShardContext;

/// Runs until the shard stops (the task is dropped at shutdown).
pub async fn run(ctx: Rc<ShardContext>) {
    let interval = Duration::from_millis(ctx.config.log_cleaner_backoff_ms.max(1));
    loop {
        glommio::timer::sleep(interval).await;
        pass(&ctx).await;
    }
}

pub async fn pass(ctx: &ShardContext) {
    let image = ctx.image();
    for (topic, partition, log) in ctx.owned_partitions() {
        let Some(policy) = image
            .topic(&topic)
            .and_then(|t| topic_config::compaction_policy(&t.configs))
        else {
            continue;
        };
        match log.compact(policy, now_ms()).await {
            Ok(Some(stats)) if stats.records_removed > 0 => tracing::info!(
                "{topic}-{partition}: compacted {} segment(s), {} -> {} bytes, {} record(s) removed",
                stats.segments_rewritten,
                stats.bytes_before,
                stats.bytes_after,
                stats.records_removed
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("{topic}-{partition}: compaction: {e}"),
        }
        // Let requests run between partitions.
        glommio::yield_if_needed().await;
    }
}
