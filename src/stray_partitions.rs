//! Start-up tidying of the data dir, before any partition is opened: finishes the removals a
//! crash cut short (`-delete` directories) and removes the directories of partitions no
//! topic of the metadata image has, or that name another topic id: what a crash between a
//! DeleteTopics' metadata commit and its renames leaves behind (Kafka's stray logs,
//! KIP-858). Left in place, such a directory would be adopted by the next topic of the same
//! name, which would then serve the deleted topic's records.

use std::path::Path;

use weir_storage::partition_dir;
use weir_storage::StorageError;

use crate::metadata::image::MetadataImage;

/// What start-up removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tidied {
    pub leftover_deletions: usize,
    pub strays: Vec<String>,
}

/// Blocking: runs before the shards start.
pub fn tidy(data_dir: &Path, image: &MetadataImage) -> Result<Tidied, StorageError> {
    let leftover_deletions = partition_dir::remove_leftover_deletions(data_dir)?;
    let mut strays = Vec::new();
    let entries = std::fs::read_dir(data_dir).map_err(|source| StorageError::Io {
        op: "listing",
        path: data_dir.to_owned(),
        source,
    })?;
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let Some((topic, partition)) = name.to_str().and_then(partition_dir::parse_dir_name) else {
            continue; // not a partition directory: not ours to judge
        };
        let belongs = image.topics.get(topic).is_some_and(|meta| {
            (partition as usize) < meta.partitions.len()
                // A directory from before topic ids were recorded is adopted at open.
                && partition_dir::read_topic_id(&entry.path())
                    .map_or(true, |id| id.is_none_or(|id| id == meta.id))
        });
        if !belongs {
            let path = entry.path();
            tracing::warn!(
                "{}: no topic of the metadata has this partition (a deletion a crash cut \
                 short); removing it",
                path.display()
            );
            partition_dir::remove(&path)?;
            strays.push(name.to_string_lossy().into_owned());
        }
    }
    strays.sort();
    Ok(Tidied {
        leftover_deletions,
        strays,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::image::{PartitionMeta, TopicMeta};

    fn image_with(topic: &str, id: [u8; 16], partitions: usize) -> MetadataImage {
        let mut image = MetadataImage::default();
        image.topics.insert(
            topic.to_owned(),
            TopicMeta {
                name: topic.to_owned(),
                id,
                partitions: vec![PartitionMeta { owner_shard: 0 }; partitions],
                configs: Default::default(),
            },
        );
        image
    }

    #[test]
    fn strays_and_leftovers_go_and_live_partitions_stay() {
        let data = tempfile::tempdir().unwrap();
        let (live_id, dead_id) = ([1; 16], [2; 16]);
        let dir = |name: &str| data.path().join(name);
        partition_dir::claim(&dir("live-0"), live_id).unwrap();
        partition_dir::claim(&dir("live-1"), live_id).unwrap();
        // A legacy directory of a live partition, without partition.metadata.
        std::fs::create_dir(dir("live-2")).unwrap();
        // The same name, an earlier incarnation of the topic.
        partition_dir::claim(&dir("live-3"), dead_id).unwrap();
        // A partition past the topic's count, and a topic the image does not have.
        partition_dir::claim(&dir("live-9"), live_id).unwrap();
        partition_dir::claim(&dir("gone-0"), dead_id).unwrap();
        std::fs::create_dir(dir("gone-1.0000000000000000000000000000000a-delete")).unwrap();
        std::fs::create_dir(dir("not-a-partition")).unwrap();
        std::fs::write(dir("metadata.snapshot"), b"kept").unwrap();

        let tidied = tidy(data.path(), &image_with("live", live_id, 4)).unwrap();
        assert_eq!(tidied.leftover_deletions, 1);
        assert_eq!(tidied.strays, ["gone-0", "live-3", "live-9"]);
        let mut left: Vec<String> = std::fs::read_dir(data.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "live-0",
                "live-1",
                "live-2",
                "metadata.snapshot",
                "not-a-partition"
            ]
        );
    }
}
