//! A partition's log: offset assignment, group-committed appends, reads as file ranges, and
//! crash recovery. One file per job: `append.rs` (offsets, pending buffer, flusher),
//! `read.rs` (fetch ranges, time lookups, long-poll waits), `recovery.rs` (open, tail
//! validation, index rebuild), `checkpoint.rs` (the recovery checkpoint that bounds that
//! tail), `wait.rs` (the high-watermark wait list).
//!
//! Hot path. Everything runs on the owning shard's executor (`Rc`/`RefCell`, no locks); a
//! `PartitionLog` is `!Send` and must never be touched from another thread. It must never
//! hand a reader bytes above the high watermark, nor acknowledge an append before its bytes
//! are written (and fdatasync'd, with `flush_on_append`).
//!
//! Appends assign offsets synchronously, before the first await, so concurrent appends get
//! dense offsets in call order. Each stamped batch is copied once into the partition's
//! pending buffer (the one copy of the produce path); a single flusher task per partition
//! writes everything pending with one io_uring write per segment, fdatasyncs once, then
//! advances the high watermark and wakes every append that was in that window: one fsync
//! covers every batch that arrived while the previous one was in flight (group commit).

mod append;
mod checkpoint;
mod compaction;
mod erase;
mod producers;
mod read;
mod recovery;
mod retention;
mod wait;

pub use erase::backlog_bytes as erase_backlog_bytes;

pub use checkpoint::{
    LogPoint, RecoveryCheckpoint, RecoveryReport, RECOVERY_CHECKPOINT_FILE,
    RECOVERY_CHECKPOINT_INTERVAL_DEFAULT,
};
pub use compaction::{
    every_record_has_a_key, CompactionPolicy, CompactionStats, DEDUPE_BUFFER_BYTES_DEFAULT,
};
pub use recovery::LastShutdown;
pub use retention::{parse_offset_file, RetentionPolicy};

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use crate::error::StorageError;
use crate::flush_gate::FlushGate;
use crate::segment::{Segment, SegmentFiles};

use self::wait::WaitList;

/// How a partition's log is run; from the topic's configs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would grow past this (`segment.bytes`).
    /// A segment always takes at least one batch, however large.
    pub segment_bytes: u64,
    /// Bytes of log between sparse index entries (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// Acknowledge an append only once fdatasync covers it. Default true: an acknowledged
    /// write is on stable storage.
    pub flush_on_append: bool,
    /// Roll when a batch's timestamp is this much later than the active segment's first
    /// batch's (`segment.ms`); None never by time.
    pub segment_ms: Option<i64>,
    /// Roll when the active segment's offset or time index reaches this size
    /// (`segment.index.bytes`), so no index grows without bound.
    pub segment_index_bytes: usize,
    /// Without `flush_on_append`: fdatasync once this many messages are unsynced
    /// (`flush.messages`); None never by count.
    pub flush_messages: Option<u64>,
    /// Without `flush_on_append`: fdatasync at most this long after a write (`flush.ms`);
    /// None never by time.
    pub flush_interval: Option<std::time::Duration>,
}

/// Kafka's `segment.bytes` default.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// Kafka's `segment.index.bytes` default.
pub const SEGMENT_INDEX_BYTES_DEFAULT: usize = 10 * 1024 * 1024;
/// Kafka's `index.interval.bytes` default.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// Positions in a segment's `.index` are u32 (Kafka's format), so no segment may grow past
/// this; `segment_bytes` is clamped to it.
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            flush_on_append: true,
            segment_ms: None,
            segment_index_bytes: SEGMENT_INDEX_BYTES_DEFAULT,
            flush_messages: None,
            flush_interval: None,
        }
    }
}

impl LogConfig {
    /// Within the bounds the log can work with: `.index` positions are u32, and a zero
    /// index interval would index every batch.
    fn normalized(self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes.clamp(1, SEGMENT_BYTES_MAX),
            index_interval_bytes: self.index_interval_bytes.max(1),
            ..self
        }
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    pub record_count: u64,
}

/// A byte range of a segment file holding whole batches (the last may be cut by a byte
/// limit, as Kafka does). `Send`: the connection's shard sends it to the socket. The `Arc`
/// keeps the descriptor open even if the segment is deleted while the send is in flight.
#[derive(Clone, Debug)]
pub struct FileSlice {
    pub file: std::sync::Arc<std::fs::File>,
    pub position: u64,
    pub len: u32,
}

/// Bytes of one segment waiting for the flusher.
struct PendingWrite {
    segment_base: i64,
    /// Where `data` goes in the segment's `.log`.
    position: u64,
    data: Vec<u8>,
    /// Offset after the last batch in `data`.
    end_offset: i64,
}

