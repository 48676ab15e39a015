//! Builds v2 record batches the way a real producer's accumulator does: records appended in
//! place into one growing buffer, then (with a codec) the records section compressed whole,
//! and header and CRC32C patched at the end.
//!
//! Hot path: one call per message. No allocation per record: the record length is computed
//! arithmetically (no scratch buffer), and the value is written from its header and a shared
//! filler slice.

use bytes::{BufMut, Bytes, BytesMut};

use super::compression::{attribute, compress};
use super::varint::{put_varint, varint_len};
use crate::workload::Compression;

/// Bytes before the first record: base offset (8), length (4), leader epoch (4), magic (1),
/// CRC (4), attributes (2), last offset delta (4), first/max timestamp (8+8), producer id
/// (8), producer epoch (2), base sequence (4), record count (4).
pub const BATCH_HEADER_BYTES: usize = 61;
/// Where the CRC32C'd part starts: everything after the CRC field.
const CRC_START: usize = 21;

#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    records: i32,
    first_timestamp_ms: i64,
    max_timestamp_ms: i64,
    compression: Compression,
}

impl BatchBuilder {
    pub fn with_capacity(bytes: usize) -> BatchBuilder {
        BatchBuilder {
            buf: BytesMut::with_capacity(bytes.max(BATCH_HEADER_BYTES)),
            records: 0,
            first_timestamp_ms: 0,
            max_timestamp_ms: 0,
            compression: Compression::None,
        }
    }

    /// Compresses each finished batch's records with `codec`. `batch.size` still counts
    /// uncompressed bytes, as librdkafka's does.
    pub fn with_compression(mut self, codec: Compression) -> BatchBuilder {
        self.compression = codec;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    pub fn records(&self) -> i32 {
        self.records
    }

    /// Bytes the batch has now, header included.
    pub fn len_bytes(&self) -> usize {
        if self.records == 0 {
            BATCH_HEADER_BYTES
        } else {
            self.buf.len()
        }
    }

    /// Bytes `append` would add for a record with this key and value length.
    pub fn record_bytes(&self, key: Option<&[u8]>, value_len: usize) -> usize {
        let body = self.record_body_bytes(key, value_len, 0);
        varint_len(body as i64) + body
    }

    fn record_body_bytes(
        &self,
        key: Option<&[u8]>,
        value_len: usize,
        timestamp_delta: i64,
    ) -> usize {
        let key_bytes = match key {
            Some(key) => varint_len(key.len() as i64) + key.len(),
            None => varint_len(-1),
        };
        1 + varint_len(timestamp_delta)
            + varint_len(i64::from(self.records))
            + key_bytes
            + varint_len(value_len as i64)
            + value_len
            + varint_len(0)
    }

    /// Appends one record whose value is `value_head` followed by `value_tail`.
    pub fn append(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value_head: &[u8],
        value_tail: &[u8],
    ) {
        if self.records == 0 {
            self.buf.clear();
            self.buf.put_bytes(0, BATCH_HEADER_BYTES);
            self.first_timestamp_ms = timestamp_ms;
            self.max_timestamp_ms = timestamp_ms;
        }
        let timestamp_delta = timestamp_ms - self.first_timestamp_ms;
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
        let value_len = value_head.len() + value_tail.len();
        let body = self.record_body_bytes(key, value_len, timestamp_delta);
        let buf = &mut self.buf;
        put_varint(buf, body as i64);
        buf.put_i8(0); // record attributes: unused in v2
        put_varint(buf, timestamp_delta);
        put_varint(buf, i64::from(self.records)); // offset delta
        match key {
            Some(key) => {
                put_varint(buf, key.len() as i64);
                buf.put_slice(key);
            }
            None => put_varint(buf, -1),
        }
        put_varint(buf, value_len as i64);
        buf.put_slice(value_head);
        buf.put_slice(value_tail);
        put_varint(buf, 0); // no headers
        self.records += 1;
    }

    /// Compresses the records (with a codec), patches the header and CRC and hands the
    /// batch out; the builder is empty again.
    pub fn finish(&mut self) -> Bytes {
        assert!(self.records > 0, "finish() on an empty batch");
        let mut batch = if self.compression == Compression::None {
            self.buf.split()
        } else {
            let records = &self.buf[BATCH_HEADER_BYTES..];
            let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + records.len() / 2);
            out.put_bytes(0, BATCH_HEADER_BYTES);
            compress(self.compression, records, &mut out)
                .expect("compressing into memory fails only when allocation does");
            // The uncompressed buffer keeps its capacity for the next batch.
            self.buf.clear();
            out
        };
        self.patch_header(&mut batch);
        self.records = 0;
        batch.freeze()
    }

