//! A partition's log: offset assignment, group-committed appends, reads as file ranges, and
//! crash recovery.
//!
//! Hot path. Everything runs on the owning shard's executor (`Rc`/`RefCell`, no locks).
//!
//! Appends assign offsets synchronously, before the first await, so concurrent appends get
//! dense offsets in call order. Each stamped batch is copied once into the partition's
//! pending buffer (the one copy of the produce path); a single flusher task per partition
//! writes everything pending with one io_uring write per segment, fdatasyncs once, then
//! advances the high watermark and wakes every append that was in that window: one fsync
//! covers every batch that arrived while the previous one was in flight (group commit).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

use crate::batch::{self, BatchHeader};
use crate::error::StorageError;
use crate::segment::{self, Segment, SegmentFiles};

/// How a partition's log is run; from the topic's configs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would grow past this (`segment.bytes`).
    pub segment_bytes: u64,
    /// Bytes of log between sparse index entries (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// Acknowledge an append only once fdatasync covers it. Default true: an acknowledged
    /// write is on stable storage.
    pub flush_on_append: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            index_interval_bytes: 4096,
            flush_on_append: true,
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
/// limit, as Kafka does). `Send`: the connection's shard sends it to the socket.
#[derive(Clone, Debug)]
pub struct FileSlice {
    pub file: std::sync::Arc<std::fs::File>,
    pub position: u64,
    pub len: u32,
}

/// Bytes of one segment waiting for the flusher.
struct PendingWrite {
    segment_base: i64,
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
    pending: Vec<PendingWrite>,
    flushing: bool,
    failed: bool,
}

pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    state: RefCell<LogState>,
    /// Tasks waiting for the high watermark to move (appends awaiting durability, long polls).
    waiters: RefCell<Vec<Waker>>,
    /// Set by `delete`: no more writes, the files are going away.
    deleted: Cell<bool>,
    this: Weak<PartitionLog>,
}

