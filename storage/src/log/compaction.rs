//! Log compaction (`cleanup.policy=compact`): keeps the latest record of every key.
//!
//! Control plane, run by the owning shard's cleaner pass in the background. Only closed,
//! fully written and synced segments whose newest record is older than
//! `min.compaction.lag.ms` are cleaned, and only when the share of not-yet-cleaned bytes among
//! them reaches `min.cleanable.dirty.ratio`. Two passes, as Kafka's cleaner: the first maps
//! every key (by a 128-bit hash) to its latest offset; the second rewrites each segment
//! without the records a later one supersedes, and without tombstones older than
//! `delete.retention.ms`.
//!
//! Offsets never move. A batch keeps its base offset and last offset delta (as Kafka does,
//! so a compacted log has holes, which reads already skip); a batch left with no record is
//! dropped; a compressed batch is decompressed, filtered and recompressed with its codec.
//! Records are filtered as raw bytes, never decoded into fields and re-encoded, so headers,
//! timestamps and attributes come out byte for byte as produced.
//!
//! A cleaned segment replaces its original by rename, after its index files are removed (a
//! crash in between leaves a log without indexes, which recovery rebuilds). Readers holding
//! a `FileSlice` of the original keep reading it; appends never touch closed segments.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use super::PartitionLog;
use crate::batch::{self, read_varint, HEADER_BYTES};
use crate::error::StorageError;
use crate::segment::{self, Segment, SegmentFiles};

/// Bytes read from a segment per step.
const READ_CHUNK_BYTES: usize = 4 << 20;
const ATTRIBUTES_AT: usize = 21;
const CRC_AT: usize = 17;
const LENGTH_AT: usize = 8;
const RECORDS_COUNT_AT: usize = 57;
const CONTROL_FLAG: i16 = 0x20;

/// A topic's compaction settings (Kafka's names).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionPolicy {
    /// `min.cleanable.dirty.ratio`: clean once this share of the cleanable bytes is new.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: a segment with a record younger than this is left alone.
    pub min_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone is kept, so consumers see the delete.
    pub delete_retention_ms: i64,
}

/// What one cleaning did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_rewritten: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_removed: u64,
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

impl PartitionLog {
    /// Cleans the log if enough of it is dirty; None when there was nothing to do.
    pub async fn compact(
        &self,
        policy: CompactionPolicy,
        now_ms: i64,
    ) -> Result<Option<CompactionStats>, StorageError> {
        let candidates = self.cleanable_segments(policy, now_ms);
        if candidates.is_empty() {
            return Ok(None);
        }
        let total: u64 = candidates.iter().map(|(_, _, size)| size).sum();
        let cleaned_up_to = self.cleaned_up_to.get();
        let dirty: u64 = candidates
            .iter()
            .filter(|(base, _, _)| *base >= cleaned_up_to)
            .map(|(_, _, size)| size)
            .sum();
        if total == 0 || (dirty as f64) < policy.min_cleanable_dirty_ratio * total as f64 {
            return Ok(None);
        }
        // Pass 1: the latest offset of every key.
        let mut latest: HashMap<u128, i64> = HashMap::new();
        for (_, files, size) in &candidates {
            for_each_batch(files, *size, |bytes| {
                for_each_record(bytes, |record| {
                    if let Some(key) = record.key {
                        let slot = latest.entry(key_hash(key)).or_insert(record.offset);
                        *slot = (*slot).max(record.offset);
                    }
                })
            })
            .await?;
        }
        // Pass 2: rewrite, one segment at a time.
        let tombstone_horizon = now_ms.saturating_sub(policy.delete_retention_ms);
        let keep = |record: &RecordView| -> bool {
            let Some(key) = record.key else {
                return true;
            };
            let superseded = latest
                .get(&key_hash(key))
                .is_some_and(|&last| last > record.offset);
            let expired_tombstone = record.tombstone && record.timestamp < tombstone_horizon;
            !superseded && !expired_tombstone
        };
        let mut stats = CompactionStats::default();
        let mut next_clean = cleaned_up_to;
        for (base, files, size) in &candidates {
            let mut cleaned = Vec::with_capacity(*size as usize / 2);
            let mut removed = 0u64;
            for_each_batch(files, *size, |bytes| {
                let (kept, dropped) = filter_batch(bytes, &keep)?;
                removed += dropped;
                if let Some(kept) = kept {
                    cleaned.extend_from_slice(&kept);
                }
                Ok(())
            })
            .await?;
            stats.bytes_before += size;
            stats.bytes_after += cleaned.len() as u64;
            if removed > 0 {
                self.replace_segment(*base, cleaned).await?;
                stats.segments_rewritten += 1;
                stats.records_removed += removed;
            }
            next_clean = next_clean.max(self.segment_end(*base));
        }
        self.cleaned_up_to.set(next_clean);
        Ok(Some(stats))
    }

