//! Kafka record batches (magic v2) as bytes: header parsing, produce-time validation and
//! base-offset stamping. The records inside are read by `records`, the one strict reader,
//! which produce validation runs over every batch (compressed ones decompressed into a
//! reused buffer), as Kafka's LogValidator does.
//!
//! Hot path: runs once per produced batch. Pure functions over byte slices: no I/O, no
//! allocation per record, and never a panic on any input (every length is checked before it
//! is used).

use crate::records::{self, RecordsError};

/// Bytes before `batchLength` counts from: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;
/// The fixed v2 header, up to and including `recordsCount`.
pub const HEADER_BYTES: usize = 61;
/// Sanity bound on one batch; Kafka's own limit is `max.message.bytes` (checked by the
/// broker per topic), this only stops a forged length from being believed.
pub const BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

const LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const CODEC_MASK: i16 = 0x07;
const CODEC_NONE: i16 = 0;
const CODEC_MAX: i16 = 4; // zstd

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record set is empty")]
    Empty,
    #[error(
        "batch at byte {at} is truncated: {available} bytes left, header or length says {needed}"
    )]
    Truncated {
        at: usize,
        needed: usize,
        available: usize,
    },
    #[error("batch at byte {at} has impossible length {len}")]
    BadLength { at: usize, len: i64 },
    #[error("batch at byte {at} has magic {magic}; only v2 batches are accepted")]
    BadMagic { at: usize, magic: i8 },
    #[error("batch at byte {at} fails its CRC32C check (stored {stored:#010x}, computed {computed:#010x})")]
    CrcMismatch {
        at: usize,
        stored: u32,
        computed: u32,
    },
    #[error("batch at byte {at} uses unknown compression codec {codec}")]
    BadCodec { at: usize, codec: i16 },
    #[error(
        "batch at byte {at} has records count {count} and last offset delta {last_offset_delta}"
    )]
    BadCount {
        at: usize,
        count: i32,
        last_offset_delta: i32,
    },
    #[error("batch at byte {at}: {source}")]
    Records { at: usize, source: RecordsError },
    #[error("batch at byte {at}: clients are not allowed to write control records")]
    ControlBatch { at: usize },
    #[error(
        "batch at byte {at}: invalid sequence number {sequence} for producer id {producer_id}"
    )]
    BadSequence {
        at: usize,
        producer_id: i64,
        sequence: i32,
    },
    /// Kafka's INVALID_TIMESTAMP (`message.timestamp.before.max.ms` / `after.max.ms`).
    #[error(
        "batch at byte {at}: timestamp {timestamp} of a record is out of range: more than \
         {before_max_ms} ms before or {after_max_ms} ms after the broker's time {now_ms}"
    )]
    TimestampOutOfRange {
        at: usize,
        timestamp: i64,
        now_ms: i64,
        before_max_ms: i64,
        after_max_ms: i64,
    },
}

/// What a topic asks of a client's timestamps, as Kafka's LogValidator applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampPolicy {
    /// `message.timestamp.type=LogAppendTime`: the broker stamps its own time at append, so
    /// the records' times are neither checked nor summarized.
    pub log_append_time: bool,
    /// The broker's clock, in ms since the epoch.
    pub now_ms: i64,
    /// `message.timestamp.before.max.ms`: how far behind `now_ms` a record may be.
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far ahead of `now_ms` a record may be.
    pub after_max_ms: i64,
}

impl TimestampPolicy {
    /// CreateTime with no bounds: the topic defaults Weir ships (Long.MAX_VALUE, as Kafka 3.x).
    pub fn create_time_unbounded() -> TimestampPolicy {
        TimestampPolicy {
            log_append_time: false,
            now_ms: 0,
            before_max_ms: i64::MAX,
            after_max_ms: i64::MAX,
        }
    }

    fn in_range(&self, timestamp: i64) -> bool {
        // Subtractions in i128: a client's timestamp can be anything an i64 holds.
        let (now, t) = (i128::from(self.now_ms), i128::from(timestamp));
        now - t <= i128::from(self.before_max_ms) && t - now <= i128::from(self.after_max_ms)
    }
}

