//! The recovery checkpoint (Kafka's recovery point, one small file per partition): how far
//! the active segment is known durable, so that recovery after a crash re-validates only
//! the tail after it instead of the whole segment.
//!
//! Off the produce path. The flusher notes each completed window in memory (a few `Cell`
//! writes, no syscall, no allocation); a background task per partition writes the file at
//! most every `RECOVERY_CHECKPOINT_INTERVAL_DEFAULT`, at once after the log moved to a new
//! segment, and `flush` (clean shutdown) writes it before returning.
//!
//! Order is what makes it safe, and this module must never break it: a checkpoint names a
//! point up to which the segment's `.log` was fdatasync'd before the checkpoint was taken
//! (every window for durable topics; `sync_unsynced` for relaxed ones), and trusts only the
//! index entries below that point, after fdatasyncing the index files. Only then is the file
//! written, in place and not synced: a checkpoint lost in a crash leaves an older one or none,
//! which only means a longer rescan, and a torn one fails its CRC, which means a full one.

use std::cell::Cell;
use std::path::Path;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::{PartitionLog, PendingWrite};
use crate::error::StorageError;
use crate::segment::SegmentFiles;

/// The checkpoint's file in the partition directory.
pub const RECOVERY_CHECKPOINT_FILE: &str = "recovery-point";

/// How often a partition's checkpoint is written while it takes writes. Kafka's
/// `log.flush.offset.checkpoint.interval.ms` is 60 s for all partitions at once; a file per
/// partition is cheap enough to keep the rescan after a crash to a few seconds of writes.
pub const RECOVERY_CHECKPOINT_INTERVAL_DEFAULT: Duration = Duration::from_secs(5);

const MAGIC: [u8; 4] = *b"WRCP";
const VERSION: u16 = 1;
/// magic, version, segment base, position, next offset, two entry counts, CRC32C.
const FILE_BYTES: usize = 4 + 2 + 8 + 8 + 8 + 4 + 4 + 4;

/// A place in a log: the end of a run of whole batches in one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogPoint {
    pub segment_base: i64,
    /// Bytes of the segment's `.log` before the point (a batch boundary).
    pub position: u64,
    /// Offset of the batch that starts at the point.
    pub next_offset: i64,
}

impl LogPoint {
    fn is_after(&self, other: &LogPoint) -> bool {
        (self.segment_base, self.position) > (other.segment_base, other.position)
    }
}

/// What the recovery-point file records: a durable point of the active segment and how many
/// leading entries of its `.index` and `.timeindex` were synced and lie below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoveryCheckpoint {
    pub point: LogPoint,
    pub index_entries: u32,
    pub time_index_entries: u32,
}

/// Why a checkpoint file was not used; recovery then re-validates the whole active segment.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointDecodeError {
    #[error("{len} bytes, a checkpoint has {FILE_BYTES}")]
    WrongLength { len: usize },
    #[error("not a recovery checkpoint (magic {0:02x?})")]
    BadMagic([u8; 4]),
    #[error("version {0} is not known")]
    UnknownVersion(u16),
    #[error("CRC32C {stored:#010x} stored, {computed:#010x} computed (a torn write?)")]
    CrcMismatch { stored: u32, computed: u32 },
}

impl RecoveryCheckpoint {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FILE_BYTES);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&self.point.segment_base.to_be_bytes());
        out.extend_from_slice(&self.point.position.to_be_bytes());
        out.extend_from_slice(&self.point.next_offset.to_be_bytes());
        out.extend_from_slice(&self.index_entries.to_be_bytes());
        out.extend_from_slice(&self.time_index_entries.to_be_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        debug_assert_eq!(out.len(), FILE_BYTES);
        out
    }

    /// Parses a checkpoint file. Only its framing is checked here; whether it fits the
    /// segment it names is recovery's to decide against the files.
    pub fn decode(bytes: &[u8]) -> Result<RecoveryCheckpoint, CheckpointDecodeError> {
        if bytes.len() != FILE_BYTES {
            return Err(CheckpointDecodeError::WrongLength { len: bytes.len() });
        }
        let (body, crc) = bytes.split_at(FILE_BYTES - 4);
        let stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(body);
        if stored != computed {
            return Err(CheckpointDecodeError::CrcMismatch { stored, computed });
        }
        let magic: [u8; 4] = body[..4].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(CheckpointDecodeError::BadMagic(magic));
        }
        let version = u16::from_be_bytes(body[4..6].try_into().expect("2 bytes"));
        if version != VERSION {
            return Err(CheckpointDecodeError::UnknownVersion(version));
        }
        let i64_at = |at: usize| i64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_be_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        Ok(RecoveryCheckpoint {
            point: LogPoint {
                segment_base: i64_at(6),
                position: i64_at(14) as u64,
                next_offset: i64_at(22),
            },
            index_entries: u32_at(30),
            time_index_entries: u32_at(34),
        })
    }
}

