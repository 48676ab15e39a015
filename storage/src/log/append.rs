//! Appends: offset assignment, the pending buffer, and the per-partition flusher that
//! group-commits it.
//!
//! Hot path. `assign` runs synchronously (offsets in call order) and is the produce path's
//! one copy; the flusher turns each window into one io_uring write per segment and one
//! fdatasync. A write or sync that fails marks the log failed: it must never acknowledge an
//! append whose bytes may not be on disk, nor take new ones after a failure.
//!
//! Memory: every pending byte is the copy of a batch whose `append` has not resolved (it
//! resolves after its window is written and dropped, for every acks), so the pending windows
//! are bounded by whatever bounds the appends in flight: the broker's per-shard request
//! budget. A window's capacity hint reserves address space; pages are touched only as
//! batches are copied in.

use std::rc::Rc;

use glommio::io::BufferedFile;

use super::{AppendOutcome, LogConfig, LogState, PartitionLog, PendingWrite};
use crate::batch::{self, BatchHeader};
use crate::error::StorageError;
use crate::producer_state::SequenceCheck;
use crate::segment::{Segment, SegmentFiles};

/// Cap on the capacity a new pending buffer is given up front from the last window's size,
/// so one huge window does not make every later buffer huge.
const WINDOW_BYTES_HINT_MAX: usize = 4 * 1024 * 1024;

impl PartitionLog {
    /// Appends a produce payload that passed `validate_produce_batches`; resolves once it is
    /// written (and synced, with `flush_on_append`). Framing is re-checked here, CRCs are
    /// not. Offsets are assigned before the first await, so concurrent appends get dense
    /// offsets in call order, and complete in that order (the high watermark only grows).
    pub async fn append(&self, records: &[u8]) -> Result<AppendOutcome, StorageError> {
        self.append_with_time(records, None).await
    }

    /// Like `append`; with `log_append_time`, every batch is stamped with that time as a
    /// `LogAppendTime` batch (its CRC recomputed).
    pub async fn append_with_time(
        &self,
        records: &[u8],
        log_append_time: Option<i64>,
    ) -> Result<AppendOutcome, StorageError> {
        let outcome = self.assign(records, log_append_time)?;
        self.start_flusher();
        let end = outcome.last_offset + 1;
        self.waiters
            .until(|| {
                let state = self.state.borrow();
                state.failed || state.high_watermark >= end
            })
            .await;
        if self.state.borrow().high_watermark >= end {
            Ok(outcome)
        } else {
            Err(StorageError::Failed(self.dir.clone()))
        }
    }

    /// Assigns offsets and stages the stamped batches for the flusher. Synchronous: offsets
    /// are decided in call order.
    fn assign(
        &self,
        records: &[u8],
        log_append_time: Option<i64>,
    ) -> Result<AppendOutcome, StorageError> {
        if let Some(refusal) = self.refusal() {
            return Err(refusal);
        }
        // Check the framing before changing anything, so a bad payload appends nothing. The
        // CRC pass was made once by the caller (`validate_produce_batches`, on the shard that
        // read the request); it is not repeated here.
        let record_count = batch::check_framing(records)?;
        if let SequenceCheck::Duplicate {
            base_offset,
            last_offset,
        } = self.check_producers(records)?
        {
            // A producer's retry of a batch the log has: its first offsets, nothing new
            // (Kafka answers a duplicate with the original's offsets and no error).
            return Ok(AppendOutcome {
                base_offset,
                last_offset,
                record_count,
            });
        }
        let mut state = self.state.borrow_mut();
        let base_offset = state.log_end_offset;
        let mut at = 0;
        while at < records.len() {
            let mut header = batch::parse_header(&records[at..])?;
            let bytes = &records[at..at + header.batch_len];
            header.base_offset = state.log_end_offset;
            if let Some(timestamp) = log_append_time {
                header.max_timestamp = timestamp;
            }
            self.place(&mut state, bytes, &header, log_append_time);
            self.record_producer(&header);
            debug_assert!(
                header.next_offset() > state.log_end_offset,
                "offsets are dense and increasing"
            );
            state.log_end_offset = header.next_offset();
            at += header.batch_len;
        }
        Ok(AppendOutcome {
            base_offset,
            last_offset: state.log_end_offset - 1,
            record_count,
        })
    }