impl BatchError {
    /// Kafka answers CORRUPT_MESSAGE for bytes that are damaged (framing, magic, CRC) and
    /// INVALID_RECORD for well-formed batches that break the rules.
    pub fn is_corrupt(&self) -> bool {
        match self {
            BatchError::Records { source, .. } => source.is_corrupt(),
            other => matches!(
                other,
                BatchError::Empty
                    | BatchError::Truncated { .. }
                    | BatchError::BadLength { .. }
                    | BatchError::BadMagic { .. }
                    | BatchError::CrcMismatch { .. }
            ),
        }
    }
}

/// The fixed fields of a v2 batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Total bytes of the batch, the 12-byte prefix included.
    pub batch_len: usize,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    // Saturating: both fields may come from disk, and a forged base offset near i64::MAX
    // must end a walk as an out-of-sequence batch does, not overflow (a panic in debug
    // builds, a wrap to a negative offset that a later check might accept in release).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    pub fn codec(&self) -> i16 {
        self.attributes & CODEC_MASK
    }
}

/// What a validated produce payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub batch_count: u32,
    pub record_count: u64,
    pub first_timestamp: i64,
    /// The largest record timestamp, computed from the records where they were walked.
    pub max_timestamp: i64,
    /// Batches whose header `maxTimestamp` disagrees with their records (Sarama sends -1):
    /// `correct_max_timestamps` rewrites them before the payload is appended.
    pub stale_max_timestamps: u32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads only the 12-byte prefix: (base offset, total batch length). For scanning a log.
pub fn parse_prefix(buf: &[u8]) -> Option<(i64, usize)> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(buf, LENGTH_AT);
    if len < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
        return None;
    }
    Some((be_i64(buf, 0), LOG_OVERHEAD + len as usize))
}

/// Parses the header of the batch at the start of `buf` (which may hold only the header).
pub fn parse_header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < HEADER_BYTES {
        return Err(BatchError::Truncated {
            at: 0,
            needed: HEADER_BYTES,
            available: buf.len(),
        });
    }
    let len = i64::from(be_i32(buf, LENGTH_AT));
    if len < (HEADER_BYTES - LOG_OVERHEAD) as i64 || len as usize + LOG_OVERHEAD > BATCH_BYTES_MAX {
        return Err(BatchError::BadLength { at: 0, len });
    }
    let magic = buf[MAGIC_AT] as i8;
    if magic != 2 {
        return Err(BatchError::BadMagic { at: 0, magic });
    }
    Ok(BatchHeader {
        base_offset: be_i64(buf, 0),
        batch_len: LOG_OVERHEAD + len as usize,
        partition_leader_epoch: be_i32(buf, 12),
        attributes: be_i16(buf, ATTRIBUTES_AT),
        last_offset_delta: be_i32(buf, 23),
        base_timestamp: be_i64(buf, 27),
        max_timestamp: be_i64(buf, 35),
        producer_id: be_i64(buf, 43),
        producer_epoch: be_i16(buf, 51),
        base_sequence: be_i32(buf, 53),
        records_count: be_i32(buf, 57),
    })
}

/// Parses the whole batch at the start of `buf` and checks its CRC. Used by recovery.
pub fn check_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(buf)?;
    if buf.len() < header.batch_len {
        return Err(BatchError::Truncated {
            at: 0,
            needed: header.batch_len,
            available: buf.len(),
        });
    }
    let stored = be_i32(buf, CRC_AT) as u32;
    let computed = crc32c::crc32c(&buf[ATTRIBUTES_AT..header.batch_len]);
    if stored != computed {
        return Err(BatchError::CrcMismatch {
            at: 0,
            stored,
            computed,
        });
    }
    Ok(header)
}

