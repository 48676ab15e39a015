//! The one strict reader of the records inside a v2 batch. Everything that looks past a
//! batch header uses it: produce validation, the cleaner, ListOffsets by time and group load.
//! A batch's bytes are untrusted even when its CRC holds (a client computed that CRC), so
//! every length, count and varint is checked against the bytes actually present, the record
//! count against the records actually read, and nothing is allocated by a number read from
//! the input.
//!
//! Compressed batches decompress into one scratch buffer per shard thread, bounded at
//! `RECORDS_BYTES_MAX`: after warm-up, reading a batch allocates nothing but the codec's own
//! state (once per batch, never per record).

use std::cell::RefCell;
use std::io::Read;

use crate::batch::{read_varint, BatchHeader, HEADER_BYTES};

/// The most bytes a batch's records may decompress to. A few KiB of gzip or zstd can expand
/// to gigabytes (a decompression bomb); Kafka's batches are far below this (its producer's
/// `batch.size` is 16 KiB and `message.max.bytes` 1 MiB by default).
pub const RECORDS_BYTES_MAX: usize = 256 * 1024 * 1024;

/// A scratch buffer that grew past this for one large batch is given back afterwards, so one
/// big batch does not pin its size per shard forever.
const SCRATCH_KEEP_BYTES: usize = 8 * 1024 * 1024;

const CODEC_NONE: i16 = 0;
const CODEC_GZIP: i16 = 1;
const CODEC_SNAPPY: i16 = 2;
const CODEC_LZ4: i16 = 3;
const CODEC_ZSTD: i16 = 4;
const CODEC_MASK: i16 = 0x07;

/// xerial snappy-java's stream header (magic, version 1, compatible version 1), which Kafka's
/// clients write before the length-prefixed blocks; without it the body is raw snappy.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
const XERIAL_MAGIC_BYTES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
    #[error("the records do not decompress ({codec}): {reason}")]
    Decompress { codec: &'static str, reason: String },
    #[error("the records decompress to more than {RECORDS_BYTES_MAX} bytes")]
    TooLarge,
    #[error("the batch's records section is cut short")]
    Truncated,
    #[error("record {index}: {reason}")]
    Malformed { index: i32, reason: &'static str },
    #[error("the batch declares {declared} records but holds {found}")]
    CountMismatch { declared: i32, found: i32 },
    #[error("bytes are left over after the batch's {0} records")]
    TrailingBytes(i32),
}

impl RecordsError {
    /// Kafka answers CORRUPT_MESSAGE for bytes that cannot be read at all (a codec that does
    /// not decode them) and INVALID_RECORD for records whose structure breaks the format.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            RecordsError::Decompress { .. } | RecordsError::TooLarge | RecordsError::Truncated
        )
    }
}

/// One record, borrowed from the batch (or from the scratch it decompressed into).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub attributes: u8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub header_count: i32,
    /// The record's bytes, its length prefix included (the cleaner copies records whole).
    pub raw: &'a [u8],
}

/// The records of a records section, read strictly and in order. Yields an error (once, then
/// nothing) where the bytes stop making sense, including fewer records than declared and
/// bytes left after the last declared one.
pub struct Records<'a> {
    rest: &'a [u8],
    declared: i32,
    read: i32,
    done: bool,
}

impl<'a> Records<'a> {
    /// The records of `section`, which the batch header says holds `declared` of them.
    pub fn new(section: &'a [u8], declared: i32) -> Records<'a> {
        Records {
            rest: section,
            declared,
            read: 0,
            done: false,
        }
    }

    fn fail(&mut self, error: RecordsError) -> Option<Result<Record<'a>, RecordsError>> {
        self.done = true;
        Some(Err(error))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.read >= self.declared {
            self.done = true;
            return (!self.rest.is_empty()).then_some(Err(RecordsError::TrailingBytes(self.read)));
        }
        if self.rest.is_empty() {
            let error = RecordsError::CountMismatch {
                declared: self.declared,
                found: self.read,
            };
            return self.fail(error);
        }
        match read_record(self.rest) {
            Ok((record, used)) => {
                self.rest = &self.rest[used..];
                self.read += 1;
                Some(Ok(record))
            }
            Err(reason) => {
                let index = self.read;
                self.fail(RecordsError::Malformed { index, reason })
            }
        }
    }
}