    /// Copies one batch into the pending buffer of the active segment (rolling first if it
    /// would overflow), stamps its base offset there, and indexes it.
    fn place(
        &self,
        state: &mut LogState,
        bytes: &[u8],
        header: &BatchHeader,
        log_append_time: Option<i64>,
    ) {
        let active = state
            .segments
            .last()
            .expect("a log always has an active segment");
        if active.assigned_size > 0 && should_roll(active, bytes.len(), header, &self.config()) {
            state.segments.push(Segment::new(header.base_offset));
        }
        let active = state
            .segments
            .last_mut()
            .expect("a log always has an active segment");
        let position = active.assigned_size;
        active.note_batch(
            position,
            header,
            u64::from(self.config().index_interval_bytes),
        );
        active.assigned_size += bytes.len() as u64;
        let segment_base = active.base_offset;
        if state.pending.is_empty() {
            // One clock reading per window, not per batch.
            state.pending_since = Some(std::time::Instant::now());
        }
        if state
            .pending
            .last()
            .is_none_or(|p| p.segment_base != segment_base)
        {
            // For speed: sized from the last window, so the window's batches usually land
            // in one allocation instead of a chain of doublings and copies.
            let capacity = bytes
                .len()
                .max(state.last_window_bytes.min(WINDOW_BYTES_HINT_MAX));
            state.pending.push(PendingWrite {
                segment_base,
                position,
                data: Vec::with_capacity(capacity),
                end_offset: 0,
            });
        }
        let pending = state.pending.last_mut().expect("just ensured");
        let start = pending.data.len();
        pending.data.extend_from_slice(bytes);
        batch::stamp_base_offset(&mut pending.data[start..], header.base_offset);
        batch::stamp_leader_epoch(&mut pending.data[start..], batch::LEADER_EPOCH);
        if let Some(timestamp) = log_append_time {
            batch::stamp_log_append_time(&mut pending.data[start..], timestamp);
        }
        pending.end_offset = header.next_offset();
    }

    /// Spawns the partition's flusher unless one is running or nothing is pending.
    pub(super) fn start_flusher(&self) {
        {
            let mut state = self.state.borrow_mut();
            if state.flushing || state.pending.is_empty() || state.failed {
                return;
            }
            state.flushing = true;
        }
        let this = self.this.upgrade().expect("a log in use is alive");
        glommio::spawn_local(async move { this.flush_loop().await }).detach();
    }

    /// Writes and syncs pending windows until none is left. Appends that arrive while a
    /// window is in flight gather in the next one: one fdatasync covers them all.
    async fn flush_loop(self: Rc<Self>) {
        loop {
            // Entered before the window is taken: while the shard's other partitions hold
            // the device, this one's window keeps gathering batches for the same fdatasync.
            // A flusher with nothing pending leaves without waiting for the gate.
            let stages = self.flush_gate.stages();
            let permit = if self.state.borrow().pending.is_empty() {
                None
            } else {
                let waited = std::time::Instant::now();
                let permit = self.flush_gate.enter().await;
                stages.gate.observe_duration(waited.elapsed());
                Some(permit)
            };
            let mut window = {
                let mut state = self.state.borrow_mut();
                if let Some(since) = state.pending_since.take() {
                    stages.queued.observe_duration(since.elapsed());
                }
                let spare = std::mem::take(&mut state.spare_pending);
                std::mem::replace(&mut state.pending, spare)
            };
            if window.is_empty() {
                let mut state = self.state.borrow_mut();
                state.spare_pending = window;
                state.flushing = false;
                drop(state);
                self.waiters.wake_all();
                return;
            }
            let mut result = self.write_window(&mut window).await;
            if let (Ok(_), false) = (&result, self.config().flush_on_append) {
                // flush.messages: the window that reaches the count is synced before it is
                // acknowledged, as Kafka flushes inside the append that crosses it.
                let end = window.iter().map(|w| w.end_offset).max().unwrap_or(0);
                let unsynced = (end - self.state.borrow().synced_offset).max(0) as u64;
                if self.config().flush_messages.is_some_and(|n| unsynced >= n) {
                    if let Err(e) = self.sync_unsynced(end).await {
                        result = Err(e);
                    }
                }
            }
            let failed = {
                let mut state = self.state.borrow_mut();
                match result {
                    Ok(window_bytes) => {
                        complete_window(&mut state, &window, window_bytes);
                        self.note_window_for_recovery(&window, self.config().flush_on_append);
                        window.clear();
                        state.spare_pending = window;
                        self.windows_flushed.set(self.windows_flushed.get() + 1);
                        false
                    }
                    Err(e) => {
                        tracing::error!(
                            "{}: write failed, the log takes no more appends: {e}",
                            self.dir.display()
                        );
                        state.failed = true;
                        state.flushing = false;
                        state.pending.clear();
                        true
                    }
                }
            };
            drop(permit);
            self.waiters.wake_all();
            if failed {
                return;
            }
            self.maybe_snapshot_producers();
            if !self.config().flush_on_append {
                self.maybe_sync_relaxed().await;
            }
        }
    }

