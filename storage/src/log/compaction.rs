//! Log compaction (`cleanup.policy=compact`): keeps the latest record of every key.
//!
//! Control plane, run by the owning shard's cleaner pass in the background, in the shape of
//! Kafka's log cleaner. The log is a clean head, already compacted, then a dirty tail from
//! the first dirty offset on, which is checkpointed in the partition directory
//! (`cleaner-offset-checkpoint`, as Kafka's) so a restart does not make the whole log dirty
//! again. Cleanable are the closed, fully written and synced segments, the dirty ones only up
//! to the first holding a record younger than `min.compaction.lag.ms`; a cleaning runs when
//! the dirty share of those bytes passes `min.cleanable.dirty.ratio`.
//!
//! Two passes. The first maps every key of the dirty tail (by a 128-bit hash) to its latest
//! offset, in a map bounded by `log.cleaner.dedupe.buffer.size`: when it fills, the cleaning
//! covers only the offsets mapped so far and the next one goes on from there. The second
//! rewrites each segment up to that point without the records a later one supersedes.
//!
//! Tombstones follow KIP-534. The first cleaning that keeps a tombstone stamps a delete
//! horizon into its batch (attribute bit 0x40, the base timestamp set to now +
//! `delete.retention.ms`, every record's timestamp delta rebased so it keeps its timestamp);
//! a later cleaning drops the tombstone once now reaches the horizon. A consumer thus has
//! `delete.retention.ms` after the cleaner first passed a delete to see it, however old the
//! producer's timestamp.
//!
//! Offsets never move. A batch keeps its base offset and last offset delta (as Kafka does,
//! so a compacted log has holes, which reads already skip); a batch left with no record is
//! dropped; a compressed batch is decompressed, filtered and recompressed with its codec.
//! Records are filtered as raw bytes, never decoded into fields and re-encoded, so headers,
//! timestamps and attributes come out byte for byte as produced (only a rebased timestamp
//! delta differs, and it decodes to the same timestamp).
//!
//! The shard keeps serving while it cleans: segments are read a bounded chunk at a time, the
//! cleaner yields to the executor after every `YIELD_EVERY_BYTES` of input, and a
//! replacement is written incrementally to `<base>.log.cleaned`. Memory is the key map, a
//! read chunk, a write chunk and one batch. A segment the cleaning leaves as it is is not
//! rewritten at all.
//!
//! A cleaned segment replaces its original by rename, after its index files are removed (a
//! crash in between leaves a log without indexes, which recovery rebuilds). Readers holding
//! a `FileSlice` of the original keep reading it; appends never touch closed segments. The
//! swap and segment deletion (retention, DeleteRecords) exclude each other: a swap starts
//! only if its segment is still in the log, else the work is discarded, and deletion waits
//! for a swap under way, so a deleted segment's files are never recreated.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use glommio::io::{BufferedFile, OpenOptions, ReadResult};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use super::PartitionLog;
use crate::batch::{self, read_varint, BatchHeader, BATCH_BYTES_MAX, HEADER_BYTES, LOG_OVERHEAD};
use crate::error::StorageError;
use crate::records::{self, Record, RecordsError};
use crate::segment::{self, Segment, SegmentFiles};

/// Bytes read from a segment per I/O. Small in tests, so they cross chunk boundaries.
const READ_CHUNK_BYTES: usize = if cfg!(test) { 64 << 10 } else { 1 << 20 };
/// Cleaned bytes collected before one write to the replacement file.
const WRITE_CHUNK_BYTES: usize = if cfg!(test) { 8 << 10 } else { 1 << 20 };
/// Input the cleaner processes before it yields to the shard's other tasks. Unconditional:
/// glommio's own `yield_if_needed` waits for its 100 ms time slice, far too long for produce
/// latency.
const YIELD_EVERY_BYTES: usize = if cfg!(test) { 4 << 10 } else { 64 << 10 };
/// Kafka's `log.cleaner.dedupe.buffer.size` default.
pub const DEDUPE_BUFFER_BYTES_DEFAULT: usize = 128 << 20;
/// What one key-map entry may cost: a 16-byte hash and an 8-byte offset (32 bytes aligned)
/// and a control byte, in a table that is up to 7/8 full and right after it doubles holds
/// both its old and new buckets.
const KEY_MAP_ENTRY_BYTES: usize = 128;
/// The partition's first dirty offset, written atomically after each cleaning.
const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";

const ATTRIBUTES_AT: usize = 21;
const BASE_TIMESTAMP_AT: usize = 27;
const CRC_AT: usize = 17;
const LENGTH_AT: usize = 8;
const RECORDS_COUNT_AT: usize = 57;
const CODEC_MASK: i16 = 0x07;
const CONTROL_FLAG: i16 = 0x20;
/// KIP-534: the batch's base timestamp is the delete horizon of its tombstones.
const DELETE_HORIZON_FLAG: i16 = 0x40;

/// A topic's compaction settings (Kafka's names), and the memory one cleaning may use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionPolicy {
    /// `min.cleanable.dirty.ratio`: clean once more than this share of the log is dirty.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: a dirty segment with a record younger than this is left
    /// alone, and so is every segment after it.
    pub min_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone is kept after the cleaner first passed it,
    /// so consumers see the delete.
    pub delete_retention_ms: i64,
    /// Memory for the key map of one cleaning (Kafka's `log.cleaner.dedupe.buffer.size`,
    /// here per shard: a shard cleans its partitions one at a time).
    pub dedupe_buffer_bytes: usize,
}

/// What one cleaning did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_rewritten: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
    /// Batches given a delete horizon (they kept a tombstone the cleaner had not passed yet).
    pub delete_horizons_set: u64,
    /// The first dirty offset after this cleaning: where the next one starts mapping keys.
    pub cleaned_up_to: i64,
}

/// The cleaner's state of one log.
#[derive(Default)]
pub(super) struct CleanerState {
    /// First offset not yet cleaned (i64::MIN: none yet, clean from the log start); None
    /// until the checkpoint is read.
    first_dirty_offset: Cell<Option<i64>>,
    /// A cleaning is under way (one at a time per log).
    running: Cell<bool>,
    /// A cleaned segment is being swapped in: deleting segments waits for it.
    swapping: Cell<bool>,
    /// Batch bytes the cleaner has scanned (mapping keys or filtering) since the log opened.
    bytes_scanned: Cell<u64>,
    /// Test hooks: the cleaning stops at a stage until the test lets it go on.
    #[cfg(test)]
    pause: std::cell::RefCell<Option<tests::Pause>>,
}

/// One record of a batch, as the cleaner sees it.
struct RecordView<'a> {
    offset: i64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    tombstone: bool,
    /// The record's bytes, length prefix included.
    raw: &'a [u8],
}

impl<'a> RecordView<'a> {
    fn of(header: &BatchHeader, record: Record<'a>) -> RecordView<'a> {
        RecordView {
            offset: header.base_offset + i64::from(record.offset_delta),
            timestamp: header.base_timestamp.wrapping_add(record.timestamp_delta),
            key: record.key,
            tombstone: record.value.is_none(),
            raw: record.raw,
        }
    }
}

/// A segment a cleaning may read and rewrite.
struct Candidate {
    base: i64,
    /// The next segment's base: offsets up to it belong here, holes or not.
    end: i64,
    files: Rc<SegmentFiles>,
    size: u64,
    /// Where mapping keys starts: the indexed batch at or before the first dirty offset.
    map_from: u64,
}

/// Key hash → latest offset, over the dirty offsets `[start, end)`.
struct KeyMap {
    latest: HashMap<u128, i64>,
    entries_max: usize,
    start: i64,
    /// First offset the map does not cover; records from here on are kept as they are.
    end: i64,
}

/// What a cleaning keeps (Kafka's `shouldRetainRecord` for v2 batches).
struct Retain<'a> {
    map: &'a KeyMap,
    now_ms: i64,
    /// The delete horizon a batch gets when it keeps a tombstone for the first time.
    new_horizon_ms: i64,
}

