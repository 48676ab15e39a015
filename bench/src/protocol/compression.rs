//! Record-batch compression for the native client: the records section of a v2 batch
//! (everything after the 61-byte header) compressed whole with the batch's codec, as Kafka's
//! producers do, and decompressed again on the consumer side.
//!
//! The codecs are kafka-protocol's (the same the broker uses): gzip, snappy in the xerial
//! framing the Java client writes, LZ4 frames, zstd. Compression runs once per batch, never
//! per record; it costs one copy of the uncompressed records into the codec's input buffer,
//! which is small beside the compression itself.

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use crate::error::BenchError;
use crate::workload::Compression;

/// The codec bits of a batch's attributes (Kafka: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;

/// The attribute bits that name `codec`.
pub fn attribute(codec: Compression) -> i16 {
    match codec {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

/// Appends `records` compressed with `codec` to `out`. `Compression::None` copies them.
pub fn compress(codec: Compression, records: &[u8], out: &mut BytesMut) -> Result<(), BenchError> {
    let fill = |input: &mut BytesMut| {
        input.extend_from_slice(records);
        Ok(())
    };
    let result = match codec {
        Compression::None => {
            out.extend_from_slice(records);
            Ok(())
        }
        Compression::Gzip => Gzip::compress(out, fill),
        Compression::Snappy => Snappy::compress(out, fill),
        Compression::Lz4 => Lz4::compress(out, fill),
        Compression::Zstd => Zstd::compress(out, fill),
    };
    result.map_err(|e| BenchError::Encode {
        what: "compressed record batch",
        message: format!("{codec}: {e:#}"),
    })
}

/// The records section of a batch whose attributes carry codec bits `attributes`, as
/// uncompressed bytes.
pub fn decompress(attributes: i16, body: &[u8]) -> Result<Bytes, BenchError> {
    let mut input = body;
    let take = |records: &mut Bytes| Ok(std::mem::take(records));
    let result = match attributes & ATTR_COMPRESSION_MASK {
        0 => Ok(Bytes::copy_from_slice(body)),
        1 => Gzip::decompress(&mut input, take),
        2 => Snappy::decompress(&mut input, take),
        3 => Lz4::decompress(&mut input, take),
        4 => Zstd::decompress(&mut input, take),
        other => {
            return Err(BenchError::Decode {
                what: "record batch",
                message: format!("unknown compression codec {other}"),
            })
        }
    };
    result.map_err(|e| BenchError::Decode {
        what: "compressed record batch",
        message: format!("{e:#}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_round_trips() {
        let records: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for codec in CODECS {
            let mut out = BytesMut::new();
            compress(codec, &records, &mut out).expect("compresses");
            if codec != Compression::None {
                assert!(
                    out.len() < records.len(),
                    "{codec} shrinks repetitive input"
                );
            }
            let back = decompress(attribute(codec), &out).expect("decompresses");
            assert_eq!(&back[..], &records[..], "{codec}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in &CODECS[1..] {
            assert!(
                decompress(attribute(*codec), b"certainly not compressed").is_err(),
                "{codec}"
            );
        }
        assert!(decompress(5, b"").is_err());
    }
}
