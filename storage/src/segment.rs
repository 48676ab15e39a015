//! One segment of a partition log: the `.log` file of batches exactly as on the wire, its
//! sparse `.index` and `.timeindex`, and what is known about it in memory.
//!
//! A segment never decides when to roll or what is durable (the log does); it only places
//! batches, keeps their indexes, and walks its file. It must never hand out a batch it has
//! not checked: `scan` stops at the first batch that is torn, corrupt or out of sequence.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use glommio::io::{BufferedFile, OpenOptions};

use crate::batch::{self, BatchHeader, HEADER_BYTES};
use crate::error::StorageError;
use crate::index::{OffsetIndex, TimeIndex};

/// Bytes read per I/O while scanning a segment (recovery, index rebuild).
pub const SCAN_CHUNK_BYTES: usize = 1024 * 1024;

pub fn file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// The base offset encoded in a `.log` file name, if it is one of ours.
pub fn parse_log_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    (stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok())?
}

/// Open files of a segment.
pub struct SegmentFiles {
    pub log: BufferedFile,
    /// Read-only descriptor handed out in `FileSlice`s for sendfile; an `Arc` so a fetch in
    /// flight keeps it open even if the segment is deleted meanwhile.
    pub reader: Arc<File>,
    pub index: BufferedFile,
    pub time_index: BufferedFile,
    pub log_path: PathBuf,
}

impl SegmentFiles {
    /// Syncs the index files. Done once, when a segment is closed by a roll, so recovery can
    /// trust a closed segment's indexes instead of rescanning it.
    pub async fn sync_indexes(&self) -> Result<(), StorageError> {
        self.index
            .fdatasync()
            .await
            .map_err(StorageError::glommio("syncing index of", &self.log_path))?;
        self.time_index
            .fdatasync()
            .await
            .map_err(StorageError::glommio(
                "syncing time index of",
                &self.log_path,
            ))
    }

    /// Opens (creating if missing) the three files of a segment.
    pub async fn open(dir: &Path, base_offset: i64) -> Result<SegmentFiles, StorageError> {
        let log_path = dir.join(file_name(base_offset, "log"));
        let open = |path: PathBuf| async move {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .buffered_open(&path)
                .await
                .map_err(StorageError::glommio("opening", path))
        };
        let log = open(log_path.clone()).await?;
        let index = open(dir.join(file_name(base_offset, "index"))).await?;
        let time_index = open(dir.join(file_name(base_offset, "timeindex"))).await?;
        // A plain open of a file that exists: cheap, and only at segment creation.
        let reader =
            Arc::new(File::open(&log_path).map_err(StorageError::io("opening", &log_path))?);
        Ok(SegmentFiles {
            log,
            reader,
            index,
            time_index,
            log_path,
        })
    }
}

/// A segment as the log sees it.
pub struct Segment {
    pub base_offset: i64,
    /// None until the flusher creates the files (a roll happens inside a synchronous append).
    pub files: Option<Rc<SegmentFiles>>,
    /// Bytes given to batches, written or still pending.
    pub assigned_size: u64,
    /// Bytes written (and synced when the log syncs): the most a read may return.
    pub durable_size: u64,
    /// Offset after the last batch assigned to this segment.
    pub next_offset: i64,
    pub max_timestamp: i64,
    /// Max timestamp of the segment's first batch: `segment.ms` rolls when a new batch's
    /// timestamp is that much later (Kafka's rolling-based timestamp). None when unknown
    /// (a segment loaded from its indexes).
    pub first_batch_timestamp: Option<i64>,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Index entries already in the files.
    pub index_persisted: usize,
    pub time_index_persisted: usize,
    pub bytes_since_index: u64,
}

impl Segment {
    pub fn new(base_offset: i64) -> Segment {
        Segment {
            base_offset,
            files: None,
            assigned_size: 0,
            durable_size: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            first_batch_timestamp: None,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            index_persisted: 0,
            time_index_persisted: 0,
            bytes_since_index: 0,
        }
    }

