//! A partition's directory as a whole, as Kafka keeps it: which topic it belongs to (the
//! topic id in `partition.metadata`, so a directory left by a deleted topic is never adopted
//! by a later topic of the same name), its creation (made durable before the partition takes
//! a write), and its removal (a durable rename to a `-delete` name first, then the removal,
//! finished at the next start if a crash cuts it short).
//!
//! Everything here is a burst of blocking syscalls done once per partition (create, open,
//! delete): callers run it before the shards start or on glommio's blocking pool.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;

use crate::StorageError;

/// Kafka's name for the file that names a partition directory's topic.
pub const METADATA_FILE: &str = "partition.metadata";
/// Kafka's suffix for a directory whose removal has begun.
pub const DELETE_SUFFIX: &str = "-delete";

/// What `claim` found in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The directory was missing; it exists now, named for the topic, durably.
    Created,
    /// The directory already names this topic.
    Owned,
    /// A directory from before topic ids were recorded: taken as this topic's and named.
    Adopted,
    /// The directory named another topic (a deleted one whose removal a crash cut short):
    /// it was removed (as `remove` does) and a new one created.
    ReplacedStale { found: [u8; 16] },
}

/// The (topic, partition) a partition directory's name stands for: `<topic>-<partition>`.
/// None for any other name (a `-delete` directory, a file of the data dir).
pub fn parse_dir_name(name: &str) -> Option<(&str, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    if topic.is_empty() || partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((topic, partition.parse().ok()?))
}

/// Makes `dir` the directory of the topic `topic_id`, durably, before its log is opened.
pub fn claim(dir: &Path, topic_id: [u8; 16]) -> Result<Claim, StorageError> {
    if !dir.exists() {
        create_durably(dir)?;
        write_topic_id(dir, topic_id)?;
        return Ok(Claim::Created);
    }
    match read_topic_id(dir)? {
        Some(found) if found == topic_id => Ok(Claim::Owned),
        Some(found) => {
            tracing::warn!(
                "{}: left by an earlier topic of this name (topic id {}); removing it",
                dir.display(),
                encode_topic_id(found)
            );
            remove(dir)?;
            create_durably(dir)?;
            write_topic_id(dir, topic_id)?;
            Ok(Claim::ReplacedStale { found })
        }
        None => {
            write_topic_id(dir, topic_id)?;
            Ok(Claim::Adopted)
        }
    }
}

/// Creates `dir` if missing, and makes its name durable (fsyncs its parent): without that, a
/// power cut after an acknowledged write could lose the whole directory. Whether it created.
pub fn create_durably(dir: &Path) -> Result<bool, StorageError> {
    if dir.is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(StorageError::io("creating", dir))?;
    sync_parent(dir)?;
    Ok(true)
}

/// Removes a partition directory as Kafka does: renamed to a `-delete` name and the rename
/// made durable first, so a crash at any point leaves either the whole directory under its
/// own name (the caller's metadata decides whether it still belongs to a topic) or a
/// `-delete` one that `remove_leftover_deletions` finishes at the next start, never a
/// partial directory under a name a new topic would take.
pub fn remove(dir: &Path) -> Result<(), StorageError> {
    let doomed = doomed_name(dir);
    match std::fs::rename(dir, &doomed) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io("renaming", dir)(e)),
    }
    sync_parent(dir)?;
    std::fs::remove_dir_all(&doomed).map_err(StorageError::io("removing", &doomed))?;
    // Not needed for correctness (a surviving `-delete` directory is removed at start), but
    // it keeps a crash from bringing back gigabytes that were already freed.
    sync_parent(dir)
}

/// Removes every `-delete` directory in `data_dir`: removals a crash cut short. Returns how
/// many there were.
pub fn remove_leftover_deletions(data_dir: &Path) -> Result<usize, StorageError> {
    let mut removed = 0;
    for entry in std::fs::read_dir(data_dir).map_err(StorageError::io("listing", data_dir))? {
        let entry = entry.map_err(StorageError::io("listing", data_dir))?;
        let is_doomed = entry.file_name().to_str().is_some_and(|name| {
            name.ends_with(DELETE_SUFFIX) && entry.file_type().is_ok_and(|t| t.is_dir())
        });
        if is_doomed {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(StorageError::io("removing", &path))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(data_dir)?;
    }
    Ok(removed)
}

/// The topic id a partition directory names, if it has a `partition.metadata`.
pub fn read_topic_id(dir: &Path) -> Result<Option<[u8; 16]>, StorageError> {
    let path = dir.join(METADATA_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("reading", path)(e)),
    };
    parse_metadata(&text)
        .map(Some)
        .ok_or_else(|| StorageError::Corrupt {
            path,
            reason: format!("{text:?} is not `version: 0` and a `topic_id`"),
        })
}

