//! The framing of Weir's snapshot files (metadata, producer state): an rkyv archive behind a
//! header of magic, format version, payload length and CRC32C of the payload.
//!
//! Disk input is untrusted: a short, foreign, other-version or corrupt file is an error,
//! never a panic, and nothing is allocated for it beyond its own length.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

/// magic (8), format version u32, payload length u32, CRC32C of the payload u32.
pub const HEADER_BYTES: usize = 8 + 4 + 4 + 4;

/// `value` archived with rkyv behind the header.
pub fn encode<T>(magic: &[u8; 8], format_version: u32, value: &T) -> Vec<u8>
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    let payload = rkyv::to_bytes::<rancor::Error>(value)
        .expect("serializing an in-memory value with the default allocator cannot fail");
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&format_version.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The value of a whole, valid file of this magic and format version; `what` names the file
/// kind in errors ("metadata snapshot").
pub fn decode<T>(
    bytes: &[u8],
    magic: &[u8; 8],
    format_version: u32,
    what: &str,
) -> Result<T, String>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    if bytes.len() < HEADER_BYTES || &bytes[..8] != magic {
        return Err(format!("not a Weir {what}"));
    }
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let (format, len, crc) = (word(8), word(12) as usize, word(16));
    if format != format_version {
        return Err(format!(
            "format version {format}, this build reads {format_version}"
        ));
    }
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() != len {
        return Err(format!(
            "payload is {} bytes, header says {len}",
            payload.len()
        ));
    }
    if crc32c::crc32c(payload) != crc {
        return Err("checksum mismatch".into());
    }
    // rkyv reads in place and needs the archive aligned; bytes from disk may not be.
    let mut aligned = AlignedVec::<16>::with_capacity(payload.len());
    aligned.extend_from_slice(payload);
    rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Archive, Serialize, Deserialize)]
    struct Sample {
        name: String,
        values: Vec<i64>,
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let sample = Sample {
            name: "orders".into(),
            values: vec![1, -2, 3],
        };
        let bytes = encode(b"WEIRTEST", 3, &sample);
        assert_eq!(decode::<Sample>(&bytes, b"WEIRTEST", 3, "test"), Ok(sample));
        assert!(decode::<Sample>(&bytes, b"WEIRELSE", 3, "test").is_err());
        assert!(decode::<Sample>(&bytes, b"WEIRTEST", 4, "test").is_err());
        for at in [0, 9, 13, 17, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            assert!(
                decode::<Sample>(&bad, b"WEIRTEST", 3, "test").is_err(),
                "byte {at}"
            );
        }
        assert!(decode::<Sample>(&bytes[..bytes.len() - 1], b"WEIRTEST", 3, "test").is_err());
        assert!(decode::<Sample>(b"", b"WEIRTEST", 3, "test").is_err());
    }
}
