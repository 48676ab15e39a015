//! What one shard reports at a scrape: its counters, and the state of what it owns
//! (partitions, committed offsets), as `Send` values for shard 0 to merge.

use super::HistogramSnapshot;
use crate::shard_context::ShardContext;

#[derive(Debug, Default)]
pub struct ShardSnapshot {
    pub shard: usize,
    /// Time the executor spent running tasks and polling I/O (glommio's total runtime):
    /// its rate is the reactor's utilization, Weir's request-handler idle ratio inverted.
    pub busy_seconds: f64,
    pub tasks_executed: u64,
    /// (API key, requests, failures, latency), for APIs that saw requests.
    pub apis: Vec<(i16, u64, u64, HistogramSnapshot)>,
    pub bytes_in: Vec<(String, u64)>,
    pub bytes_out: Vec<(String, u64)>,
    pub produce_batch_bytes: HistogramSnapshot,
    /// (stage, seconds) of produce's stages, this shard's and its logs' flush stages.
    pub produce_stages: Vec<(&'static str, HistogramSnapshot)>,
    pub connections_open: u64,
    pub connections_accepted: u64,
    /// Declared bytes of the requests holding the shard's request budget, its capacity, and
    /// the connections waiting for it (not reading their sockets).
    pub queued_request_bytes: u64,
    pub queued_max_request_bytes: u64,
    pub connections_waiting_for_budget: u64,
    /// Bytes of deleted segments not yet freed (the eraser's backlog).
    pub erase_backlog_bytes: u64,
    /// What start-up skipped: torn or corrupt log tails cut away (over the partitions this
    /// shard owns), and `__consumer_offsets` records that did not decode.
    pub recovery_truncated_bytes: u64,
    pub offsets_records_skipped: u64,
    /// (API key, error code, count) of error codes answered.
    pub errors: Vec<(i16, i16, u64)>,
    /// Flush and sync counts of partitions deleted from this shard.
    pub retired_log_io: super::LogIo,
    pub cross_shard_calls: u64,
    pub cross_shard_seconds: f64,
    pub partitions: Vec<PartitionSnapshot>,
    /// (group, topic, partition, committed offset) of the groups this shard coordinates.
    pub committed: Vec<(String, String, i32, i64)>,
}

#[derive(Debug, Clone)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub size_bytes: u64,
    pub segments: usize,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    /// A failed write fenced the log: the partition is offline until restart.
    pub failed: bool,
    /// Flush windows: with durable topics, one fdatasync each.
    pub flushes: u64,
    /// fdatasyncs of the log's data and their total time.
    pub syncs: u64,
    pub sync_seconds: f64,
}

/// Runs on each shard.
pub fn take(ctx: &ShardContext) -> ShardSnapshot {
    let m = &ctx.metrics;
    let stats = glommio::executor().executor_stats();
    let calls = ctx.shard.call_stats();
    // One list of the shard's partitions (it clones their names) serves both uses below.
    let owned = ctx.owned_partitions();
    ShardSnapshot {
        shard: ctx.shard.id(),
        busy_seconds: stats.total_runtime().as_secs_f64(),
        tasks_executed: stats.tasks_executed(),
        apis: m
            .apis
            .iter()
            .enumerate()
            .filter(|(_, a)| a.requests.get() > 0)
            .map(|(key, a)| {
                (
                    key as i16,
                    a.requests.get(),
                    a.failures.get(),
                    a.latency.snapshot(),
                )
            })
            .collect(),
        bytes_in: m
            .bytes_in
            .borrow()
            .iter()
            .map(|(t, b)| (t.clone(), *b))
            .collect(),
        bytes_out: m
            .bytes_out
            .borrow()
            .iter()
            .map(|(t, b)| (t.clone(), *b))
            .collect(),
        produce_batch_bytes: m.produce_batch_bytes.snapshot(),
        produce_stages: m
            .produce_stages
            .snapshot()
            .into_iter()
            .chain(ctx.flush_gate().stages().snapshot())
            .collect(),
        connections_open: m.connections_open.get(),
        connections_accepted: m.connections_accepted.get(),
        queued_request_bytes: ctx.request_budget.reserved() as u64,
        queued_max_request_bytes: ctx.request_budget.capacity() as u64,
        connections_waiting_for_budget: ctx.request_budget.waiting() as u64,
        erase_backlog_bytes: weir_storage::log::erase_backlog_bytes(),
        recovery_truncated_bytes: owned
            .iter()
            .map(|(_, _, log)| log.recovery_report().bytes_truncated)
            .sum(),
        offsets_records_skipped: m.offsets_records_skipped.get(),
        errors: m
            .errors
            .borrow()
            .iter()
            .map(|(&(api, code), &n)| (api, code, n))
            .collect(),
        retired_log_io: m.retired_log_io.get(),
        cross_shard_calls: calls.calls.get(),
        cross_shard_seconds: calls.round_trip_nanos.get() as f64 / 1e9,
        partitions: owned
            .into_iter()
            .map(|(topic, partition, log)| PartitionSnapshot {
                topic,
                partition,
                size_bytes: log.size_bytes(),
                segments: log.segment_count(),
                log_start_offset: log.log_start_offset(),
                high_watermark: log.high_watermark(),
                failed: log.is_failed(),
                flushes: log.windows_flushed(),
                syncs: log.syncs().0,
                sync_seconds: log.syncs().1.as_secs_f64(),
            })
            .collect(),
        committed: ctx.groups.all_committed(),
    }
}