struct LogState {
    /// Ordered by base offset; the last is the active segment.
    segments: Vec<Segment>,
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    /// Batches assigned offsets but not yet handed to the flusher, one entry per segment.
    pending: Vec<PendingWrite>,
    /// When the first of the `pending` batches was staged: the flush-stage metric's start.
    pending_since: Option<std::time::Instant>,
    /// The window list the flusher handed back, kept to be swapped in as the next
    /// `pending` so a window costs no allocation for its list.
    spare_pending: Vec<PendingWrite>,
    /// Bytes of the last window: the capacity a new pending buffer starts with, so a window
    /// is usually one allocation rather than a series of doublings.
    last_window_bytes: usize,
    /// Segments written but not fdatasync'd (only without `flush_on_append`); `flush` syncs
    /// them.
    unsynced: Vec<Rc<SegmentFiles>>,
    /// Offset up to which data is known synced (without `flush_on_append`).
    synced_offset: i64,
    /// A `flush.ms` timer is waiting to sync.
    sync_timer_armed: bool,
    flushing: bool,
    failed: bool,
    closed: bool,
}

pub struct PartitionLog {
    dir: PathBuf,
    /// Changed only by `set_config` (a topic's configs altered while the log is open).
    config: RefCell<LogConfig>,
    state: RefCell<LogState>,
    /// Tasks waiting for the high watermark to move (appends awaiting durability, long
    /// polls, `flush`, `delete`).
    waiters: WaitList,
    /// Number of flush windows completed; for tests and metrics (one per fdatasync).
    windows_flushed: Cell<u64>,
    /// fdatasyncs of data (count, total nanoseconds), for metrics.
    sync_stats: Cell<(u64, u64)>,
    /// The cleaner's first dirty offset (checkpointed) and its exclusion with segment
    /// deletion (`compaction.rs`).
    cleaner: compaction::CleanerState,
    /// The shard's limit on flush windows in flight, shared with its other logs.
    flush_gate: Rc<FlushGate>,
    /// The recovery checkpoint's bookkeeping (`checkpoint.rs`).
    recovery: checkpoint::RecoveryCheckpoints,
    /// Idempotent producers' sequences (`producers.rs`).
    producers: RefCell<crate::producer_state::ProducerStateMap>,
    /// Active segment at the last producer-state snapshot: one snapshot per segment.
    producer_snapshot_segment: Cell<i64>,
    /// A producer batch was recorded since the last snapshot.
    producers_changed: Cell<bool>,
    /// Fault injection: when set, the next windows fail as a failing disk would.
    #[cfg(test)]
    fail_writes: Cell<bool>,
    this: Weak<PartitionLog>,
}

