//! Opening a partition's log: loading its segments and recovering from a crash.
//!
//! Control plane (runs once per partition at start or creation). After a crash the active
//! (last) segment is re-validated batch by batch with CRCs from its recovery checkpoint
//! (`checkpoint.rs`: the point up to which it and its index entries were known synced) or,
//! when there is no usable checkpoint, from its start; a torn or corrupt tail is truncated
//! away. Closed segments were synced whole when they were closed, so their indexes are
//! trusted if well-formed and only their tail after the last index entry is walked.
//! Recovery must never keep a batch past the checkpoint it has not checked, nor serve an
//! index that points outside its log.

use std::path::Path;
use std::rc::Rc;

use super::checkpoint::{self, Recovered, RecoveryCheckpoint, RecoveryReport};
use super::{LogConfig, PartitionLog};
use crate::error::StorageError;
use crate::flush_gate::FlushGate;
use crate::index::{OffsetIndex, TimeIndex, OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};
use crate::segment::{self, Segment, SegmentFiles};

/// How the process that last wrote a log stopped, which decides how much recovery trusts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastShutdown {
    /// Everything was written, synced (indexes too) and closed: the active segment is
    /// loaded like a closed one, from its indexes, without re-reading its batches.
    Clean,
    /// A crash or kill: the active segment is re-validated batch by batch with CRCs, from
    /// its recovery checkpoint when it has a usable one.
    Unclean,
}

impl PartitionLog {
    /// Opens the log in `dir` (created if missing) and recovers it: the last segment is
    /// re-validated batch by batch (after its recovery checkpoint, if it has one) and a
    /// torn or corrupt tail is truncated away; indexes that are missing or malformed are
    /// rebuilt.
    pub async fn open(
        dir: std::path::PathBuf,
        config: LogConfig,
    ) -> Result<Rc<Self>, StorageError> {
        Self::open_after(dir, config, LastShutdown::Unclean, FlushGate::unlimited()).await
    }

    /// Opens the log, trusting the active segment as far as `last` allows. A clean shutdown
    /// makes a restart cost index reads, not a CRC pass over every active segment. Its
    /// flushes go through `flush_gate`, the limit its shard shares among its logs.
    pub async fn open_after(
        dir: std::path::PathBuf,
        config: LogConfig,
        last: LastShutdown,
        flush_gate: Rc<FlushGate>,
    ) -> Result<Rc<Self>, StorageError> {
        // Plain syscalls: once per partition, at creation or start, never on the data path.
        crate::partition_dir::create_durably(&dir)?;
        super::compaction::remove_leftovers(&dir)?;
        let bases = list_segments(&dir)?;
        let on_file = checkpoint::read(&dir)?;
        let mut recovered = Recovered::default();
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            if let Some(previous) = segments.last() {
                if previous.next_offset > base {
                    return Err(StorageError::Corrupt {
                        path: dir.join(segment::file_name(base, "log")),
                        reason: format!(
                            "segment starts at {base} but the one before ends at {}",
                            previous.next_offset
                        ),
                    });
                }
            }
            let segment = if i + 1 == bases.len() && last == LastShutdown::Unclean {
                let (segment, how) = recover_active_segment(&dir, base, &config, on_file).await?;
                trace_recovery(&dir, &how.report);
                recovered = how;
                segment
            } else {
                load_closed_segment(&dir, base, &config).await?
            };
            segments.push(segment);
        }
        let checkpoint = super::retention::read_log_start_checkpoint(&dir)?;
        if segments.is_empty() {
            // A log whose every segment went (retention rolled and deleted them) starts again
            // where its start checkpoint says, never back at 0, which would hand out
            // offsets consumers have already read.
            let base = checkpoint.unwrap_or(0).max(0);
            let mut active = Segment::new(base);
            active.files = Some(Rc::new(SegmentFiles::open(&dir, base).await?));
            // The new files' names must be durable before the first write to them is
            // acknowledged; a roll does the same for the segments after this one.
            sync_dir(&dir).await?;
            segments.push(active);
        }
        let log = PartitionLog::new(dir, config, segments, flush_gate);
        log.recovery_opened(recovered, on_file, last == LastShutdown::Clean);
        if let Some(start) = checkpoint {
            // DeleteRecords moved the start past the first segment's base. Never past the
            // end: recovery may have cut a torn tail the checkpoint was taken beyond.
            let mut state = log.state.borrow_mut();
            state.log_start_offset = start.max(state.log_start_offset).min(state.log_end_offset);
        }
        log.load_producers(last).await?;
        Ok(log)
    }
}

/// One line per partition, at debug level: after a crash a broker opens thousands.
fn trace_recovery(dir: &Path, report: &RecoveryReport) {
    tracing::debug!(
        "{}: re-validated from {}: {} batches, {} bytes; {} bytes cut",
        dir.display(),
        if report.from_checkpoint {
            "its recovery checkpoint"
        } else {
            "the segment start"
        },
        report.batches_checked,
        report.bytes_checked,
        report.bytes_truncated
    );
}

/// fsync of the directory through io_uring, so the reactor does not block on it.
pub(super) async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let handle = glommio::io::Directory::open(dir)
        .await
        .map_err(StorageError::glommio("opening", dir))?;
    handle
        .sync()
        .await
        .map_err(StorageError::glommio("syncing", dir))
}

