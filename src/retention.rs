//! The retention pass: every `log.retention.check.interval.ms`, each shard deletes the old
//! segments of the partitions it owns, by their topic's `retention.ms` / `retention.bytes`
//! (Kafka's log cleaner thread for `cleanup.policy=delete`). Configs are read from the
//! current metadata image on every pass, so an altered retention acts on the next pass.

use std::rc::Rc;
use std::time::Duration;

use crate::clock::now_ms;
use crate::metadata::topic_config;
use crate::shard_context::ShardContext;

/// Runs until the shard stops (the task is dropped at shutdown).
pub async fn run(ctx: Rc<ShardContext>) {
    let interval = Duration::from_millis(ctx.config.log_retention_check_interval_ms.max(1));
    loop {
        glommio::timer::sleep(interval).await;
        pass(&ctx).await;
    }
}

/// One pass over this shard's partitions, one at a time: deleting files is background work
/// and must not crowd out requests.
pub async fn pass(ctx: &ShardContext) {
    let image = ctx.image();
    let now = now_ms();
    for (topic, partition, log) in ctx.owned_partitions() {
        let Some(policy) = image
            .topic(&topic)
            .and_then(|t| topic_config::retention_policy(&t.configs))
        else {
            continue;
        };
        match log.apply_retention(policy, now).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(
                "{topic}-{partition}: retention deleted {deleted} segment(s); log starts at {}",
                log.log_start_offset()
            ),
            Err(e) => tracing::warn!("{topic}-{partition}: retention: {e}"),
        }
    }
}