/// Reads the partition's checkpoint: None when there is none or it is not well-formed (a
/// torn write, garbage), which recovery answers with a full scan of the active segment.
/// Plain syscalls: once per partition, at open.
pub(super) fn read(dir: &Path) -> Result<Option<RecoveryCheckpoint>, StorageError> {
    use std::io::Read;
    let path = dir.join(RECOVERY_CHECKPOINT_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("opening", path)(e)),
    };
    // One byte more than a checkpoint, so a longer file is seen as what it is.
    let mut bytes = Vec::with_capacity(FILE_BYTES + 1);
    file.take(FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(StorageError::io("reading", &path))?;
    match RecoveryCheckpoint::decode(&bytes) {
        Ok(checkpoint) => Ok(Some(checkpoint)),
        Err(e) => {
            tracing::warn!("{}: ignored: {e}", path.display());
            Ok(None)
        }
    }
}

/// How the active segment was recovered when the log opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Re-validated from a recovery checkpoint rather than from the segment's start.
    pub from_checkpoint: bool,
    /// Batches whose CRC was checked.
    pub batches_checked: u64,
    pub bytes_checked: u64,
    /// Bytes of torn or corrupt tail cut away.
    pub bytes_truncated: u64,
}

/// What recovery hands the open log about its active segment.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Recovered {
    pub report: RecoveryReport,
    /// The checkpoint recovery started from, if it used one.
    pub checkpoint: Option<RecoveryCheckpoint>,
}

/// A log's checkpoint bookkeeping. All `Cell`s: touched by the flusher on every window, so
/// it must cost no borrow that could clash with the log's state and no allocation.
pub(super) struct RecoveryCheckpoints {
    /// The end of the last completed window: written, not necessarily synced.
    written: Cell<Option<LogPoint>>,
    /// The newest point the segment's `.log` is known fdatasync'd up to.
    synced: Cell<Option<LogPoint>>,
    /// The log end recovery found past the checkpoint after a crash, which nothing in this
    /// process has synced yet (the crash may have left it in the page cache only).
    recovered_unsynced: Cell<Option<LogPoint>>,
    /// What the file holds, as written by this process or used by recovery.
    on_disk: Cell<Option<RecoveryCheckpoint>>,
    /// The last synced point the writer took (written, or found nothing to write).
    attempted: Cell<Option<LogPoint>>,
    /// The periodic writer task is alive (sleeping or writing).
    writer_running: Cell<bool>,
    /// A write for a new segment is queued (a roll does not wait for the interval).
    roll_write_queued: Cell<bool>,
    /// A checkpoint file write is in flight (`delete` waits for it).
    writing: Cell<bool>,
    /// A sync this module issued failed: no more checkpoints from this process. After a
    /// failed fsync Linux may report the next one clean though the pages were dropped, so
    /// nothing synced from then on can be trusted (the one on disk still can).
    disabled: Cell<bool>,
    last_write: Cell<Instant>,
    interval: Cell<Duration>,
    report: Cell<RecoveryReport>,
}

impl Default for RecoveryCheckpoints {
    fn default() -> Self {
        RecoveryCheckpoints {
            written: Cell::new(None),
            synced: Cell::new(None),
            recovered_unsynced: Cell::new(None),
            on_disk: Cell::new(None),
            attempted: Cell::new(None),
            writer_running: Cell::new(false),
            roll_write_queued: Cell::new(false),
            writing: Cell::new(false),
            disabled: Cell::new(false),
            last_write: Cell::new(Instant::now()),
            interval: Cell::new(RECOVERY_CHECKPOINT_INTERVAL_DEFAULT),
            report: Cell::new(RecoveryReport::default()),
        }
    }
}

impl RecoveryCheckpoints {
    /// The end of the last completed window.
    pub(super) fn written(&self) -> Option<LogPoint> {
        self.written.get()
    }

    pub(super) fn is_writing(&self) -> bool {
        self.writing.get()
    }

    /// Something the writer has not taken yet.
    fn has_news(&self) -> bool {
        self.recovered_unsynced.get().is_some() || self.synced.get() != self.attempted.get()
    }
}