/// What the cleaner makes of one batch.
enum Filtered {
    /// Kept byte for byte.
    Unchanged,
    /// Records dropped or the delete horizon set: the batch rebuilt.
    Rewritten(Bytes),
    /// No record left: the batch goes, its offsets become a hole.
    Emptied,
}

struct BatchOutcome {
    batch: Filtered,
    dropped: u64,
    horizon_set: bool,
}

impl PartitionLog {
    /// Cleans the log if enough of it is dirty; None when there was nothing to do (or a
    /// cleaning of this log is already under way).
    pub async fn compact(
        &self,
        policy: CompactionPolicy,
        now_ms: i64,
    ) -> Result<Option<CompactionStats>, StorageError> {
        if self.cleaner.running.replace(true) {
            return Ok(None);
        }
        let _running = ClearOnDrop(&self.cleaner.running);
        let first_dirty = self.first_dirty_offset().await;
        let Some(candidates) = self.cleanable_segments(policy, now_ms, first_dirty) else {
            return Ok(None);
        };
        let entries_max = (policy.dedupe_buffer_bytes / KEY_MAP_ENTRY_BYTES).max(1);
        let mut pace = Pace::new(&self.cleaner);
        let map = build_key_map(&candidates, first_dirty, entries_max, &mut pace).await?;
        let retain = Retain {
            map: &map,
            now_ms,
            new_horizon_ms: now_ms.saturating_add(policy.delete_retention_ms.max(0)),
        };
        let mut stats = CompactionStats::default();
        for candidate in candidates.iter().take_while(|c| c.base < map.end) {
            self.clean_segment(candidate, &retain, &mut pace, &mut stats)
                .await?;
        }
        self.set_first_dirty_offset(map.end).await?;
        stats.cleaned_up_to = map.end;
        Ok(Some(stats))
    }

    /// Batch bytes the cleaner has scanned (mapping keys or filtering) since the log opened.
    pub fn cleaner_bytes_scanned(&self) -> u64 {
        self.cleaner.bytes_scanned.get()
    }

    /// Resolves once no cleaned segment is being swapped in. Deleting segments waits for
    /// this, then removes them before its next await, so a swap never recreates the files
    /// of a segment that was deleted.
    pub(super) async fn until_no_segment_swap(&self) {
        self.waiters.until(|| !self.cleaner.swapping.get()).await;
    }

    /// The first dirty offset: remembered, else checkpointed, else the log start. As Kafka,
    /// one below the log start (retention went past it) or past the log end (recovery cut a
    /// torn tail it was taken beyond) starts over from the log start.
    async fn first_dirty_offset(&self) -> i64 {
        let stored = match self.cleaner.first_dirty_offset.get() {
            Some(offset) => Some(offset),
            None => {
                let dir = self.dir.clone();
                let read = glommio::executor()
                    .spawn_blocking(move || {
                        super::retention::read_offset_file(&dir, CLEANER_CHECKPOINT)
                    })
                    .await;
                // A lost checkpoint costs a cleaning of the whole log, never a record.
                let stored = read.unwrap_or_else(|e| {
                    tracing::warn!("{e}; cleaning from the log start");
                    None
                });
                self.cleaner
                    .first_dirty_offset
                    .set(Some(stored.unwrap_or(i64::MIN)));
                stored
            }
        };
        let state = self.state.borrow();
        stored
            .filter(|o| (state.log_start_offset..=state.log_end_offset).contains(o))
            .unwrap_or(state.log_start_offset)
    }

    async fn set_first_dirty_offset(&self, offset: i64) -> Result<(), StorageError> {
        self.cleaner.first_dirty_offset.set(Some(offset));
        super::retention::write_offset_file(&self.dir, CLEANER_CHECKPOINT, offset).await
    }

    /// The segments this cleaning may touch, from the start of the log, or None when the log
    /// is not dirty enough. Closed, written and synced segments qualify; a dirty one only if
    /// its newest record is older than the compaction lag, and none after the first that is
    /// not (Kafka's first uncleanable offset).
    fn cleanable_segments(
        &self,
        policy: CompactionPolicy,
        now_ms: i64,
        first_dirty: i64,
    ) -> Option<Vec<Candidate>> {
        let state = self.state.borrow();
        if state.closed {
            return None;
        }
        let closed = super::retention::deletable_prefix(&state.segments, &state.pending);
        // As Kafka: no lag, no timestamp check (a producer clock ahead would stall cleaning).
        let lag_horizon = (policy.min_compaction_lag_ms > 0)
            .then(|| now_ms.saturating_sub(policy.min_compaction_lag_ms));
        let mut candidates = Vec::with_capacity(closed);
        for (i, s) in state.segments[..closed].iter().enumerate() {
            let end = state.segments[i + 1].base_offset;
            let dirty = end > first_dirty;
            if dirty && lag_horizon.is_some_and(|h| s.max_timestamp > h) {
                break;
            }
            let Some(files) = s.files.clone() else { break };
            let map_from = if dirty && s.base_offset < first_dirty {
                let relative = u32::try_from(first_dirty - s.base_offset).unwrap_or(u32::MAX);
                u64::from(s.index.floor_position(relative))
            } else {
                0
            };
            candidates.push(Candidate {
                base: s.base_offset,
                end,
                files,
                size: s.durable_size,
                map_from,
            });
        }
        // Kafka's cleanable ratio: dirty bytes over clean plus dirty, a segment the first
        // dirty offset cuts counting on both sides.
        let clean: u64 = state
            .segments
            .iter()
            .filter(|s| s.base_offset < first_dirty)
            .map(|s| s.durable_size)
            .sum();
        let dirty: u64 = candidates
            .iter()
            .filter(|c| c.end > first_dirty)
            .map(|c| c.size)
            .sum();
        let ratio = dirty as f64 / (clean + dirty).max(1) as f64;
        (dirty > 0 && ratio > policy.min_cleanable_dirty_ratio).then_some(candidates)
    }

    /// Filters one segment. The replacement file is started at the first batch that
    /// changes, as a copy of the batches before it; a segment nothing changes in is left
    /// alone.
    async fn clean_segment(
        &self,
        candidate: &Candidate,
        retain: &Retain<'_>,
        pace: &mut Pace<'_>,
        stats: &mut CompactionStats,
    ) -> Result<(), StorageError> {
        let interval = u64::from(self.config().index_interval_bytes);
        let mut cleaned = Segment::new(candidate.base);
        let mut replacement: Option<Replacement> = None;
        let (mut size, mut removed, mut horizons) = (0u64, 0u64, 0u64);
        let mut batches = Batches::new(&candidate.files, 0, candidate.size);
        while let Some((position, batch)) = batches.next().await? {
            let outcome = filter_batch(&batch, retain)?;
            removed += outcome.dropped;
            horizons += u64::from(outcome.horizon_set);
            let kept: Option<&[u8]> = match &outcome.batch {
                Filtered::Unchanged => Some(&batch),
                Filtered::Rewritten(bytes) => Some(bytes),
                Filtered::Emptied => None,
            };
            if replacement.is_none() && !matches!(outcome.batch, Filtered::Unchanged) {
                if self.state.borrow().closed {
                    return Err(StorageError::Closed(self.dir.clone()));
                }
                let mut started = Replacement::create(&self.dir, candidate.base).await?;
                started
                    .copy_prefix(&candidate.files, position, pace)
                    .await?;
                replacement = Some(started);
            }
            if let Some(kept) = kept {
                let header = batch::parse_header(kept)?;
                cleaned.note_batch(size, &header, interval);
                size += kept.len() as u64;
                if let Some(replacement) = replacement.as_mut() {
                    replacement.push(kept).await?;
                }
            }
            pace.step(batch.len()).await;
        }
        stats.bytes_before += candidate.size;
        stats.bytes_after += size;
        let Some(replacement) = replacement else {
            return Ok(());
        };
        replacement.finish().await?;
        cleaned.assigned_size = size;
        cleaned.durable_size = size;
        if self.swap_in(candidate, cleaned).await? {
            stats.segments_rewritten += 1;
            stats.records_removed += removed;
            stats.delete_horizons_set += horizons;
        }
        Ok(())
    }