    /// Records a batch placed at `position`, adding index entries every `interval` bytes.
    ///
    /// The time index is as sparse as the offset index (Kafka's `index.interval.bytes`
    /// governs both): one entry for the first batch, which recovery reads as the segment's
    /// first timestamp, then one with each offset index entry, holding the max timestamp of
    /// every batch before it. An entry per batch would cost 16 bytes of memory per batch
    /// for the life of the segment. Recovery takes the max timestamp from the last entry
    /// and the headers after the last offset index entry, which it walks anyway.
    pub fn note_batch(&mut self, position: u64, header: &BatchHeader, interval: u64) {
        let relative = (header.base_offset - self.base_offset) as u32;
        if self.bytes_since_index >= interval || self.index.is_empty() && position > 0 {
            if self.max_timestamp > i64::MIN && self.next_offset > self.base_offset {
                self.time_index.maybe_push(
                    self.max_timestamp,
                    (self.next_offset - 1 - self.base_offset) as u32,
                );
            }
            self.index.push(relative, position as u32);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.batch_len as u64;
        self.first_batch_timestamp
            .get_or_insert(header.max_timestamp);
        if self.time_index.is_empty() {
            self.time_index.maybe_push(
                header.max_timestamp,
                (header.last_offset() - self.base_offset) as u32,
            );
        }
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.next_offset = header.next_offset();
    }
}

/// Reads a whole index file, or None if it is larger than an index of a `log_size`-byte
/// log could be (at most one entry per batch, and a batch is at least a header): the size
/// comes from disk and is bounded before allocating.
pub async fn read_index_file(
    file: &BufferedFile,
    entry_bytes: usize,
    log_size: u64,
    path: &Path,
) -> Result<Option<Vec<u8>>, StorageError> {
    let size = file
        .file_size()
        .await
        .map_err(StorageError::glommio("reading size of", path))?;
    let size_max = (log_size / HEADER_BYTES as u64 + 1) * entry_bytes as u64;
    if size > size_max {
        return Ok(None);
    }
    if size == 0 {
        return Ok(Some(Vec::new()));
    }
    let bytes = file
        .read_at(0, size as usize)
        .await
        .map_err(StorageError::glommio("reading index of", path))?;
    Ok(Some(bytes.to_vec()))
}

/// Reads the first `entries` entries of an index file, or None if the file is shorter. The
/// count comes from disk (a recovery checkpoint), so it is bounded by what an index of a
/// `log_size`-byte log could hold before allocating.
pub async fn read_index_prefix(
    file: &BufferedFile,
    entry_bytes: usize,
    entries: usize,
    log_size: u64,
    path: &Path,
) -> Result<Option<Vec<u8>>, StorageError> {
    let entries_max = log_size / HEADER_BYTES as u64 + 1;
    if entries as u64 > entries_max {
        return Ok(None);
    }
    let len = entries * entry_bytes;
    if len == 0 {
        return Ok(Some(Vec::new()));
    }
    let size = file
        .file_size()
        .await
        .map_err(StorageError::glommio("reading size of", path))?;
    if size < len as u64 {
        return Ok(None);
    }
    let bytes = file
        .read_at(0, len)
        .await
        .map_err(StorageError::glommio("reading index of", path))?;
    Ok((bytes.len() == len).then(|| bytes.to_vec()))
}

/// Bytes read per I/O by `walk_headers`: a header and then some, so that runs of small
/// batches take one read while a large batch costs a read of its header only.
const WALK_CHUNK_BYTES: usize = 8 * 1024;

/// Walks the batch headers of `files` from `start` towards `end` without reading the
/// batches' bodies or checking their CRCs, calling `on_batch(position, header)` for each
/// batch that lies wholly before `end` and continues from `expected_offset` (exactly when
/// `dense`; a closed segment the cleaner compacted may skip offsets); returns where the walk
/// stopped. For stretches whose CRCs were checked before: below a recovery checkpoint, and
/// a closed segment's tail after its last index entry.
pub async fn walk_headers(
    files: &SegmentFiles,
    start: u64,
    end: u64,
    mut expected_offset: i64,
    dense: bool,
    mut on_batch: impl FnMut(u64, &BatchHeader),
) -> Result<u64, StorageError> {
    let mut position = start;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = start;
    while position + HEADER_BYTES as u64 <= end {
        let offset_in_buf = (position - buf_start) as usize;
        if buf.len() < offset_in_buf + HEADER_BYTES {
            let want = WALK_CHUNK_BYTES.min((end - position) as usize);
            let read = files
                .log
                .read_at(position, want)
                .await
                .map_err(StorageError::glommio("reading", &files.log_path))?;
            if read.len() < HEADER_BYTES {
                break;
            }
            buf.clear();
            buf.extend_from_slice(&read);
            buf_start = position;
            continue;
        }
        let Ok(header) = batch::parse_header(&buf[offset_in_buf..]) else {
            break;
        };
        let batch_end = position + header.batch_len as u64;
        let in_sequence = if dense {
            header.base_offset == expected_offset
        } else {
            header.base_offset >= expected_offset
        };
        if !in_sequence || header.last_offset_delta < 0 || batch_end > end {
            break;
        }
        on_batch(position, &header);
        expected_offset = header.next_offset();
        position = batch_end;
    }
    Ok(position)
}

/// Walks the batches of `files` from `start` to `end`, calling `on_batch(position, header)`
/// for each valid one, and returns where the valid prefix ends. With `check_crc`, every
/// batch's CRC is verified; a batch that is torn, corrupt, or whose base offset does not
/// continue from `expected_offset` ends the walk.
pub async fn scan(
    files: &SegmentFiles,
    start: u64,
    end: u64,
    mut expected_offset: i64,
    check_crc: bool,
    mut on_batch: impl FnMut(u64, &BatchHeader),
) -> Result<u64, StorageError> {
    let mut position = start;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = start;
    while position < end {
        let offset_in_buf = (position - buf_start) as usize;
        let available = buf.len().saturating_sub(offset_in_buf);
        // A length below the header size makes parse_prefix None; the header check below
        // then rejects the batch and ends the walk.
        let needed = if available >= HEADER_BYTES {
            batch::parse_prefix(&buf[offset_in_buf..]).map_or(HEADER_BYTES, |(_, len)| len)
        } else {
            HEADER_BYTES
        };
        if available < needed {
            let want = needed.max(SCAN_CHUNK_BYTES).min((end - position) as usize);
            if want < needed {
                break; // the file ends inside this batch: a torn tail
            }
            let read = files
                .log
                .read_at(position, want)
                .await
                .map_err(StorageError::glommio("reading", &files.log_path))?;
            buf.clear();
            buf.extend_from_slice(&read);
            buf_start = position;
            if buf.len() < needed {
                break;
            }
            continue;
        }
        let bytes = &buf[offset_in_buf..offset_in_buf + needed];
        let header = if check_crc {
            batch::check_batch(bytes)
        } else {
            batch::parse_header(bytes)
        };
        let Ok(header) = header else { break };
        // Batches follow each other without gaps, except in closed segments the cleaner
        // compacted (a batch left empty is dropped, leaving a hole in the offsets).
        let in_sequence = if check_crc {
            header.base_offset == expected_offset
        } else {
            header.base_offset >= expected_offset
        };
        if !in_sequence || header.last_offset_delta < 0 {
            break;
        }
        on_batch(position, &header);
        expected_offset = header.next_offset();
        position += header.batch_len as u64;
    }
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_names_round_trip() {
        assert_eq!(file_name(42, "log"), "00000000000000000042.log");
        assert_eq!(parse_log_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_log_name("00000000000000000042.index"), None);
        assert_eq!(parse_log_name("42.log"), None);
        assert_eq!(parse_log_name("0000000000000000004x.log"), None);
    }

    #[test]
    fn walk_headers_reads_headers_only_and_minds_the_offsets() {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let path = dir.path().to_path_buf();
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        // Offsets 0, 1, then 5: a hole, as the cleaner leaves in a closed segment.
        for (base, timestamp) in [(0i64, 1), (1, 2), (5, 3)] {
            let mut one = crate::batch::tests::batch(&[b"value"], timestamp);
            batch::stamp_base_offset(&mut one, base);
            bytes.extend_from_slice(&one);
            ends.push(bytes.len() as u64);
        }
        bytes.extend_from_slice(&crate::batch::tests::batch(&[b"torn"], 4)[..30]);
        std::fs::write(path.join(file_name(0, "log")), &bytes).unwrap();
        let size = bytes.len() as u64;
        glommio::LocalExecutorBuilder::default()
            .make()
            .expect("a test executor can be built")
            .run(async move {
                let files = SegmentFiles::open(&path, 0).await.unwrap();
                let mut seen = Vec::new();
                let end = walk_headers(&files, 0, size, 0, false, |position, header| {
                    seen.push((position, header.base_offset))
                })
                .await
                .unwrap();
                assert_eq!(end, ends[2], "the torn batch ends the walk");
                assert_eq!(seen, vec![(0, 0), (ends[0], 1), (ends[1], 5)]);
                let walk = |start, end, expected, dense| {
                    let files = &files;
                    async move {
                        walk_headers(files, start, end, expected, dense, |_, _| {})
                            .await
                            .unwrap()
                    }
                };
                assert_eq!(
                    walk(0, size, 0, true).await,
                    ends[1],
                    "dense: a hole ends it"
                );
                assert_eq!(
                    walk(ends[0], size, 2, false).await,
                    ends[0],
                    "an offset behind"
                );
                assert_eq!(
                    walk(0, ends[1] - 1, 0, true).await,
                    ends[0],
                    "a batch past end"
                );
                assert_eq!(
                    walk(ends[2], ends[2], 6, true).await,
                    ends[2],
                    "nothing to walk"
                );
            });
    }

    /// A segment's bytes after a power cut or at an attacker's hand: both walkers read them
    /// at start. Whatever the bytes, each walk returns (no panic, no endless loop) a position
    /// inside the walked range, reporting batches in order that lie wholly inside it.
    #[test]
    fn walking_mangled_segment_bytes_stays_inside_them() {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let path = dir.path().to_path_buf();
        let mut valid = Vec::new();
        for base in 0..6i64 {
            let mut one = crate::batch::tests::batch(&[b"value", b"other"], base);
            batch::stamp_base_offset(&mut one, base * 2);
            valid.extend_from_slice(&one);
        }
        // xorshift64*: deterministic, so a failure replays.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let cases: Vec<Vec<u8>> = (0..300)
            .map(|_| {
                let mut bytes = valid.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % bytes.len().saturating_sub(8).max(1);
                    match next() % 4 {
                        0 => bytes[at] ^= 1 << (next() % 8),
                        // A forged length, offset delta or base offset.
                        1 => bytes[at..at + 4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]),
                        2 => bytes[at..at + 8].copy_from_slice(&(i64::MAX - 1).to_be_bytes()),
                        _ => bytes.truncate(at),
                    }
                    if bytes.len() < 16 {
                        break;
                    }
                }
                bytes
            })
            .collect();
        glommio::LocalExecutorBuilder::default()
            .make()
            .expect("a test executor can be built")
            .run(async move {
                for (case, bytes) in cases.iter().enumerate() {
                    std::fs::write(path.join(file_name(0, "log")), bytes).unwrap();
                    let size = bytes.len() as u64;
                    let files = SegmentFiles::open(&path, 0).await.unwrap();
                    for variant in 0..4 {
                        let mut last = None;
                        let mut in_order = |position: u64, header: &BatchHeader| {
                            assert!(position + header.batch_len as u64 <= size, "case {case}");
                            assert!(last.is_none_or(|l| l < position), "case {case}");
                            last = Some(position);
                        };
                        let end = match variant {
                            0 => walk_headers(&files, 0, size, 0, true, &mut in_order).await,
                            1 => walk_headers(&files, 0, size, 0, false, &mut in_order).await,
                            2 => scan(&files, 0, size, 0, true, &mut in_order).await,
                            _ => scan(&files, 0, size, 0, false, &mut in_order).await,
                        }
                        .unwrap();
                        assert!(end <= size, "case {case} variant {variant}: {end} > {size}");
                    }
                }
            });
    }
}