    /// `flush.ms` (relaxed durability): arms a timer that syncs within `flush.ms` of the
    /// first unsynced write.
    async fn maybe_sync_relaxed(&self) {
        let arm_timer = {
            let mut state = self.state.borrow_mut();
            let unsynced = state.high_watermark > state.synced_offset;
            let arm = self.config().flush_interval.is_some() && unsynced && !state.sync_timer_armed;
            if arm {
                state.sync_timer_armed = true;
            }
            arm
        };
        if arm_timer {
            let interval = self.config().flush_interval.expect("checked above");
            let this = self.this.clone();
            glommio::spawn_local(async move {
                glommio::timer::sleep(interval).await;
                let Some(log) = this.upgrade() else { return };
                log.state.borrow_mut().sync_timer_armed = false;
                let upto = log.high_watermark();
                if let Err(e) = log.sync_unsynced(upto).await {
                    tracing::error!("{}: {e}", log.dir.display());
                }
            })
            .detach();
        }
    }

    /// One fdatasync of a segment's log, counted and timed for metrics.
    async fn timed_sync(&self, files: &SegmentFiles) -> glommio::Result<(), ()> {
        let started = std::time::Instant::now();
        let result = files.log.fdatasync().await;
        let (count, nanos) = self.sync_stats.get();
        let elapsed = started.elapsed();
        self.flush_gate.stages().sync.observe_duration(elapsed);
        let elapsed = elapsed.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.sync_stats
            .set((count + 1, nanos.saturating_add(elapsed)));
        result
    }

    /// fdatasyncs every segment written since the last sync, which covers everything below
    /// `upto`. A failed sync fails the log: what reached the disk is unknown.
    async fn sync_unsynced(&self, upto: i64) -> Result<(), StorageError> {
        let written = self.recovery.written();
        let unsynced = std::mem::take(&mut self.state.borrow_mut().unsynced);
        for files in &unsynced {
            if let Err(e) = self.timed_sync(files).await {
                self.state.borrow_mut().failed = true;
                self.waiters.wake_all();
                return Err(StorageError::glommio("syncing", &files.log_path)(e));
            }
        }
        self.note_synced_for_recovery(written, &unsynced);
        let mut state = self.state.borrow_mut();
        state.synced_offset = state.synced_offset.max(upto);
        Ok(())
    }

    /// Writes one window (one write per segment), its index entries, and syncs. Returns the
    /// bytes written.
    async fn write_window(&self, window: &mut [PendingWrite]) -> Result<usize, StorageError> {
        #[cfg(test)]
        if self.fail_writes.get() {
            return Err(StorageError::Io {
                op: "writing",
                path: self.dir.clone(),
                source: std::io::Error::other("injected fault"),
            });
        }
        let mut window_bytes = 0;
        for write in window.iter_mut() {
            let files = self.segment_files(write.segment_base).await?;
            // The buffer goes to io_uring by value (glommio owns it while the write is in
            // flight); the data's length stays behind for `complete_window`.
            let data = std::mem::take(&mut write.data);
            let len = data.len();
            let started = std::time::Instant::now();
            write_all(&files.log, &files.log_path, data, write.position).await?;
            write.position += len as u64;
            window_bytes += len;
            self.persist_index(write.segment_base, &files).await?;
            self.flush_gate
                .stages()
                .write
                .observe_duration(started.elapsed());
            if self.config().flush_on_append {
                self.timed_sync(&files)
                    .await
                    .map_err(StorageError::glommio("syncing", &files.log_path))?;
            } else {
                let mut state = self.state.borrow_mut();
                if !state.unsynced.iter().any(|f| Rc::ptr_eq(f, &files)) {
                    state.unsynced.push(files);
                }
            }
        }
        Ok(window_bytes)
    }