    /// Swaps the finished `<base>.log.cleaned` in for the candidate's segment and reloads its
    /// files, unless the segment left the log meanwhile (retention, DeleteRecords, or the
    /// log's deletion): then the work is discarded. Returns whether it swapped.
    async fn swap_in(
        &self,
        candidate: &Candidate,
        mut cleaned: Segment,
    ) -> Result<bool, StorageError> {
        #[cfg(test)]
        self.test_pause(tests::Stage::BeforeSwap).await;
        let base = candidate.base;
        let present = {
            let state = self.state.borrow();
            !state.closed
                && state.segments.iter().any(|s| {
                    s.base_offset == base
                        && s.files
                            .as_ref()
                            .is_some_and(|f| Rc::ptr_eq(f, &candidate.files))
                })
        };
        let dir = self.dir.clone();
        if !present {
            glommio::executor()
                .spawn_blocking(move || remove_if_present(&cleaned_path(&dir, base)))
                .await?;
            return Ok(false);
        }
        // Checked and claimed with no await in between: deletion now waits for the swap.
        self.cleaner.swapping.set(true);
        let _swapping = SwapGuard(self);
        #[cfg(test)]
        self.test_pause(tests::Stage::DuringSwap).await;
        let index = cleaned.index.encode_from(0);
        let time_index = cleaned.time_index.encode_from(0);
        cleaned.index_persisted = cleaned.index.len();
        cleaned.time_index_persisted = cleaned.time_index.len();
        // File replacement is a series of blocking syscalls: off the reactor.
        let replaced = glommio::executor()
            .spawn_blocking(move || {
                // The replaced log's blocks go to the eraser, as retention's do: opened
                // before the rename so they can be freed a slice at a time after it.
                let log = dir.join(segment::file_name(base, "log"));
                let writers = super::erase::open_writers(&[log]);
                swap_files(&dir, base, &index, &time_index).map(|()| writers)
            })
            .await?;
        cleaned.files = Some(Rc::new(SegmentFiles::open(&self.dir, base).await?));
        let mut state = self.state.borrow_mut();
        let slot = state.segments.iter_mut().find(|s| s.base_offset == base);
        debug_assert!(slot.is_some(), "segment deletion waits for a swap");
        if let Some(slot) = slot {
            // A closed segment's end is where the next one starts, holes or not.
            cleaned.next_offset = cleaned.next_offset.max(slot.next_offset);
            let old = std::mem::replace(slot, cleaned);
            super::erase::later(super::erase::logs_of([&old]).0, replaced);
        }
        Ok(true)
    }
}

/// Maps the keys of the dirty candidates from `first_dirty` on, until the map is full.
async fn build_key_map(
    candidates: &[Candidate],
    first_dirty: i64,
    entries_max: usize,
    pace: &mut Pace<'_>,
) -> Result<KeyMap, StorageError> {
    let mut map = KeyMap {
        latest: HashMap::new(),
        entries_max,
        start: first_dirty,
        end: first_dirty,
    };
    for candidate in candidates.iter().filter(|c| c.end > first_dirty) {
        let mut batches = Batches::new(&candidate.files, candidate.map_from, candidate.size);
        while let Some((_, batch)) = batches.next().await? {
            if !map.add_batch(&batch)? {
                return Ok(map);
            }
            pace.step(batch.len()).await;
        }
        map.end = map.end.max(candidate.end);
    }
    Ok(map)
}

impl KeyMap {
    /// Maps a batch's keyed records at or after the start; false once the map is full, its
    /// end then at the first record that did not fit.
    fn add_batch(&mut self, bytes: &[u8]) -> Result<bool, StorageError> {
        let header = batch::parse_header(bytes)?;
        if header.last_offset() < self.start {
            return Ok(true);
        }
        let mut full_at = None;
        for_each_record(bytes, |record| {
            let Some(key) = record.key else { return };
            if full_at.is_some() || record.offset < self.start {
                return;
            }
            let hash = key_hash(key);
            if let Some(slot) = self.latest.get_mut(&hash) {
                *slot = (*slot).max(record.offset);
            } else if self.latest.len() < self.entries_max {
                self.latest.insert(hash, record.offset);
            } else {
                full_at = Some(record.offset);
            }
        })?;
        match full_at {
            Some(offset) => {
                self.end = offset;
                Ok(false)
            }
            None => {
                self.end = self.end.max(header.next_offset());
                Ok(true)
            }
        }
    }

    /// A later record of the same key is in the map.
    fn supersedes(&self, key: &[u8], offset: i64) -> bool {
        self.latest
            .get(&key_hash(key))
            .is_some_and(|&latest| latest > offset)
    }
}

impl Retain<'_> {
    fn keeps(&self, record: &RecordView, horizon_ms: Option<i64>) -> bool {
        if record.offset >= self.map.end {
            return true; // past what this cleaning mapped
        }
        let Some(key) = record.key else {
            return true;
        };
        if self.map.supersedes(key, record.offset) {
            return false;
        }
        !record.tombstone || horizon_ms.is_none_or(|horizon| self.now_ms < horizon)
    }
}

/// Hands the shard back to its other tasks as the cleaner works.
struct Pace<'a> {
    cleaner: &'a CleanerState,
    since_yield: usize,
}

impl<'a> Pace<'a> {
    fn new(cleaner: &'a CleanerState) -> Pace<'a> {
        Pace {
            cleaner,
            since_yield: 0,
        }
    }

    /// Counts `bytes` of batches scanned; yields once `YIELD_EVERY_BYTES` have been.
    async fn step(&mut self, bytes: usize) {
        let scanned = &self.cleaner.bytes_scanned;
        scanned.set(scanned.get() + bytes as u64);
        self.since_yield += bytes;
        if self.since_yield >= YIELD_EVERY_BYTES {
            self.since_yield = 0;
            glommio::executor().yield_now().await;
        } else {
            glommio::yield_if_needed().await;
        }
    }

    /// After a chunk copied as it is (a memory copy, nothing scanned).
    async fn after_copy(&mut self) {
        self.since_yield = 0;
        glommio::executor().yield_now().await;
    }
}

/// Sets a flag back when dropped, however the cleaning ends.
struct ClearOnDrop<'a>(&'a Cell<bool>);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// Ends a swap, however it ends, and wakes the deletions waiting for it.
struct SwapGuard<'a>(&'a PartitionLog);

impl Drop for SwapGuard<'_> {
    fn drop(&mut self) {
        self.0.cleaner.swapping.set(false);
        self.0.waiters.wake_all();
    }
}

/// Reads a segment's batches in order, a bounded chunk at a time; a batch larger than a
/// chunk is read whole. Lengths come from disk and are checked before they are believed.
struct Batches<'a> {
    files: &'a SegmentFiles,
    end: u64,
    position: u64,
    chunk: Option<ReadResult>,
    chunk_start: u64,
}