/// Offsets of the segment files in `dir`, sorted.
fn list_segments(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(StorageError::io("listing", dir))? {
        let entry = entry.map_err(StorageError::io("listing", dir))?;
        if let Some(base) = entry.file_name().to_str().and_then(segment::parse_log_name) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

async fn log_size(files: &SegmentFiles) -> Result<u64, StorageError> {
    files
        .log
        .file_size()
        .await
        .map_err(StorageError::glommio("reading size of", &files.log_path))
}

/// Loads a closed segment from its index files, walking only the batches after the last
/// offset index entry (at most about `index_interval_bytes`) to learn where it ends. Falls
/// back to a full scan when the indexes are missing, malformed, or disagree with the log.
async fn load_closed_segment(
    dir: &Path,
    base: i64,
    config: &LogConfig,
) -> Result<Segment, StorageError> {
    let files = Rc::new(SegmentFiles::open(dir, base).await?);
    let size = log_size(&files).await?;
    let index = segment::read_index_file(&files.index, OFFSET_ENTRY_BYTES, size, &files.log_path)
        .await?
        .and_then(|bytes| OffsetIndex::decode(&bytes, size));
    let time_index =
        segment::read_index_file(&files.time_index, TIME_ENTRY_BYTES, size, &files.log_path)
            .await?
            .and_then(|bytes| TimeIndex::decode(&bytes));
    let (Some(index), Some(time_index)) = (index, time_index) else {
        return Ok(rebuild_segment(files, base, size, config, false).await?.0);
    };
    if size > 0 && time_index.is_empty() {
        // Every segment with a batch has a time index entry: this one was lost.
        return Ok(rebuild_segment(files, base, size, config, false).await?.0);
    }
    let (last_relative, last_position) = index.last().unwrap_or((0, 0));
    let mut segment = Segment::new(base);
    segment.max_timestamp = time_index.last().map_or(i64::MIN, |(t, _)| t);
    let tail_start = u64::from(last_position);
    let expected = base + i64::from(last_relative);
    let mut next_offset = expected;
    let mut max_timestamp = segment.max_timestamp;
    // Headers only: this segment's CRCs were checked while it was active, and reading the
    // last batch whole would cost up to a batch (a MiB) per segment at every start.
    let valid_end =
        segment::walk_headers(&files, tail_start, size, expected, false, |_, header| {
            next_offset = header.next_offset();
            max_timestamp = max_timestamp.max(header.max_timestamp);
        })
        .await?;
    let time_index_fits = time_index
        .last()
        .is_none_or(|(_, relative)| base + i64::from(relative) < next_offset);
    if valid_end != size || !time_index_fits || (size > 0 && next_offset == expected) {
        return Ok(rebuild_segment(files, base, size, config, false).await?.0);
    }
    segment.next_offset = next_offset;
    segment.max_timestamp = max_timestamp;
    segment.assigned_size = size;
    segment.durable_size = size;
    segment.index_persisted = index.len();
    segment.time_index_persisted = time_index.len();
    segment.index = index;
    segment.time_index = time_index;
    segment.files = Some(files);
    Ok(segment)
}

/// Re-validates the active segment with CRCs, truncating a torn or corrupt tail, and
/// rebuilds its indexes: from its recovery checkpoint when the checkpoint names this
/// segment and agrees with its files, otherwise from its start.
async fn recover_active_segment(
    dir: &Path,
    base: i64,
    config: &LogConfig,
    checkpoint: Option<RecoveryCheckpoint>,
) -> Result<(Segment, Recovered), StorageError> {
    let files = Rc::new(SegmentFiles::open(dir, base).await?);
    let size = log_size(&files).await?;
    match checkpoint {
        Some(checkpoint) if checkpoint.point.segment_base == base => {
            if let Some(trusted) = segment_up_to(&files, base, size, &checkpoint).await? {
                return recover_tail(files, size, config, checkpoint, trusted).await;
            }
            tracing::warn!(
                "{}: the recovery checkpoint does not fit the segment ({checkpoint:?}); \
                 re-validating all of it",
                files.log_path.display()
            );
        }
        // Taken in an older segment: this one has none yet.
        Some(_) | None => {}
    }
    let (segment, report) = rebuild_segment(files, base, size, config, true).await?;
    Ok((
        segment,
        Recovered {
            report,
            checkpoint: None,
        },
    ))
}

/// The segment as a checkpoint says it was up to its point, if its files agree: the point
/// lies inside the log, the entries it trusts are in the index files, well-formed and below
/// the point, and the batch headers after the last trusted index entry lead exactly to the
/// point and its offset. Nothing below the point is CRC-checked: it was synced before the
/// checkpoint was taken. None means the checkpoint cannot be used.
async fn segment_up_to(
    files: &SegmentFiles,
    base: i64,
    size: u64,
    checkpoint: &RecoveryCheckpoint,
) -> Result<Option<Segment>, StorageError> {
    let point = checkpoint.point;
    let relative_end = point.next_offset.wrapping_sub(base);
    if point.position > size
        || !(0..=i64::from(u32::MAX)).contains(&relative_end)
        || (point.position == 0) != (relative_end == 0)
    {
        return Ok(None);
    }
    let path = &files.log_path;
    let entries = checkpoint.index_entries as usize;
    let index = segment::read_index_prefix(
        &files.index,
        OFFSET_ENTRY_BYTES,
        entries,
        point.position,
        path,
    )
    .await?
    .and_then(|bytes| OffsetIndex::decode(&bytes, point.position));
    let entries = checkpoint.time_index_entries as usize;
    let time_index = segment::read_index_prefix(
        &files.time_index,
        TIME_ENTRY_BYTES,
        entries,
        point.position,
        path,
    )
    .await?
    .and_then(|bytes| TimeIndex::decode(&bytes));
    let (Some(index), Some(time_index)) = (index, time_index) else {
        return Ok(None);
    };
    let below_end = |relative: u32| i64::from(relative) < relative_end;
    if !index.last().is_none_or(|(r, _)| below_end(r))
        || !time_index.last().is_none_or(|(_, r)| below_end(r))
    {
        return Ok(None);
    }
    let (walk_relative, walk_from) = index.last().unwrap_or((0, 0));
    let mut next_offset = base + i64::from(walk_relative);
    // The time index is sparse: the batches walked may be newer than its last entry.
    let mut max_timestamp = time_index.last().map_or(i64::MIN, |(t, _)| t);
    let walked_to = segment::walk_headers(
        files,
        u64::from(walk_from),
        point.position,
        next_offset,
        true,
        |_, header| {
            next_offset = header.next_offset();
            max_timestamp = max_timestamp.max(header.max_timestamp);
        },
    )
    .await?;
    if walked_to != point.position || next_offset != point.next_offset {
        return Ok(None);
    }
    let mut segment = Segment::new(base);
    segment.next_offset = point.next_offset;
    segment.max_timestamp = max_timestamp;
    segment.first_batch_timestamp = time_index.first().map(|(t, _)| t);
    // As `Segment::note_batch` counts: bytes since the batch of the last index entry.
    segment.bytes_since_index = point.position - u64::from(walk_from);
    segment.assigned_size = point.position;
    segment.durable_size = point.position;
    segment.index_persisted = index.len();
    segment.time_index_persisted = time_index.len();
    segment.index = index;
    segment.time_index = time_index;
    Ok(Some(segment))
}

/// Re-validates a segment from its checkpoint's point (`trusted` holds what comes before
/// it), truncating a torn or corrupt tail, and rewrites the index entries past the trusted
/// ones. They are not synced here: the next checkpoint syncs them before trusting them.
async fn recover_tail(
    files: Rc<SegmentFiles>,
    size: u64,
    config: &LogConfig,
    checkpoint: RecoveryCheckpoint,
    mut segment: Segment,
) -> Result<(Segment, Recovered), StorageError> {
    let interval = u64::from(config.index_interval_bytes.max(1));
    let (start, expected) = (segment.assigned_size, segment.next_offset);
    let trusted = (segment.index.len(), segment.time_index.len());
    let mut report = RecoveryReport {
        from_checkpoint: true,
        ..RecoveryReport::default()
    };
    let valid_end = segment::scan(&files, start, size, expected, true, |position, header| {
        segment.note_batch(position, header, interval);
        report.batches_checked += 1;
    })
    .await?;
    report.bytes_checked = valid_end - start;
    report.bytes_truncated = truncate_tail(&files, valid_end, size).await?;
    segment.assigned_size = valid_end;
    segment.durable_size = valid_end;
    write_indexes_from(&files, &segment, trusted).await?;
    segment.index_persisted = segment.index.len();
    segment.time_index_persisted = segment.time_index.len();
    segment.files = Some(files);
    let recovered = Recovered {
        report,
        checkpoint: Some(checkpoint),
    };
    Ok((segment, recovered))
}

/// Cuts the log at `valid_end` if it is longer, synced; returns the bytes cut.
async fn truncate_tail(
    files: &SegmentFiles,
    valid_end: u64,
    size: u64,
) -> Result<u64, StorageError> {
    if valid_end >= size {
        return Ok(0);
    }
    tracing::warn!(
        "{}: truncating {} bytes of torn or corrupt tail at byte {valid_end}",
        files.log_path.display(),
        size - valid_end
    );
    files
        .log
        .truncate(valid_end)
        .await
        .map_err(StorageError::glommio("truncating", &files.log_path))?;
    files
        .log
        .fdatasync()
        .await
        .map_err(StorageError::glommio("syncing", &files.log_path))?;
    Ok(size - valid_end)
}

/// Scans a segment from its start, keeping the valid prefix (truncating the rest) and
/// rewriting its index files to match. `check_crc` for the active segment; a closed one
/// was checked when it was active, so its headers only need walking.
async fn rebuild_segment(
    files: Rc<SegmentFiles>,
    base: i64,
    size: u64,
    config: &LogConfig,
    check_crc: bool,
) -> Result<(Segment, RecoveryReport), StorageError> {
    let mut segment = Segment::new(base);
    let mut report = RecoveryReport::default();
    let interval = u64::from(config.index_interval_bytes.max(1));
    let valid_end = segment::scan(&files, 0, size, base, check_crc, |position, header| {
        segment.note_batch(position, header, interval);
        report.batches_checked += u64::from(check_crc);
    })
    .await?;
    if check_crc {
        report.bytes_checked = valid_end;
    }
    report.bytes_truncated = truncate_tail(&files, valid_end, size).await?;
    segment.assigned_size = valid_end;
    segment.durable_size = valid_end;
    rewrite_indexes(&files, &segment).await?;
    segment.index_persisted = segment.index.len();
    segment.time_index_persisted = segment.time_index.len();
    segment.files = Some(files);
    Ok((segment, report))
}

/// Replaces a segment's index files with its in-memory indexes, synced: a closed segment's
/// indexes are trusted at the next open.
async fn rewrite_indexes(files: &SegmentFiles, segment: &Segment) -> Result<(), StorageError> {
    write_indexes_from(files, segment, (0, 0)).await?;
    files.sync_indexes().await
}

/// Makes a segment's index files hold its in-memory indexes, keeping the first `from`
/// (offset index, time index) entries in the files as they are and rewriting the rest; a
/// file that holds exactly the kept entries and gets none is left alone. Not synced.
async fn write_indexes_from(
    files: &SegmentFiles,
    segment: &Segment,
    from: (usize, usize),
) -> Result<(), StorageError> {
    for (file, bytes, keep) in [
        (
            &files.index,
            segment.index.encode_from(from.0),
            (from.0 * OFFSET_ENTRY_BYTES) as u64,
        ),
        (
            &files.time_index,
            segment.time_index.encode_from(from.1),
            (from.1 * TIME_ENTRY_BYTES) as u64,
        ),
    ] {
        let size = file.file_size().await.map_err(StorageError::glommio(
            "reading size of index of",
            &files.log_path,
        ))?;
        if size == keep && bytes.is_empty() {
            continue;
        }
        file.truncate(keep).await.map_err(StorageError::glommio(
            "truncating index of",
            &files.log_path,
        ))?;
        if !bytes.is_empty() {
            let len = bytes.len();
            let written = file
                .write_at(bytes, keep)
                .await
                .map_err(StorageError::glommio("writing index of", &files.log_path))?;
            if written != len {
                return Err(StorageError::Io {
                    op: "writing index of",
                    path: files.log_path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        format!("short write: {written} of {len} bytes"),
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::super::testing::{all_bases, batch, run, small_segments};
    use super::super::{LogConfig, PartitionLog};
    use crate::error::StorageError;
    use crate::flush_gate::FlushGate;
    use crate::segment;

    #[test]
    fn a_garbage_start_checkpoint_is_ignored_not_fatal() {
        run(|dir| async move {
            {
                let log = PartitionLog::open(dir.clone(), LogConfig::default())
                    .await
                    .unwrap();
                log.append(&batch(&[b"a", b"b"], 1)).await.unwrap();
            }
            std::fs::write(dir.join("log-start-offset"), b"\xff\x00garbage").unwrap();
            let log = PartitionLog::open(dir.clone(), LogConfig::default())
                .await
                .expect("a damaged checkpoint does not keep the log from opening");
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 2));
        });
    }

    #[test]
    fn a_log_whose_segments_all_went_starts_at_its_start_checkpoint_not_at_zero() {
        run(|dir| async move {
            // What a crash leaves after retention deleted every segment and before the new
            // empty one's name reached the disk: the start checkpoint alone.
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("log-start-offset"), "42").unwrap();
            let log = PartitionLog::open(dir.clone(), LogConfig::default())
                .await
                .unwrap();
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (42, 42));
            let next = log.append(&batch(&[b"after"], 1)).await.unwrap();
            assert_eq!(
                next.base_offset, 42,
                "offsets already handed out are not reused"
            );
        });
    }

    #[test]
    fn the_time_index_is_as_sparse_as_the_offset_index_and_timestamps_survive_a_restart() {
        run(|dir| async move {
            let config = LogConfig {
                index_interval_bytes: 1000,
                segment_bytes: 8192,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.clone(), config.clone())
                .await
                .unwrap();
            for i in 0..300 {
                log.append(&batch(&[&[7u8; 100][..]], i * 10))
                    .await
                    .unwrap();
            }
            log.flush().await.unwrap();
            let segments = log.segment_count();
            assert!(segments > 2, "closed segments and an active one");
            for segment in &log.state.borrow().segments {
                assert!(
                    segment.time_index.len() <= segment.index.len() + 1,
                    "{} time index entries for {} offset index entries",
                    segment.time_index.len(),
                    segment.index.len()
                );
            }
            drop(log);
            for last_shutdown in [super::LastShutdown::Clean, super::LastShutdown::Unclean] {
                let log = PartitionLog::open_after(
                    dir.clone(),
                    config.clone(),
                    last_shutdown,
                    FlushGate::unlimited(),
                )
                .await
                .unwrap();
                assert_eq!(log.segment_count(), segments);
                assert_eq!(
                    log.max_timestamp(),
                    Some(2990),
                    "the newest batch lies past the last time index entry"
                );
                for segment in &log.state.borrow().segments[..segments - 1] {
                    let last = segment.next_offset - 1;
                    assert_eq!(
                        segment.max_timestamp,
                        last * 10,
                        "segment {}",
                        segment.base_offset
                    );
                }
                for i in 0..300 {
                    assert_eq!(
                        log.offset_for_timestamp(i * 10 - 5).await.unwrap(),
                        Some((i, i * 10)),
                        "after a {last_shutdown:?} shutdown"
                    );
                }
                assert_eq!(log.offset_for_timestamp(2991).await.unwrap(), None);
            }
        });
    }

    #[test]
    fn after_a_clean_shutdown_the_active_segment_is_loaded_from_its_indexes() {
        run(|dir| async move {
            let config = LogConfig {
                index_interval_bytes: 100,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.clone(), config.clone())
                .await
                .unwrap();
            for i in 0..100 {
                log.append(&batch(&[b"0123456789"], i)).await.unwrap();
            }
            log.flush().await.unwrap();
            let (hw, size) = (log.high_watermark(), log.size_bytes());
            drop(log);
            let log = PartitionLog::open_after(
                dir.clone(),
                config.clone(),
                super::LastShutdown::Clean,
                FlushGate::unlimited(),
            )
            .await
            .unwrap();
            assert_eq!((log.high_watermark(), log.size_bytes()), (hw, size));
            assert_eq!(all_bases(&log).await, (0..100).collect::<Vec<_>>());
            assert_eq!(log.offset_for_timestamp(57).await.unwrap(), Some((57, 57)));
            let next = log.append(&batch(&[b"more"], 200)).await.unwrap();
            assert_eq!(next.base_offset, 100);
            log.flush().await.unwrap();
            drop(log);
            // A full recovery of the same files agrees.
            let log = PartitionLog::open(dir, config).await.unwrap();
            assert_eq!(all_bases(&log).await, (0..101).collect::<Vec<_>>());
        });
    }

    #[test]
    fn reopen_after_flush_shows_the_same_log() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), small_segments())
                .await
                .unwrap();
            for i in 0..40 {
                log.append(&batch(
                    &[format!("value-{i:04}-padding-padding").as_bytes()],
                    i,
                ))
                .await
                .unwrap();
            }
            let segments = log.segment_count();
            let size = log.size_bytes();
            assert!(segments > 3);
            log.flush().await.unwrap();
            drop(log);
            let log = PartitionLog::open(dir.clone(), small_segments())
                .await
                .unwrap();
            assert_eq!(log.segment_count(), segments);
            assert_eq!(log.size_bytes(), size);
            assert_eq!(log.log_start_offset(), 0);
            assert_eq!(log.high_watermark(), 40);
            assert_eq!(log.log_end_offset(), 40);
            assert_eq!(all_bases(&log).await, (0..40).collect::<Vec<_>>());
            assert_eq!(
                log.offset_for_timestamp(17).await.unwrap(),
                Some((17, 17)),
                "closed segments' time indexes were loaded"
            );
            let next = log.append(&batch(&[b"after"], 99)).await.unwrap();
            assert_eq!(next.base_offset, 40);
        });
    }

    #[test]
    fn recovery_truncates_a_torn_or_scribbled_tail() {
        for damage in ["torn", "scribbled", "zeros", "no-index", "garbage-index"] {
            run(move |dir| async move {
                let config = LogConfig {
                    index_interval_bytes: 50,
                    ..LogConfig::default()
                };
                let log = PartitionLog::open(dir.clone(), config.clone())
                    .await
                    .unwrap();
                for i in 0..5 {
                    log.append(&batch(&[b"0123456789"], i)).await.unwrap();
                }
                log.flush().await.unwrap();
                drop(log);
                // The damage lands past the recovery checkpoint: here there is none (its
                // own tests are in `checkpoint_tests`), so all of the segment is re-validated.
                std::fs::remove_file(dir.join(super::super::RECOVERY_CHECKPOINT_FILE)).unwrap();
                let log_path = dir.join(segment::file_name(0, "log"));
                let index_path = dir.join(segment::file_name(0, "index"));
                let size = std::fs::metadata(&log_path).unwrap().len();
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&log_path)
                    .unwrap();
                match damage {
                    "torn" => file.set_len(size - 7).unwrap(),
                    "scribbled" => file.write_all_at(b"garbage!", size - 20).unwrap(),
                    "zeros" => file.write_all_at(&[0; 300], size).unwrap(),
                    "no-index" => std::fs::remove_file(&index_path).unwrap(),
                    _ => std::fs::write(&index_path, [0xff; 13]).unwrap(),
                }
                let log = PartitionLog::open(dir.clone(), config).await.unwrap();
                let kept = if damage == "torn" || damage == "scribbled" {
                    4
                } else {
                    5
                };
                assert_eq!(log.high_watermark(), kept, "{damage}");
                assert_eq!(log.log_end_offset(), kept, "{damage}");
                let batch_len = batch(&[b"0123456789"], 0).len() as u64;
                assert_eq!(
                    std::fs::metadata(&log_path).unwrap().len(),
                    kept as u64 * batch_len,
                    "{damage}: the file is cut at the last valid batch"
                );
                assert_eq!(
                    all_bases(&log).await,
                    (0..kept).collect::<Vec<_>>(),
                    "{damage}"
                );
                // Every batch after the first is indexed at this interval.
                assert_eq!(
                    std::fs::metadata(&index_path).unwrap().len(),
                    (kept as u64 - 1) * 8,
                    "{damage}: the index was rebuilt"
                );
                let next = log.append(&batch(&[b"next"], 9)).await.unwrap();
                assert_eq!(next.base_offset, kept, "{damage}");
            });
        }
    }

    #[test]
    fn closed_segments_with_lost_indexes_are_rebuilt() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), small_segments())
                .await
                .unwrap();
            for i in 0..30 {
                log.append(&batch(&[format!("closed-{i:04}-padding").as_bytes()], i))
                    .await
                    .unwrap();
            }
            log.flush().await.unwrap();
            drop(log);
            // The first (closed) segment loses both indexes; the second gets a time index
            // that points past its log.
            std::fs::remove_file(dir.join(segment::file_name(0, "index"))).unwrap();
            std::fs::remove_file(dir.join(segment::file_name(0, "timeindex"))).unwrap();
            let mut bases: Vec<i64> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| segment::parse_log_name(e.unwrap().file_name().to_str()?))
                .collect();
            bases.sort_unstable();
            assert!(bases.len() > 2);
            let mut bogus = Vec::new();
            bogus.extend_from_slice(&i64::MAX.to_be_bytes());
            bogus.extend_from_slice(&1000u32.to_be_bytes());
            std::fs::write(dir.join(segment::file_name(bases[1], "timeindex")), bogus).unwrap();

            let log = PartitionLog::open(dir.clone(), small_segments())
                .await
                .unwrap();
            assert_eq!(log.high_watermark(), 30);
            assert_eq!(all_bases(&log).await, (0..30).collect::<Vec<_>>());
            assert!(dir.join(segment::file_name(0, "index")).exists());
            for ts in [0, 3, bases[1], bases[1] + 1, 29] {
                assert_eq!(
                    log.offset_for_timestamp(ts).await.unwrap(),
                    Some((ts, ts)),
                    "timestamp {ts}"
                );
            }
        });
    }

    #[test]
    fn overlapping_segments_are_refused() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), LogConfig::default())
                .await
                .unwrap();
            for i in 0..3 {
                log.append(&batch(&[b"x"], i)).await.unwrap();
            }
            log.flush().await.unwrap();
            drop(log);
            // A second segment claiming to start inside the first.
            std::fs::copy(
                dir.join(segment::file_name(0, "log")),
                dir.join(segment::file_name(1, "log")),
            )
            .unwrap();
            assert!(matches!(
                PartitionLog::open(dir, LogConfig::default()).await,
                Err(StorageError::Corrupt { .. })
            ));
        });
    }
}