/// Reads the record at the start of `buf` as Kafka's `DefaultRecord.readFrom` does; returns
/// it and the bytes it took.
fn read_record(buf: &[u8]) -> Result<(Record<'_>, usize), &'static str> {
    let (length, prefix) = read_varint32(buf).ok_or("record length is not a valid varint")?;
    let length = usize::try_from(length).map_err(|_| "negative record length")?;
    let total = prefix + length;
    let raw = buf
        .get(..total)
        .ok_or("record runs past the end of the batch")?;
    let mut body = Fields(&raw[prefix..]);
    let attributes = body.byte().ok_or("record has no attributes")?;
    let timestamp_delta = body.varlong().ok_or("record timestamp delta")?;
    let offset_delta = body.varint().ok_or("record offset delta")?;
    let key = body.bytes("record key")?;
    let value = body.bytes("record value")?;
    let header_count = body.varint().ok_or("record header count")?;
    if header_count < 0 {
        return Err("negative record header count");
    }
    for _ in 0..header_count {
        // Each header takes at least two bytes, so a forged count runs out of bytes here.
        match body.bytes("record header key")? {
            Some(_) => {}
            None => return Err("record header has a null key"),
        }
        body.bytes("record header value")?;
    }
    if !body.0.is_empty() {
        return Err("record is longer than its fields");
    }
    let record = Record {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        header_count,
        raw,
    };
    Ok((record, total))
}

/// A cursor over a record's fields.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn varint(&mut self) -> Option<i32> {
        let (v, n) = read_varint32(self.0)?;
        self.0 = &self.0[n..];
        Some(v)
    }

    fn varlong(&mut self) -> Option<i64> {
        let (v, n) = read_varint(self.0)?;
        self.0 = &self.0[n..];
        Some(v)
    }

    /// A length-prefixed byte field; length -1 is null.
    fn bytes(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, &'static str> {
        let len = self.varint().ok_or(what)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| what)?;
        let field = self.0.get(..len).ok_or(what)?;
        self.0 = &self.0[len..];
        Ok(Some(field))
    }
}

/// A zigzag varint that must fit an i32 (Kafka's `readVarint`: at most 5 bytes).
pub fn read_varint32(buf: &[u8]) -> Option<(i32, usize)> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().take(5).enumerate() {
        if i == 4 && byte > 0x0f {
            return None; // bits past the 32nd
        }
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((value >> 1) as i32) ^ -((value & 1) as i32), i + 1));
        }
    }
    None
}

thread_local! {
    /// One decompression buffer per shard thread: a shard reads one batch at a time, and
    /// thread-per-core means no lock. A nested reader (never in practice) gets its own.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with the records of `batch` (whose header is `header`), decompressed if the
/// batch is compressed. `batch` holds the whole batch.
pub fn with_records<R>(
    batch: &[u8],
    header: &BatchHeader,
    f: impl FnOnce(Records<'_>) -> Result<R, RecordsError>,
) -> Result<R, RecordsError> {
    let body = batch
        .get(HEADER_BYTES..header.batch_len)
        .ok_or(RecordsError::Truncated)?;
    let codec = header.attributes & CODEC_MASK;
    if codec == CODEC_NONE {
        return f(Records::new(body, header.records_count));
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            let result = decompress_into(codec, body, &mut scratch)
                .and_then(|()| f(Records::new(&scratch, header.records_count)));
            if scratch.capacity() > SCRATCH_KEEP_BYTES {
                *scratch = Vec::new();
            }
            result
        }
        Err(_) => {
            let mut own = Vec::new();
            decompress_into(codec, body, &mut own)?;
            f(Records::new(&own, header.records_count))
        }
    })
}

/// Decompresses a records section into `out` (cleared first), at most `RECORDS_BYTES_MAX`.
pub fn decompress_into(codec: i16, body: &[u8], out: &mut Vec<u8>) -> Result<(), RecordsError> {
    out.clear();
    let (name, result) = match codec {
        CODEC_GZIP => (
            "gzip",
            // `bufread`: the body is already in memory, so no BufReader to allocate.
            read_bounded(flate2::bufread::MultiGzDecoder::new(body), out),
        ),
        CODEC_SNAPPY => ("snappy", snappy_into(body, out)),
        CODEC_LZ4 => ("lz4", lz4_into(body, out)),
        CODEC_ZSTD => ("zstd", zstd_into(body, out)),
        other => return Err(RecordsError::UnknownCodec(other)),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => Err(RecordsError::TooLarge),
        Err(e) => Err(RecordsError::Decompress {
            codec: name,
            reason: e.to_string(),
        }),
    }
}