    /// The files of a segment, creating them on first write (after a roll).
    pub(super) async fn segment_files(&self, base: i64) -> Result<Rc<SegmentFiles>, StorageError> {
        let (existing, previous) = {
            let state = self.state.borrow();
            let i = state
                .segments
                .iter()
                .position(|s| s.base_offset == base)
                .expect("segments are never removed while writes to them are pending");
            let previous = i
                .checked_sub(1)
                .and_then(|p| state.segments[p].files.clone());
            (state.segments[i].files.clone(), previous)
        };
        if let Some(files) = existing {
            return Ok(files);
        }
        // A roll closed the segment before this one, and every byte of it was written by an
        // earlier write. Sync it whole once (log and indexes, whatever `flush_on_append`
        // says) so recovery can trust closed segments and rescan only the active one.
        if let Some(previous) = previous {
            previous
                .log
                .fdatasync()
                .await
                .map_err(StorageError::glommio("syncing", &previous.log_path))?;
            previous.sync_indexes().await?;
        }
        let files = Rc::new(SegmentFiles::open(&self.dir, base).await?);
        // The new file's directory entry must survive a crash before its data is acknowledged.
        super::recovery::sync_dir(&self.dir).await?;
        let mut state = self.state.borrow_mut();
        if let Some(segment) = state.segments.iter_mut().find(|s| s.base_offset == base) {
            segment.files = Some(files.clone());
        }
        Ok(files)
    }

    /// Appends the segment's new index entries to its index files. Not synced: a recovery
    /// checkpoint syncs them before it trusts them (recovery rebuilds the rest), and a roll
    /// syncs the closed segment's.
    async fn persist_index(&self, base: i64, files: &SegmentFiles) -> Result<(), StorageError> {
        let (index, index_at, time_index, time_at) = {
            let mut state = self.state.borrow_mut();
            let Some(segment) = state.segments.iter_mut().find(|s| s.base_offset == base) else {
                return Ok(());
            };
            let index = segment.index.encode_from(segment.index_persisted);
            let time_index = segment.time_index.encode_from(segment.time_index_persisted);
            let at = (segment.index_persisted * crate::index::OFFSET_ENTRY_BYTES) as u64;
            let time_at = (segment.time_index_persisted * crate::index::TIME_ENTRY_BYTES) as u64;
            segment.index_persisted = segment.index.len();
            segment.time_index_persisted = segment.time_index.len();
            (index, at, time_index, time_at)
        };
        if !index.is_empty() {
            write_all(&files.index, &files.log_path, index, index_at).await?;
        }
        if !time_index.is_empty() {
            write_all(&files.time_index, &files.log_path, time_index, time_at).await?;
        }
        Ok(())
    }

    /// Writes everything pending and syncs it (clean shutdown).
    pub async fn flush(&self) -> Result<(), StorageError> {
        if self.state.borrow().closed {
            return Err(StorageError::Closed(self.dir.clone()));
        }
        self.start_flusher();
        self.waiters
            .until(|| {
                let state = self.state.borrow();
                state.failed || (!state.flushing && state.pending.is_empty())
            })
            .await;
        if self.state.borrow().failed {
            return Err(StorageError::Failed(self.dir.clone()));
        }
        let upto = self.high_watermark();
        self.sync_unsynced(upto).await?;
        // The active segment's indexes too: after a clean shutdown they are trusted as they
        // are (`LastShutdown::Clean`), not rebuilt.
        let active = self
            .state
            .borrow()
            .segments
            .last()
            .and_then(|s| s.files.clone());
        if let Some(files) = active {
            files.sync_indexes().await?;
        }
        self.checkpoint_on_flush().await?;
        // Everything is durable now: the producer state as of the log end, so a clean
        // restart reads it back instead of the batches.
        self.snapshot_producers_at_shutdown(upto).await
    }

    /// Removes the partition's files. Fetches holding a `FileSlice` keep working (their
    /// descriptors stay open). Appends already accepted are written first; later calls get
    /// `StorageError::Closed`.
    pub async fn delete(self: Rc<Self>) -> Result<(), StorageError> {
        self.state.borrow_mut().closed = true;
        self.waiters
            .until(|| !self.state.borrow().flushing && !self.recovery.is_writing())
            .await;
        // Long polls on this partition have nothing more to wait for.
        self.waiters.wake_all();
        let dir = self.dir.clone();
        // The segments' blocks are freed by the eraser once the log and its readers let go
        // of them, as retention's are (`erase.rs`).
        let (logs, log_paths) = super::erase::logs_of(self.state.borrow().segments.iter());
        // Removing a directory tree is a burst of blocking syscalls: off the reactor. A
        // durable rename to a `-delete` name first, so a crash never leaves a partial
        // directory under the name a new topic would take.
        let writers = glommio::executor()
            .spawn_blocking(move || {
                let writers = super::erase::open_writers(&log_paths);
                crate::partition_dir::remove(&dir).map(|()| writers)
            })
            .await?;
        super::erase::later(logs, writers);
        Ok(())
    }
}