impl PartitionLog {
    fn new(
        dir: PathBuf,
        config: LogConfig,
        segments: Vec<Segment>,
        flush_gate: Rc<FlushGate>,
    ) -> Rc<PartitionLog> {
        debug_assert!(!segments.is_empty(), "a log always has an active segment");
        let log_start_offset = segments[0].base_offset;
        let log_end_offset = segments.last().map_or(0, |s| s.next_offset);
        Rc::new_cyclic(|this| PartitionLog {
            dir,
            config: RefCell::new(config.normalized()),
            state: RefCell::new(LogState {
                segments,
                log_start_offset,
                log_end_offset,
                high_watermark: log_end_offset,
                pending: Vec::new(),
                pending_since: None,
                spare_pending: Vec::new(),
                last_window_bytes: 0,
                unsynced: Vec::new(),
                synced_offset: log_end_offset,
                sync_timer_armed: false,
                flushing: false,
                failed: false,
                closed: false,
            }),
            waiters: WaitList::default(),
            windows_flushed: Cell::new(0),
            sync_stats: Cell::new((0, 0)),
            cleaner: Default::default(),
            flush_gate,
            recovery: Default::default(),
            producers: RefCell::default(),
            producer_snapshot_segment: Cell::new(log_start_offset),
            producers_changed: Cell::new(false),
            #[cfg(test)]
            fail_writes: Cell::new(false),
            this: this.clone(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The config in force now (a copy: `set_config` may change it at any await).
    pub fn config(&self) -> LogConfig {
        self.config.borrow().clone()
    }

    /// Runs the open log by a new config (the topic's configs were altered). Takes effect
    /// from the next append: a smaller `segment_bytes` rolls the active segment at the next
    /// append that would cross it, and segments already written keep their size and index
    /// spacing, as in Kafka. Data acknowledged unsynced under a relaxed flush policy is
    /// synced by the next `flush`.
    pub fn set_config(&self, config: LogConfig) {
        *self.config.borrow_mut() = config.normalized();
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start_offset
    }

    /// Offset after the last batch that is written (and synced, with `flush_on_append`).
    /// Never moves backwards.
    pub fn high_watermark(&self) -> i64 {
        self.state.borrow().high_watermark
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.state.borrow().log_end_offset
    }

    /// Bytes of every segment, pending writes included.
    pub fn size_bytes(&self) -> u64 {
        self.state
            .borrow()
            .segments
            .iter()
            .map(|s| s.assigned_size)
            .sum()
    }

    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Flush windows completed since open: each is one write per segment touched and (with
    /// `flush_on_append`) one fdatasync.
    pub fn windows_flushed(&self) -> u64 {
        self.windows_flushed.get()
    }

    /// Messages written and acknowledged but not yet fdatasync'd (relaxed logs only).
    pub fn unsynced_messages(&self) -> u64 {
        let state = self.state.borrow();
        (state.high_watermark - state.synced_offset).max(0) as u64
    }

    /// fdatasyncs of this log's data since open: (count, total time).
    pub fn syncs(&self) -> (u64, std::time::Duration) {
        let (count, nanos) = self.sync_stats.get();
        (count, std::time::Duration::from_nanos(nanos))
    }

    /// True once a write failed: the log takes no more appends until reopened.
    pub fn is_failed(&self) -> bool {
        self.state.borrow().failed
    }

    /// The error for a log that takes no more appends, or None if it takes them.
    fn refusal(&self) -> Option<StorageError> {
        let state = self.state.borrow();
        if state.closed {
            Some(StorageError::Closed(self.dir.clone()))
        } else if state.failed {
            Some(StorageError::Failed(self.dir.clone()))
        } else {
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers shared by the log's tests.

    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;

    use super::{FileSlice, LogConfig, PartitionLog};
    use crate::batch::{self, BatchHeader};

    pub use crate::batch::tests::batch;

    /// Runs `test` on a fresh glommio executor with a partition directory (not yet
    /// created) inside a temporary directory that outlives the test.
    pub fn run<F: std::future::Future<Output = ()> + 'static>(
        test: impl FnOnce(PathBuf) -> F + Send + 'static,
    ) {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let path = dir.path().join("orders-0");
        glommio::LocalExecutorBuilder::default()
            .make()
            .expect("a test executor can be built")
            .run(test(path));
    }

    pub fn small_segments() -> LogConfig {
        LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 200,
            ..LogConfig::default()
        }
    }

    pub fn read_slice(slice: &FileSlice) -> Vec<u8> {
        let mut out = vec![0; slice.len as usize];
        slice
            .file
            .read_exact_at(&mut out, slice.position)
            .expect("a slice lies inside its file");
        out
    }

    /// Headers of the whole batches in a slice.
    pub fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Ok(header) = batch::check_batch(&bytes[at..]) {
            out.push(header);
            at += header.batch_len;
        }
        out
    }

    pub fn bases(bytes: &[u8]) -> Vec<i64> {
        headers(bytes).iter().map(|h| h.base_offset).collect()
    }

    /// Waits (up to 2 s) until this shard's eraser has freed everything queued.
    pub async fn until_erased() {
        for _ in 0..200 {
            if super::erase_backlog_bytes() == 0 {
                return;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Every batch from the log start, following segments, as base offsets.
    pub async fn all_bases(log: &PartitionLog) -> Vec<i64> {
        let mut offset = log.log_start_offset();
        let mut out = Vec::new();
        while let Some(slice) = log.read(offset, 1 << 20, true).await.unwrap() {
            let found = headers(&read_slice(&slice));
            let next = found
                .last()
                .expect("a read returns at least one whole batch")
                .next_offset();
            assert!(next > offset, "reads make progress");
            offset = next;
            out.extend(found.iter().map(|h| h.base_offset));
        }
        out
    }
}

#[cfg(test)]
mod set_config_tests {
    use super::testing::{batch, run};
    use super::{LogConfig, PartitionLog, SEGMENT_BYTES_MAX};

    #[test]
    fn a_new_config_acts_from_the_next_append() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            for ts in 0..3 {
                log.append(&batch(&[b"m"], ts)).await.unwrap();
            }
            assert_eq!(log.segment_count(), 1);
            log.set_config(LogConfig {
                segment_bytes: 1,
                ..LogConfig::default()
            });
            log.append(&batch(&[b"m"], 3)).await.unwrap();
            log.append(&batch(&[b"m"], 4)).await.unwrap();
            assert_eq!(log.segment_count(), 3, "one batch per segment from now on");
            assert_eq!(log.high_watermark(), 5);

            log.set_config(LogConfig {
                segment_bytes: u64::MAX,
                index_interval_bytes: 0,
                ..LogConfig::default()
            });
            let config = log.config();
            assert_eq!(
                (config.segment_bytes, config.index_interval_bytes),
                (SEGMENT_BYTES_MAX, 1),
                "bounded as at open"
            );
        });
    }
}