/// Writes `partition.metadata` atomically (temporary file, fsync, rename, fsync dir), in
/// Kafka's format: `version: 0` and the topic id as Kafka prints a Uuid (URL-safe base64).
fn write_topic_id(dir: &Path, topic_id: [u8; 16]) -> Result<(), StorageError> {
    use std::io::Write;
    let path = dir.join(METADATA_FILE);
    let temp = dir.join(format!("{METADATA_FILE}.tmp"));
    let text = format!("version: 0\ntopic_id: {}\n", encode_topic_id(topic_id));
    std::fs::File::create(&temp)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .map_err(StorageError::io("writing", &temp))?;
    std::fs::rename(&temp, &path).map_err(StorageError::io("renaming", &temp))?;
    sync_dir(dir)
}

/// The topic id of a `partition.metadata` file's text; None if it is not one.
pub fn parse_metadata(text: &str) -> Option<[u8; 16]> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next()? != "version: 0" {
        return None;
    }
    let id = lines.next()?.strip_prefix("topic_id:")?.trim();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .ok()?;
    bytes.try_into().ok()
}

fn encode_topic_id(topic_id: [u8; 16]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(topic_id)
}

/// `<dir>.<unique>-delete`, beside `dir`: Kafka's `<topic>-<partition>.<uuid>-delete`.
fn doomed_name(dir: &Path) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{nanos:032x}{DELETE_SUFFIX}"));
    dir.with_file_name(name)
}

fn sync_parent(dir: &Path) -> Result<(), StorageError> {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

/// fsync of a directory: makes the entries created, renamed or removed in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("syncing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 16] = *b"0123456789abcdef";
    const OTHER: [u8; 16] = *b"fedcba9876543210";

    #[test]
    fn dir_names_parse_as_topic_and_partition() {
        assert_eq!(parse_dir_name("orders-3"), Some(("orders", 3)));
        assert_eq!(parse_dir_name("my-topic-12"), Some(("my-topic", 12)));
        assert_eq!(
            parse_dir_name("__consumer_offsets-49"),
            Some(("__consumer_offsets", 49))
        );
        assert_eq!(parse_dir_name("orders-3.0000000000abc-delete"), None);
        assert_eq!(parse_dir_name("orders"), None);
        assert_eq!(parse_dir_name("-3"), None);
        assert_eq!(parse_dir_name("orders-"), None);
        assert_eq!(parse_dir_name("orders-+3"), None);
        assert_eq!(parse_dir_name("orders-99999999999"), None);
    }

    #[test]
    fn a_new_directory_is_created_and_named_for_its_topic() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("t-0");
        assert_eq!(claim(&dir, ID).unwrap(), Claim::Created);
        assert_eq!(read_topic_id(&dir).unwrap(), Some(ID));
        let text = std::fs::read_to_string(dir.join(METADATA_FILE)).unwrap();
        // Kafka's own format, Uuid printed as URL-safe base64 without padding.
        assert_eq!(text, "version: 0\ntopic_id: MDEyMzQ1Njc4OWFiY2RlZg\n");
        assert_eq!(claim(&dir, ID).unwrap(), Claim::Owned);
    }

    #[test]
    fn a_directory_of_another_topic_is_replaced_not_adopted() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("t-0");
        claim(&dir, OTHER).unwrap();
        std::fs::write(dir.join("00000000000000000000.log"), b"old data").unwrap();
        assert_eq!(
            claim(&dir, ID).unwrap(),
            Claim::ReplacedStale { found: OTHER }
        );
        assert_eq!(read_topic_id(&dir).unwrap(), Some(ID));
        assert!(!dir.join("00000000000000000000.log").exists());
        let names: Vec<_> = std::fs::read_dir(data.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["t-0"], "nothing is left beside the new directory");
    }

    #[test]
    fn a_directory_from_before_topic_ids_is_adopted_with_its_data() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("t-0");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("00000000000000000000.log"), b"data").unwrap();
        assert_eq!(claim(&dir, ID).unwrap(), Claim::Adopted);
        assert_eq!(read_topic_id(&dir).unwrap(), Some(ID));
        assert!(dir.join("00000000000000000000.log").exists());
    }

    #[test]
    fn a_garbled_metadata_file_is_refused_not_guessed() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("t-0");
        std::fs::create_dir(&dir).unwrap();
        for garbage in [
            "",
            "version: 1\ntopic_id: MDEyMzQ1Njc4OWFiY2RlZg",
            "version: 0\ntopic_id: !!",
        ] {
            std::fs::write(dir.join(METADATA_FILE), garbage).unwrap();
            assert!(
                matches!(claim(&dir, ID), Err(StorageError::Corrupt { .. })),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn removal_leaves_nothing_and_leftovers_are_finished_at_start() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("t-0");
        claim(&dir, ID).unwrap();
        remove(&dir).unwrap();
        assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
        remove(&dir).unwrap(); // gone already: nothing to do

        // A crash after the rename: the `-delete` directory is what is left.
        let leftover = data
            .path()
            .join("t-1.00000000000000000000000000000001-delete");
        std::fs::create_dir(&leftover).unwrap();
        std::fs::write(leftover.join("00000000000000000000.log"), b"x").unwrap();
        let live = data.path().join("t-2");
        claim(&live, ID).unwrap();
        assert_eq!(remove_leftover_deletions(data.path()).unwrap(), 1);
        assert!(!leftover.exists());
        assert!(
            live.join(METADATA_FILE).exists(),
            "live partitions are kept"
        );
    }
}
