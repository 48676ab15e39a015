//! The log's idempotent-producer state (`crate::producer_state`): checked and updated as
//! batches are assigned offsets, snapshotted to the partition dir, rebuilt on open.
//!
//! A snapshot must never cover a batch that is not durable: a restart that loses the batch
//! but keeps the snapshot would answer the producer's retry as a duplicate of nothing. So a
//! snapshot is taken only when every assigned batch is durable (the log end equals the
//! synced end), after a segment roll and at clean shutdown. After a crash the state is the
//! last snapshot plus the batches after it, read back from their headers.

use std::path::{Path, PathBuf};

use super::{LastShutdown, PartitionLog};
use crate::batch::{self, BatchHeader};
use crate::error::StorageError;
use crate::producer_state::{snapshot, ProducerStateMap, SequenceCheck, PRODUCER_ID_EXPIRATION_MS};
use crate::segment;

impl PartitionLog {
    /// The sequence check of a produce payload, before anything changes. Plain batches (no
    /// producer id) cost one header parse each and no allocation.
    pub(super) fn check_producers(&self, records: &[u8]) -> Result<SequenceCheck, StorageError> {
        let mut headers: Vec<BatchHeader> = Vec::new();
        let mut at = 0;
        while at < records.len() {
            let header = batch::parse_header(&records[at..])?;
            at += header.batch_len;
            if header.producer_id >= 0 {
                headers.push(header);
            }
        }
        if headers.is_empty() {
            return Ok(SequenceCheck::Append);
        }
        Ok(self.producers.borrow().check(&headers)?)
    }

    /// Remembers a batch just assigned its offsets (`header.base_offset` stamped).
    pub(super) fn record_producer(&self, header: &BatchHeader) {
        if header.producer_id >= 0 {
            // One vDSO clock read per idempotent batch (tens of ns), none for plain ones.
            self.producers.borrow_mut().record(header, wall_clock_ms());
            self.producers_changed.set(true);
        }
    }

    /// At clean shutdown (everything below `end` durable): a snapshot at the log end when
    /// the state changed or a snapshot exists, so the next start replays nothing. A log
    /// that never saw a producer writes nothing.
    pub(super) async fn snapshot_producers_at_shutdown(
        &self,
        end: i64,
    ) -> Result<(), StorageError> {
        let exists = self.dir.join(snapshot::FILE_NAME).exists();
        if self.producers_changed.get() || exists {
            self.snapshot_producers(end).await?;
        }
        Ok(())
    }

    /// Producers this partition remembers.
    pub fn producer_count(&self) -> usize {
        self.producers.borrow().len()
    }

    /// Called after each completed window: snapshots the state once per segment, as soon as
    /// nothing assigned is still waiting to be made durable. Off the acknowledgement path:
    /// the write runs in the background.
    pub(super) fn maybe_snapshot_producers(&self) {
        let (active_base, end) = {
            let state = self.state.borrow();
            let durable_end = if self.config().flush_on_append {
                state.high_watermark
            } else {
                state.synced_offset
            };
            let active = state.segments.last().map_or(0, |s| s.base_offset);
            if state.log_end_offset != durable_end || active == self.producer_snapshot_segment.get()
            {
                return;
            }
            (active, state.log_end_offset)
        };
        self.producer_snapshot_segment.set(active_base);
        let Some(this) = self.this.upgrade() else {
            return;
        };
        glommio::spawn_local(async move {
            if let Err(e) = this.snapshot_producers(end).await {
                tracing::warn!("{}: producer-state snapshot: {e}", this.dir.display());
            }
        })
        .detach();
    }

    /// Writes the state covering every batch below `end`, which must all be durable.
    pub(super) async fn snapshot_producers(&self, end: i64) -> Result<(), StorageError> {
        let bytes = {
            let mut producers = self.producers.borrow_mut();
            producers.expire(wall_clock_ms());
            producers.truncate_head(self.log_start_offset());
            snapshot::encode(&producers, end)
        };
        self.producers_changed.set(false);
        let dir = self.dir.clone();
        glommio::executor()
            .spawn_blocking(move || write_atomically(&dir, &bytes))
            .await
    }