/// Whether a batch must start a new segment (the active one holds data): it would overflow
/// `segment.bytes`, an index is full (`segment.index.bytes`), or it is `segment.ms` later
/// than the segment's first batch, as Kafka decides.
fn should_roll(
    active: &Segment,
    batch_bytes: usize,
    header: &BatchHeader,
    config: &LogConfig,
) -> bool {
    use crate::index::{OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};
    let too_big = active.assigned_size + batch_bytes as u64 > config.segment_bytes;
    let index_full = (active.index.len() + 1) * OFFSET_ENTRY_BYTES > config.segment_index_bytes
        || (active.time_index.len() + 1) * TIME_ENTRY_BYTES > config.segment_index_bytes;
    let too_old = match (config.segment_ms, active.first_batch_timestamp) {
        (Some(ms), Some(first)) => header.max_timestamp.saturating_sub(first) > ms,
        _ => false,
    };
    // Index entries hold offsets relative to the segment's base as u32, and Kafka's readers
    // expect them to fit an i32: roll before the batch's last offset would not (Kafka's
    // `canConvertToRelativeOffset`). Only batches claiming many offsets get near it.
    let offsets_overflow =
        header.last_offset() - active.base_offset > i64::from(RELATIVE_OFFSET_MAX);
    too_big || index_full || too_old || offsets_overflow
}

/// The largest offset a segment may hold relative to its base (Kafka's `Int.MaxValue`).
const RELATIVE_OFFSET_MAX: i32 = i32::MAX;

/// Makes a written window visible: segment sizes a read may return and the high watermark
/// move together, so a reader never sees bytes above the high watermark.
fn complete_window(state: &mut LogState, window: &[PendingWrite], window_bytes: usize) {
    for write in window {
        if let Some(segment) = state
            .segments
            .iter_mut()
            .find(|s| s.base_offset == write.segment_base)
        {
            // `write_window` left the end of the written bytes in `position`.
            segment.durable_size = write.position;
        }
    }
    let end_offset = window
        .last()
        .expect("a completed window is not empty")
        .end_offset;
    assert!(
        end_offset >= state.high_watermark,
        "the high watermark never moves backwards"
    );
    state.high_watermark = end_offset;
    state.last_window_bytes = window_bytes;
}