    /// Closed, written, synced segments from the start of the log, up to the first one holding
    /// a record younger than the compaction lag: (base offset, files, size).
    fn cleanable_segments(
        &self,
        policy: CompactionPolicy,
        now_ms: i64,
    ) -> Vec<(i64, Rc<SegmentFiles>, u64)> {
        let state = self.state.borrow();
        let closed = super::retention::deletable_prefix(&state.segments, &state.pending);
        let lag_horizon = now_ms.saturating_sub(policy.min_compaction_lag_ms);
        state.segments[..closed]
            .iter()
            .take_while(|s| s.max_timestamp <= lag_horizon)
            .filter_map(|s| Some((s.base_offset, s.files.clone()?, s.durable_size)))
            .collect()
    }

    /// The offset after a segment's last batch (its next segment's base when it has holes).
    fn segment_end(&self, base: i64) -> i64 {
        let state = self.state.borrow();
        let i = state.segments.partition_point(|s| s.base_offset <= base);
        state
            .segments
            .get(i)
            .map_or(state.log_end_offset, |next| next.base_offset)
    }

    /// Swaps a closed segment's file for its cleaned bytes and reloads its indexes.
    async fn replace_segment(&self, base: i64, cleaned: Vec<u8>) -> Result<(), StorageError> {
        let mut segment = Segment::new(base);
        let interval = u64::from(self.config().index_interval_bytes);
        let mut position = 0usize;
        while position < cleaned.len() {
            let header = batch::parse_header(&cleaned[position..])?;
            segment.note_batch(position as u64, &header, interval);
            segment.next_offset = header.next_offset();
            segment.max_timestamp = segment.max_timestamp.max(header.max_timestamp);
            position += header.batch_len;
        }
        segment.assigned_size = cleaned.len() as u64;
        segment.durable_size = segment.assigned_size;
        let index = segment.index.encode_from(0);
        let time_index = segment.time_index.encode_from(0);
        segment.index_persisted = segment.index.len();
        segment.time_index_persisted = segment.time_index.len();
        let dir = self.dir.clone();
        // File replacement is a series of blocking syscalls: off the reactor.
        glommio::executor()
            .spawn_blocking(move || write_replacement(&dir, base, &cleaned, &index, &time_index))
            .await?;
        segment.files = Some(Rc::new(SegmentFiles::open(&self.dir, base).await?));
        let mut state = self.state.borrow_mut();
        if let Some(slot) = state.segments.iter_mut().find(|s| s.base_offset == base) {
            // A closed segment's end is where the next one starts, holes or not.
            segment.next_offset = segment.next_offset.max(slot.next_offset);
            *slot = segment;
        }
        Ok(())
    }
}

/// Writes `<base>.log.cleaned`, syncs it, removes the old indexes, renames it over the log,
/// writes and syncs the new indexes, and syncs the directory.
fn write_replacement(
    dir: &Path,
    base: i64,
    log: &[u8],
    index: &[u8],
    time_index: &[u8],
) -> Result<(), StorageError> {
    use std::io::Write;
    let write = |path: &Path, bytes: &[u8]| -> Result<(), StorageError> {
        let mut file = std::fs::File::create(path).map_err(StorageError::io("creating", path))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(StorageError::io("writing", path))
    };
    let log_path = dir.join(segment::file_name(base, "log"));
    let cleaned_path = dir.join(format!("{}.cleaned", segment::file_name(base, "log")));
    write(&cleaned_path, log)?;
    for ext in ["index", "timeindex"] {
        let path = dir.join(segment::file_name(base, ext));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("removing", path)(e)),
        }
    }
    std::fs::rename(&cleaned_path, &log_path)
        .map_err(StorageError::io("renaming", &cleaned_path))?;
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

