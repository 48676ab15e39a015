//! Removing old data: time and size retention (`retention.ms`, `retention.bytes`) and
//! DeleteRecords, which moves the log start offset forward.
//!
//! Control plane, run by the owning shard's periodic retention pass or by a DeleteRecords
//! request. Only whole segments are deleted, oldest first, and only segments that are fully
//! written, closed, and synced (the segment after them has files, which is when a closed
//! segment is synced), so no pending write or recovery assumption refers to a deleted file.
//! Readers holding a `FileSlice` of a deleted segment keep reading it: the descriptor stays
//! open until they drop it. Deletion waits for a cleaned segment being swapped in
//! (`compaction.rs`), so the swap never recreates a deleted segment's files. The log start
//! offset survives restarts in a checkpoint file.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::compaction::remove_if_present;
use super::{LogState, PartitionLog};
use crate::error::StorageError;
use crate::segment::{self, Segment, SegmentFiles};

/// The partition's log start offset when it is past the first segment's base (after
/// DeleteRecords); written atomically (temporary file, fsync, rename).
const LOG_START_CHECKPOINT: &str = "log-start-offset";

/// How much of a log to keep (a topic's `retention.ms` / `retention.bytes`; None = no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
}

impl PartitionLog {
    /// Deletes the oldest segments that retention no longer keeps: those whose newest record
    /// is older than `retention_ms`, and those `retention_bytes` does not need (as Kafka: a
    /// segment goes only if the log without it still holds at least `retention_bytes`). An active segment that is wholly
    /// expired by time is rolled first, so an idle topic still empties, as on Kafka.
    /// Returns the number of segments deleted.
    pub async fn apply_retention(
        &self,
        policy: RetentionPolicy,
        now_ms: i64,
    ) -> Result<usize, StorageError> {
        if let Some(ms) = policy.retention_ms {
            if self.active_is_expired(now_ms.saturating_sub(ms)) {
                self.roll_idle_active().await?;
            }
        }
        let doomed = |state: &LogState| {
            let deletable = deletable_prefix(&state.segments, &state.pending);
            let mut total: u64 = state.segments.iter().map(|s| s.assigned_size).sum();
            let mut count = 0;
            for segment in &state.segments[..deletable] {
                let too_old = policy
                    .retention_ms
                    .is_some_and(|ms| segment.max_timestamp < now_ms.saturating_sub(ms));
                let too_big = policy
                    .retention_bytes
                    .is_some_and(|limit| total.saturating_sub(segment.assigned_size) >= limit);
                if !(too_old || too_big) {
                    break;
                }
                total -= segment.assigned_size;
                count += 1;
            }
            count
        };
        self.delete_oldest(doomed, None).await
    }