impl<'a> Batches<'a> {
    fn new(files: &'a SegmentFiles, start: u64, end: u64) -> Batches<'a> {
        Batches {
            files,
            end,
            position: start,
            chunk: None,
            chunk_start: start,
        }
    }

    /// The next batch and its position, or None at the end.
    async fn next(&mut self) -> Result<Option<(u64, ReadResult)>, StorageError> {
        if self.position >= self.end {
            return Ok(None);
        }
        if let Some(found) = self.take_whole()? {
            return Ok(Some(found));
        }
        self.refill(READ_CHUNK_BYTES).await?;
        if let Some(found) = self.take_whole()? {
            return Ok(Some(found));
        }
        let Some(len) = self.prefix_len() else {
            return Err(self.corrupt("unreadable batch header"));
        };
        // Larger than a chunk: read exactly it.
        self.refill(len).await?;
        match self.take_whole()? {
            Some(found) => Ok(Some(found)),
            None => Err(self.corrupt("unreadable batch")),
        }
    }

    /// The length of the batch at the position, as far as the chunk shows it.
    fn prefix_len(&self) -> Option<usize> {
        let chunk = self.chunk.as_ref()?;
        let at = usize::try_from(self.position - self.chunk_start).ok()?;
        chunk
            .get(at..)
            .and_then(batch::parse_prefix)
            .map(|(_, len)| len)
    }

    /// The batch at the position if the chunk holds all of it.
    fn take_whole(&mut self) -> Result<Option<(u64, ReadResult)>, StorageError> {
        let Some(len) = self.prefix_len() else {
            return Ok(None);
        };
        if len > BATCH_BYTES_MAX || len as u64 > self.end - self.position {
            return Err(self.corrupt("batch runs past the end of the segment"));
        }
        let chunk = self.chunk.as_ref().expect("prefix_len found a chunk");
        let at = (self.position - self.chunk_start) as usize;
        if at + len > chunk.len() {
            return Ok(None);
        }
        let batch = ReadResult::slice(chunk, at, len).expect("the batch lies inside the chunk");
        let position = self.position;
        self.position += len as u64;
        Ok(Some((position, batch)))
    }

    async fn refill(&mut self, want: usize) -> Result<(), StorageError> {
        let want = (want as u64).min(self.end - self.position) as usize;
        let chunk = self
            .files
            .log
            .read_at(self.position, want)
            .await
            .map_err(StorageError::glommio("reading", &self.files.log_path))?;
        if chunk.len() < want {
            return Err(self.corrupt("the file is shorter than the segment"));
        }
        self.chunk = Some(chunk);
        self.chunk_start = self.position;
        Ok(())
    }

    fn corrupt(&self, reason: &str) -> StorageError {
        StorageError::Corrupt {
            path: self.files.log_path.clone(),
            reason: format!("at byte {}: {reason}", self.position),
        }
    }
}

/// `<base>.log.cleaned`, written a chunk at a time.
struct Replacement {
    file: BufferedFile,
    path: PathBuf,
    buffer: Vec<u8>,
    written: u64,
}

impl Replacement {
    async fn create(dir: &Path, base: i64) -> Result<Replacement, StorageError> {
        let path = cleaned_path(dir, base);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .buffered_open(&path)
            .await
            .map_err(StorageError::glommio("creating", &path))?;
        Ok(Replacement {
            file,
            path,
            buffer: Vec::with_capacity(WRITE_CHUNK_BYTES),
            written: 0,
        })
    }

    async fn push(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        // Positions in `.index` are u32 (Kafka's format); a horizon can grow a segment.
        if self.written + (self.buffer.len() + bytes.len()) as u64 > super::SEGMENT_BYTES_MAX {
            return Err(StorageError::Compaction(format!(
                "{} would outgrow a segment",
                self.path.display()
            )));
        }
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= WRITE_CHUNK_BYTES {
            self.write_buffer().await?;
        }
        Ok(())
    }

    /// Copies the original's first `len` bytes: the batches before the first change.
    async fn copy_prefix(
        &mut self,
        files: &SegmentFiles,
        len: u64,
        pace: &mut Pace<'_>,
    ) -> Result<(), StorageError> {
        let mut position = 0u64;
        while position < len {
            let want = ((len - position) as usize).min(READ_CHUNK_BYTES);
            let chunk = files
                .log
                .read_at(position, want)
                .await
                .map_err(StorageError::glommio("reading", &files.log_path))?;
            if chunk.len() < want {
                return Err(StorageError::Corrupt {
                    path: files.log_path.clone(),
                    reason: format!("at byte {position}: the file is shorter than the segment"),
                });
            }
            self.push(&chunk).await?;
            position += want as u64;
            pace.after_copy().await;
        }
        Ok(())
    }

    async fn write_buffer(&mut self) -> Result<(), StorageError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(WRITE_CHUNK_BYTES));
        let len = data.len();
        let written = self
            .file
            .write_at(data, self.written)
            .await
            .map_err(StorageError::glommio("writing", &self.path))?;
        if written != len {
            return Err(StorageError::Io {
                op: "writing",
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write: {written} of {len} bytes (disk full?)"),
                ),
            });
        }
        self.written += len as u64;
        Ok(())
    }

    /// Writes what is buffered, syncs and closes the file.
    async fn finish(mut self) -> Result<(), StorageError> {
        self.write_buffer().await?;
        self.file
            .fdatasync()
            .await
            .map_err(StorageError::glommio("syncing", &self.path))?;
        let path = self.path;
        self.file
            .close()
            .await
            .map_err(StorageError::glommio("closing", path))
    }
}

fn cleaned_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{}.cleaned", segment::file_name(base, "log")))
}

pub(super) fn remove_if_present(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("removing", path)(e)),
    }
}

/// Removes the old indexes, renames `<base>.log.cleaned` (written and synced) over the log,
/// writes and syncs the new indexes, and syncs the directory.
fn swap_files(dir: &Path, base: i64, index: &[u8], time_index: &[u8]) -> Result<(), StorageError> {
    use std::io::Write;
    let write = |path: &Path, bytes: &[u8]| -> Result<(), StorageError> {
        let mut file = std::fs::File::create(path).map_err(StorageError::io("creating", path))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(StorageError::io("writing", path))
    };
    for ext in ["index", "timeindex"] {
        remove_if_present(&dir.join(segment::file_name(base, ext)))?;
    }
    let cleaned = cleaned_path(dir, base);
    std::fs::rename(&cleaned, dir.join(segment::file_name(base, "log")))
        .map_err(StorageError::io("renaming", &cleaned))?;
    write(&dir.join(segment::file_name(base, "index")), index)?;
    write(&dir.join(segment::file_name(base, "timeindex")), time_index)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("syncing", dir))
}

/// Removes what an interrupted cleaning left behind (`*.cleaned`); called when a log opens.
pub(super) fn remove_leftovers(dir: &Path) -> Result<(), StorageError> {
    for entry in std::fs::read_dir(dir).map_err(StorageError::io("listing", dir))? {
        let path = entry.map_err(StorageError::io("listing", dir))?.path();
        if path.extension().is_some_and(|e| e == "cleaned") {
            std::fs::remove_file(&path).map_err(StorageError::io("removing", &path))?;
        }
    }
    Ok(())
}