#[cfg(test)]
mod checkpoint_tests {
    //! Recovery from a checkpoint: only the tail after it is re-validated, and a checkpoint
    //! that cannot be trusted means a full scan, as without one.

    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::time::Duration;

    use super::super::testing::{all_bases, batch, run, small_segments};
    use super::super::{
        LogConfig, LogPoint, PartitionLog, RecoveryCheckpoint, RECOVERY_CHECKPOINT_FILE,
    };
    use crate::index::OFFSET_ENTRY_BYTES;
    use crate::segment;

    const VALUE: &[u8] = b"0123456789";

    fn config() -> LogConfig {
        LogConfig {
            index_interval_bytes: 100,
            ..LogConfig::default()
        }
    }

    fn batch_len() -> u64 {
        batch(&[VALUE], 0).len() as u64
    }

    fn checkpoint_on_disk(dir: &Path) -> Option<RecoveryCheckpoint> {
        let bytes = std::fs::read(dir.join(RECOVERY_CHECKPOINT_FILE)).ok()?;
        RecoveryCheckpoint::decode(&bytes).ok()
    }

    /// A log of `before` batches (offset = timestamp), checkpointed, then `after` more, and
    /// dropped without a flush: as a SIGKILL leaves it (every window was fdatasync'd).
    async fn crashed_log(dir: &Path, before: i64, after: i64) -> RecoveryCheckpoint {
        let log = PartitionLog::open(dir.to_path_buf(), config())
            .await
            .unwrap();
        for i in 0..before {
            log.append(&batch(&[VALUE], i)).await.unwrap();
        }
        assert!(log.write_recovery_checkpoint().await.unwrap());
        let checkpoint = log.recovery_checkpoint().expect("just written");
        for i in before..before + after {
            log.append(&batch(&[VALUE], i)).await.unwrap();
        }
        assert_eq!(checkpoint_on_disk(dir), Some(checkpoint));
        checkpoint
    }