    /// DeleteRecords: data below `offset` is no longer served; segments wholly below it are
    /// deleted. `offset` -1 means the high watermark. Returns the new log start offset.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let (target, high_watermark) = {
            let state = self.state.borrow();
            if state.closed {
                return Err(StorageError::Closed(self.dir.clone()));
            }
            let target = if offset == -1 {
                state.high_watermark
            } else {
                offset
            };
            if target < 0 || target > state.high_watermark {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset: state.log_start_offset,
                    log_end_offset: state.log_end_offset,
                    high_watermark: state.high_watermark,
                });
            }
            (target, state.high_watermark)
        };
        debug_assert!(target <= high_watermark);
        if target <= self.log_start_offset() {
            return Ok(self.log_start_offset());
        }
        write_offset_file(&self.dir, LOG_START_CHECKPOINT, target).await?;
        self.state.borrow_mut().log_start_offset = target;
        let doomed = |state: &LogState| {
            let deletable = deletable_prefix(&state.segments, &state.pending);
            // A segment is wholly below the target when the next one starts at or before it.
            (0..deletable)
                .take_while(|&i| state.segments[i + 1].base_offset <= target)
                .count()
        };
        self.delete_oldest(doomed, Some(target)).await?;
        Ok(self.log_start_offset())
    }

    /// Removes the first `doomed(state)` segments and advances the log start offset to the
    /// first kept segment's base (or `floor`, if higher). Waits for a cleaned segment being
    /// swapped in first, then counts and removes with no await in between, so the cleaner
    /// sees a segment either in the log or gone, never half deleted.
    async fn delete_oldest(
        &self,
        doomed: impl Fn(&LogState) -> usize,
        floor: Option<i64>,
    ) -> Result<usize, StorageError> {
        self.until_no_segment_swap().await;
        let (count, removed, new_start) = {
            let mut state = self.state.borrow_mut();
            let count = doomed(&state);
            if count == 0 {
                return Ok(0);
            }
            let removed: Vec<Segment> = state.segments.drain(..count).collect();
            let first_kept = state.segments[0].base_offset;
            let new_start = state
                .log_start_offset
                .max(first_kept)
                .max(floor.unwrap_or(i64::MIN));
            state.log_start_offset = new_start;
            (count, removed, new_start)
        };
        // A checkpoint past the first segment's base would be stale once segments go; keep
        // it equal to what recovery would otherwise compute, or past it.
        write_offset_file(&self.dir, LOG_START_CHECKPOINT, new_start).await?;
        // The `.log` files are freed slowly by the eraser (see `erase.rs`: freeing a
        // segment's blocks at once stalls other files' syncs on some file systems).
        let (logs, log_paths) = super::erase::logs_of(&removed);
        let paths: Vec<PathBuf> = removed
            .iter()
            .flat_map(|s| {
                ["log", "index", "timeindex"]
                    .map(|ext| self.dir.join(segment::file_name(s.base_offset, ext)))
            })
            .collect();
        drop(removed);
        // Unlinking is a burst of blocking syscalls: off the reactor.
        let writers = glommio::executor()
            .spawn_blocking(move || {
                let writers = super::erase::open_writers(&log_paths);
                for path in &paths {
                    remove_if_present(path)?;
                }
                Ok::<_, StorageError>(writers)
            })
            .await?;
        super::erase::later(logs, writers);
        Ok(count)
    }

    /// The active segment holds data, all of it written, all of it older than `cutoff_ms`.
    fn active_is_expired(&self, cutoff_ms: i64) -> bool {
        let state = self.state.borrow();
        let active = state
            .segments
            .last()
            .expect("a log always has an active segment");
        active.assigned_size > 0
            && active.durable_size == active.assigned_size
            && state.pending.is_empty()
            && !state.flushing
            && active.max_timestamp < cutoff_ms
    }

    /// Closes the active segment and starts an empty one at the log end, creating its files
    /// at once (which syncs the closed segment), so the closed one becomes deletable.
    async fn roll_idle_active(&self) -> Result<(), StorageError> {
        let base = {
            let mut state = self.state.borrow_mut();
            let base = state.log_end_offset;
            state.segments.push(Segment::new(base));
            base
        };
        let files: Rc<SegmentFiles> = self.segment_files(base).await?;
        drop(files);
        Ok(())
    }
}

/// How many segments from the front may be deleted: closed (not the last), fully written,
/// with nothing pending, and followed by a segment that has files (the closing sync is done).
pub(super) fn deletable_prefix(segments: &[Segment], pending: &[super::PendingWrite]) -> usize {
    let mut n = 0;
    while n + 1 < segments.len() {
        let segment = &segments[n];
        let next = &segments[n + 1];
        let written = segment.durable_size == segment.assigned_size
            && !pending
                .iter()
                .any(|p| p.segment_base == segment.base_offset);
        if !(written && next.files.is_some()) {
            break;
        }
        n += 1;
    }
    n
}