impl PartitionLog {
    /// Opens the log in `dir` (created if missing) and recovers it: the last segment is
    /// re-validated batch by batch and a torn or corrupt tail is truncated away; indexes
    /// that are missing or malformed are rebuilt.
    pub async fn open(dir: PathBuf, config: LogConfig) -> Result<Rc<PartitionLog>, StorageError> {
        std::fs::create_dir_all(&dir).map_err(StorageError::io("creating", &dir))?;
        let bases = list_segments(&dir)?;
        let mut segments = Vec::with_capacity(bases.len().max(1));
        let last = bases.len().saturating_sub(1);
        for (i, &base) in bases.iter().enumerate() {
            segments.push(recover_segment(&dir, base, &config, i == last).await?);
        }
        if segments.is_empty() {
            let mut active = Segment::new(0);
            active.files = Some(Rc::new(SegmentFiles::open(&dir, 0).await?));
            segments.push(active);
        }
        let log_start_offset = segments[0].base_offset;
        let log_end_offset = segments.last().map_or(0, |s| s.next_offset);
        Ok(Rc::new_cyclic(|this| PartitionLog {
            dir,
            config,
            state: RefCell::new(LogState {
                segments,
                log_start_offset,
                log_end_offset,
                high_watermark: log_end_offset,
                pending: Vec::new(),
                flushing: false,
                failed: false,
            }),
            waiters: RefCell::new(Vec::new()),
            deleted: Cell::new(false),
            this: this.clone(),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start_offset
    }

    /// Offset after the last batch that is written (and synced, with `flush_on_append`).
    pub fn high_watermark(&self) -> i64 {
        self.state.borrow().high_watermark
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.state.borrow().log_end_offset
    }

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

    /// Appends a produce payload that passed `validate_produce_batches`; resolves once it is
    /// written (and synced). Framing is re-checked here, CRCs are not.
    pub async fn append(&self, records: &[u8]) -> Result<AppendOutcome, StorageError> {
        let outcome = self.assign(records)?;
        self.start_flusher();
        let end = outcome.last_offset + 1;
        self.wait_until(|state| state.failed || state.high_watermark >= end)
            .await;
        if self.state.borrow().high_watermark >= end {
            Ok(outcome)
        } else {
            Err(StorageError::Failed(self.dir.clone()))
        }
    }

    /// Assigns offsets and stages the stamped batches for the flusher. Synchronous: offsets
    /// are decided in call order.
    fn assign(&self, records: &[u8]) -> Result<AppendOutcome, StorageError> {
        if self.deleted.get() || self.state.borrow().failed {
            return Err(StorageError::Failed(self.dir.clone()));
        }
        // Check the framing before changing anything, so a bad payload appends nothing. The
        // CRC pass was made once by the caller (`validate_produce_batches`, on the shard that
        // read the request); it is not repeated here.
        let record_count = batch::check_framing(records)?;
        let mut state = self.state.borrow_mut();
        let base_offset = state.log_end_offset;
        let mut at = 0;
        while at < records.len() {
            let mut header = batch::parse_header(&records[at..])?;
            let bytes = &records[at..at + header.batch_len];
            header.base_offset = state.log_end_offset;
            self.place(&mut state, bytes, &header);
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
    fn place(&self, state: &mut LogState, bytes: &[u8], header: &BatchHeader) {
        let active = state
            .segments
            .last()
            .expect("a log always has an active segment");
        if active.assigned_size > 0
            && active.assigned_size + bytes.len() as u64 > self.config.segment_bytes
        {
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
            u64::from(self.config.index_interval_bytes),
        );
        active.assigned_size += bytes.len() as u64;
        let segment_base = active.base_offset;
        let pending = match state.pending.last_mut() {
            Some(p) if p.segment_base == segment_base => p,
            _ => {
                state.pending.push(PendingWrite {
                    segment_base,
                    position,
                    data: Vec::with_capacity(bytes.len()),
                    end_offset: 0,
                });
                state.pending.last_mut().expect("just pushed")
            }
        };
        let start = pending.data.len();
        pending.data.extend_from_slice(bytes);
        batch::stamp_base_offset(&mut pending.data[start..], header.base_offset);
        pending.end_offset = header.next_offset();
    }

    fn start_flusher(&self) {
        {
            let mut state = self.state.borrow_mut();
            if state.flushing || state.pending.is_empty() {
                return;
            }
            state.flushing = true;
        }
        let this = self.this.upgrade().expect("a log in use is alive");
        glommio::spawn_local(async move { this.flush_loop().await }).detach();
    }

    /// Writes and syncs pending windows until none is left.
    async fn flush_loop(self: Rc<Self>) {
        loop {
            let window = std::mem::take(&mut self.state.borrow_mut().pending);
            if window.is_empty() {
                self.state.borrow_mut().flushing = false;
                return;
            }
            match self.write_window(window).await {
                Ok(end_offset) => {
                    let mut state = self.state.borrow_mut();
                    debug_assert!(
                        end_offset >= state.high_watermark,
                        "the high watermark never moves backwards"
                    );
                    state.high_watermark = end_offset;
                }
                Err(e) => {
                    tracing::error!(
                        "{}: write failed, the log takes no more appends: {e}",
                        self.dir.display()
                    );
                    let mut state = self.state.borrow_mut();
                    state.failed = true;
                    state.flushing = false;
                    state.pending.clear();
                    drop(state);
                    self.wake_all();
                    return;
                }
            }
            self.wake_all();
        }
    }

    /// Writes one window (one write per segment), its index entries, and syncs.
    async fn write_window(&self, window: Vec<PendingWrite>) -> Result<i64, StorageError> {
        let mut end_offset = 0;
        let mut touched: Vec<Rc<SegmentFiles>> = Vec::new();
        for write in window {
            let files = self.segment_files(write.segment_base).await?;
            let len = write.data.len() as u64;
            write_all(&files, write.data, write.position).await?;
            self.persist_index(write.segment_base, &files).await?;
            if self.config.flush_on_append {
                files
                    .log
                    .fdatasync()
                    .await
                    .map_err(StorageError::glommio("syncing", &files.log_path))?;
            }
            let mut state = self.state.borrow_mut();
            if let Some(segment) = state
                .segments
                .iter_mut()
                .find(|s| s.base_offset == write.segment_base)
            {
                segment.durable_size = write.position + len;
            }
            end_offset = write.end_offset;
            if !touched.iter().any(|f| Rc::ptr_eq(f, &files)) {
                touched.push(files);
            }
        }
        Ok(end_offset)
    }

    /// The files of a segment, creating them on first write (after a roll).
    async fn segment_files(&self, base: i64) -> Result<Rc<SegmentFiles>, StorageError> {
        let existing = self
            .state
            .borrow()
            .segments
            .iter()
            .find(|s| s.base_offset == base)
            .and_then(|s| s.files.clone());
        if let Some(files) = existing {
            return Ok(files);
        }
        let files = Rc::new(SegmentFiles::open(&self.dir, base).await?);
        // The new file's directory entry must survive a crash before its data is acknowledged.
        let dir = glommio::io::Directory::open(&self.dir)
            .await
            .map_err(StorageError::glommio("opening", &self.dir))?;
        dir.sync()
            .await
            .map_err(StorageError::glommio("syncing", &self.dir))?;
        let mut state = self.state.borrow_mut();
        if let Some(segment) = state.segments.iter_mut().find(|s| s.base_offset == base) {
            segment.files = Some(files.clone());
        }
        Ok(files)
    }

    /// Appends the segment's new index entries to its index files.
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
            files
                .index
                .write_at(index, index_at)
                .await
                .map_err(StorageError::glommio("writing", &files.log_path))?;
        }
        if !time_index.is_empty() {
            files
                .time_index
                .write_at(time_index, time_at)
                .await
                .map_err(StorageError::glommio("writing", &files.log_path))?;
        }
        Ok(())
    }

    fn wake_all(&self) {
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    async fn wait_until(&self, done: impl Fn(&LogState) -> bool) {
        poll_fn(|cx| {
            if done(&self.state.borrow()) {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Resolves once the high watermark is past `offset` (or the log failed).
    pub async fn wait_for_data(&self, offset: i64) {
        self.wait_until(|state| state.failed || state.high_watermark > offset)
            .await
    }

    /// Writes everything pending and syncs it (clean shutdown).
    pub async fn flush(&self) -> Result<(), StorageError> {
        self.start_flusher();
        self.wait_until(|state| state.failed || (!state.flushing && state.pending.is_empty()))
            .await;
        if self.state.borrow().failed {
            return Err(StorageError::Failed(self.dir.clone()));
        }
        let files: Vec<_> = self
            .state
            .borrow()
            .segments
            .iter()
            .filter_map(|s| s.files.clone())
            .collect();
        for files in files.iter().rev().take(2) {
            files
                .log
                .fdatasync()
                .await
                .map_err(StorageError::glommio("syncing", &files.log_path))?;
        }
        Ok(())
    }

    /// Removes the partition's files. Fetches holding a `FileSlice` keep working.
    pub async fn delete(self: Rc<Self>) -> Result<(), StorageError> {
        self.deleted.set(true);
        self.wait_until(|state| !state.flushing).await;
        let dir = self.dir.clone();
        glommio::executor()
            .spawn_blocking(move || {
                std::fs::remove_dir_all(&dir).map_err(StorageError::io("removing", &dir))
            })
            .await
    }

    /// Whole batches from the one containing `offset`, at most `max_bytes` (but the whole
    /// first batch when `min_one_batch`, KIP-74), never past the high watermark, and within
    /// one segment. At the high watermark: Ok(None).
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: u32,
        min_one_batch: bool,
    ) -> Result<Option<FileSlice>, StorageError> {
        let (files, start, limit, segment_base) = {
            let state = self.state.borrow();
            if offset == state.high_watermark {
                return Ok(None);
            }
            if offset < state.log_start_offset || offset > state.high_watermark {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset: state.log_start_offset,
                    high_watermark: state.high_watermark,
                });
            }
            let i = state.segments.partition_point(|s| s.base_offset <= offset) - 1;
            let segment = &state.segments[i];
            let files = segment
                .files
                .clone()
                .expect("a segment holding data below the high watermark has files");
            let start = u64::from(
                segment
                    .index
                    .floor_position((offset - segment.base_offset) as u32),
            );
            (files, start, segment.durable_size, segment.base_offset)
        };
        let Some((position, first_len)) = find_batch(&files, start, limit, offset).await? else {
            // The offset is past this segment's last batch: it starts the next segment.
            let next = self
                .state
                .borrow()
                .segments
                .iter()
                .map(|s| s.base_offset)
                .find(|&b| b > segment_base);
            return match next {
                Some(base) if base <= offset => {
                    Box::pin(self.read(base.max(offset), max_bytes, min_one_batch)).await
                }
                _ => Ok(None),
            };
        };
        let available = limit - position;
        let mut len = available.min(u64::from(max_bytes));
        if min_one_batch {
            len = len.max(first_len.min(available));
        }
        if len == 0 {
            return Ok(None);
        }
        Ok(Some(FileSlice {
            file: files.reader.clone(),
            position,
            len: len.min(u64::from(u32::MAX)) as u32,
        }))
    }

    /// First offset whose batch reaches `timestamp`, with that batch's max timestamp.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let target = {
            let state = self.state.borrow();
            state
                .segments
                .iter()
                .find(|s| s.max_timestamp >= timestamp && s.durable_size > 0)
                .map(|s| {
                    let relative = s.time_index.scan_start(timestamp);
                    (
                        s.files.clone(),
                        u64::from(s.index.floor_position(relative)),
                        s.durable_size,
                    )
                })
        };
        let Some((Some(files), start, end)) = target else {
            return Ok(None);
        };
        let mut found = None;
        let mut position = start;
        while position < end && found.is_none() {
            let header = read_header(&files, position).await?;
            if header.max_timestamp >= timestamp {
                found = Some((header.base_offset, header.max_timestamp));
            }
            position += header.batch_len as u64;
        }
        Ok(found)
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

/// Loads one segment at open. The last (active) segment is fully re-validated and its torn
/// tail truncated; earlier segments trust their index if it is well-formed.
async fn recover_segment(
    dir: &Path,
    base: i64,
    config: &LogConfig,
    is_last: bool,
) -> Result<Segment, StorageError> {
    let files = Rc::new(SegmentFiles::open(dir, base).await?);
    let size = files
        .log
        .file_size()
        .await
        .map_err(StorageError::glommio("reading size of", &files.log_path))?;
    let mut segment = Segment::new(base);
    let interval = u64::from(config.index_interval_bytes);
    // Closed segments were validated when they were active; their batches only need
    // walking (headers, no CRC) to rebuild in-memory state. The active one gets CRCs too.
    let valid_end = segment::scan(&files, 0, size, base, is_last, |position, header| {
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
    // The index was rebuilt by the scan; rewrite the files so they match the log.
    let index = segment.index.encode_from(0);
    let time_index = segment.time_index.encode_from(0);
    files
        .index
        .truncate(0)
        .await
        .map_err(StorageError::glommio("truncating", &files.log_path))?;
    files
        .time_index
        .truncate(0)
        .await
        .map_err(StorageError::glommio("truncating", &files.log_path))?;
    if !index.is_empty() {
        files
            .index
            .write_at(index, 0)
            .await
            .map_err(StorageError::glommio("writing", &files.log_path))?;
    }
    if !time_index.is_empty() {
        files
            .time_index
            .write_at(time_index, 0)
            .await
            .map_err(StorageError::glommio("writing", &files.log_path))?;
    }
    segment.index_persisted = segment.index.len();
    segment.time_index_persisted = segment.time_index.len();
    segment.files = Some(files);
    Ok(segment)
}

/// Writes `data` at `position`. glommio takes the buffer by value, so it is handed over
/// without a copy; a short write to a regular file means the device is full or failing, and
/// is an error (nothing in the window is acknowledged, and the log stops taking appends).
async fn write_all(files: &SegmentFiles, data: Vec<u8>, position: u64) -> Result<(), StorageError> {
    let len = data.len();
    let written = files
        .log
        .write_at(data, position)
        .await
        .map_err(StorageError::glommio("writing", &files.log_path))?;
    if written == len {
        Ok(())
    } else {
        Err(StorageError::Io {
            op: "writing",
            path: files.log_path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {written} of {len} bytes (disk full?)"),
            ),
        })
    }
}

async fn read_header(files: &SegmentFiles, position: u64) -> Result<BatchHeader, StorageError> {
    let bytes = files
        .log
        .read_at(position, batch::HEADER_BYTES)
        .await
        .map_err(StorageError::glommio("reading", &files.log_path))?;
    batch::parse_header(&bytes).map_err(|e| StorageError::Corrupt {
        path: files.log_path.clone(),
        reason: format!("at byte {position}: {e}"),
    })
}

/// From `start` (an index position at or before the target), the position and length of the
/// batch containing `offset`, or None if the segment ends first.
async fn find_batch(
    files: &SegmentFiles,
    start: u64,
    limit: u64,
    offset: i64,
) -> Result<Option<(u64, u64)>, StorageError> {
    let mut position = start;
    while position < limit {
        let header = read_header(files, position).await?;
        if header.last_offset() >= offset {
            return Ok(Some((position, header.batch_len as u64)));
        }
        position += header.batch_len as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::batch;
    use std::os::unix::fs::FileExt;

    fn run<F: std::future::Future<Output = ()> + 'static>(
        test: impl FnOnce(PathBuf) -> F + Send + 'static,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders-0");
        glommio::LocalExecutorBuilder::default()
            .spawn(move || test(path))
            .unwrap()
            .join()
            .unwrap();
    }

    fn small_segments() -> LogConfig {
        LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 200,
            flush_on_append: true,
        }
    }

    fn read_slice(slice: &FileSlice) -> Vec<u8> {
        let mut out = vec![0; slice.len as usize];
        slice.file.read_exact_at(&mut out, slice.position).unwrap();
        out
    }

    /// Headers of the whole batches in a slice.
    fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Ok(header) = batch::check_batch(&bytes[at..]) {
            out.push(header);
            at += header.batch_len;
        }
        out
    }

    fn bases(bytes: &[u8]) -> Vec<i64> {
        headers(bytes).iter().map(|h| h.base_offset).collect()
    }

    /// Every batch from the log start, following segments, as base offsets.
    async fn all_bases(log: &PartitionLog) -> Vec<i64> {
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

    #[test]
    fn concurrent_appends_get_dense_offsets_in_call_order() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            let appends = (0..50).map(|i| {
                let log = log.clone();
                let values: Vec<Vec<u8>> = (0..=(i % 3))
                    .map(|j| format!("{i}-{j}").into_bytes())
                    .collect();
                async move {
                    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
                    log.append(&batch(&refs, 1000 + i)).await.unwrap()
                }
            });
            let outcomes = futures::future::join_all(appends).await;
            let mut expected = 0;
            for outcome in &outcomes {
                assert_eq!(outcome.base_offset, expected);
                expected = outcome.last_offset + 1;
            }
            assert_eq!(log.high_watermark(), expected);
            assert_eq!(log.log_end_offset(), expected);
            let bases_read = all_bases(&log).await;
            assert_eq!(
                bases_read,
                outcomes.iter().map(|o| o.base_offset).collect::<Vec<_>>()
            );
        });
    }

    #[test]
    fn reads_start_at_the_batch_holding_the_offset_and_respect_limits() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, LogConfig::default()).await.unwrap();
            for i in 0..10 {
                log.append(&batch(&[b"aaaa", b"bbbb", b"cccc"], i))
                    .await
                    .unwrap();
            }
            let slice = log.read(4, 1 << 20, true).await.unwrap().unwrap();
            assert_eq!(
                bases(&read_slice(&slice))[0],
                3,
                "offset 4 is inside the batch at 3"
            );
            let one = log.read(0, 1, true).await.unwrap().unwrap();
            assert_eq!(
                bases(&read_slice(&one)),
                vec![0],
                "min_one_batch returns the whole first batch"
            );
            assert!(log.read(0, 0, false).await.unwrap().is_none());
            assert!(
                log.read(30, 100, true).await.unwrap().is_none(),
                "at the high watermark"
            );
            assert!(matches!(
                log.read(31, 100, true).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
            assert!(matches!(
                log.read(-1, 100, true).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
        });
    }

    #[test]
    fn segments_roll_and_reads_cross_them_and_survive_reopen() {
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
            assert!(log.segment_count() > 3, "{} segments", log.segment_count());
            let expected: Vec<i64> = (0..40).collect();
            assert_eq!(all_bases(&log).await, expected);
            let slice = log.read(25, 1 << 20, true).await.unwrap().unwrap();
            assert_eq!(bases(&read_slice(&slice))[0], 25);
            let segments = log.segment_count();
            log.flush().await.unwrap();
            drop(log);
            let log = PartitionLog::open(dir, small_segments()).await.unwrap();
            assert_eq!(log.segment_count(), segments);
            assert_eq!(log.high_watermark(), 40);
            assert_eq!(all_bases(&log).await, expected);
            assert_eq!(
                log.append(&batch(&[b"after"], 99))
                    .await
                    .unwrap()
                    .base_offset,
                40
            );
        });
    }