/// Validates every batch of a produce payload (a concatenation of batches) before anything
/// is appended, as Kafka's LogValidator does for a client's batches: framing, magic, CRC32C,
/// codec, counts, producer fields, and every record inside (decompressed if need be) read
/// strictly, a compressed batch's records numbered 0, 1, 2, ...
///
/// On a CreateTime topic every record's timestamp must lie within the policy's bounds, and a
/// batch whose header `maxTimestamp` or timestamp-type bit disagrees with its records counts
/// in `stale_max_timestamps` (`correct_max_timestamps` rewrites it). On a LogAppendTime
/// topic the append stamps the header, whatever the client put there.
pub fn validate_produce_batches(
    buf: &[u8],
    policy: &TimestampPolicy,
) -> Result<BatchSummary, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut summary = BatchSummary {
        batch_count: 0,
        record_count: 0,
        first_timestamp: i64::MIN,
        max_timestamp: i64::MIN,
        stale_max_timestamps: 0,
    };
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        let header = check_batch(rest).map_err(|e| e.at(at))?;
        check_client_header(&header).map_err(|e| e.at(at))?;
        let (min_delta, max_delta) = timestamp_deltas(&rest[..header.batch_len], &header)
            .map_err(|source| BatchError::Records { at, source })?;
        let mut max_timestamp = header.max_timestamp;
        if !policy.log_append_time {
            // A record without a timestamp (-1) is exempt, as on Kafka; the smallest delta
            // already leaves those out.
            let out_of_range = [min_delta, max_delta]
                .into_iter()
                .filter(|&delta| delta != i64::MAX)
                .map(|delta| header.base_timestamp.saturating_add(delta))
                .find(|&t| t != NO_TIMESTAMP && !policy.in_range(t));
            if let Some(timestamp) = out_of_range {
                return Err(BatchError::TimestampOutOfRange {
                    at,
                    timestamp,
                    now_ms: policy.now_ms,
                    before_max_ms: policy.before_max_ms,
                    after_max_ms: policy.after_max_ms,
                });
            }
            max_timestamp = header.base_timestamp.saturating_add(max_delta);
            if max_timestamp != header.max_timestamp
                || header.attributes & LOG_APPEND_TIME_FLAG != 0
            {
                summary.stale_max_timestamps += 1;
            }
        }
        if summary.batch_count == 0 {
            summary.first_timestamp = header.base_timestamp;
        }
        summary.batch_count += 1;
        summary.record_count += header.records_count as u64;
        summary.max_timestamp = summary.max_timestamp.max(max_timestamp);
        at += header.batch_len;
    }
    Ok(summary)
}