impl PartitionLog {
    /// How recovery went for the active segment when this log was opened.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.recovery.report.get()
    }

    /// What the recovery-point file holds, as far as this log knows (written by it, or used
    /// by recovery at open).
    pub fn recovery_checkpoint(&self) -> Option<RecoveryCheckpoint> {
        self.recovery.on_disk.get()
    }

    /// How often the checkpoint is written while the log takes writes.
    pub fn set_recovery_checkpoint_interval(&self, interval: Duration) {
        self.recovery.interval.set(interval);
    }

    /// Called once the log is open, with what recovery found; `clean` when the last run
    /// stopped cleanly (everything was synced, indexes too).
    pub(super) fn recovery_opened(
        &self,
        recovered: Recovered,
        on_file: Option<RecoveryCheckpoint>,
        clean: bool,
    ) {
        let end = {
            let state = self.state.borrow();
            let active = state
                .segments
                .last()
                .expect("a log always has an active segment");
            LogPoint {
                segment_base: active.base_offset,
                position: active.durable_size,
                next_offset: active.next_offset,
            }
        };
        let r = &self.recovery;
        r.report.set(recovered.report);
        r.written.set(Some(end));
        if clean {
            r.synced.set(Some(end));
            // Written by this code after syncing what it trusts, so still true of the files
            // if it names this segment and not more than it holds.
            r.on_disk.set(
                on_file.filter(|c| {
                    c.point.segment_base == end.segment_base && !c.point.is_after(&end)
                }),
            );
        } else {
            let from = recovered.checkpoint.map(|c| c.point);
            r.synced.set(from);
            r.on_disk.set(recovered.checkpoint);
            if from != Some(end) && end.position > 0 {
                r.recovered_unsynced.set(Some(end));
            }
        }
        if end.position > 0 && r.on_disk.get().map(|c| c.point) != Some(end) {
            self.schedule_recovery_checkpoint();
        }
    }

    /// The flusher completed `window` (its last write ends the log's written data);
    /// `synced` when every segment write in it was fdatasync'd (`flush_on_append`).
    pub(super) fn note_window_for_recovery(&self, window: &[PendingWrite], synced: bool) {
        let Some(last) = window.last() else { return };
        // `write_window` left the end of the written bytes in `position`.
        let point = LogPoint {
            segment_base: last.segment_base,
            position: last.position,
            next_offset: last.end_offset,
        };
        self.recovery.written.set(Some(point));
        if synced {
            self.publish_synced(point);
        }
    }

    /// `sync_unsynced` fdatasync'd `files`, every one after `snapshot` (the written point
    /// taken before the syncs) was taken: the point is durable if its segment was among them.
    pub(super) fn note_synced_for_recovery(
        &self,
        snapshot: Option<LogPoint>,
        files: &[Rc<SegmentFiles>],
    ) {
        let Some(point) = snapshot else { return };
        let covered = self
            .files_of(point.segment_base)
            .is_some_and(|mine| files.iter().any(|f| Rc::ptr_eq(f, &mine)));
        if covered {
            self.publish_synced(point);
        }
    }

    /// Makes everything written durable as a checkpoint (clean shutdown, after `flush`
    /// synced the data and the active segment's indexes).
    pub(super) async fn checkpoint_on_flush(&self) -> Result<(), StorageError> {
        let r = &self.recovery;
        let unsynced = r
            .written
            .get()
            .filter(|&w| w.position > 0 && r.synced.get() != Some(w));
        if let Some(point) = unsynced {
            // A relaxed log's last sync may still be in flight in its `flush.ms` timer: sync
            // once more rather than trust it.
            if let Some(files) = self.files_of(point.segment_base) {
                if let Err(e) = files.log.fdatasync().await {
                    r.disabled.set(true);
                    return Err(StorageError::glommio("syncing", &files.log_path)(e));
                }
                self.publish_synced(point);
            }
        }
        self.write_recovery_checkpoint().await.map(|_| ())
    }

    fn files_of(&self, segment_base: i64) -> Option<Rc<SegmentFiles>> {
        let state = self.state.borrow();
        state
            .segments
            .iter()
            .rev()
            .find(|s| s.base_offset == segment_base)?
            .files
            .clone()
    }

    /// A newer durable point; the writer will checkpoint it, at once if it is in a new
    /// segment (the checkpoint on disk names the old one, so a crash now would rescan all
    /// of the new one).
    fn publish_synced(&self, point: LogPoint) {
        let r = &self.recovery;
        let previous = r.synced.get();
        if r.disabled.get() || previous.is_some_and(|current| !point.is_after(&current)) {
            return;
        }
        r.synced.set(Some(point));
        if previous.is_some_and(|p| p.segment_base != point.segment_base)
            && !r.roll_write_queued.replace(true)
        {
            let this = self.this.clone();
            glommio::spawn_local(async move {
                // glommio may poll a new task at once, inside the caller's borrows: yield
                // before touching the log.
                glommio::executor().yield_now().await;
                let Some(log) = this.upgrade() else { return };
                log.recovery.roll_write_queued.set(false);
                log.write_recovery_checkpoint_or_warn().await;
            })
            .detach();
        }
        self.schedule_recovery_checkpoint();
    }

    /// Starts the periodic writer unless it is running (it takes the newest point when it
    /// wakes). At most one spawn per checkpoint interval, not per window.
    fn schedule_recovery_checkpoint(&self) {
        if self.recovery.writer_running.replace(true) {
            return;
        }
        let this = self.this.clone();
        glommio::spawn_local(run_writer(this)).detach();
    }

    async fn write_recovery_checkpoint_or_warn(&self) {
        if let Err(e) = self.write_recovery_checkpoint().await {
            // Costs a longer rescan after a crash, never data: the log keeps serving.
            tracing::warn!(
                "{}: recovery checkpoint not written: {e}",
                self.dir.display()
            );
        }
    }

    /// Writes the checkpoint for the newest synced point, if it is new and still names the
    /// segment on disk that takes writes. Returns whether a file was written.
    pub(crate) async fn write_recovery_checkpoint(&self) -> Result<bool, StorageError> {
        self.waiters.until(|| !self.recovery.writing.get()).await;
        self.sync_recovered_tail().await?;
        let r = &self.recovery;
        let Some(point) = r.synced.get() else {
            return Ok(false);
        };
        r.attempted.set(Some(point));
        if point.position == 0 || r.on_disk.get().map(|c| c.point) == Some(point) {
            return Ok(false);
        }
        let Some((files, checkpoint)) = self.checkpoint_for(point) else {
            return Ok(false);
        };
        r.writing.set(true);
        let result = self.sync_indexes_and_write(&files, checkpoint).await;
        r.disabled.set(r.disabled.get() || result.is_err());
        r.writing.set(false);
        self.waiters.wake_all();
        result?;
        r.on_disk.set(Some(checkpoint));
        r.last_write.set(Instant::now());
        Ok(true)
    }

    /// The checkpoint of `point`, if its segment is the last one with files (a later one
    /// would be the one recovery scans) and the log is in service.
    fn checkpoint_for(&self, point: LogPoint) -> Option<(Rc<SegmentFiles>, RecoveryCheckpoint)> {
        let state = self.state.borrow();
        if state.closed || state.failed || self.recovery.disabled.get() {
            return None;
        }
        let segment = state.segments.iter().rev().find(|s| s.files.is_some())?;
        if segment.base_offset != point.segment_base {
            return None;
        }
        debug_assert!(
            point.position <= segment.durable_size,
            "a synced point lies in the written part of its segment"
        );
        let relative_end = (point.next_offset - segment.base_offset).max(0) as u64;
        let checkpoint = RecoveryCheckpoint {
            point,
            // Below the point: written by windows that completed before it was noted.
            index_entries: segment.index.entries_below(point.position) as u32,
            time_index_entries: segment.time_index.entries_below(relative_end) as u32,
        };
        Some((segment.files.clone()?, checkpoint))
    }

    /// Syncs the index files the checkpoint trusts more of than the last one did, then
    /// writes the file in place (not synced: see the module comment).
    async fn sync_indexes_and_write(
        &self,
        files: &SegmentFiles,
        checkpoint: RecoveryCheckpoint,
    ) -> Result<(), StorageError> {
        let previous = self
            .recovery
            .on_disk
            .get()
            .filter(|c| c.point.segment_base == checkpoint.point.segment_base);
        if previous.is_none_or(|c| c.index_entries != checkpoint.index_entries) {
            files
                .index
                .fdatasync()
                .await
                .map_err(StorageError::glommio("syncing index of", &files.log_path))?;
        }
        if previous.is_none_or(|c| c.time_index_entries != checkpoint.time_index_entries) {
            files
                .time_index
                .fdatasync()
                .await
                .map_err(StorageError::glommio(
                    "syncing time index of",
                    &files.log_path,
                ))?;
        }
        if self.state.borrow().closed {
            return Ok(()); // being deleted: no file may appear in the directory now
        }
        let path = self.dir.join(RECOVERY_CHECKPOINT_FILE);
        let file = glommio::io::OpenOptions::new()
            .write(true)
            .create(true)
            .buffered_open(&path)
            .await
            .map_err(StorageError::glommio("opening", &path))?;
        let bytes = checkpoint.encode();
        let written = file
            .write_at(bytes, 0)
            .await
            .map_err(StorageError::glommio("writing", &path))?;
        file.close()
            .await
            .map_err(StorageError::glommio("closing", &path))?;
        if written != FILE_BYTES {
            return Err(StorageError::Io {
                op: "writing",
                path,
                source: std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write: {written} of {FILE_BYTES} bytes"),
                ),
            });
        }
        Ok(())
    }

    /// After a crash, the tail recovery kept past the checkpoint was never synced by this
    /// process: sync it once, in the background, so an idle partition's checkpoint can move
    /// past it too.
    async fn sync_recovered_tail(&self) -> Result<(), StorageError> {
        let r = &self.recovery;
        let Some(point) = r.recovered_unsynced.take() else {
            return Ok(());
        };
        if r.synced.get().is_some_and(|s| !point.is_after(&s)) {
            return Ok(()); // a window synced the file since
        }
        let Some(files) = self.files_of(point.segment_base) else {
            return Ok(());
        };
        if let Err(e) = files.log.fdatasync().await {
            r.disabled.set(true);
            return Err(StorageError::glommio("syncing", &files.log_path)(e));
        }
        self.publish_synced(point);
        Ok(())
    }
}