/// Writes all of `data` at `position`. glommio takes the buffer by value and does not hand
/// it back, so it goes to io_uring without a copy, but a short write cannot be resumed
/// without having kept a second copy of every window. A buffered write to a regular file is
/// short only when the device is full or failing, so it fails the window: nothing in it is
/// acknowledged, and the log stops taking appends (recovery re-validates the tail).
async fn write_all(
    file: &BufferedFile,
    path: &std::path::Path,
    data: Vec<u8>,
    position: u64,
) -> Result<(), StorageError> {
    let len = data.len();
    let written = file
        .write_at(data, position)
        .await
        .map_err(StorageError::glommio("writing", path))?;
    if written == len {
        Ok(())
    } else {
        Err(StorageError::Io {
            op: "writing",
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {written} of {len} bytes (disk full?)"),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::super::testing::{all_bases, bases, batch, read_slice, run, small_segments};
    use super::super::{LogConfig, PartitionLog};
    use crate::error::StorageError;

    #[test]
    fn concurrent_appends_get_dense_offsets_and_complete_in_call_order() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            let completed = Rc::new(RefCell::new(Vec::new()));
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let (log, completed) = (log.clone(), completed.clone());
                    let values: Vec<Vec<u8>> = (0..=(i % 3))
                        .map(|j| format!("{i}-{j}").into_bytes())
                        .collect();
                    glommio::spawn_local(async move {
                        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
                        let outcome = log.append(&batch(&refs, 1000 + i)).await.unwrap();
                        assert!(
                            log.high_watermark() > outcome.last_offset,
                            "acknowledged only once below the high watermark"
                        );
                        completed.borrow_mut().push(outcome.base_offset);
                        outcome
                    })
                })
                .collect();
            let outcomes = futures::future::join_all(tasks).await;
            let mut expected = 0;
            for (i, outcome) in outcomes.iter().enumerate() {
                assert_eq!(outcome.base_offset, expected, "append {i}");
                assert_eq!(outcome.record_count, (i % 3 + 1) as u64);
                assert_eq!(
                    outcome.last_offset,
                    expected + outcome.record_count as i64 - 1
                );
                expected = outcome.last_offset + 1;
            }
            let mut sorted = completed.borrow().clone();
            sorted.sort_unstable();
            assert_eq!(*completed.borrow(), sorted, "completions in offset order");
            assert_eq!(log.high_watermark(), expected);
            assert_eq!(log.log_end_offset(), expected);
            assert!(
                log.windows_flushed() < 200,
                "group commit: {} windows for 200 appends",
                log.windows_flushed()
            );
            let read = all_bases(&log).await;
            assert_eq!(
                read,
                outcomes.iter().map(|o| o.base_offset).collect::<Vec<_>>()
            );
        });
    }

    #[test]
    fn logs_sharing_a_gate_of_one_lose_nothing_and_group_their_appends() {
        run(|dir| async move {
            let gate = crate::flush_gate::FlushGate::new(std::num::NonZeroUsize::new(1));
            let mut logs = Vec::new();
            for p in 0..4 {
                let log = PartitionLog::open_after(
                    dir.with_file_name(format!("gated-{p}")),
                    LogConfig::default(),
                    super::super::LastShutdown::Unclean,
                    gate.clone(),
                )
                .await
                .unwrap();
                logs.push(log);
            }
            let tasks: Vec<_> = (0..200)
                .map(|i| {
                    let log = logs[i % 4].clone();
                    glommio::spawn_local(async move {
                        let outcome = log.append(&batch(&[b"v"], i as i64)).await.unwrap();
                        outcome.base_offset
                    })
                })
                .collect();
            let offsets = futures::future::join_all(tasks).await;
            for (p, log) in logs.iter().enumerate() {
                let mine: Vec<i64> = offsets.iter().skip(p).step_by(4).copied().collect();
                assert_eq!(
                    mine,
                    (0..50).collect::<Vec<_>>(),
                    "partition {p}: dense, in order"
                );
                assert_eq!(log.high_watermark(), 50);
                assert_eq!(all_bases(log).await.len(), 50, "partition {p}: all on disk");
            }
            assert_eq!(gate.in_flight(), 0, "every flusher gave its permit back");
            let windows: u64 = logs.iter().map(|l| l.windows_flushed()).sum();
            assert!(
                windows < 200,
                "waiting at the gate groups appends: {windows} windows for 200"
            );
            // Every window was timed through each stage on the shared gate.
            let stage_count = |name: &str| {
                let stages = gate.stages().snapshot();
                stages.iter().find(|(n, _)| *n == name).unwrap().1.count()
            };
            assert_eq!(stage_count("log_queued"), windows);
            assert_eq!(stage_count("log_gate"), windows);
            assert_eq!(stage_count("log_write"), windows, "one segment per window");
            assert_eq!(
                stage_count("log_fdatasync"),
                windows,
                "durable: one sync each"
            );
        });
    }

    #[test]
    fn log_append_time_stamps_the_batch_and_keeps_its_crc_valid() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            log.append_with_time(&batch(&[b"a", b"b"], 1_000), Some(99_000))
                .await
                .unwrap();
            let slice = log.read(0, 1 << 20, true).await.unwrap().unwrap();
            let bytes = read_slice(&slice);
            let header = crate::batch::check_batch(&bytes).expect("the CRC was recomputed");
            assert_eq!(header.max_timestamp, 99_000);
            assert_eq!(
                header.attributes & 0x08,
                0x08,
                "timestamp type is LogAppendTime"
            );
            assert_eq!(
                log.offset_for_timestamp(50_000).await.unwrap(),
                Some((0, 99_000))
            );
        });
    }

    #[test]
    fn segments_roll_by_time_and_by_index_size() {
        run(|dir| async move {
            let by_time = LogConfig {
                segment_ms: Some(1_000),
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.join("time"), by_time).await.unwrap();
            for ts in [10_000, 10_500, 11_000] {
                log.append(&batch(&[b"t"], ts)).await.unwrap();
            }
            assert_eq!(
                log.segment_count(),
                1,
                "within segment.ms of the first batch"
            );
            log.append(&batch(&[b"t"], 11_001)).await.unwrap();
            assert_eq!(
                log.segment_count(),
                2,
                "1001 ms after the first batch: a new segment"
            );
            assert_eq!(all_bases(&log).await, vec![0, 1, 2, 3]);

            let by_index = LogConfig {
                index_interval_bytes: 1,
                segment_index_bytes: 4 * crate::index::OFFSET_ENTRY_BYTES,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.join("index"), by_index)
                .await
                .unwrap();
            for i in 0..20 {
                log.append(&batch(&[b"i"], i)).await.unwrap();
            }
            assert!(log.segment_count() >= 4, "{} segments", log.segment_count());
            assert_eq!(all_bases(&log).await, (0..20).collect::<Vec<_>>());
        });
    }

    /// A batch header that claims `count` offsets (the log trusts a validated count; these
    /// bytes never went through produce validation).
    fn batch_claiming(count: i32, ts: i64) -> Vec<u8> {
        let mut b = batch(&[b"many"], ts);
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        crate::batch::tests::fix(&mut b);
        b
    }

    #[test]
    fn segments_roll_before_relative_offsets_outgrow_an_i32() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), LogConfig::default())
                .await
                .unwrap();
            let claim = 1 << 30;
            for i in 0..5 {
                let outcome = log.append(&batch_claiming(claim, i)).await.unwrap();
                assert_eq!(outcome.base_offset, i * i64::from(claim));
            }
            // Two batches span exactly i32::MAX + 1 offsets from a segment's base: a third
            // would not fit.
            assert_eq!(log.segment_count(), 3);
            for i in 0..5 {
                let offset = i * i64::from(claim);
                let slice = log.read(offset + 7, 1 << 20, true).await.unwrap().unwrap();
                assert_eq!(bases(&read_slice(&slice))[0], offset, "batch {i}");
            }
            drop(log);
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            assert_eq!(log.log_end_offset(), 5 * i64::from(claim));
            let last = 4 * i64::from(claim);
            let slice = log.read(last, 1 << 20, true).await.unwrap().unwrap();
            assert_eq!(bases(&read_slice(&slice)), vec![last]);
        });
    }

    #[test]
    fn one_payload_of_many_batches_gets_consecutive_offsets() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            log.append(&batch(&[b"first"], 1)).await.unwrap();
            let mut payload = batch(&[b"a", b"b"], 1);
            payload.extend(batch(&[b"c"], 2));
            payload.extend(batch(&[b"d", b"e", b"f"], 3));
            let outcome = log.append(&payload).await.unwrap();
            assert_eq!((outcome.base_offset, outcome.last_offset), (1, 6));
            assert_eq!(outcome.record_count, 6);
            let slice = log.read(1, 1 << 20, true).await.unwrap().unwrap();
            assert_eq!(bases(&read_slice(&slice)), vec![1, 3, 4]);
        });
    }

    #[test]
    fn bad_framing_appends_nothing() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            let mut bad_magic = batch(&[b"x"], 1);
            bad_magic[16] = 1;
            let mut good_then_torn = batch(&[b"x"], 1);
            good_then_torn.extend_from_slice(&batch(&[b"y"], 1)[..30]);
            for bad in [Vec::new(), bad_magic, good_then_torn] {
                assert!(matches!(
                    log.append(&bad).await,
                    Err(StorageError::Batch(_))
                ));
            }
            assert_eq!(log.log_end_offset(), 0);
            assert_eq!(log.size_bytes(), 0);
            assert_eq!(log.append(&batch(&[b"x"], 1)).await.unwrap().base_offset, 0);
        });
    }

    #[test]
    fn segments_roll_at_segment_bytes_and_take_at_least_one_batch() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), small_segments())
                .await
                .unwrap();
            let big = vec![b'z'; 3000];
            log.append(&batch(&[b"small"], 0)).await.unwrap();
            log.append(&batch(&[&big], 1)).await.unwrap();
            log.append(&batch(&[b"after"], 2)).await.unwrap();
            assert_eq!(
                log.segment_count(),
                3,
                "the oversized batch has its own segment"
            );
            let mut logs: Vec<u64> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| {
                    let e = e.unwrap();
                    let name = e.file_name().into_string().unwrap();
                    name.ends_with(".log").then(|| e.metadata().unwrap().len())
                })
                .collect();
            logs.sort_unstable();
            assert_eq!(logs.len(), 3);
            assert!(logs[2] > 3000, "{logs:?}");
            assert_eq!(all_bases(&log).await, vec![0, 1, 2]);
            for i in 3..30 {
                log.append(&batch(&[format!("fill-{i:04}-padding").as_bytes()], i))
                    .await
                    .unwrap();
            }
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let len = entry.metadata().unwrap().len();
                let name = entry.file_name().into_string().unwrap();
                assert!(
                    !name.ends_with(".log") || len <= 1024 || len > 3000,
                    "{name} has {len} bytes"
                );
            }
        });
    }

    #[test]
    fn relaxed_logs_sync_by_message_count_and_by_time() {
        run(|dir| async move {
            let by_count = LogConfig {
                flush_on_append: false,
                flush_messages: Some(5),
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.join("count"), by_count)
                .await
                .unwrap();
            for i in 0..4 {
                log.append(&batch(&[b"m"], i)).await.unwrap();
            }
            assert_eq!(log.unsynced_messages(), 4);
            log.append(&batch(&[b"m"], 4)).await.unwrap();
            assert_eq!(
                log.unsynced_messages(),
                0,
                "the fifth message triggers the sync"
            );

            let by_time = LogConfig {
                flush_on_append: false,
                flush_interval: Some(std::time::Duration::from_millis(30)),
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.join("time"), by_time).await.unwrap();
            log.append(&batch(&[b"m", b"n"], 0)).await.unwrap();
            assert_eq!(log.unsynced_messages(), 2, "acknowledged before the sync");
            glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
            assert_eq!(log.unsynced_messages(), 0, "synced within flush.ms");
        });
    }

    #[test]
    fn without_flush_on_append_flush_makes_it_durable() {
        run(|dir| async move {
            let config = LogConfig {
                flush_on_append: false,
                ..small_segments()
            };
            let log = PartitionLog::open(dir.clone(), config.clone())
                .await
                .unwrap();
            for i in 0..20 {
                log.append(&batch(&[format!("nosync-{i:04}-padding").as_bytes()], i))
                    .await
                    .unwrap();
            }
            assert_eq!(log.high_watermark(), 20, "written is enough to be readable");
            log.flush().await.unwrap();
            drop(log);
            let log = PartitionLog::open(dir, config).await.unwrap();
            assert_eq!(all_bases(&log).await, (0..20).collect::<Vec<_>>());
        });
    }

    #[test]
    fn a_failed_write_fails_its_window_and_the_log() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), LogConfig::default())
                .await
                .unwrap();
            log.append(&batch(&[b"durable"], 1)).await.unwrap();
            log.fail_writes.set(true);
            let appends = (0..5).map(|i| {
                let log = log.clone();
                async move { log.append(&batch(&[b"lost"], i)).await }
            });
            for result in futures::future::join_all(appends).await {
                assert!(matches!(result, Err(StorageError::Failed(_))), "{result:?}");
            }
            assert!(log.is_failed());
            assert_eq!(
                log.high_watermark(),
                1,
                "nothing of the failed window is visible"
            );
            log.wait_for_data(1).await; // released, not left hanging
            log.fail_writes.set(false);
            assert!(matches!(
                log.append(&batch(&[b"x"], 1)).await,
                Err(StorageError::Failed(_))
            ));
            assert!(matches!(log.flush().await, Err(StorageError::Failed(_))));
            let slice = log.read(0, 1 << 20, true).await.unwrap().unwrap();
            assert_eq!(
                bases(&read_slice(&slice)),
                vec![0],
                "what was durable still reads"
            );
            drop(log);
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            assert_eq!(log.log_end_offset(), 1);
            assert_eq!(log.append(&batch(&[b"x"], 1)).await.unwrap().base_offset, 1);
        });
    }

    #[test]
    fn delete_removes_the_partition_but_open_slices_keep_reading() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), LogConfig::default())
                .await
                .unwrap();
            log.append(&batch(&[b"keep me"], 1)).await.unwrap();
            let slice = log.read(0, 1 << 20, true).await.unwrap().unwrap();
            let observer = std::fs::File::open(dir.join("00000000000000000000.log")).unwrap();
            let size = observer.metadata().unwrap().len();
            let waiter = {
                let log = log.clone();
                glommio::spawn_local(async move { log.wait_for_data(1).await })
            };
            let other = log.clone();
            log.delete().await.unwrap();
            assert!(!dir.exists());
            waiter.await; // a long poll is released, not left hanging
            assert_eq!(
                bases(&read_slice(&slice)),
                vec![0],
                "the fd outlives the files"
            );
            assert!(matches!(
                other.append(&batch(&[b"x"], 1)).await,
                Err(StorageError::Closed(_))
            ));
            assert!(matches!(
                other.read(0, 100, true).await,
                Err(StorageError::Closed(_))
            ));
            // The eraser frees the blocks once the log and the slice are gone, not before.
            glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
            assert_eq!(observer.metadata().unwrap().len(), size);
            drop((slice, other));
            super::super::testing::until_erased().await;
            assert_eq!(
                observer.metadata().unwrap().len(),
                0,
                "its blocks are freed"
            );
        });
    }
}