/// The header rules Kafka's `LogValidator.validateBatch` holds a client's batch to. Errors
/// are placed at byte 0 (the caller moves them).
fn check_client_header(header: &BatchHeader) -> Result<(), BatchError> {
    let codec = header.codec();
    if codec > CODEC_MAX {
        return Err(BatchError::BadCodec { at: 0, codec });
    }
    if header.records_count < 1 || header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::BadCount {
            at: 0,
            count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    if header.attributes & CONTROL_FLAG != 0 {
        return Err(BatchError::ControlBatch { at: 0 });
    }
    if header.producer_id >= 0 && header.base_sequence < 0 {
        return Err(BatchError::BadSequence {
            at: 0,
            producer_id: header.producer_id,
            sequence: header.base_sequence,
        });
    }
    Ok(())
}

/// Reads every record of a client's batch strictly and returns the smallest timestamp delta
/// among records that have a timestamp (i64::MAX if none has) and the largest among all (the
/// records' own timestamps, which Kafka takes over the header's). In a compressed batch the records must be numbered from 0 up, as Kafka
/// requires of a wrapper's inner records; an uncompressed batch's offset deltas are not
/// checked, as on Kafka.
fn timestamp_deltas(batch: &[u8], header: &BatchHeader) -> Result<(i64, i64), RecordsError> {
    let compressed = header.codec() != CODEC_NONE;
    records::with_records(batch, header, |records| {
        let (mut min_delta, mut max_delta) = (i64::MAX, i64::MIN);
        for (index, record) in (0..).zip(records) {
            let record = record?;
            if compressed && record.offset_delta != index {
                return Err(RecordsError::Malformed {
                    index,
                    reason: "inner records of a compressed batch do not have incremental offsets",
                });
            }
            if header.base_timestamp.saturating_add(record.timestamp_delta) != NO_TIMESTAMP {
                min_delta = min_delta.min(record.timestamp_delta);
            }
            max_delta = max_delta.max(record.timestamp_delta);
        }
        Ok((min_delta, max_delta))
    })
}

impl BatchError {
    /// The same error, placed at byte `base` of the enclosing payload.
    fn at(self, base: usize) -> BatchError {
        match self {
            BatchError::Truncated {
                at,
                needed,
                available,
            } => BatchError::Truncated {
                at: at + base,
                needed,
                available,
            },
            BatchError::BadLength { at, len } => BatchError::BadLength { at: at + base, len },
            BatchError::BadMagic { at, magic } => BatchError::BadMagic {
                at: at + base,
                magic,
            },
            BatchError::CrcMismatch {
                at,
                stored,
                computed,
            } => BatchError::CrcMismatch {
                at: at + base,
                stored,
                computed,
            },
            BatchError::BadCodec { at, codec } => BatchError::BadCodec {
                at: at + base,
                codec,
            },
            BatchError::BadCount {
                at,
                count,
                last_offset_delta,
            } => BatchError::BadCount {
                at: at + base,
                count,
                last_offset_delta,
            },
            BatchError::ControlBatch { at } => BatchError::ControlBatch { at: at + base },
            BatchError::BadSequence {
                at,
                producer_id,
                sequence,
            } => BatchError::BadSequence {
                at: at + base,
                producer_id,
                sequence,
            },
            other => other,
        }
    }
}

/// Walks the batch headers of a payload that already passed `validate_produce_batches`:
/// lengths that tile the payload exactly, magic, and counts, but no CRC (that pass was made
/// once, where the request was read). Returns the number of records. The log calls this so
/// its own framing never depends on a caller having validated, at a fraction of the cost.
pub fn check_framing(buf: &[u8]) -> Result<u64, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut records = 0u64;
    let mut at = 0;
    while at < buf.len() {
        let header = parse_header(&buf[at..]).map_err(|e| e.at(at))?;
        if buf.len() - at < header.batch_len {
            return Err(BatchError::Truncated {
                at,
                needed: header.batch_len,
                available: buf.len() - at,
            });
        }
        if header.records_count < 1 || header.last_offset_delta != header.records_count - 1 {
            return Err(BatchError::BadCount {
                at,
                count: header.records_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        records += header.records_count as u64;
        at += header.batch_len;
    }
    Ok(records)
}

/// For a CreateTime topic: rewrites the header `maxTimestamp` of every batch whose records
/// say otherwise, clears a LogAppendTime bit the client set, and recomputes the CRC, which
/// covers both. Kafka's LogValidator does the same, and retention and `segment.ms` read the
/// header. For a payload that passed `validate_produce_batches` (and reported
/// `stale_max_timestamps`, which is rare: only then does this second read, and the copy the
/// caller made to call it, happen); anything else is left.
pub fn correct_max_timestamps(buf: &mut [u8]) {
    let mut at = 0;
    while at < buf.len() {
        let Ok(header) = parse_header(&buf[at..]) else {
            return;
        };
        let Some(batch) = buf.get_mut(at..at + header.batch_len) else {
            return;
        };
        if header.records_count > 0 {
            if let Ok((_, max_delta)) = timestamp_deltas(batch, &header) {
                let max_timestamp = header.base_timestamp.saturating_add(max_delta);
                let bit_set = header.attributes & LOG_APPEND_TIME_FLAG != 0;
                if max_timestamp != header.max_timestamp || bit_set {
                    let attributes = header.attributes & !LOG_APPEND_TIME_FLAG;
                    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2]
                        .copy_from_slice(&attributes.to_be_bytes());
                    set_max_timestamp(batch, max_timestamp);
                }
            }
        }
        at += header.batch_len;
    }
}

/// Writes a batch's `maxTimestamp` and recomputes the CRC, which covers it.
fn set_max_timestamp(batch: &mut [u8], timestamp: i64) {
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A zigzag varint (Kafka's record format) and the bytes it took.
pub fn read_varint(buf: &[u8]) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((value >> 1) as i64) ^ -((value & 1) as i64), i + 1));
        }
    }
    None
}