/// Reads a decoder to its end into `out`, failing past `RECORDS_BYTES_MAX`.
fn read_bounded(decoder: impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    decoder
        .take(RECORDS_BYTES_MAX as u64 + 1)
        .read_to_end(out)?;
    if out.len() > RECORDS_BYTES_MAX {
        return Err(too_large());
    }
    Ok(())
}

thread_local! {
    /// For speed: one zstd decompression context per shard thread. Creating one per batch
    /// (as `Decoder::new` does) allocates and initialises ~100 KiB each time, which cost
    /// about a fifth of max-rate zstd produce throughput.
    static ZSTD_CONTEXT: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { RefCell::new(None) };
    /// For speed, the same for LZ4's frame decoder (`lz4::Decoder` also copies the input
    /// through a 32 KiB buffer of its own; this decodes from the body into `out` directly).
    static LZ4_CONTEXT: RefCell<Option<Lz4Context>> = const { RefCell::new(None) };
}

fn zstd_into(body: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    ZSTD_CONTEXT.with(|cell| match cell.try_borrow_mut() {
        Ok(mut context) => {
            let context = match &mut *context {
                Some(context) => context,
                none => none.insert(
                    zstd::zstd_safe::DCtx::try_create()
                        .ok_or_else(|| std::io::Error::other("zstd context"))?,
                ),
            };
            // `with_context` resets the context's session, so a batch that failed midway
            // leaves nothing behind for the next.
            read_bounded(
                zstd::stream::read::Decoder::with_context(body, context),
                out,
            )
        }
        Err(_) => read_bounded(zstd::stream::read::Decoder::with_buffer(body)?, out),
    })
}

/// An LZ4 frame decompression context, freed on drop.
struct Lz4Context(lz4::liblz4::LZ4FDecompressionContext);

impl Lz4Context {
    fn new() -> std::io::Result<Lz4Context> {
        let mut context = lz4::liblz4::LZ4FDecompressionContext(std::ptr::null_mut());
        // SAFETY: LZ4F writes a new context into `context`; the error code is checked.
        let code = unsafe {
            lz4::liblz4::LZ4F_createDecompressionContext(&mut context, lz4::liblz4::LZ4F_VERSION)
        };
        lz4::liblz4::check_error(code)?;
        Ok(Lz4Context(context))
    }
}

impl Drop for Lz4Context {
    fn drop(&mut self) {
        // SAFETY: the context came from LZ4F_createDecompressionContext and is freed once.
        unsafe { lz4::liblz4::LZ4F_freeDecompressionContext(self.0) };
    }
}

/// Decodes LZ4 frames (Kafka's LZ4 codec: one frame, possibly more concatenated) from
/// `body` into `out`, growing it as output appears, at most `RECORDS_BYTES_MAX`.
fn lz4_into(body: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    LZ4_CONTEXT.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| std::io::Error::other("lz4 context in use"))?;
        let context = match &mut *slot {
            Some(context) => context,
            none => none.insert(Lz4Context::new()?),
        };
        // SAFETY: a valid context; resetting makes a batch that failed midway harmless.
        unsafe { lz4::liblz4::LZ4F_resetDecompressionContext(context.0) };
        let mut src = body;
        let mut hint = 1;
        while !src.is_empty() {
            if out.len() > RECORDS_BYTES_MAX {
                return Err(too_large());
            }
            if out.capacity() - out.len() < LZ4_OUT_STEP {
                // Doubling, but never past one byte over the bound (which then fails).
                let room = RECORDS_BYTES_MAX + 1 - out.len();
                out.reserve(out.len().clamp(LZ4_OUT_STEP, RECORDS_BYTES_MAX).min(room));
            }
            let spare = out.spare_capacity_mut();
            let mut dst_size = spare.len();
            let mut src_size = src.len();
            // SAFETY: LZ4F writes at most `dst_size` bytes into the spare capacity and reads
            // at most `src_size` from `src`, reporting both back; it only writes to `dst`.
            let code = unsafe {
                lz4::liblz4::LZ4F_decompress(
                    context.0,
                    spare.as_mut_ptr().cast::<u8>(),
                    &mut dst_size,
                    src.as_ptr(),
                    &mut src_size,
                    std::ptr::null(),
                )
            };
            hint = lz4::liblz4::check_error(code)?;
            // SAFETY: LZ4F initialised the first `dst_size` bytes of the spare capacity.
            unsafe { out.set_len(out.len() + dst_size) };
            src = &src[src_size..];
            if src_size == 0 && dst_size == 0 {
                break; // no progress: the frame wants bytes the body does not have
            }
        }
        if out.len() > RECORDS_BYTES_MAX {
            return Err(too_large());
        }
        if hint != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "lz4 frame is cut short",
            ));
        }
        Ok(())
    })
}

