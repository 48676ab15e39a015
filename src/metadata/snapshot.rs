//! The metadata snapshot file: an rkyv archive of [`MetadataImage`] behind a checksummed
//! header (`weir_storage::archive_file`), replaced atomically (write temp, fsync, rename, fsync dir).
//!
//! Disk input is untrusted: a short, foreign or corrupt file is an error, never a panic.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::MetadataImage;

pub const SNAPSHOT_FILE: &str = "metadata.snapshot";
const MAGIC: &[u8; 8] = b"WEIRMETA";
const FORMAT_VERSION: u32 = 1;
/// No sane metadata image is larger; checked before allocating.
pub const SNAPSHOT_BYTES_MAX: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("metadata snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata snapshot {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(SNAPSHOT_FILE)
}

/// Loads the snapshot; Ok(None) when there is none yet (a fresh data dir).
pub fn load(data_dir: &Path) -> Result<Option<MetadataImage>, SnapshotError> {
    let path = path_in(data_dir);
    let io = |source| SnapshotError::Io {
        path: path.clone(),
        source,
    };
    let len = match fs::metadata(&path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let corrupt = |reason: String| SnapshotError::Corrupt {
        path: path.clone(),
        reason,
    };
    if len > SNAPSHOT_BYTES_MAX {
        return Err(corrupt(format!(
            "{len} bytes is over the {SNAPSHOT_BYTES_MAX} limit"
        )));
    }
    let bytes = fs::read(&path).map_err(io)?;
    decode(&bytes).map(Some).map_err(corrupt)
}

/// Writes the snapshot durably. Blocking: call it off the reactor (`spawn_blocking`) or
/// before the shards start.
pub fn store(data_dir: &Path, image: &MetadataImage) -> Result<(), SnapshotError> {
    let path = path_in(data_dir);
    let temp = data_dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let io = |source| SnapshotError::Io {
        path: path.clone(),
        source,
    };
    let bytes = encode(image);
    let mut file = File::create(&temp).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&temp, &path).map_err(io)?;
    File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io)
}

pub fn encode(image: &MetadataImage) -> Vec<u8> {
    weir_storage::archive_file::encode(MAGIC, FORMAT_VERSION, image)
}

pub fn decode(bytes: &[u8]) -> Result<MetadataImage, String> {
    weir_storage::archive_file::decode(bytes, MAGIC, FORMAT_VERSION, "metadata snapshot")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionMeta, TopicMeta};

    fn sample() -> MetadataImage {
        let mut image = MetadataImage {
            version: 7,
            cluster_id: "abc".into(),
            ..Default::default()
        };
        image.topics.insert(
            "orders".into(),
            TopicMeta {
                name: "orders".into(),
                id: [9; 16],
                partitions: vec![PartitionMeta { owner_shard: 1 }],
                configs: [("segment.bytes".to_string(), "1048576".to_string())].into(),
            },
        );
        image
    }

    #[test]
    fn round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        store(dir.path(), &sample()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(sample()));
    }

    #[test]
    fn every_single_byte_flip_is_detected() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at byte {i} went unnoticed");
        }
        for len in 0..bytes.len() {
            assert!(
                decode(&bytes[..len]).is_err(),
                "truncation to {len} went unnoticed"
            );
        }
    }
}