/// The periodic writer: waits out the interval since the last write, writes, and stays
/// while there is news. Holds only a `Weak` while it sleeps, so a dropped log goes.
async fn run_writer(this: Weak<PartitionLog>) {
    // Spawned from inside the flusher's borrow of the log state, and glommio may poll a new
    // task at once: yield before touching the log.
    glommio::executor().yield_now().await;
    loop {
        let delay = {
            let Some(log) = this.upgrade() else { return };
            let r = &log.recovery;
            (r.last_write.get() + r.interval.get()).saturating_duration_since(Instant::now())
        };
        if !delay.is_zero() {
            glommio::timer::sleep(delay).await;
        }
        let Some(log) = this.upgrade() else { return };
        log.write_recovery_checkpoint_or_warn().await;
        let stop = {
            let state = log.state.borrow();
            state.closed || state.failed || !log.recovery.has_news()
        };
        if stop {
            log.recovery.writer_running.set(false);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecoveryCheckpoint {
        RecoveryCheckpoint {
            point: LogPoint {
                segment_base: 1_000,
                position: 123_456,
                next_offset: 1_789,
            },
            index_entries: 30,
            time_index_entries: 12,
        }
    }

    #[test]
    fn the_file_round_trips_and_refuses_damage() {
        let bytes = sample().encode();
        assert_eq!(bytes.len(), FILE_BYTES);
        assert_eq!(RecoveryCheckpoint::decode(&bytes), Ok(sample()));
        assert_eq!(
            RecoveryCheckpoint::decode(&bytes[..20]),
            Err(CheckpointDecodeError::WrongLength { len: 20 }),
            "torn"
        );
        assert_eq!(
            RecoveryCheckpoint::decode(&[]),
            Err(CheckpointDecodeError::WrongLength { len: 0 })
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(RecoveryCheckpoint::decode(&longer).is_err());
        for at in 0..FILE_BYTES {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert!(
                RecoveryCheckpoint::decode(&flipped).is_err(),
                "a flipped bit at byte {at} is caught"
            );
        }
        assert!(
            RecoveryCheckpoint::decode(&[0; FILE_BYTES]).is_err(),
            "zeros"
        );
    }

    #[test]
    fn a_well_framed_file_of_another_kind_or_version_is_refused() {
        let reframe = |mut body: Vec<u8>| {
            body.truncate(FILE_BYTES - 4);
            let crc = crc32c::crc32c(&body);
            body.extend_from_slice(&crc.to_be_bytes());
            body
        };
        let mut other = sample().encode();
        other[..4].copy_from_slice(b"XXXX");
        assert_eq!(
            RecoveryCheckpoint::decode(&reframe(other)),
            Err(CheckpointDecodeError::BadMagic(*b"XXXX"))
        );
        let mut newer = sample().encode();
        newer[4..6].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(
            RecoveryCheckpoint::decode(&reframe(newer)),
            Err(CheckpointDecodeError::UnknownVersion(2))
        );
    }

    #[test]
    fn points_order_by_segment_then_position() {
        let p = |segment_base, position| LogPoint {
            segment_base,
            position,
            next_offset: 0,
        };
        assert!(p(0, 10).is_after(&p(0, 9)));
        assert!(p(5, 0).is_after(&p(0, 1 << 30)));
        assert!(!p(0, 10).is_after(&p(0, 10)));
    }
}