/// Output room made per LZ4F call.
const LZ4_OUT_STEP: usize = 64 * 1024;

fn too_large() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::FileTooLarge)
}

/// Snappy as Kafka's clients write it: xerial's framing (header, then blocks each prefixed
/// by its big-endian length), or one raw block when the header is absent (as snappy-java's
/// `SnappyInputStream` reads it).
fn snappy_into(body: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    if body.len() < XERIAL_MAGIC_BYTES || body[..XERIAL_MAGIC_BYTES] != XERIAL_HEADER[..8] {
        return snappy_block_into(body, out);
    }
    let mut rest = body.get(XERIAL_HEADER.len()..).ok_or_else(cut_short)?;
    while !rest.is_empty() {
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(cut_short)?;
        let block = rest.get(4..4 + len).ok_or_else(cut_short)?;
        snappy_block_into(block, out)?;
        rest = &rest[4 + len..];
    }
    Ok(())
}

/// The most a snappy block's bytes expand to (a 2-byte copy element makes up to 11 bytes, a
/// 3-byte one up to 64: about 21 times), with room to spare.
const SNAPPY_EXPANSION_MAX: usize = 32;

fn snappy_block_into(block: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    let len = snap::raw::decompress_len(block).map_err(std::io::Error::other)?;
    // The length is the block's own claim, read from the input: bound it by what the block's
    // bytes can expand to before zeroing that much. A snappy copy element makes at most 64
    // bytes from 2 to 5 bytes of input, so no block expands more than 32 times (plus its
    // few header bytes).
    if len > block.len().saturating_mul(SNAPPY_EXPANSION_MAX) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "snappy block claims more bytes than its input can hold",
        ));
    }
    let start = out.len();
    if start.saturating_add(len) > RECORDS_BYTES_MAX {
        return Err(too_large());
    }
    out.resize(start + len, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(std::io::Error::other)?;
    out.truncate(start + written);
    Ok(())
}