    /// Rebuilds the state on open: the snapshot, if it is whole and within the recovered
    /// log, then every batch after it. Without one, the segments that can still hold a live
    /// producer's batch (newer than `producer.id.expiration.ms`) are read.
    pub(super) async fn load_producers(&self, last: LastShutdown) -> Result<(), StorageError> {
        let path = self.dir.join(snapshot::FILE_NAME);
        let loaded = read_snapshot(&path);
        let (log_start, log_end) = (self.log_start_offset(), self.log_end_offset());
        let (state, from) = match loaded {
            Some((mut state, offset)) if offset <= log_end => {
                state.truncate_tail(offset);
                (state, offset.max(log_start))
            }
            // A clean shutdown snapshots any producer it had: none means there were none.
            None if last == LastShutdown::Clean => return Ok(()),
            stale => {
                if let Some((_, offset)) = stale {
                    tracing::info!(
                        "{}: producer-state snapshot at {offset} is past the log end {log_end}: rebuilding",
                        self.dir.display()
                    );
                }
                let horizon = wall_clock_ms().saturating_sub(PRODUCER_ID_EXPIRATION_MS);
                (
                    ProducerStateMap::default(),
                    self.first_offset_written_since(horizon),
                )
            }
        };
        *self.producers.borrow_mut() = state;
        self.replay_producers(from).await?;
        let mut producers = self.producers.borrow_mut();
        producers.expire(wall_clock_ms());
        // State rebuilt from the log is in no snapshot yet: without this, a clean shutdown
        // with no new producer batch would write none, and the clean start after it (which
        // trusts that a missing snapshot means no producers) would forget them all.
        self.producers_changed.set(!producers.is_empty());
        Ok(())
    }

    /// The base offset of the first segment written to since `horizon_ms` on the broker's
    /// clock (its file's modification time), or holding a batch that claims to be that new;
    /// the last segment in any case. Not the batches' timestamps alone: a producer writing
    /// old timestamps is still live, and missing its batches here would let its retry after
    /// a crash be stored twice.
    fn first_offset_written_since(&self, horizon_ms: i64) -> i64 {
        let state = self.state.borrow();
        let written_since = |segment: &segment::Segment| {
            // One stat per segment, at open only.
            let modified_ms = segment
                .files
                .as_ref()
                .and_then(|f| std::fs::metadata(&f.log_path).ok())
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(i64::MAX, |d| d.as_millis() as i64);
            modified_ms >= horizon_ms || segment.max_timestamp >= horizon_ms
        };
        let last = state.segments.len().saturating_sub(1);
        state
            .segments
            .iter()
            .enumerate()
            .find(|(i, s)| *i == last || written_since(s))
            .map_or(state.log_end_offset, |(_, s)| s.base_offset)
    }

    /// Records every batch at or after `from` from its header (no CRC pass, no record, no
    /// body read: a header-only walk, so the replay costs a read per batch or per run of small
    /// batches, not a pass over the data). The stretch was CRC-checked by recovery or before.
    async fn replay_producers(&self, from: i64) -> Result<(), StorageError> {
        let segments: Vec<_> = {
            let state = self.state.borrow();
            state
                .segments
                .iter()
                .filter(|s| s.next_offset > from && s.durable_size > 0)
                .filter_map(|s| Some((s.files.clone()?, s.base_offset, s.durable_size)))
                .collect()
        };
        // Replayed producers count as active now: they were alive until the broker stopped.
        let now = wall_clock_ms();
        for (files, base, size) in segments {
            let mut headers = Vec::new();
            segment::walk_headers(&files, 0, size, base, false, |_, header| {
                if header.producer_id >= 0 && header.last_offset() >= from {
                    headers.push(*header);
                }
            })
            .await?;
            let mut producers = self.producers.borrow_mut();
            for header in &headers {
                producers.record(header, now);
            }
        }
        Ok(())
    }
}