    fn patch_header(&self, batch: &mut [u8]) {
        let batch_len = (batch.len() - 12) as i32;
        let mut header = &mut batch[..BATCH_HEADER_BYTES];
        header.put_i64(0); // base offset: the broker assigns offsets
        header.put_i32(batch_len);
        header.put_i32(-1); // partition leader epoch
        header.put_i8(2); // magic
        header.put_u32(0); // CRC, patched below
                           // Attributes: the codec; CreateTime, not transactional, not a control batch.
        header.put_i16(attribute(self.compression));
        header.put_i32(self.records - 1); // last offset delta
        header.put_i64(self.first_timestamp_ms);
        header.put_i64(self.max_timestamp_ms);
        header.put_i64(-1); // producer id: not idempotent
        header.put_i16(-1); // producer epoch
        header.put_i32(-1); // base sequence
        header.put_i32(self.records);
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record_reader::for_each_record;

    #[test]
    fn builds_a_batch_kafka_protocol_decodes() {
        let mut builder = BatchBuilder::with_capacity(1024);
        let predicted = builder.record_bytes(Some(b"k1"), 5);
        builder.append(1_000, Some(b"k1"), b"he", b"llo");
        assert_eq!(builder.len_bytes(), BATCH_HEADER_BYTES + predicted);
        builder.append(1_002, None, b"world", b"");
        let mut batch = builder.finish();
        assert!(builder.is_empty());

        let records = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch)
            .expect("kafka-protocol accepts the batch, CRC included")
            .records;
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(records[0].value.as_deref(), Some(&b"hello"[..]));
        assert_eq!(records[1].key, None);
        assert_eq!(records[1].offset, 1);
        assert_eq!(records[1].timestamp, 1_002);
    }

    #[test]
    fn reader_sees_what_the_builder_wrote() {
        let mut builder = BatchBuilder::with_capacity(64);
        for i in 0..100u8 {
            builder.append(5, None, &[i; 24], &[0; 10]);
        }
        let batch = builder.finish();
        let mut seen = Vec::new();
        let next = for_each_record(&batch, |_, value| {
            seen.push(value[0]);
        })
        .expect("valid batch");
        assert_eq!(next, Some(100));
        assert_eq!(seen, (0..100).collect::<Vec<u8>>());
    }

    #[test]
    fn compressed_batches_decode_with_kafka_protocol_and_the_reader() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut builder = BatchBuilder::with_capacity(64).with_compression(codec);
            for i in 0..50u8 {
                builder.append(7, Some(b"k"), &[i; 24], &[0; 100]);
            }
            let batch = builder.finish();
            assert!(
                batch.len() < BATCH_HEADER_BYTES + 50 * 120,
                "{codec} compressed"
            );
            let mut copy = batch.clone();
            let records = kafka_protocol::records::RecordBatchDecoder::decode(&mut copy)
                .expect("kafka-protocol accepts the compressed batch")
                .records;
            assert_eq!(records.len(), 50, "{codec}");
            assert_eq!(records[49].value.as_deref().map(|v| v[0]), Some(49));
            let mut seen = Vec::new();
            for_each_record(&batch, |offset, value| seen.push((offset, value[0])))
                .expect("the reader decompresses");
            assert_eq!(seen, (0..50).map(|i| (i64::from(i), i)).collect::<Vec<_>>());
        }
    }
}