/// A 128-bit hash of a key (two SipHash passes with different prefixes): a collision would
/// make the cleaner drop a live record, so 64 bits are not enough for billions of keys.
fn key_hash(key: &[u8]) -> u128 {
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// Whether every record of every batch in a validated produce payload has a key: Kafka
/// refuses keyless records on a compacted topic, since compaction keeps one record per key.
/// Decompresses compressed batches, so it is run only for compacted topics.
pub fn every_record_has_a_key(payload: &[u8]) -> Result<bool, StorageError> {
    let mut at = 0;
    let mut keyed = true;
    while at < payload.len() {
        let header = batch::parse_header(&payload[at..])?;
        let end = (at + header.batch_len).min(payload.len());
        for_each_record(&payload[at..end], |record| keyed &= record.key.is_some())?;
        at += header.batch_len;
    }
    Ok(keyed)
}

/// Calls `f` with every record of a batch (decompressing if needed). Control batches have no
/// keyed records and are skipped.
fn for_each_record(batch: &[u8], mut f: impl FnMut(RecordView)) -> Result<(), StorageError> {
    let header = batch::parse_header(batch)?;
    if header.attributes & CONTROL_FLAG != 0 {
        return Ok(());
    }
    records::with_records(batch, &header, |records| {
        for record in records {
            f(RecordView::of(&header, record?));
        }
        Ok(())
    })
    .map_err(records_error)
}

/// The batch without the records `retain` rejects, with its delete horizon set if it keeps
/// a tombstone and has none yet (Kafka's `MemoryRecords.filterTo`).
fn filter_batch(batch: &[u8], retain: &Retain) -> Result<BatchOutcome, StorageError> {
    let header = batch::parse_header(batch)?;
    let unchanged = BatchOutcome {
        batch: Filtered::Unchanged,
        dropped: 0,
        horizon_set: false,
    };
    if header.attributes & CONTROL_FLAG != 0 {
        return Ok(unchanged);
    }
    let horizon_ms =
        (header.attributes & DELETE_HORIZON_FLAG != 0).then_some(header.base_timestamp);
    // The records borrow the shard's decompression scratch, so the batch is rebuilt (and
    // recompressed) inside the reader's call.
    records::with_records(batch, &header, |records| {
        let mut kept: Vec<RecordView> = Vec::new();
        let mut section_len = 0;
        let mut dropped = 0u64;
        for record in records {
            let record = RecordView::of(&header, record?);
            section_len += record.raw.len();
            if retain.keeps(&record, horizon_ms) {
                kept.push(record);
            } else {
                dropped += 1;
            }
        }
        let set_horizon = horizon_ms.is_none() && kept.iter().any(|r| r.tombstone);
        if dropped == 0 && !set_horizon {
            return Ok(Ok(unchanged));
        }
        if kept.is_empty() {
            return Ok(Ok(BatchOutcome {
                batch: Filtered::Emptied,
                dropped,
                horizon_set: false,
            }));
        }
        Ok(
            rebuild(batch, &header, &kept, section_len, set_horizon, retain).map(|out| {
                BatchOutcome {
                    batch: Filtered::Rewritten(out),
                    dropped,
                    horizon_set: set_horizon,
                }
            }),
        )
    })
    .map_err(records_error)?
}

/// A batch of the `kept` records of `batch`, header fields (length, count, attributes,
/// base timestamp, CRC) rewritten to match.
fn rebuild(
    batch: &[u8],
    header: &BatchHeader,
    kept: &[RecordView],
    section_len: usize,
    set_horizon: bool,
    retain: &Retain,
) -> Result<Bytes, StorageError> {
    let (attributes, base_timestamp) = if set_horizon {
        (
            header.attributes | DELETE_HORIZON_FLAG,
            retain.new_horizon_ms,
        )
    } else {
        (header.attributes, header.base_timestamp)
    };
    let mut body = BytesMut::with_capacity(section_len + kept.len() * 10);
    for record in kept {
        if set_horizon {
            put_rebased(&mut body, record, base_timestamp)?;
        } else {
            body.extend_from_slice(record.raw);
        }
    }
    let body = compress(header.attributes & CODEC_MASK, body.freeze())?;
    let mut out = BytesMut::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    out.extend_from_slice(&body);
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| StorageError::Compaction("a cleaned batch outgrew its length".into()))?;
    let kept_count = i32::try_from(kept.len()).expect("no more records kept than the i32 count");
    out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    out[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&base_timestamp.to_be_bytes());
    out[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&kept_count.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// Appends a record with its timestamp delta taken against a new base timestamp, so it
/// decodes to the same timestamp (its length prefix follows the delta's new size).
fn put_rebased(
    out: &mut BytesMut,
    record: &RecordView,
    base_timestamp: i64,
) -> Result<(), StorageError> {
    let bad = || StorageError::Compaction("record framing".to_owned());
    let (_, length_bytes) = read_varint(record.raw).ok_or_else(bad)?;
    let body = &record.raw[length_bytes..];
    let (&attributes, after_attributes) = body.split_first().ok_or_else(bad)?;
    let (_, delta_bytes) = read_varint(after_attributes).ok_or_else(bad)?;
    let rest = &after_attributes[delta_bytes..];
    let mut delta = [0u8; 10];
    let delta_len = put_varint(&mut delta, record.timestamp.wrapping_sub(base_timestamp));
    let mut length = [0u8; 10];
    let length_len = put_varint(&mut length, (1 + delta_len + rest.len()) as i64);
    out.extend_from_slice(&length[..length_len]);
    out.extend_from_slice(&[attributes]);
    out.extend_from_slice(&delta[..delta_len]);
    out.extend_from_slice(rest);
    Ok(())
}

/// Writes a zigzag varint (Kafka's record format) into `out`; returns its length.
fn put_varint(out: &mut [u8; 10], value: i64) -> usize {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    let mut n = 0;
    while v >= 0x80 {
        out[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    n + 1
}

fn records_error(e: RecordsError) -> StorageError {
    StorageError::Compaction(format!("stored batch: {e}"))
}

fn codec_error(e: anyhow::Error) -> StorageError {
    StorageError::Compaction(format!("codec: {e:#}"))
}

fn compress(codec: i16, records: Bytes) -> Result<Bytes, StorageError> {
    let mut out = BytesMut::new();
    let put = |b: &mut BytesMut| {
        b.extend_from_slice(&records);
        Ok(())
    };
    match codec {
        0 => return Ok(records.clone()),
        1 => Gzip::compress(&mut out, put),
        2 => Snappy::compress(&mut out, put),
        3 => Lz4::compress(&mut out, put),
        4 => Zstd::compress(&mut out, put),
        other => Err(anyhow::anyhow!("unknown codec {other}")),
    }
    .map_err(codec_error)?;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::future::Future;
    use std::rc::Rc;

    use bytes::Bytes;
    use futures::channel::oneshot;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    use super::super::testing::{headers, read_slice, run};
    use super::super::{LastShutdown, LogConfig, PartitionLog, RetentionPolicy};
    use super::{CompactionPolicy, CLEANER_CHECKPOINT, DELETE_HORIZON_FLAG, KEY_MAP_ENTRY_BYTES};
    use crate::flush_gate::FlushGate;

    /// Where a test stops a cleaning.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Stage {
        /// The replacement is written; the swap has not checked its segment yet.
        BeforeSwap,
        /// The swap has claimed its segment; no file is replaced yet.
        DuringSwap,
    }

    pub(super) struct Pause {
        stage: Stage,
        reached: oneshot::Sender<()>,
        resume: oneshot::Receiver<()>,
    }

    impl PartitionLog {
        pub(super) async fn test_pause(&self, stage: Stage) {
            let pause = {
                let mut slot = self.cleaner.pause.borrow_mut();
                match slot.as_ref() {
                    Some(p) if p.stage == stage => slot.take(),
                    _ => None,
                }
            };
            if let Some(pause) = pause {
                let _ = pause.reached.send(());
                let _ = pause.resume.await;
            }
        }
    }

    /// Makes the next cleaning of `log` stop at `stage`: resolves the first receiver when it
    /// gets there, and goes on when the sender is used or dropped.
    fn pause_at(log: &PartitionLog, stage: Stage) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached, reached_rx) = oneshot::channel();
        let (resume_tx, resume) = oneshot::channel();
        *log.cleaner.pause.borrow_mut() = Some(Pause {
            stage,
            reached,
            resume,
        });
        (reached_rx, resume_tx)
    }

    /// One batch of (key, value) records, value None a tombstone, all at `timestamp`.
    fn keyed(
        records: &[(&str, Option<&str>)],
        timestamp: i64,
        compression: Compression,
    ) -> Vec<u8> {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32 - 1,
                timestamp: timestamp + i as i64,
                key: Some(Bytes::from(k.to_string())),
                value: v.map(|v| Bytes::from(v.to_string())),
                headers: Default::default(),
            })
            .collect();
        let mut out = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut out,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        out.to_vec()
    }

    /// Every record of the log, decoded.
    async fn records(log: &PartitionLog) -> Vec<Record> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while let Some(slice) = log.read(offset, 1 << 20, true).await.unwrap() {
            let mut bytes = Bytes::from(read_slice(&slice));
            for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
                for r in set.records {
                    offset = offset.max(r.offset + 1);
                    out.push(r);
                }
            }
        }
        out
    }

    /// Every record of the log: (offset, key, value).
    async fn contents(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
        let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
        records(log)
            .await
            .iter()
            .map(|r| {
                (
                    r.offset,
                    text(r.key.as_ref().unwrap()),
                    r.value.as_ref().map(text),
                )
            })
            .collect()
    }

    fn values(log: &[(i64, String, Option<String>)], key: &str) -> Vec<Option<String>> {
        log.iter()
            .filter(|(_, k, _)| k == key)
            .map(|(_, _, v)| v.clone())
            .collect()
    }

    /// Closes the segments before it with distinct keys, so what came before is cleanable.
    async fn filler(log: &PartitionLog, count: usize, timestamp: i64) {
        for i in 0..count {
            let (key, value) = (format!("filler-{timestamp}-{i}"), format!("f{i}"));
            log.append(&keyed(
                &[(&key, Some(&value))],
                timestamp,
                Compression::None,
            ))
            .await
            .unwrap();
        }
    }

    /// The files of the partition directory, sorted.
    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    const POLICY: CompactionPolicy = CompactionPolicy {
        min_cleanable_dirty_ratio: 0.5,
        min_compaction_lag_ms: 0,
        delete_retention_ms: 1_000,
        dedupe_buffer_bytes: super::DEDUPE_BUFFER_BYTES_DEFAULT,
    };

    /// Cleans whenever anything is dirty.
    const EAGER: CompactionPolicy = CompactionPolicy {
        min_cleanable_dirty_ratio: 0.0,
        ..POLICY
    };

    #[test]
    fn compaction_keeps_the_latest_record_per_key_and_never_moves_offsets() {
        run(|dir| async move {
            let config = LogConfig {
                segment_bytes: 600,
                index_interval_bytes: 100,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.clone(), config.clone())
                .await
                .unwrap();
            let codecs = [
                Compression::None,
                Compression::Gzip,
                Compression::Snappy,
                Compression::Lz4,
                Compression::Zstd,
            ];
            for round in 0..5 {
                for k in 0..4 {
                    let (key, value) = (format!("k{k}"), format!("k{k}-r{round}"));
                    let codec = codecs[(round * 4 + k) % codecs.len()];
                    log.append(&keyed(
                        &[(&key, Some(&value)), ("noise", Some("n"))],
                        10_000,
                        codec,
                    ))
                    .await
                    .unwrap();
                }
            }
            // A tombstone with an ancient timestamp and a recent one: the first cleaning
            // keeps both (KIP-534 counts delete.retention.ms from that cleaning).
            log.append(&keyed(&[("k1", None)], 100, Compression::None))
                .await
                .unwrap();
            log.append(&keyed(&[("k2", None)], 9_900, Compression::Gzip))
                .await
                .unwrap();
            filler(&log, 8, 10_000).await;
            let before = contents(&log).await;
            let end = log.log_end_offset();
            let stats = log
                .compact(POLICY, 10_500)
                .await
                .unwrap()
                .expect("dirty enough");
            assert!(
                stats.records_removed > 0 && stats.bytes_after < stats.bytes_before,
                "{stats:?}"
            );
            assert_eq!(stats.delete_horizons_set, 2, "{stats:?}");
            let after = contents(&log).await;
            // Offsets are a subsequence of the original ones, in order.
            let original: std::collections::HashMap<i64, _> = before
                .iter()
                .map(|(o, k, v)| (*o, (k.clone(), v.clone())))
                .collect();
            assert!(after.windows(2).all(|w| w[0].0 < w[1].0));
            for (o, k, v) in &after {
                assert_eq!(
                    original[o],
                    (k.clone(), v.clone()),
                    "offset {o} still holds its record"
                );
            }
            assert_eq!(values(&after, "k0"), vec![Some("k0-r4".to_string())]);
            assert_eq!(values(&after, "k3"), vec![Some("k3-r4".to_string())]);
            assert_eq!(
                values(&after, "k1"),
                vec![None],
                "what k1's delete deleted is gone"
            );
            assert_eq!(values(&after, "k2"), vec![None]);
            assert_eq!(values(&after, "noise").len(), 1);
            assert_eq!(log.log_end_offset(), end);
            // Nothing to do right after: the dirty share is gone.
            assert_eq!(log.compact(POLICY, 10_500).await.unwrap(), None);
            // Appends go on; a restart (full recovery, with holes) sees the same log.
            log.append(&keyed(&[("k0", Some("new"))], 10_600, Compression::None))
                .await
                .unwrap();
            log.flush().await.unwrap();
            let expected = contents(&log).await;
            drop(log);
            for last in [LastShutdown::Unclean, LastShutdown::Clean] {
                let log = PartitionLog::open_after(
                    dir.clone(),
                    config.clone(),
                    last,
                    FlushGate::unlimited(),
                )
                .await
                .unwrap();
                assert_eq!(contents(&log).await, expected, "{last:?}");
                assert_eq!(log.log_end_offset(), end + 1);
            }
        });
    }

    /// KIP-534: the first cleaning that keeps a tombstone sets its batch's delete horizon
    /// (flag 0x40, base timestamp = now + delete.retention.ms, timestamps unchanged); the
    /// tombstone goes at the first cleaning at or after the horizon, however old it is.
    #[test]
    fn a_replaced_segment_is_freed_by_the_eraser() {
        run(|dir| async move {
            let config = LogConfig {
                segment_bytes: 600,
                index_interval_bytes: 100,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.clone(), config).await.unwrap();
            for round in 0..6 {
                let value = format!("r{round}");
                log.append(&keyed(&[("k", Some(&value))], 10_000, Compression::None))
                    .await
                    .unwrap();
            }
            filler(&log, 8, 10_000).await;
            // The test's own view of the first segment's inode before cleaning replaces it.
            let observer = std::fs::File::open(dir.join("00000000000000000000.log")).unwrap();
            let size = observer.metadata().unwrap().len();
            let stats = log.compact(EAGER, 10_500).await.unwrap().expect("dirty");
            assert!(stats.segments_rewritten > 0, "{stats:?}");
            super::super::testing::until_erased().await;
            assert!(size > 0);
            assert_eq!(
                observer.metadata().unwrap().len(),
                0,
                "the old blocks are freed"
            );
            assert_eq!(
                values(&contents(&log).await, "k"),
                vec![Some("r5".to_string())]
            );
        });
    }

    #[test]
    fn a_tombstone_stays_delete_retention_ms_after_the_first_cleaning() {
        run(|dir| async move {
            let config = LogConfig {
                segment_bytes: 400,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir, config).await.unwrap();
            for round in 0..3 {
                let value = format!("v{round}");
                log.append(&keyed(&[("gone", Some(&value))], 50, Compression::None))
                    .await
                    .unwrap();
            }
            // Produced "long ago": a horizon counted from its own timestamp is long past.
            let tombstone = log
                .append(&keyed(
                    &[("gone", None), ("kept", Some("k"))],
                    100,
                    Compression::Gzip,
                ))
                .await
                .unwrap()
                .base_offset;
            filler(&log, 6, 1_000).await;
            let now = 1_000_000;
            let stats = log.compact(EAGER, now).await.unwrap().expect("dirty");
            assert_eq!(stats.delete_horizons_set, 1, "{stats:?}");
            let after = contents(&log).await;
            assert_eq!(values(&after, "gone"), vec![None], "the delete is visible");
            let tombstone_batch = |log: Rc<PartitionLog>| async move {
                let slice = log.read(tombstone, 1, true).await.unwrap().unwrap();
                let bytes = read_slice(&slice);
                let header = headers(&bytes)[0]; // CRC checked
                let decoded = RecordBatchDecoder::decode_all(&mut Bytes::from(bytes)).unwrap();
                (header, decoded[0].records.clone())
            };
            let (header, decoded) = tombstone_batch(log.clone()).await;
            assert_eq!(header.base_offset, tombstone);
            assert_ne!(
                header.attributes & DELETE_HORIZON_FLAG,
                0,
                "the horizon flag is set"
            );
            assert_eq!(header.codec(), 1, "still gzip");
            assert_eq!(header.base_timestamp, now + EAGER.delete_retention_ms);
            assert!(decoded.iter().all(|r| r.delete_horizon));
            let timestamps: Vec<i64> = decoded.iter().map(|r| r.timestamp).collect();
            assert_eq!(timestamps, vec![100, 101], "records keep their timestamps");

            // Before the horizon a cleaning keeps it and leaves the horizon as it is.
            filler(&log, 6, 2_000).await;
            let stats = log.compact(EAGER, now + 999).await.unwrap().expect("dirty");
            assert_eq!(stats.delete_horizons_set, 0, "{stats:?}");
            assert_eq!(values(&contents(&log).await, "gone"), vec![None]);
            let (again, _) = tombstone_batch(log.clone()).await;
            assert_eq!(again.base_timestamp, header.base_timestamp);

            // At the horizon it goes; the rest of its batch stays.
            filler(&log, 6, 3_000).await;
            log.compact(EAGER, now + 1_000)
                .await
                .unwrap()
                .expect("dirty");
            let after = contents(&log).await;
            assert_eq!(values(&after, "gone"), Vec::<Option<String>>::new());
            assert_eq!(values(&after, "kept"), vec![Some("k".to_string())]);
        });
    }

    #[test]
    fn the_first_dirty_offset_survives_a_restart() {
        run(|dir| async move {
            let config = LogConfig {
                segment_bytes: 300,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.clone(), config.clone())
                .await
                .unwrap();
            for i in 0..20 {
                let v = format!("v{i}");
                log.append(&keyed(&[("same", Some(&v))], 1_000, Compression::None))
                    .await
                    .unwrap();
            }
            let stats = log.compact(POLICY, 5_000).await.unwrap().expect("dirty");
            let stored = std::fs::read_to_string(dir.join(CLEANER_CHECKPOINT)).unwrap();
            assert_eq!(stored.trim().parse::<i64>().unwrap(), stats.cleaned_up_to);
            assert!(stats.cleaned_up_to > 0);
            drop(log);
            let log = PartitionLog::open(dir.clone(), config.clone())
                .await
                .unwrap();
            assert_eq!(
                log.compact(POLICY, 5_000).await.unwrap(),
                None,
                "a restart does not make the cleaned log dirty"
            );
            drop(log);
            // A damaged or impossible checkpoint costs a cleaning from the start, no more.
            for damaged in ["not an offset", "999999"] {
                std::fs::write(dir.join(CLEANER_CHECKPOINT), damaged).unwrap();
                let log = PartitionLog::open(dir.clone(), config.clone())
                    .await
                    .unwrap();
                let stats = log.compact(POLICY, 5_000).await.unwrap();
                assert!(stats.is_some(), "{damaged:?}: cleaned from the log start");
            }
        });
    }

    /// With room for three keys, a cleaning covers the offsets up to the first key that did
    /// not fit, and the next cleaning goes on from there (Kafka's full dedupe buffer).
    #[test]
    fn a_full_key_map_cleans_only_up_to_what_it_mapped() {
        run(|dir| async move {
            let config = LogConfig {
                segment_bytes: 500,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir, config).await.unwrap();
            for round in 0..5 {
                for key in ["a", "b", "c"] {
                    let value = format!("{key}{round}");
                    log.append(&keyed(&[(key, Some(&value))], 1_000, Compression::None))
                        .await
                        .unwrap();
                }
            }
            for key in ["d", "e", "f", "d", "e", "f"] {
                log.append(&keyed(&[(key, Some(key))], 1_000, Compression::None))
                    .await
                    .unwrap();
            }
            filler(&log, 16, 1_000).await;
            let small = CompactionPolicy {
                dedupe_buffer_bytes: 3 * KEY_MAP_ENTRY_BYTES,
                ..EAGER
            };
            let stats = log.compact(small, 5_000).await.unwrap().expect("dirty");
            assert_eq!(stats.cleaned_up_to, 15, "the map filled at the first d");
            let after = contents(&log).await;
            assert_eq!(values(&after, "a"), vec![Some("a4".to_string())]);
            assert_eq!(values(&after, "c"), vec![Some("c4".to_string())]);
            assert_eq!(values(&after, "d").len(), 2, "past the map: untouched");
            let mut covered = stats.cleaned_up_to;
            let mut rounds = 1;
            while let Some(stats) = log.compact(small, 5_000).await.unwrap() {
                assert!(
                    stats.cleaned_up_to > covered,
                    "every cleaning makes progress"
                );
                covered = stats.cleaned_up_to;
                rounds += 1;
                assert!(rounds < 20);
            }
            assert!(rounds > 2, "{rounds} cleanings");
            let after = contents(&log).await;
            for key in ["a", "b", "c", "d", "e", "f"] {
                assert_eq!(values(&after, key).len(), 1, "{key}");
            }
        });
    }

    #[test]
    fn keyless_records_are_found_in_plain_and_compressed_batches() {
        let keyed = keyed(&[("a", Some("1")), ("b", Some("2"))], 1, Compression::Gzip);
        assert!(super::every_record_has_a_key(&keyed).unwrap());
        let mut payload = keyed.clone();
        payload.extend_from_slice(&crate::batch::tests::batch(&[b"no key"], 5));
        assert!(!super::every_record_has_a_key(&payload).unwrap());
    }

    #[test]
    fn young_segments_wait_for_the_compaction_lag() {
        run(|dir| async move {
            let config = LogConfig {
                segment_bytes: 300,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir, config).await.unwrap();
            for i in 0..20 {
                let v = format!("v{i}");
                log.append(&keyed(&[("same", Some(&v))], 1_000 + i, Compression::None))
                    .await
                    .unwrap();
            }
            let lagging = CompactionPolicy {
                min_compaction_lag_ms: 10_000,
                ..POLICY
            };
            assert_eq!(
                log.compact(lagging, 5_000).await.unwrap(),
                None,
                "every segment is too young"
            );
            assert!(log.compact(lagging, 20_000).await.unwrap().is_some());
        });
    }

    /// The cleaner never works through more than `YIELD_EVERY_BYTES` (plus the batch that
    /// crosses it) without giving the shard back, here measured per poll of its future.
    #[test]
    fn compaction_yields_to_the_shard_as_it_works() {
        run(|dir| async move {
            let config = LogConfig {
                segment_bytes: 64 << 10,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir, config).await.unwrap();
            let value = "x".repeat(900);
            for i in 0..600 {
                let key = format!("k{}", i % 40);
                let codec = if i % 2 == 0 {
                    Compression::Gzip
                } else {
                    Compression::None
                };
                log.append(&keyed(&[(&key, Some(&value))], 1_000, codec))
                    .await
                    .unwrap();
            }
            filler(&log, 4, 1_000).await;
            let largest_batch = 1_100;
            let mut cleaning = std::pin::pin!(log.compact(POLICY, 5_000));
            let mut most_per_poll = 0;
            let mut polls = 0;
            let stats = futures::future::poll_fn(|cx| {
                let before = log.cleaner_bytes_scanned();
                let poll = cleaning.as_mut().poll(cx);
                most_per_poll = most_per_poll.max(log.cleaner_bytes_scanned() - before);
                polls += 1;
                poll
            })
            .await
            .unwrap()
            .expect("dirty");
            assert!(stats.records_removed > 400, "{stats:?}");
            assert!(
                log.cleaner_bytes_scanned() > 2 * super::READ_CHUNK_BYTES as u64,
                "more than a read chunk of work"
            );
            assert!(
                most_per_poll <= (super::YIELD_EVERY_BYTES + largest_batch) as u64,
                "{most_per_poll} bytes in one poll (of {polls})"
            );
        });
    }

    /// A log of small segments holding thirty values of one key, then filler stamped
    /// `filler_timestamp`: most of it is cleanable.
    async fn one_key_thirty_times(
        dir: &std::path::Path,
        filler_timestamp: i64,
    ) -> (std::rc::Rc<PartitionLog>, LogConfig) {
        let config = LogConfig {
            segment_bytes: 400,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir.to_path_buf(), config.clone())
            .await
            .unwrap();
        for i in 0..30 {
            let value = format!("v{i}");
            log.append(&keyed(&[("same", Some(&value))], 1_000, Compression::None))
                .await
                .unwrap();
        }
        filler(&log, 4, filler_timestamp).await;
        (log, config)
    }

    /// Retention or DeleteRecords deleting a segment while the cleaner rewrites it: the
    /// cleaner notices and drops its work, and no deleted file comes back.
    #[test]
    fn a_segment_deleted_while_it_is_cleaned_stays_deleted() {
        run(|dir| async move {
            let (log, config) = one_key_thirty_times(&dir, 1_000).await;
            let (reached, resume) = pause_at(&log, Stage::BeforeSwap);
            let cleaning = glommio::spawn_local({
                let log = log.clone();
                async move { log.compact(EAGER, 5_000).await }
            });
            reached.await.expect("the cleaning gets to its first swap");
            let segments = log.segment_count();
            let start = log.delete_records_before(25).await.unwrap();
            assert!(log.segment_count() < segments, "segments below 25 went");
            drop(resume);
            cleaning.await.unwrap();
            let expected = contents(&log).await;
            let first_base = super::super::testing::all_bases(&log).await[0];
            let names = files(&dir);
            assert!(!names.iter().any(|n| n.ends_with(".cleaned")), "{names:?}");
            let first_log = names.iter().find(|n| n.ends_with(".log")).unwrap();
            assert!(
                segment_base(first_log) <= first_base && segment_base(first_log) > 0,
                "no segment file below the log start came back: {names:?}"
            );
            drop(log);
            let log = PartitionLog::open(dir, config).await.unwrap();
            assert_eq!(log.log_start_offset(), start);
            assert_eq!(contents(&log).await, expected);
        });
    }

    /// A deletion that comes while a cleaned segment is being swapped in waits for the swap,
    /// then deletes the new files.
    #[test]
    fn segment_deletion_waits_for_a_swap_under_way() {
        run(|dir| async move {
            let (log, config) = one_key_thirty_times(&dir, 50_000).await;
            let (reached, resume) = pause_at(&log, Stage::DuringSwap);
            let cleaning = glommio::spawn_local({
                let log = log.clone();
                async move { log.compact(EAGER, 60_000).await }
            });
            reached.await.expect("the cleaning gets to its first swap");
            let deleted = Rc::new(Cell::new(None));
            let retention = glommio::spawn_local({
                let (log, deleted) = (log.clone(), deleted.clone());
                async move {
                    let policy = RetentionPolicy {
                        retention_ms: Some(10_000),
                        retention_bytes: None,
                    };
                    deleted.set(Some(log.apply_retention(policy, 60_000).await.unwrap()));
                }
            });
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            assert_eq!(deleted.get(), None, "retention waits for the swap");
            drop(resume);
            cleaning.await.unwrap();
            retention.await;
            assert!(deleted.get().unwrap() > 0);
            let start = log.log_start_offset();
            assert_eq!(start, 30, "every segment of old records went");
            let names = files(&dir);
            let logs: Vec<i64> = names
                .iter()
                .filter(|n| n.ends_with(".log") || n.ends_with(".index"))
                .map(|n| segment_base(n))
                .collect();
            assert!(logs.iter().all(|&base| base >= start), "{names:?}");
            let expected = contents(&log).await;
            drop(log);
            let log = PartitionLog::open(dir, config).await.unwrap();
            assert_eq!(log.log_start_offset(), start);
            assert_eq!(contents(&log).await, expected);
        });
    }

    fn segment_base(name: &str) -> i64 {
        name[..20].parse().unwrap()
    }

    /// A closed segment scribbled on is an error of the cleaning, never a panic, and the
    /// segment stays as it is.
    #[test]
    fn a_damaged_segment_fails_the_cleaning_without_a_panic() {
        run(|dir| async move {
            let config = LogConfig {
                segment_bytes: 400,
                ..LogConfig::default()
            };
            let log = PartitionLog::open(dir.clone(), config).await.unwrap();
            for i in 0..20 {
                let value = format!("v{i}");
                log.append(&keyed(&[("same", Some(&value))], 1_000, Compression::None))
                    .await
                    .unwrap();
            }
            let first = dir.join(crate::segment::file_name(0, "log"));
            let size = std::fs::metadata(&first).unwrap().len();
            // The second batch's length: past the end of the segment.
            let second = headers(&std::fs::read(&first).unwrap())[0].batch_len as u64;
            assert!(second < size);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&first)
                .unwrap();
            std::os::unix::fs::FileExt::write_all_at(&file, &i32::MAX.to_be_bytes(), second + 8)
                .unwrap();
            let error = log.compact(EAGER, 5_000).await.expect_err("corrupt");
            assert!(error.to_string().contains("corrupt"), "{error}");
            assert_eq!(std::fs::metadata(&first).unwrap().len(), size);
            assert!(!files(&dir).iter().any(|n| n.ends_with(".cleaned")));
        });
    }

    /// A decompression bomb (a small compressed batch that expands past the bound) is an
    /// error, never an allocation of everything it claims.
    #[test]
    fn a_stored_batch_whose_records_lie_is_an_error_not_an_allocation() {
        use crate::records::tests::{compressed_batch, record};
        let section = record(0, 0, Some(b"k"), Some(b"v"), &[]);
        for codec in [1, 2, 3, 4] {
            let lying = compressed_batch(codec, &section, i32::MAX);
            let error = super::for_each_record(&lying, |_| {}).expect_err("refused");
            assert!(
                error
                    .to_string()
                    .contains("declares 2147483647 records but holds 1"),
                "codec {codec}: {error}"
            );
            let honest = compressed_batch(codec, &section, 1);
            let mut keys = Vec::new();
            super::for_each_record(&honest, |r| keys.push(r.key.map(<[u8]>::to_vec)))
                .expect("an honest batch reads");
            assert_eq!(keys, vec![Some(b"k".to_vec())], "codec {codec}");
        }
    }
}