/// Writes the base offset into a batch. The CRC starts at `attributes`, so this does not
/// invalidate it.
pub fn stamp_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// The leader epoch of every partition of a single-node broker, as Metadata and ListOffsets
/// report it; replication will keep one per partition.
pub const LEADER_EPOCH: i32 = 0;

/// Writes the partition leader epoch into a batch, as Kafka's leader stamps its epoch into
/// every batch it appends: a client's value would otherwise reach consumers, which take
/// epochs from batches (KIP-320). Outside the CRC, like the base offset.
pub fn stamp_leader_epoch(batch: &mut [u8], leader_epoch: i32) {
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// The attributes bit saying the batch's max timestamp is the broker's append time.
const LOG_APPEND_TIME_FLAG: i16 = 0x08;
/// The attributes bit of a control batch (transaction markers), which only brokers write.
const CONTROL_FLAG: i16 = 0x20;
const MAX_TIMESTAMP_AT: usize = 35;
const LEADER_EPOCH_AT: usize = 12;
/// A record's timestamp when its producer gave none.
const NO_TIMESTAMP: i64 = -1;

/// Marks a batch as `LogAppendTime` with the broker's clock (topic config
/// `message.timestamp.type=LogAppendTime`): sets the timestamp-type attribute and the max
/// timestamp, which consumers then use for every record, and recomputes the CRC, which
/// covers both. The records keep the producer's timestamps, as on Kafka.
pub fn stamp_log_append_time(batch: &mut [u8], timestamp: i64) {
    let attributes = i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2]
        .copy_from_slice(&(attributes | LOG_APPEND_TIME_FLAG).to_be_bytes());
    set_max_timestamp(batch, timestamp);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// CreateTime without bounds: the rules every client batch is held to regardless.
    fn validate(buf: &[u8]) -> Result<BatchSummary, BatchError> {
        validate_produce_batches(buf, &TimestampPolicy::create_time_unbounded())
    }

    fn put_varint(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A valid uncompressed batch of `values` with timestamps base_ts + index.
    pub fn batch(values: &[&[u8]], base_ts: i64) -> Vec<u8> {
        let mut records = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let mut record = vec![0u8]; // attributes
            put_varint(&mut record, i as i64); // timestamp delta
            put_varint(&mut record, i as i64); // offset delta
            put_varint(&mut record, -1); // key: null
            put_varint(&mut record, value.len() as i64);
            record.extend_from_slice(value);
            put_varint(&mut record, 0); // headers
            put_varint(&mut records, record.len() as i64);
            records.extend_from_slice(&record);
        }
        let n = values.len() as i32;
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(n - 1).to_be_bytes());
        b.extend_from_slice(&base_ts.to_be_bytes());
        b.extend_from_slice(&(base_ts + i64::from(n) - 1).to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(&records);
        fix(&mut b);
        b
    }

    /// Recomputes length and CRC after a test edits a batch.
    pub fn fix(b: &mut [u8]) {
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES_AT..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn a_header_max_timestamp_the_records_contradict_is_counted_and_corrected() {
        let mut first = batch(&[b"a", b"bb", b"ccc"], 1000);
        first[35..43].copy_from_slice(&(-1i64).to_be_bytes());
        fix(&mut first);
        let first_len = first.len();
        let mut payload = first;
        payload.extend(batch(&[b"ok"], 5000));
        let summary = validate(&payload).unwrap();
        assert_eq!(summary.stale_max_timestamps, 1);
        assert_eq!(summary.max_timestamp, 5000);
        correct_max_timestamps(&mut payload);
        let corrected = validate(&payload).expect("CRC recomputed");
        assert_eq!(corrected.stale_max_timestamps, 0);
        assert_eq!(parse_header(&payload).unwrap().max_timestamp, 1002);
        assert_eq!(
            &payload[first_len..],
            &batch(&[b"ok"], 5000)[..],
            "second untouched"
        );
    }

    #[test]
    fn accepts_valid_batches_and_sums_them() {
        let mut payload = batch(&[b"a", b"bb"], 1000);
        payload.extend(batch(&[b"ccc"], 5000));
        let summary = validate(&payload).unwrap();
        assert_eq!(
            summary,
            BatchSummary {
                batch_count: 2,
                record_count: 3,
                first_timestamp: 1000,
                max_timestamp: 5000,
                stale_max_timestamps: 0,
            }
        );
    }

    #[test]
    fn rejects_damage_as_corrupt() {
        let good = batch(&[b"hello"], 1);
        assert_eq!(validate(&[]), Err(BatchError::Empty));
        let mut bad_crc = good.clone();
        *bad_crc.last_mut().unwrap() ^= 1;
        assert!(matches!(
            validate(&bad_crc),
            Err(BatchError::CrcMismatch { .. })
        ));
        let mut bad_magic = good.clone();
        bad_magic[MAGIC_AT] = 1;
        assert!(matches!(
            validate(&bad_magic),
            Err(BatchError::BadMagic { magic: 1, .. })
        ));
        for cut in [1, 12, 60, good.len() - 1] {
            let err = validate(&good[..cut]).unwrap_err();
            assert!(err.is_corrupt(), "cut at {cut}: {err}");
        }
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0; 5]);
        assert!(validate(&trailing).unwrap_err().is_corrupt());
        let mut huge = good.clone();
        huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(validate(&huge), Err(BatchError::BadLength { .. })));
        let mut negative = good;
        negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate(&negative),
            Err(BatchError::BadLength { .. })
        ));
    }

    #[test]
    fn rejects_rule_breaking_batches_as_invalid() {
        let mut codec = batch(&[b"x"], 1);
        codec[22] = 5;
        fix(&mut codec);
        assert!(matches!(
            validate(&codec),
            Err(BatchError::BadCodec { codec: 5, .. })
        ));
        let mut count = batch(&[b"x", b"y"], 1);
        count[57..61].copy_from_slice(&3i32.to_be_bytes());
        fix(&mut count);
        let err = validate(&count).unwrap_err();
        assert!(!err.is_corrupt() && matches!(err, BatchError::BadCount { .. }));
        let mut zero = batch(&[b"x"], 1);
        zero[57..61].copy_from_slice(&0i32.to_be_bytes());
        zero[23..27].copy_from_slice(&(-1i32).to_be_bytes());
        fix(&mut zero);
        assert!(matches!(validate(&zero), Err(BatchError::BadCount { .. })));
        // Record framing that does not fill the batch, CRC recomputed so only framing is wrong.
        let mut framing = batch(&[b"abc"], 1);
        framing[61] = 0x7e; // record length 63: past the end
        fix(&mut framing);
        let err = validate(&framing).unwrap_err();
        assert!(
            !err.is_corrupt() && matches!(err, BatchError::Records { .. }),
            "{err}"
        );
        let mut control = batch(&[b"x"], 1);
        control[22] |= 0x20;
        fix(&mut control);
        assert!(matches!(
            validate(&control),
            Err(BatchError::ControlBatch { at: 0 })
        ));
        let mut no_sequence = batch(&[b"x"], 1);
        no_sequence[43..51].copy_from_slice(&7i64.to_be_bytes()); // producer id, sequence -1
        fix(&mut no_sequence);
        assert!(matches!(
            validate(&no_sequence),
            Err(BatchError::BadSequence { sequence: -1, .. })
        ));
    }

    #[test]
    fn a_bad_batch_after_good_ones_is_reported_where_it_starts() {
        let first = batch(&[b"a"], 1);
        let mut second = batch(&[b"b", b"c"], 2);
        *second.last_mut().unwrap() ^= 0x40;
        let mut payload = first.clone();
        payload.extend_from_slice(&second);
        payload.extend(batch(&[b"d"], 3));
        match validate(&payload) {
            Err(BatchError::CrcMismatch { at, .. }) => assert_eq!(at, first.len()),
            other => panic!("expected a CRC mismatch, got {other:?}"),
        }
    }

    #[test]
    fn header_fields_are_read_where_kafka_puts_them() {
        let mut b = batch(&[b"x", b"y", b"z"], 1_700_000_000_000);
        b[12..16].copy_from_slice(&7i32.to_be_bytes()); // partition leader epoch
        b[43..51].copy_from_slice(&42i64.to_be_bytes()); // producer id
        b[51..53].copy_from_slice(&3i16.to_be_bytes()); // producer epoch
        b[53..57].copy_from_slice(&9i32.to_be_bytes()); // base sequence
        fix(&mut b);
        stamp_base_offset(&mut b, 500);
        let header = parse_header(&b).unwrap();
        assert_eq!(header.base_offset, 500);
        assert_eq!(header.batch_len, b.len());
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.base_timestamp, 1_700_000_000_000);
        assert_eq!(header.max_timestamp, 1_700_000_000_002);
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (42, 3, 9)
        );
        assert_eq!(header.records_count, 3);
        assert_eq!((header.last_offset(), header.next_offset()), (502, 503));
        assert!(parse_header(&b[..HEADER_BYTES - 1]).is_err());
    }

    /// `count` records with offset deltas from `offset_deltas` and timestamp deltas 0, 1, ...
    fn records_section(offset_deltas: impl Iterator<Item = i32>) -> Vec<u8> {
        let mut section = Vec::new();
        for (ts, offset_delta) in offset_deltas.enumerate() {
            section.extend(crate::records::tests::record(
                offset_delta,
                ts as i64,
                Some(b"key"),
                Some(b"value"),
                &[(b"h", Some(b"v"))],
            ));
        }
        section
    }

    #[test]
    fn compressed_batches_are_read_record_by_record() {
        use crate::records::tests::compressed_batch;
        for codec in 1..=4 {
            let good = compressed_batch(codec, &records_section(0..10), 10);
            let summary = validate(&good).unwrap();
            assert_eq!((summary.record_count, summary.max_timestamp), (10, 1_009));

            // A valid CRC over a count of 2^31 - 1 (the broker-killing batch of issue 11).
            let lying = compressed_batch(codec, &records_section(0..10), i32::MAX);
            let err = validate(&lying).unwrap_err();
            assert!(
                !err.is_corrupt() && matches!(err, BatchError::Records { .. }),
                "{err}"
            );
            let short = compressed_batch(codec, &records_section(0..10), 9);
            assert!(validate(&short).is_err(), "codec {codec}");

            let skipping = compressed_batch(codec, &records_section((0..10).map(|i| i * 2)), 10);
            let err = validate(&skipping).unwrap_err();
            assert!(err.to_string().contains("incremental offsets"), "{err}");

            let mut garbage = good.clone();
            let end = garbage.len();
            garbage[HEADER_BYTES..end].fill(0x5a);
            fix(&mut garbage);
            assert!(validate(&garbage).unwrap_err().is_corrupt());
        }
    }

    #[test]
    fn a_compressed_batch_header_max_timestamp_is_corrected_too() {
        let mut payload = crate::records::tests::compressed_batch(3, &records_section(0..4), 4);
        payload[35..43].copy_from_slice(&(-1i64).to_be_bytes());
        fix(&mut payload);
        assert_eq!(validate(&payload).unwrap().stale_max_timestamps, 1);
        correct_max_timestamps(&mut payload);
        assert_eq!(parse_header(&payload).unwrap().max_timestamp, 1_003);
        assert_eq!(validate(&payload).unwrap().stale_max_timestamps, 0);
    }

    #[test]
    fn a_clients_log_append_time_bit_on_a_create_time_topic_is_cleared_and_max_corrected() {
        // Sarama's lying -1 again, behind the LogAppendTime bit: before, the bit made the
        // validator skip the correction, and retention took the data for ancient.
        let mut payload = batch(&[b"a", b"bb"], 1000);
        payload[ATTRIBUTES_AT + 1] |= LOG_APPEND_TIME_FLAG as u8;
        payload[35..43].copy_from_slice(&(-1i64).to_be_bytes());
        fix(&mut payload);
        assert_eq!(validate(&payload).unwrap().stale_max_timestamps, 1);
        correct_max_timestamps(&mut payload);
        let header = check_batch(&payload).expect("CRC recomputed");
        assert_eq!(header.max_timestamp, 1001);
        assert_eq!(
            header.attributes & LOG_APPEND_TIME_FLAG,
            0,
            "CreateTime, as the topic"
        );
        assert_eq!(validate(&payload).unwrap().stale_max_timestamps, 0);
    }

    #[test]
    fn record_timestamps_outside_the_topics_bounds_are_refused() {
        let now = 1_700_000_000_000;
        let policy = TimestampPolicy {
            log_append_time: false,
            now_ms: now,
            before_max_ms: 60_000,
            after_max_ms: 1_000,
        };
        let check = |base_ts: i64, policy: &TimestampPolicy| {
            validate_produce_batches(&batch(&[b"a", b"b", b"c"], base_ts), policy)
        };
        // Records at base, base+1, base+2: the oldest and the newest both count.
        assert!(check(now - 60_000, &policy).is_ok());
        assert!(check(now + 998, &policy).is_ok());
        let old = check(now - 60_001, &policy).unwrap_err();
        assert!(
            matches!(old, BatchError::TimestampOutOfRange { timestamp, .. } if timestamp == now - 60_001),
            "{old}"
        );
        assert!(!old.is_corrupt(), "a rule broken, not damaged bytes");
        let ahead = check(now + 999, &policy).unwrap_err();
        assert!(
            matches!(ahead, BatchError::TimestampOutOfRange { timestamp, .. } if timestamp == now + 1_001),
            "{ahead}"
        );
        // A second batch out of range fails the whole payload, placed at its byte.
        let mut payload = batch(&[b"a"], now);
        let second_at = payload.len();
        payload.extend(batch(&[b"a"], 0));
        assert!(
            matches!(validate_produce_batches(&payload, &policy), Err(BatchError::TimestampOutOfRange { at, .. }) if at == second_at)
        );
        // No timestamp (-1) is exempt; LogAppendTime topics take any, the broker stamps them.
        assert!(validate_produce_batches(&batch(&[b"a"], NO_TIMESTAMP), &policy).is_ok());
        let log_append = TimestampPolicy {
            log_append_time: true,
            ..policy
        };
        assert!(check(0, &log_append).is_ok());
        // Unbounded takes the extremes without overflowing.
        let unbounded = TimestampPolicy {
            now_ms: now,
            ..TimestampPolicy::create_time_unbounded()
        };
        assert!(check(0, &unbounded).is_ok() && check(i64::MAX - 10, &unbounded).is_ok());
    }

    #[test]
    fn stamping_the_leader_epoch_keeps_the_crc_valid() {
        let mut b = batch(&[b"x"], 1);
        b[12..16].copy_from_slice(&1000i32.to_be_bytes());
        stamp_leader_epoch(&mut b, LEADER_EPOCH);
        assert_eq!(
            check_batch(&b).unwrap().partition_leader_epoch,
            LEADER_EPOCH
        );
    }

    #[test]
    fn framing_check_counts_records_and_rejects_bad_tiling() {
        let mut payload = batch(&[b"a", b"bb"], 1);
        payload.extend(batch(&[b"c"], 2));
        assert_eq!(check_framing(&payload), Ok(3));
        assert!(check_framing(&payload[..payload.len() - 1]).is_err());
        assert!(check_framing(&[]).is_err());
        let mut bad_magic = payload.clone();
        bad_magic[MAGIC_AT] = 0;
        assert!(check_framing(&bad_magic).is_err());
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let mut b = batch(&[b"x"], 1);
        stamp_base_offset(&mut b, 123_456);
        assert_eq!(check_batch(&b).unwrap().base_offset, 123_456);
    }

    #[test]
    fn varints_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(read_varint(&out), Some((v, out.len())));
        }
        assert_eq!(read_varint(&[0x80, 0x80]), None);
    }
}