    fn scribble(path: &Path, at: u64, bytes: &[u8]) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .write_all_at(bytes, at)
            .unwrap();
    }

    #[test]
    fn a_checkpoint_limits_the_rescan_to_the_tail_after_it() {
        run(|dir| async move {
            let checkpoint = crashed_log(&dir, 50, 10).await;
            assert_eq!(
                checkpoint.point,
                LogPoint {
                    segment_base: 0,
                    position: 50 * batch_len(),
                    next_offset: 50,
                }
            );
            assert!(checkpoint.index_entries > 10);
            assert!(
                (2..=checkpoint.index_entries + 1).contains(&checkpoint.time_index_entries),
                "the time index is as sparse as the offset index"
            );
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            let report = log.recovery_report();
            assert!(report.from_checkpoint);
            assert_eq!(
                report.batches_checked, 10,
                "only the tail after the checkpoint"
            );
            assert_eq!(report.bytes_checked, 10 * batch_len());
            assert_eq!(report.bytes_truncated, 0);
            assert_eq!(all_bases(&log).await, (0..60).collect::<Vec<_>>());
            for ts in [0, 7, 49, 50, 51, 59] {
                assert_eq!(
                    log.offset_for_timestamp(ts).await.unwrap(),
                    Some((ts, ts)),
                    "time index entries kept below the checkpoint and rebuilt above it"
                );
            }
            assert_eq!(
                log.append(&batch(&[b"next"], 60))
                    .await
                    .unwrap()
                    .base_offset,
                60
            );
            log.flush().await.unwrap();
            drop(log);
            // The indexes as left on disk are the ones a full rebuild makes.
            let index_path = dir.join(segment::file_name(0, "index"));
            let rebuilt_by_checkpoint = std::fs::read(&index_path).unwrap();
            std::fs::remove_file(dir.join(RECOVERY_CHECKPOINT_FILE)).unwrap();
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert!(!log.recovery_report().from_checkpoint);
            assert_eq!(log.recovery_report().batches_checked, 61);
            assert_eq!(std::fs::read(&index_path).unwrap(), rebuilt_by_checkpoint);
        });
    }

    #[test]
    fn corruption_before_the_checkpoint_is_not_rescanned_and_after_it_is_cut() {
        run(|dir| async move {
            crashed_log(&dir, 50, 10).await;
            let log_path = dir.join(segment::file_name(0, "log"));
            let len = batch_len();
            // Inside the values of batch 20 (below the checkpoint) and of batch 55 (above).
            scribble(&log_path, 21 * len - 5, b"XX");
            scribble(&log_path, 56 * len - 5, b"XX");
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            let report = log.recovery_report();
            assert!(report.from_checkpoint);
            assert_eq!(
                report.batches_checked, 5,
                "50..55 are valid, 55 ends the scan"
            );
            assert_eq!(report.bytes_truncated, 5 * len);
            assert_eq!(log.high_watermark(), 55);
            assert_eq!(std::fs::metadata(&log_path).unwrap().len(), 55 * len);
            // Batch 20 was synced before the checkpoint and is not re-read: it is served as
            // the disk holds it, and the CRC check is the consumer's (as in Kafka).
            let slice = log.read(20, 1 << 20, true).await.unwrap().unwrap();
            let bytes = super::super::testing::read_slice(&slice);
            assert!(crate::batch::parse_header(&bytes).is_ok_and(|h| h.base_offset == 20));
            assert!(crate::batch::check_batch(&bytes).is_err());
            drop(log);
            // Without the checkpoint, the same files are scanned whole and cut at batch 20.
            std::fs::remove_file(dir.join(RECOVERY_CHECKPOINT_FILE)).unwrap();
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert_eq!(log.recovery_report().batches_checked, 20);
            assert_eq!(all_bases(&log).await, (0..20).collect::<Vec<_>>());
        });
    }

    #[test]
    fn a_checkpoint_that_cannot_be_trusted_means_a_full_scan() {
        for damage in [
            "torn",
            "flipped",
            "zeros",
            "empty",
            "longer",
            "past-the-end",
            "off-a-batch-boundary",
            "wrong-offset",
            "more-index-entries-than-the-file",
            "index-entry-past-the-point",
            "other-segment",
            "scribbled-trusted-index",
        ] {
            run(move |dir| async move {
                let good = crashed_log(&dir, 30, 5).await;
                let path = dir.join(RECOVERY_CHECKPOINT_FILE);
                let mut bytes = good.encode();
                let rewrite = |change: fn(&mut RecoveryCheckpoint)| {
                    let mut c = good;
                    change(&mut c);
                    c.encode()
                };
                match damage {
                    "torn" => bytes.truncate(20),
                    "flipped" => bytes[16] ^= 1,
                    "zeros" => bytes.iter_mut().for_each(|b| *b = 0),
                    "empty" => bytes.clear(),
                    "longer" => bytes.extend_from_slice(b"tail"),
                    "past-the-end" => bytes = rewrite(|c| c.point.position += 1 << 20),
                    "off-a-batch-boundary" => bytes = rewrite(|c| c.point.position -= 1),
                    "wrong-offset" => bytes = rewrite(|c| c.point.next_offset += 1),
                    "more-index-entries-than-the-file" => {
                        bytes = rewrite(|c| c.index_entries = 1_000)
                    }
                    "index-entry-past-the-point" => {
                        // The trusted entries end where the next ones (past the point) begin.
                        bytes = rewrite(|c| c.index_entries += 1)
                    }
                    "other-segment" => bytes = rewrite(|c| c.point.segment_base = 7),
                    _ => scribble(&dir.join(segment::file_name(0, "index")), 8, &[0xff; 8]),
                }
                std::fs::write(&path, &bytes).unwrap();
                let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
                let report = log.recovery_report();
                assert!(!report.from_checkpoint, "{damage}");
                assert_eq!(report.batches_checked, 35, "{damage}: the whole segment");
                assert_eq!(
                    all_bases(&log).await,
                    (0..35).collect::<Vec<_>>(),
                    "{damage}"
                );
                assert_eq!(log.offset_for_timestamp(12).await.unwrap(), Some((12, 12)));
                assert_eq!(
                    log.append(&batch(&[b"next"], 35))
                        .await
                        .unwrap()
                        .base_offset,
                    35,
                    "{damage}"
                );
            });
        }
    }

    #[test]
    fn index_entries_past_the_checkpoint_are_rebuilt_not_trusted() {
        run(|dir| async move {
            let checkpoint = crashed_log(&dir, 30, 20).await;
            let index_path = dir.join(segment::file_name(0, "index"));
            let trusted_bytes = u64::from(checkpoint.index_entries) * OFFSET_ENTRY_BYTES as u64;
            // Entries after the trusted ones were never synced: a crash may leave anything.
            scribble(&index_path, trusted_bytes, &[0xee; 64]);
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert!(log.recovery_report().from_checkpoint);
            assert_eq!(log.recovery_report().batches_checked, 20);
            assert_eq!(all_bases(&log).await, (0..50).collect::<Vec<_>>());
            for offset in [0, 29, 30, 41, 49] {
                let slice = log.read(offset, 1 << 20, true).await.unwrap().unwrap();
                let first =
                    super::super::testing::headers(&super::super::testing::read_slice(&slice))[0];
                assert!(first.base_offset <= offset && offset < first.next_offset());
            }
            drop(log);
            let index = std::fs::read(&index_path).unwrap();
            let decoded = crate::index::OffsetIndex::decode(&index, 50 * batch_len())
                .expect("the index file is well-formed again");
            assert!(decoded.len() > checkpoint.index_entries as usize);
        });
    }

    #[test]
    fn a_relaxed_log_checkpoints_only_what_it_synced() {
        run(|dir| async move {
            let relaxed = LogConfig {
                flush_on_append: false,
                flush_messages: Some(10),
                ..config()
            };
            let log = PartitionLog::open(dir.clone(), relaxed.clone())
                .await
                .unwrap();
            for i in 0..25 {
                log.append(&batch(&[VALUE], i)).await.unwrap();
            }
            let synced = log.high_watermark() - log.unsynced_messages() as i64;
            assert_eq!(synced, 20, "flush.messages synced twice");
            assert!(log.write_recovery_checkpoint().await.unwrap());
            let checkpoint = checkpoint_on_disk(&dir).unwrap();
            assert!(
                checkpoint.point.next_offset > 0 && checkpoint.point.next_offset <= synced,
                "{checkpoint:?} must not run ahead of offset {synced}, the synced end"
            );
            // `flush` syncs the rest and checkpoints the log end.
            log.flush().await.unwrap();
            assert_eq!(checkpoint_on_disk(&dir).unwrap().point.next_offset, 25);

            // A relaxed log that never synced has nothing to checkpoint.
            let never = LogConfig {
                flush_on_append: false,
                ..config()
            };
            let other = dir.with_file_name("never-synced");
            let log = PartitionLog::open(other.clone(), never).await.unwrap();
            for i in 0..5 {
                log.append(&batch(&[VALUE], i)).await.unwrap();
            }
            assert!(!log.write_recovery_checkpoint().await.unwrap());
            assert_eq!(log.recovery_checkpoint(), None);
            assert!(!other.join(RECOVERY_CHECKPOINT_FILE).exists());
        });
    }

    #[test]
    fn the_writer_checkpoints_in_the_background_and_at_once_after_a_roll() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), small_segments())
                .await
                .unwrap();
            log.set_recovery_checkpoint_interval(Duration::from_millis(20));
            log.append(&batch(&[VALUE], 0)).await.unwrap();
            glommio::timer::sleep(Duration::from_millis(100)).await;
            let first = checkpoint_on_disk(&dir).expect("written within the interval");
            assert_eq!(first.point.next_offset, 1);

            log.set_recovery_checkpoint_interval(Duration::from_secs(3600));
            let mut i = 1;
            while log.segment_count() == 1 {
                log.append(&batch(&[format!("roll-{i:04}-padding").as_bytes()], i))
                    .await
                    .unwrap();
                i += 1;
            }
            glommio::timer::sleep(Duration::from_millis(50)).await;
            let after_roll = checkpoint_on_disk(&dir).unwrap();
            assert!(
                after_roll.point.segment_base > 0,
                "a roll does not wait an hour: {after_roll:?}"
            );
            assert_eq!(after_roll.point.next_offset, i);
        });
    }

    #[test]
    fn flush_checkpoints_the_log_end_and_delete_leaves_no_file_behind() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            for i in 0..10 {
                log.append(&batch(&[VALUE], i)).await.unwrap();
            }
            log.flush().await.unwrap();
            let checkpoint = checkpoint_on_disk(&dir).unwrap();
            assert_eq!(checkpoint.point.position, 10 * batch_len());
            drop(log);
            // A crash after a clean stop (the marker lost): nothing to re-validate.
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert!(log.recovery_report().from_checkpoint);
            assert_eq!(log.recovery_report().batches_checked, 0);
            assert_eq!(all_bases(&log).await, (0..10).collect::<Vec<_>>());

            log.set_recovery_checkpoint_interval(Duration::ZERO);
            log.append(&batch(&[VALUE], 10)).await.unwrap();
            log.clone().delete().await.unwrap();
            glommio::timer::sleep(Duration::from_millis(50)).await;
            assert!(
                !dir.exists(),
                "no checkpoint written into a deleted partition"
            );
        });
    }
}