/// Calls `f` with every whole batch of a segment's first `size` bytes, in order.
async fn for_each_batch(
    files: &SegmentFiles,
    size: u64,
    mut f: impl FnMut(&[u8]) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let mut position = 0u64;
    while position < size {
        let want = ((size - position) as usize).min(READ_CHUNK_BYTES);
        let chunk = files
            .log
            .read_at(position, want)
            .await
            .map_err(StorageError::glommio("reading", &files.log_path))?;
        let mut at = 0usize;
        while let Some((_, len)) = batch::parse_prefix(&chunk[at..]) {
            if at + len > chunk.len() {
                break;
            }
            f(&chunk[at..at + len])?;
            at += len;
        }
        if at == 0 {
            // A batch larger than the chunk: read exactly it.
            let Some((_, len)) = batch::parse_prefix(&chunk) else {
                return Err(corrupt(files, position, "unreadable batch header"));
            };
            let whole = files
                .log
                .read_at(position, len)
                .await
                .map_err(StorageError::glommio("reading", &files.log_path))?;
            if whole.len() < len {
                return Err(corrupt(
                    files,
                    position,
                    "batch runs past the end of the segment",
                ));
            }
            f(&whole)?;
            at = len;
        }
        position += at as u64;
    }
    Ok(())
}

fn corrupt(files: &SegmentFiles, position: u64, reason: &str) -> StorageError {
    StorageError::Corrupt {
        path: files.log_path.clone(),
        reason: format!("at byte {position}: {reason}"),
    }
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
fn for_each_record(batch: &[u8], mut f: impl FnMut(&RecordView)) -> Result<(), StorageError> {
    let header = batch::parse_header(batch)?;
    if header.attributes & CONTROL_FLAG != 0 {
        return Ok(());
    }
    let records = records_section(batch, header.attributes)?;
    walk(&records, &header, |record| f(record))
}

/// The batch without the records `keep` rejects, and how many were dropped. None when no
/// record is left; the original bytes when nothing was dropped.
fn filter_batch(
    batch: &[u8],
    keep: &impl Fn(&RecordView) -> bool,
) -> Result<(Option<Bytes>, u64), StorageError> {
    let header = batch::parse_header(batch)?;
    if header.attributes & CONTROL_FLAG != 0 {
        return Ok((Some(Bytes::copy_from_slice(batch)), 0));
    }
    let records = records_section(batch, header.attributes)?;
    let mut kept = BytesMut::with_capacity(records.len());
    let (mut kept_count, mut dropped) = (0i32, 0u64);
    walk(&records, &header, |record| {
        if keep(record) {
            kept.extend_from_slice(record.raw);
            kept_count += 1;
        } else {
            dropped += 1;
        }
    })?;
    if dropped == 0 {
        return Ok((Some(Bytes::copy_from_slice(batch)), 0));
    }
    if kept_count == 0 {
        return Ok((None, dropped));
    }
    let body = compress(header.attributes & 0x07, kept.freeze())?;
    let mut out = BytesMut::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    out.extend_from_slice(&body);
    let batch_length = (out.len() - batch::LOG_OVERHEAD) as i32;
    out[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&kept_count.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok((Some(out.freeze()), dropped))
}

fn records_section(batch: &[u8], attributes: i16) -> Result<Bytes, StorageError> {
    let body = Bytes::copy_from_slice(&batch[HEADER_BYTES..]);
    decompress(attributes & 0x07, body)
}

/// Walks the records of a (decompressed) records section.
fn walk(
    mut records: &[u8],
    header: &batch::BatchHeader,
    mut f: impl FnMut(&RecordView),
) -> Result<(), StorageError> {
    let bad = |what: &str| StorageError::Compaction(what.to_owned());
    for _ in 0..header.records_count {
        let (len, used) = read_varint(records).ok_or_else(|| bad("record length"))?;
        let end = used + usize::try_from(len).map_err(|_| bad("negative record length"))?;
        let raw = records
            .get(..end)
            .ok_or_else(|| bad("record runs past the batch"))?;
        let mut body = &raw[used..];
        let next_varint = |body: &mut &[u8]| -> Result<i64, StorageError> {
            let (v, n) = read_varint(body).ok_or_else(|| bad("record field"))?;
            *body = &body[n..];
            Ok(v)
        };
        body = body.get(1..).ok_or_else(|| bad("record attributes"))?;
        let timestamp_delta = next_varint(&mut body)?;
        let offset_delta = next_varint(&mut body)?;
        let key_len = next_varint(&mut body)?;
        let key = if key_len < 0 {
            None
        } else {
            let key = body
                .get(..key_len as usize)
                .ok_or_else(|| bad("record key"))?;
            body = &body[key_len as usize..];
            Some(key)
        };
        let value_len = next_varint(&mut body)?;
        f(&RecordView {
            offset: header.base_offset + offset_delta,
            timestamp: header.base_timestamp + timestamp_delta,
            key,
            tombstone: value_len < 0,
            raw,
        });
        records = &records[end..];
    }
    Ok(())
}

fn codec_error(e: anyhow::Error) -> StorageError {
    StorageError::Compaction(format!("codec: {e:#}"))
}

fn decompress(codec: i16, body: Bytes) -> Result<Bytes, StorageError> {
    let mut buf = body;
    let take = |b: &mut Bytes| Ok(std::mem::take(b));
    match codec {
        0 => Ok(buf),
        1 => Gzip::decompress(&mut buf, take).map_err(codec_error),
        2 => Snappy::decompress(&mut buf, take).map_err(codec_error),
        3 => Lz4::decompress(&mut buf, take).map_err(codec_error),
        4 => Zstd::decompress(&mut buf, take).map_err(codec_error),
        other => Err(codec_error(anyhow::anyhow!("unknown codec {other}"))),
    }
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
    use bytes::Bytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    use super::super::testing::{read_slice, run};
    use super::super::{LastShutdown, LogConfig, PartitionLog};
    use super::CompactionPolicy;
    use crate::flush_gate::FlushGate;

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
                timestamp,
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

    /// Every record of the log: (offset, key, value).
    async fn contents(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        while let Some(slice) = log.read(offset, 1 << 20, true).await.unwrap() {
            let mut bytes = Bytes::from(read_slice(&slice));
            for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
                for r in set.records {
                    offset = offset.max(r.offset + 1);
                    let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
                    out.push((
                        r.offset,
                        text(r.key.as_ref().unwrap()),
                        r.value.as_ref().map(text),
                    ));
                }
            }
        }
        out
    }

    const POLICY: CompactionPolicy = CompactionPolicy {
        min_cleanable_dirty_ratio: 0.5,
        min_compaction_lag_ms: 0,
        delete_retention_ms: 1_000,
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
            // An old tombstone (removed) and a recent one (kept), then data to close them in.
            log.append(&keyed(&[("k1", None)], 100, Compression::None))
                .await
                .unwrap();
            log.append(&keyed(&[("k2", None)], 9_900, Compression::None))
                .await
                .unwrap();
            for i in 0..8 {
                let v = format!("f{i}");
                log.append(&keyed(&[("filler", Some(&v))], 10_000, Compression::None))
                    .await
                    .unwrap();
            }
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
            let values = |key: &str| -> Vec<Option<String>> {
                after
                    .iter()
                    .filter(|(_, k, _)| k == key)
                    .map(|(_, _, v)| v.clone())
                    .collect()
            };
            assert_eq!(values("k0"), vec![Some("k0-r4".to_string())]);
            assert_eq!(values("k3"), vec![Some("k3-r4".to_string())]);
            assert_eq!(
                values("k1"),
                Vec::<Option<String>>::new(),
                "old tombstone and all it deleted are gone"
            );
            assert_eq!(
                values("k2"),
                vec![None],
                "a recent tombstone stays for consumers to see"
            );
            assert_eq!(values("noise").len(), 1);
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

    /// A decompression bomb (a small compressed batch that expands past the bound) is an
    /// error, never an allocation of everything it claims.
    #[test]
    fn decompression_past_the_bound_is_refused() {
        use kafka_protocol::compression::DECOMPRESSED_BYTES_MAX;
        let zeros = Bytes::from(vec![0u8; DECOMPRESSED_BYTES_MAX + 1]);
        for codec in [1, 4] {
            let bomb = super::compress(codec, zeros.clone()).expect("compresses");
            assert!(bomb.len() < 2 * 1024 * 1024, "codec {codec}: a small input");
            let error = super::decompress(codec, bomb).expect_err("refused");
            assert!(
                error.to_string().contains("exceeds"),
                "codec {codec}: {error}"
            );
        }
        // Raw snappy declares its length up front: 2^31 as a varint, and nothing else.
        let declared = Bytes::from_static(&[0x80, 0x80, 0x80, 0x80, 0x08]);
        assert!(super::decompress(2, declared).is_err());
        let small = super::compress(4, Bytes::from_static(b"fits")).expect("compresses");
        assert_eq!(
            &super::decompress(4, small).expect("within the bound")[..],
            b"fits"
        );
    }
}
