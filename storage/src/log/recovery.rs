//! Opening a partition's log: loading its segments and recovering from a crash.
//!
//! Control plane (runs once per partition at start or creation). The active (last) segment
//! is re-validated batch by batch with CRCs, and a torn or corrupt tail is truncated away;
//! closed segments were synced whole when they were closed, so their indexes are trusted if
//! well-formed and only their tail after the last index entry is walked. Recovery must never
//! keep a batch it has not checked, nor serve an index that points outside its log.

use std::path::Path;
use std::rc::Rc;

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
    /// A crash or kill: the active segment is re-validated batch by batch with CRCs.
    Unclean,
}

impl PartitionLog {
    /// Opens the log in `dir` (created if missing) and recovers it: the last segment is
    /// re-validated batch by batch and a torn or corrupt tail is truncated away; indexes
    /// that are missing or malformed are rebuilt.
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
        std::fs::create_dir_all(&dir).map_err(StorageError::io("creating", &dir))?;
        super::compaction::remove_leftovers(&dir)?;
        let bases = list_segments(&dir)?;
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
                recover_active_segment(&dir, base, &config).await?
            } else {
                load_closed_segment(&dir, base, &config).await?
            };
            segments.push(segment);
        }
        if segments.is_empty() {
            let mut active = Segment::new(0);
            active.files = Some(Rc::new(SegmentFiles::open(&dir, 0).await?));
            segments.push(active);
        }
        let checkpoint = super::retention::read_log_start_checkpoint(&dir)?;
        let log = PartitionLog::new(dir, config, segments, flush_gate);
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
        return rebuild_segment(files, base, size, config, false).await;
    };
    if size > 0 && time_index.is_empty() {
        // Every segment with a batch has a time index entry: this one was lost.
        return rebuild_segment(files, base, size, config, false).await;
    }
    let (last_relative, last_position) = index.last().unwrap_or((0, 0));
    let mut segment = Segment::new(base);
    segment.max_timestamp = time_index.last().map_or(i64::MIN, |(t, _)| t);
    let tail_start = u64::from(last_position);
    let expected = base + i64::from(last_relative);
    let mut next_offset = expected;
    let mut max_timestamp = segment.max_timestamp;
    let valid_end = segment::scan(&files, tail_start, size, expected, false, |_, header| {
        next_offset = header.next_offset();
        max_timestamp = max_timestamp.max(header.max_timestamp);
    })
    .await?;
    let time_index_fits = time_index
        .last()
        .is_none_or(|(_, relative)| base + i64::from(relative) < next_offset);
    if valid_end != size || !time_index_fits || (size > 0 && next_offset == expected) {
        return rebuild_segment(files, base, size, config, false).await;
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

/// Re-validates the active segment from its start, with CRCs, truncating a torn or corrupt
/// tail, and rebuilds its indexes.
async fn recover_active_segment(
    dir: &Path,
    base: i64,
    config: &LogConfig,
) -> Result<Segment, StorageError> {
    let files = Rc::new(SegmentFiles::open(dir, base).await?);
    let size = log_size(&files).await?;
    rebuild_segment(files, base, size, config, true).await
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
) -> Result<Segment, StorageError> {
    let mut segment = Segment::new(base);
    let interval = u64::from(config.index_interval_bytes.max(1));
    let valid_end = segment::scan(&files, 0, size, base, check_crc, |position, header| {
        segment.note_batch(position, header, interval);
    })
    .await?;
    if valid_end < size {
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
    }
    segment.assigned_size = valid_end;
    segment.durable_size = valid_end;
    rewrite_indexes(&files, &segment).await?;
    segment.index_persisted = segment.index.len();
    segment.time_index_persisted = segment.time_index.len();
    segment.files = Some(files);
    Ok(segment)
}

/// Replaces a segment's index files with its in-memory indexes, synced: a closed segment's
/// indexes are trusted at the next open.
async fn rewrite_indexes(files: &SegmentFiles, segment: &Segment) -> Result<(), StorageError> {
    for (file, bytes) in [
        (&files.index, segment.index.encode_from(0)),
        (&files.time_index, segment.time_index.encode_from(0)),
    ] {
        file.truncate(0).await.map_err(StorageError::glommio(
            "truncating index of",
            &files.log_path,
        ))?;
        if !bytes.is_empty() {
            let len = bytes.len();
            let written = file
                .write_at(bytes, 0)
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
    files.sync_indexes().await
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