/// Reads the checkpointed log start offset, if any. A checkpoint that does not parse is
/// ignored with a warning: the start then falls back to the first segment's base, which
/// can only make records a DeleteRecords had hidden readable again. The broker must not
/// refuse to start over a damaged checkpoint.
pub(super) fn read_log_start_checkpoint(dir: &Path) -> Result<Option<i64>, StorageError> {
    match read_offset_file(dir, LOG_START_CHECKPOINT) {
        Err(e @ StorageError::Corrupt { .. }) => {
            tracing::warn!("{e}; the log starts at its first segment");
            Ok(None)
        }
        other => other,
    }
}

/// Reads an offset file of the partition directory (a checkpoint), if there is one.
pub(super) fn read_offset_file(dir: &Path, name: &str) -> Result<Option<i64>, StorageError> {
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => parse_offset_file(&bytes)
            .map(Some)
            .ok_or_else(|| StorageError::Corrupt {
                path,
                reason: format!("{:?} is not an offset", String::from_utf8_lossy(&bytes)),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("reading", path)(e)),
    }
}

/// An offset file's contents (the log-start and cleaner checkpoints): an offset in decimal,
/// nothing else but whitespace around it.
pub fn parse_offset_file(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// Writes an offset file of the partition directory atomically: a temporary file, fsync,
/// rename, and a sync of the directory.
pub(super) async fn write_offset_file(
    dir: &Path,
    name: &str,
    offset: i64,
) -> Result<(), StorageError> {
    let dir = dir.to_owned();
    let name = name.to_owned();
    glommio::executor()
        .spawn_blocking(move || {
            use std::io::Write;
            let path = dir.join(&name);
            let tmp = dir.join(format!("{name}.tmp"));
            let mut file =
                std::fs::File::create(&tmp).map_err(StorageError::io("creating", &tmp))?;
            file.write_all(offset.to_string().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(StorageError::io("writing", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(StorageError::io("renaming", &tmp))?;
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(StorageError::io("syncing", &dir))
        })
        .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{all_bases, batch, read_slice, run, small_segments};
    use super::super::{LogConfig, PartitionLog};
    use super::RetentionPolicy;
    use crate::error::StorageError;

    #[test]
    fn a_deleted_segment_is_freed_only_after_its_last_reader_is_done() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), small_segments())
                .await
                .unwrap();
            for i in 0..20 {
                log.append(&batch(&[&[b'v'; 200]], i)).await.unwrap();
            }
            let first = dir.join("00000000000000000000.log");
            let size = std::fs::metadata(&first).unwrap().len();
            // The test's own view of the inode, which the eraser does not wait for.
            let observer = std::fs::File::open(&first).unwrap();
            let held = log.read(0, 1 << 20, true).await.unwrap().unwrap();
            let before = read_slice(&held);
            let policy = RetentionPolicy {
                retention_ms: Some(100),
                retention_bytes: None,
            };
            assert!(log.apply_retention(policy, 1000).await.unwrap() > 0);
            assert!(!first.exists(), "the name goes at once");
            glommio::timer::sleep(Duration::from_millis(200)).await;
            assert_eq!(
                observer.metadata().unwrap().len(),
                size,
                "a reader holds it"
            );
            assert_eq!(
                read_slice(&held),
                before,
                "what a reader sees never changes"
            );
            assert!(super::super::erase_backlog_bytes() >= size);
            drop(held);
            super::super::testing::until_erased().await;
            assert_eq!(super::super::erase_backlog_bytes(), 0);
            assert_eq!(
                observer.metadata().unwrap().len(),
                0,
                "its blocks are freed"
            );
        });
    }

    #[test]
    fn time_retention_deletes_old_closed_segments_and_moves_the_start() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), small_segments())
                .await
                .unwrap();
            for i in 0..20 {
                log.append(&batch(&[&[b'v'; 200]], i * 10)).await.unwrap();
            }
            let segments = log.segment_count();
            assert!(segments > 3);
            // Keep records newer than t=100: batches 0..=9 (timestamps 0..90) may go, but
            // only in whole segments.
            let policy = RetentionPolicy {
                retention_ms: Some(100),
                retention_bytes: None,
            };
            let deleted = log.apply_retention(policy, 200).await.unwrap();
            assert!(deleted > 0);
            // Every file of each deleted segment is gone.
            let names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            let start = log.log_start_offset();
            let first_kept = names
                .iter()
                .filter_map(|n| n.split('.').next()?.parse::<i64>().ok())
                .min();
            assert!(first_kept.is_some_and(|b| b <= start && b > 0), "{names:?}");
            assert_eq!(
                names
                    .iter()
                    .filter(|n| n.starts_with("00000000000000000000."))
                    .count(),
                0,
                "the first segment's log and indexes are all gone: {names:?}"
            );
            assert!(start > 0 && start <= 10, "start {start}");
            assert_eq!(all_bases(&log).await, (start..20).collect::<Vec<_>>());
            assert!(matches!(
                log.read(0, 1024, true).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            // The start survives a restart.
            drop(log);
            let log = PartitionLog::open(dir, small_segments()).await.unwrap();
            assert_eq!(log.log_start_offset(), start);
        });
    }

    #[test]
    fn an_idle_expired_log_empties_completely() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), LogConfig::default())
                .await
                .unwrap();
            for i in 0..5 {
                log.append(&batch(&[b"x"], i)).await.unwrap();
            }
            let policy = RetentionPolicy {
                retention_ms: Some(10),
                retention_bytes: None,
            };
            assert_eq!(log.apply_retention(policy, 1_000).await.unwrap(), 1);
            assert_eq!(log.log_start_offset(), 5);
            assert_eq!(log.high_watermark(), 5);
            assert_eq!(log.log_end_offset(), 5);
            let next = log.append(&batch(&[b"y"], 2_000)).await.unwrap();
            assert_eq!(
                next.base_offset, 5,
                "offsets continue after the deleted data"
            );
            drop(log);
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 6));
        });
    }

    #[test]
    fn size_retention_keeps_the_newest_segments_under_the_limit() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, small_segments()).await.unwrap();
            for i in 0..30 {
                log.append(&batch(&[&[b'v'; 200]], i)).await.unwrap();
            }
            let limit = 2_500;
            let policy = RetentionPolicy {
                retention_ms: None,
                retention_bytes: Some(limit),
            };
            assert!(log.apply_retention(policy, 0).await.unwrap() > 0);
            // Kafka's rule: a segment goes only if the log is still at least the limit
            // without it, so what is kept is within one segment above the limit.
            let kept = log.size_bytes();
            assert!(kept >= limit && kept < limit + 1024, "{kept} bytes kept");
            assert_eq!(log.log_end_offset(), 30);
        });
    }

    #[test]
    fn delete_records_moves_the_start_inside_a_segment_and_survives_restart() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), small_segments())
                .await
                .unwrap();
            for i in 0..20 {
                log.append(&batch(&[&[b'v'; 200]], i)).await.unwrap();
            }
            assert!(matches!(
                log.delete_records_before(21).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            let segments = log.segment_count();
            assert_eq!(log.delete_records_before(7).await.unwrap(), 7);
            assert!(
                log.segment_count() < segments,
                "segments wholly below 7 went"
            );
            assert_eq!(
                log.delete_records_before(3).await.unwrap(),
                7,
                "never backwards"
            );
            assert!(log.read(6, 1024, true).await.is_err());
            let first = log.read(7, 1, true).await.unwrap().unwrap();
            let bases = super::super::testing::bases(&super::super::testing::read_slice(&first));
            assert_eq!(bases, vec![7]);
            assert_eq!(
                log.delete_records_before(-1).await.unwrap(),
                20,
                "-1: up to the high watermark"
            );
            drop(log);
            let log = PartitionLog::open(dir, small_segments()).await.unwrap();
            assert_eq!(log.log_start_offset(), 20);
            assert_eq!(log.log_end_offset(), 20);
        });
    }
}
