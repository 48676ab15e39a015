//! The immutable metadata image every shard reads.

use std::collections::BTreeMap;

use rkyv::{Archive, Deserialize, Serialize};

/// One partition's placement. On a single node the leader is always this broker; what varies
/// is the shard that owns the log.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartitionMeta {
    pub owner_shard: u32,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    pub name: String,
    /// Kafka topic id (KIP-516), used by Metadata v10+ and Fetch v13+.
    pub id: [u8; 16],
    pub partitions: Vec<PartitionMeta>,
    /// Topic-level config overrides (`segment.bytes`, ...); absent keys take the default.
    pub configs: BTreeMap<String, String>,
}

#[derive(Archive, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataImage {
    /// Bumped on every change, so a shard can tell a newer image from an older one.
    pub version: u64,
    /// Kafka's cluster id: 22 characters of URL-safe base64 from a random UUID.
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMeta>,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    /// The shard owning `topic`/`partition`, or None if there is no such partition.
    pub fn owner(&self, topic: &str, partition: i32) -> Option<usize> {
        let topic = self.topics.get(topic)?;
        let index = usize::try_from(partition).ok()?;
        topic.partitions.get(index).map(|p| p.owner_shard as usize)
    }

    /// Partitions owned by each shard, for placing new partitions on the least-loaded ones.
    pub fn partitions_per_shard(&self, shard_count: usize) -> Vec<usize> {
        let mut load = vec![0; shard_count];
        for partition in self.topics.values().flat_map(|t| &t.partitions) {
            if let Some(slot) = load.get_mut(partition.owner_shard as usize) {
                *slot += 1;
            }
        }
        load
    }

    /// Re-homes partitions whose owner no longer exists (the broker restarted with fewer
    /// shards), least-loaded first. Returns whether anything moved.
    pub fn rebalance_missing_owners(&mut self, shard_count: usize) -> bool {
        let mut load = self.partitions_per_shard(shard_count);
        let mut moved = false;
        for topic in self.topics.values_mut() {
            for partition in &mut topic.partitions {
                if partition.owner_shard as usize >= shard_count {
                    let target = least_loaded(&load);
                    load[target] += 1;
                    partition.owner_shard = target as u32;
                    moved = true;
                }
            }
        }
        moved
    }
}

/// Index of the smallest entry (the first on ties, so placement is deterministic).
pub fn least_loaded(load: &[usize]) -> usize {
    load.iter()
        .enumerate()
        .min_by_key(|(_, n)| **n)
        .map_or(0, |(i, _)| i)
}

/// Kafka's cluster id format: a random UUID as 22 characters of URL-safe base64, unpadded.
pub fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = u128::from_be_bytes(*uuid::Uuid::new_v4().as_bytes());
    (0..22)
        .map(|i| {
            let shift = 128i32 - 6 * (i + 1);
            let chunk = if shift >= 0 {
                bits >> shift
            } else {
                bits << -shift
            };
            ALPHABET[(chunk & 0x3f) as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, owners: &[u32]) -> TopicMeta {
        TopicMeta {
            name: name.into(),
            id: [1; 16],
            partitions: owners
                .iter()
                .map(|&o| PartitionMeta { owner_shard: o })
                .collect(),
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn owner_lookup_rejects_missing_and_negative_partitions() {
        let mut image = MetadataImage::default();
        image.topics.insert("t".into(), topic("t", &[0, 1]));
        assert_eq!(image.owner("t", 1), Some(1));
        assert_eq!(image.owner("t", 2), None);
        assert_eq!(image.owner("t", -1), None);
        assert_eq!(image.owner("u", 0), None);
    }

    #[test]
    fn fewer_shards_after_restart_moves_orphans_to_least_loaded() {
        let mut image = MetadataImage::default();
        image.topics.insert("t".into(), topic("t", &[0, 1, 2, 3]));
        assert!(image.rebalance_missing_owners(2));
        assert_eq!(image.partitions_per_shard(2), vec![2, 2]);
        assert!(!image.rebalance_missing_owners(2));
    }

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(id, new_cluster_id());
    }
}