    #[test]
    fn recovery_truncates_a_torn_or_scribbled_tail() {
        for damage in ["torn", "scribbled", "zeros", "no-index"] {
            run(move |dir| async move {
                let log = PartitionLog::open(
                    dir.clone(),
                    LogConfig {
                        index_interval_bytes: 50,
                        ..LogConfig::default()
                    },
                )
                .await
                .unwrap();
                for i in 0..5 {
                    log.append(&batch(&[b"0123456789"], i)).await.unwrap();
                }
                log.flush().await.unwrap();
                drop(log);
                let log_path = dir.join(segment::file_name(0, "log"));
                let size = std::fs::metadata(&log_path).unwrap().len();
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&log_path)
                    .unwrap();
                match damage {
                    "torn" => file.set_len(size - 7).unwrap(),
                    "scribbled" => file.write_all_at(b"garbage!", size - 20).unwrap(),
                    "zeros" => file.write_all_at(&[0; 300], size).unwrap(),
                    _ => std::fs::remove_file(dir.join(segment::file_name(0, "index"))).unwrap(),
                }
                let log = PartitionLog::open(dir.clone(), LogConfig::default())
                    .await
                    .unwrap();
                let kept = if damage == "zeros" || damage == "no-index" {
                    5
                } else {
                    4
                };
                assert_eq!(log.high_watermark(), kept, "{damage}");
                assert_eq!(
                    all_bases(&log).await,
                    (0..kept).collect::<Vec<_>>(),
                    "{damage}"
                );
                assert_eq!(
                    log.append(&batch(&[b"next"], 9)).await.unwrap().base_offset,
                    kept,
                    "{damage}"
                );
                assert!(dir.join(segment::file_name(0, "index")).exists());
            });
        }
    }

    #[test]
    fn offset_for_timestamp_finds_the_first_batch_reaching_it() {
        run(|dir| async move {
            let log = PartitionLog::open(
                dir,
                LogConfig {
                    index_interval_bytes: 1,
                    ..LogConfig::default()
                },
            )
            .await
            .unwrap();
            for (i, ts) in [100, 200, 300, 400].into_iter().enumerate() {
                assert_eq!(
                    log.append(&batch(&[b"x"], ts)).await.unwrap().base_offset,
                    i as i64
                );
            }
            assert_eq!(log.offset_for_timestamp(50).await.unwrap(), Some((0, 100)));
            assert_eq!(log.offset_for_timestamp(200).await.unwrap(), Some((1, 200)));
            assert_eq!(log.offset_for_timestamp(250).await.unwrap(), Some((2, 300)));
            assert_eq!(log.offset_for_timestamp(401).await.unwrap(), None);
        });
    }

    #[test]
    fn waiting_for_data_resolves_on_append_and_bad_batches_append_nothing() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), LogConfig::default())
                .await
                .unwrap();
            let waiter = {
                let log = log.clone();
                glommio::spawn_local(async move { log.wait_for_data(0).await })
            };
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            // Broken framing (the CRC is the caller's check, made where the request was read).
            let mut bad = batch(&[b"x"], 1);
            bad[16] = 1; // magic
            assert!(matches!(
                log.append(&bad).await,
                Err(StorageError::Batch(_))
            ));
            assert_eq!(log.log_end_offset(), 0);
            log.append(&batch(&[b"x"], 1)).await.unwrap();
            waiter.await;
            log.delete().await.unwrap();
            assert!(!dir.exists());
        });
    }
}
