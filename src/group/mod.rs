//! Consumer groups: the classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup)
//! and committed offsets, as Kafka's group coordinator runs them.
//!
//! A group lives on the shard that owns its partition of `__consumer_offsets` (the partition
//! is chosen as Kafka chooses it, from the group id's Java hash code). That shard holds the
//! group's state in memory and is the only one that changes it; requests reaching another
//! shard travel there as cross-shard calls. Every change that must survive a restart (a
//! completed rebalance, a commit, a deletion) is a record appended to that partition, in
//! Kafka's record format, before the client is answered; on start each shard replays its
//! partitions to rebuild its groups.

pub mod coordinator;
pub mod load;
pub mod records;
pub mod state;

use std::time::Duration;

use crate::config::Config;

/// Kafka's internal topic for group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's `offsets.topic.segment.bytes` default: smaller than data topics' segments, so
/// compaction (when it runs) has closed segments to work on early.
pub const OFFSETS_TOPIC_SEGMENT_BYTES: &str = "104857600";

/// Kafka's `offset.metadata.max.bytes`: the longest metadata string a commit may carry.
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// The broker settings the coordinator works by (Kafka's names, from the broker config).
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members, so a group starting up does not rebalance once per member.
    pub initial_rebalance_delay: Duration,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `offsets.topic.num.partitions`, used when `__consumer_offsets` is created.
    pub offsets_partitions: i32,
    /// `offsets.retention.minutes`: offsets of a group empty for this long are deleted.
    pub offsets_retention: Duration,
}

impl GroupConfig {
    pub fn from_config(config: &Config) -> Self {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(config.group_initial_rebalance_delay_ms),
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            offsets_partitions: config.offsets_topic_num_partitions,
            offsets_retention: Duration::from_secs(config.offsets_retention_minutes * 60),
        }
    }
}

/// The `__consumer_offsets` partition holding a group: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions`, with Java's UTF-16 string hash, so a group
/// maps to the same partition number as it would on Kafka.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let hash = group_id.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    (hash & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_the_partition_kafka_would_choose() {
        // Java: "my-group".hashCode() == -1_906_497_762, masked to 240_985_886.
        assert_eq!(partition_for("my-group", 50), 240_985_886 % 50);
        assert_eq!(partition_for("", 50), 0);
        // A negative Java hash is masked, not negated (Utils.abs).
        let negative = "polygenelubricants"; // hashCode() == Integer.MIN_VALUE
        assert_eq!(partition_for(negative, 50), 0);
        assert!((0..50).contains(&partition_for("ünïcödé", 50)));
    }
}
