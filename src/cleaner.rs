//! The log cleaner: every `log.cleaner.backoff.ms`, each shard compacts the partitions it
//! owns whose topic's `cleanup.policy` includes `compact` and that are dirty enough
//! (Kafka's log cleaner threads, one per shard here, working on its own partitions only).
//! Partitions are cleaned one at a time, so the shard holds one key map at most (its share
//! of Kafka's `log.cleaner.dedupe.buffer.size`), and the storage layer reads and rewrites in
//! bounded chunks and yields as it goes, so produce and fetch on the shard keep their share
//! of the reactor.

use std::rc::Rc;
use std::time::Duration;

use weir_storage::log::DEDUPE_BUFFER_BYTES_DEFAULT;
use weir_storage::CompactionPolicy;

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
    // Kafka's dedupe buffer is shared by its cleaner threads; here by the shards.
    let dedupe_buffer_bytes = DEDUPE_BUFFER_BYTES_DEFAULT / ctx.shard.count().max(1);
    for (topic, partition, log) in ctx.owned_partitions() {
        let Some(policy) = image
            .topic(&topic)
            .and_then(|t| topic_config::compaction_policy(&t.configs))
        else {
            continue;
        };
        let policy = CompactionPolicy {
            dedupe_buffer_bytes,
            ..policy
        };
        match log.compact(policy, now_ms()).await {
            Ok(Some(stats)) if stats.segments_rewritten > 0 => tracing::info!(
                "{topic}-{partition}: compacted {} segment(s), {} -> {} bytes, {} record(s) \
                 removed, {} delete horizon(s) set; clean up to offset {}",
                stats.segments_rewritten,
                stats.bytes_before,
                stats.bytes_after,
                stats.records_removed,
                stats.delete_horizons_set,
                stats.cleaned_up_to
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("{topic}-{partition}: compaction: {e}"),
        }
        // Let requests run between partitions.
        glommio::yield_if_needed().await;
    }
}