fn cut_short() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "snappy stream is cut short",
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::batch::parse_header;
    use crate::batch::tests::{batch, fix};

    /// A record as Kafka encodes it, from its fields (headers given as (key, value)).
    pub fn record(
        offset_delta: i32,
        timestamp_delta: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> Vec<u8> {
        let mut body = vec![0u8];
        put_varint(&mut body, timestamp_delta);
        put_varint(&mut body, offset_delta.into());
        put_bytes(&mut body, key);
        put_bytes(&mut body, value);
        put_varint(&mut body, headers.len() as i64);
        for (k, v) in headers {
            put_bytes(&mut body, Some(k));
            put_bytes(&mut body, *v);
        }
        let mut out = Vec::new();
        put_varint(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
        out
    }

    pub fn put_varint(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn put_bytes(out: &mut Vec<u8>, field: Option<&[u8]>) {
        match field {
            None => put_varint(out, -1),
            Some(b) => {
                put_varint(out, b.len() as i64);
                out.extend_from_slice(b);
            }
        }
    }

    fn read_all(section: &[u8], declared: i32) -> Result<Vec<Record<'_>>, RecordsError> {
        Records::new(section, declared).collect()
    }

    #[test]
    fn reads_every_field_of_every_record() {
        let mut section = record(0, 5, Some(b"k"), Some(b"v"), &[(b"h", Some(b"x"))]);
        section.extend(record(1, 9, None, None, &[]));
        let records = read_all(&section, 2).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].key, Some(&b"k"[..]));
        assert_eq!(records[0].value, Some(&b"v"[..]));
        assert_eq!(records[0].header_count, 1);
        assert_eq!(records[0].timestamp_delta, 5);
        assert_eq!((records[1].offset_delta, records[1].key), (1, None));
        assert_eq!(records[1].value, None);
        assert_eq!(
            records[0].raw.len() + records[1].raw.len(),
            section.len(),
            "raw spans the whole record"
        );
    }

    #[test]
    fn a_count_the_bytes_do_not_hold_is_refused_without_allocating_for_it() {
        let section = record(0, 0, None, Some(b"v"), &[]);
        assert_eq!(
            read_all(&section, i32::MAX),
            Err(RecordsError::CountMismatch {
                declared: i32::MAX,
                found: 1
            })
        );
        assert_eq!(read_all(&section, 0), Err(RecordsError::TrailingBytes(0)));
    }

    #[test]
    fn lying_lengths_inside_a_record_are_refused() {
        let good = record(0, 0, Some(b"key"), Some(b"value"), &[(b"h", None)]);
        // Every single-byte change of the body (length prefix kept) either still reads as
        // some record or is refused: never a panic, never a read past the record.
        for at in 1..good.len() {
            for byte in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] = byte;
                let _ = read_all(&bad, 1);
            }
        }
        let mut header_count_lies = record(0, 0, None, None, &[]);
        *header_count_lies.last_mut().unwrap() = 0x7e; // 63 headers in no bytes
        assert!(matches!(
            read_all(&header_count_lies, 1),
            Err(RecordsError::Malformed { index: 0, .. })
        ));
        let mut longer_than_fields = record(0, 0, None, None, &[]);
        longer_than_fields[0] += 2; // the length claims one more field byte than there is
        longer_than_fields.push(0);
        assert!(read_all(&longer_than_fields, 1).is_err());
    }

    #[test]
    fn varints_past_32_bits_are_refused_where_kafka_reads_an_int() {
        assert_eq!(
            read_varint32(&[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            Some((i32::MAX, 5))
        );
        assert_eq!(read_varint32(&[0xff, 0xff, 0xff, 0xff, 0x1f]), None);
        assert_eq!(read_varint32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), None);
    }

    /// A batch of `records` compressed with `codec` through kafka-protocol's encoders (the
    /// client side of the same codecs).
    pub fn compressed_batch(codec: i16, records: &[u8], declared: i32) -> Vec<u8> {
        use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
        let mut body = bytes::BytesMut::new();
        let put = |b: &mut bytes::BytesMut| {
            b.extend_from_slice(records);
            Ok(())
        };
        match codec {
            CODEC_GZIP => Gzip::compress(&mut body, put),
            CODEC_SNAPPY => Snappy::compress(&mut body, put),
            CODEC_LZ4 => Lz4::compress(&mut body, put),
            CODEC_ZSTD => Zstd::compress(&mut body, put),
            other => panic!("codec {other}"),
        }
        .unwrap();
        let mut out = batch(&[b"x"], 1_000);
        out.truncate(HEADER_BYTES);
        out.extend_from_slice(&body);
        let len = (out.len() - 12) as i32;
        out[8..12].copy_from_slice(&len.to_be_bytes());
        out[21..23].copy_from_slice(&codec.to_be_bytes());
        out[23..27].copy_from_slice(&(declared - 1).to_be_bytes());
        out[57..61].copy_from_slice(&declared.to_be_bytes());
        fix(&mut out);
        out
    }

    #[test]
    fn every_codec_decompresses_into_the_same_records() {
        let mut section = Vec::new();
        for i in 0..50 {
            section.extend(record(i, i.into(), Some(b"key"), Some(&[7u8; 100]), &[]));
        }
        for codec in [CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD] {
            let batch = compressed_batch(codec, &section, 50);
            let header = parse_header(&batch).unwrap();
            let deltas = with_records(&batch, &header, |records| {
                records
                    .map(|r| r.map(|r| r.offset_delta))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
            assert_eq!(deltas, (0..50).collect::<Vec<_>>(), "codec {codec}");
        }
    }

    #[test]
    fn raw_snappy_without_xerial_framing_is_read_too() {
        let section = record(0, 0, None, Some(b"raw"), &[]);
        let compressed = snap::raw::Encoder::new().compress_vec(&section).unwrap();
        let mut out = Vec::new();
        decompress_into(CODEC_SNAPPY, &compressed, &mut out).unwrap();
        assert_eq!(out, section);
    }

    #[test]
    fn a_compressed_batch_claiming_two_billion_records_is_refused() {
        let section = record(0, 0, None, Some(b"v"), &[]);
        let batch = compressed_batch(CODEC_GZIP, &section, i32::MAX);
        let header = parse_header(&batch).unwrap();
        let result = with_records(&batch, &header, |records| {
            records
                .map(|record| record.map(|record| record.offset_delta))
                .collect::<Result<Vec<_>, _>>()
        });
        assert_eq!(
            result,
            Err(RecordsError::CountMismatch {
                declared: i32::MAX,
                found: 1
            })
        );
    }

    #[test]
    fn a_batch_that_fails_midway_leaves_the_shared_contexts_fit_for_the_next() {
        let section = record(0, 0, Some(b"k"), Some(b"value"), &[]);
        for codec in [CODEC_LZ4, CODEC_ZSTD] {
            let batch = compressed_batch(codec, &section, 1);
            let body = &batch[HEADER_BYTES..];
            let mut out = Vec::new();
            for cut in [body.len() / 2, body.len() - 1] {
                assert!(
                    decompress_into(codec, &body[..cut], &mut out).is_err(),
                    "codec {codec}: cut at {cut} of {}",
                    body.len()
                );
                decompress_into(codec, body, &mut out).expect("the whole body decodes");
                assert_eq!(out, section, "codec {codec}");
            }
        }
    }

    #[test]
    fn lz4_and_zstd_bombs_stop_at_the_bound() {
        use kafka_protocol::compression::{Compressor, Lz4, Zstd};
        let zeros = vec![0u8; RECORDS_BYTES_MAX + 1];
        for codec in [CODEC_LZ4, CODEC_ZSTD] {
            let mut bomb = bytes::BytesMut::new();
            let put = |b: &mut bytes::BytesMut| {
                b.extend_from_slice(&zeros);
                Ok(())
            };
            match codec {
                CODEC_LZ4 => Lz4::compress(&mut bomb, put).unwrap(),
                _ => Zstd::compress(&mut bomb, put).unwrap(),
            }
            assert!(bomb.len() < 2 << 20, "codec {codec}: a small input");
            let mut out = Vec::new();
            assert_eq!(
                decompress_into(codec, &bomb, &mut out),
                Err(RecordsError::TooLarge),
                "codec {codec}"
            );
            assert!(out.capacity() <= 2 * RECORDS_BYTES_MAX, "codec {codec}");
        }
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_bound() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(RECORDS_BYTES_MAX >> 20) + 1 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "a small input");
        let mut out = Vec::new();
        assert_eq!(
            decompress_into(CODEC_GZIP, &bomb, &mut out),
            Err(RecordsError::TooLarge)
        );
    }

    #[test]
    fn garbage_in_every_codec_is_an_error_not_a_panic() {
        let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        for codec in [CODEC_GZIP, CODEC_SNAPPY, CODEC_LZ4, CODEC_ZSTD] {
            let mut out = Vec::new();
            assert!(
                decompress_into(codec, &garbage, &mut out).is_err(),
                "{codec}"
            );
            let mut framed = XERIAL_HEADER.to_vec();
            framed.extend_from_slice(&u32::MAX.to_be_bytes());
            assert!(decompress_into(CODEC_SNAPPY, &framed, &mut out).is_err());
        }
        assert_eq!(
            decompress_into(5, &garbage, &mut Vec::new()),
            Err(RecordsError::UnknownCodec(5))
        );
    }

    #[test]
    fn a_snappy_block_claiming_more_than_it_can_hold_allocates_nothing() {
        // A varint length of 200 MiB and three bytes of "data".
        let mut block = Vec::new();
        let mut claim = 200u64 << 20;
        while claim >= 0x80 {
            block.push((claim as u8) | 0x80);
            claim >>= 7;
        }
        block.push(claim as u8);
        block.extend_from_slice(&[0, 1, 2]);
        let mut out = Vec::new();
        assert!(snappy_block_into(&block, &mut out).is_err());
        assert!(out.capacity() < 1 << 20, "capacity {}", out.capacity());
        // A real block at snappy's best ratio still decodes.
        let zeros = vec![0u8; 1 << 20];
        let compressed = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        assert!(
            compressed.len() * SNAPPY_EXPANSION_MAX >= zeros.len(),
            "ratio {}",
            zeros.len() / compressed.len()
        );
        snappy_block_into(&compressed, &mut out).expect("decodes");
        assert_eq!(out, zeros);
    }
}