fn read_snapshot(path: &Path) -> Option<(ProducerStateMap, i64)> {
    // Plain syscalls: once per partition at open, never on the data path.
    let len = std::fs::metadata(path).ok()?.len();
    if len > snapshot::SNAPSHOT_BYTES_MAX {
        tracing::warn!("{}: {len} bytes is not a snapshot; ignored", path.display());
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    match snapshot::decode(&bytes) {
        Ok(loaded) => Some(loaded),
        Err(e) => {
            tracing::warn!("{}: {e}; rebuilding from the log", path.display());
            None
        }
    }
}

/// Replaces the snapshot file atomically (temp file, fsync, rename, fsync dir). Blocking:
/// runs on glommio's blocking pool.
fn write_atomically(dir: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    use std::io::Write;
    let path = dir.join(snapshot::FILE_NAME);
    let temp: PathBuf = dir.join(format!("{}.tmp", snapshot::FILE_NAME));
    let mut file = std::fs::File::create(&temp).map_err(StorageError::io("creating", &temp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_data())
        .map_err(StorageError::io("writing", &temp))?;
    std::fs::rename(&temp, &path).map_err(StorageError::io("renaming", &temp))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("syncing", dir))
}

/// Producer expiry is measured against the wall clock, as Kafka's `producer.id.expiration.ms`
/// is; it only decides what a snapshot or a reopened log may forget.
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{all_bases, batch, run};
    use super::super::{LastShutdown, LogConfig, PartitionLog};
    use crate::error::StorageError;
    use crate::flush_gate::FlushGate;
    use crate::producer_state::ProducerError;

    /// A batch of `values` from producer `id` at `epoch`, its first record at `first_seq`,
    /// stamped now.
    fn idempotent(values: &[&[u8]], id: i64, epoch: i16, first_seq: i32) -> Vec<u8> {
        idempotent_at(values, id, epoch, first_seq, super::wall_clock_ms())
    }

    fn idempotent_at(
        values: &[&[u8]],
        id: i64,
        epoch: i16,
        first_seq: i32,
        timestamp_ms: i64,
    ) -> Vec<u8> {
        let mut b = batch(values, timestamp_ms);
        b[43..51].copy_from_slice(&id.to_be_bytes());
        b[51..53].copy_from_slice(&epoch.to_be_bytes());
        b[53..57].copy_from_slice(&first_seq.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    async fn reopen(dir: std::path::PathBuf, last: LastShutdown) -> std::rc::Rc<PartitionLog> {
        PartitionLog::open_after(dir, LogConfig::default(), last, FlushGate::unlimited())
            .await
            .expect("reopens")
    }

    #[test]
    fn a_retried_batch_gets_its_first_offsets_and_is_not_appended_twice() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            log.append(&batch(&[b"plain"], 1)).await.unwrap();
            let first = log
                .append(&idempotent(&[b"a", b"b"], 7, 0, 0))
                .await
                .unwrap();
            let second = log.append(&idempotent(&[b"c"], 7, 0, 2)).await.unwrap();
            assert_eq!((first.base_offset, second.base_offset), (1, 3));
            let retry = log
                .append(&idempotent(&[b"a", b"b"], 7, 0, 0))
                .await
                .unwrap();
            assert_eq!(
                (retry.base_offset, retry.last_offset),
                (1, 2),
                "the original's offsets"
            );
            assert_eq!(log.log_end_offset(), 4, "nothing appended for the retry");
            assert_eq!(all_bases(&log).await, vec![0, 1, 3]);
        });
    }

    #[test]
    fn gaps_and_fenced_epochs_are_refused_and_append_nothing() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            log.append(&idempotent(&[b"a"], 7, 1, 0)).await.unwrap();
            let gap = log.append(&idempotent(&[b"b"], 7, 1, 5)).await;
            assert!(matches!(
                gap,
                Err(StorageError::Producer(
                    ProducerError::OutOfOrderSequence { .. }
                ))
            ));
            let zombie = log.append(&idempotent(&[b"b"], 7, 0, 1)).await;
            assert!(matches!(
                zombie,
                Err(StorageError::Producer(
                    ProducerError::InvalidProducerEpoch { .. }
                ))
            ));
            assert_eq!(log.log_end_offset(), 1);
            // A plain batch and a new producer are unaffected.
            log.append(&batch(&[b"plain"], 1)).await.unwrap();
            log.append(&idempotent(&[b"x"], 8, 0, 40)).await.unwrap();
            assert_eq!(log.log_end_offset(), 3);
        });
    }

    #[test]
    fn producer_state_survives_a_clean_restart_and_a_crash() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), LogConfig::default())
                .await
                .unwrap();
            log.append(&idempotent(&[b"a"], 7, 0, 0)).await.unwrap();
            log.append(&idempotent(&[b"b"], 7, 0, 1)).await.unwrap();
            log.flush().await.unwrap();
            drop(log);
            let clean = reopen(dir.clone(), LastShutdown::Clean).await;
            assert_eq!(clean.producer_count(), 1, "from the shutdown snapshot");
            let retry = clean.append(&idempotent(&[b"b"], 7, 0, 1)).await.unwrap();
            assert_eq!(
                retry.base_offset, 1,
                "a retry after a clean restart is a duplicate"
            );
            clean.append(&idempotent(&[b"c"], 7, 0, 2)).await.unwrap();
            // No flush: as after a crash, the last batch is not in any snapshot.
            drop(clean);
            let crashed = reopen(dir, LastShutdown::Unclean).await;
            let retry = crashed.append(&idempotent(&[b"c"], 7, 0, 2)).await.unwrap();
            assert_eq!(
                retry.base_offset, 2,
                "replayed from the log after the snapshot"
            );
            assert!(matches!(
                crashed.append(&idempotent(&[b"d"], 7, 0, 9)).await,
                Err(StorageError::Producer(
                    ProducerError::OutOfOrderSequence { .. }
                ))
            ));
            assert_eq!(crashed.log_end_offset(), 3);
        });
    }

    #[test]
    fn a_damaged_snapshot_is_rebuilt_from_the_log() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), LogConfig::default())
                .await
                .unwrap();
            log.append(&idempotent(&[b"a"], 7, 0, 0)).await.unwrap();
            log.flush().await.unwrap();
            drop(log);
            let path = dir.join(crate::producer_state::snapshot::FILE_NAME);
            let mut bytes = std::fs::read(&path).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
            let reopened = reopen(dir, LastShutdown::Unclean).await;
            let retry = reopened
                .append(&idempotent(&[b"a"], 7, 0, 0))
                .await
                .unwrap();
            assert_eq!(
                retry.base_offset, 0,
                "the producer was found in the log itself"
            );
            assert_eq!(reopened.log_end_offset(), 1);
        });
    }

    #[test]
    fn a_producer_writing_old_timestamps_keeps_its_deduplication_across_a_crash() {
        // MirrorMaker keeps its source's timestamps; expiry by them would forget a live
        // producer at every restart and store its retries twice.
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), LogConfig::default())
                .await
                .unwrap();
            let old = idempotent_at(&[b"a"], 5, 0, 0, 1_000);
            let stored = log.append(&old).await.unwrap();
            log.flush().await.unwrap();
            drop(log);
            // A crash before any snapshot: the state comes from the log alone.
            let snapshot = dir.join(crate::producer_state::snapshot::FILE_NAME);
            std::fs::remove_file(snapshot).unwrap();
            for last in [LastShutdown::Unclean, LastShutdown::Clean] {
                let reopened = reopen(dir.clone(), last).await;
                assert_eq!(reopened.producer_count(), 1, "after a {last:?} stop");
                let retry = reopened.append(&old).await.unwrap();
                assert_eq!(retry.base_offset, stored.base_offset, "a duplicate");
                assert_eq!(reopened.log_end_offset(), 1, "nothing appended twice");
                reopened.flush().await.unwrap();
            }
        });
    }
}
