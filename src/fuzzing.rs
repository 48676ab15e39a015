//! Entry points for fuzzing the decoders that read network and disk input. The cargo-fuzz
//! targets in `fuzz/` call these, and the tests below run them over a deterministic stream
//! of random and mutated inputs on every `cargo test`, so a panic is caught even where
//! cargo-fuzz (which wants a nightly toolchain) is not available.
//!
//! Each function must return normally for every input: an error is fine, a panic is a bug.

use bytes::Bytes;

use crate::api::{self, DispatchError};
use crate::server::frame;

/// A request frame as read from a socket: length prefix check, header, body decode.
pub fn request_frame(data: &[u8]) {
    if data.len() >= 4 {
        let prefix = [data[0], data[1], data[2], data[3]];
        let _ = frame::frame_len(prefix, crate::config::SOCKET_REQUEST_MAX_BYTES_DEFAULT);
    }
    match api::parse_header(Bytes::copy_from_slice(data)) {
        Ok((request, _client_id, body)) => {
            let _ = api::decode_body(&request, body);
        }
        Err(DispatchError::Respond(_)) | Err(DispatchError::Close(_)) => {}
    }
}

/// A produce payload: record batch validation.
pub fn record_batches(data: &[u8]) {
    let _ = weir_storage::validate_produce_batches(data);
}

/// The metadata snapshot file read at start.
pub fn metadata_snapshot(data: &[u8]) {
    let _ = crate::metadata::snapshot::decode(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiKey, MetadataRequest, RequestHeader};
    use kafka_protocol::protocol::Encodable;

    /// xorshift64*: deterministic, so a failure replays from its seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Valid requests of every supported API and version to mutate from.
    fn seeds() -> Vec<Vec<u8>> {
        let mut seeds = Vec::new();
        for &(key, min, max) in api::SUPPORTED_APIS {
            for version in min..=max {
                let mut buf = bytes::BytesMut::new();
                RequestHeader::default()
                    .with_request_api_key(key as i16)
                    .with_request_api_version(version)
                    .with_correlation_id(7)
                    .encode(&mut buf, key.request_header_version(version))
                    .unwrap();
                if key == ApiKey::Metadata {
                    MetadataRequest::default()
                        .encode(&mut buf, version)
                        .unwrap();
                } else {
                    buf.extend_from_slice(&[0; 32]);
                }
                seeds.push(buf.to_vec());
            }
        }
        seeds
    }

    fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
        match rng.below(5) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)];
            }
            2 => input.truncate(rng.below(input.len() + 1)),
            3 => {
                let i = rng.below(input.len() + 1);
                input.splice(i..i, (0..rng.below(16)).map(|_| rng.next() as u8));
            }
            _ => {
                // Forge a huge array/string length somewhere: the classic allocation bomb.
                if input.len() >= 4 {
                    let i = rng.below(input.len() - 3);
                    input[i..i + 4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
                }
            }
        }
    }

    fn run(target: fn(&[u8]), seeds: &[Vec<u8>], iterations: usize) {
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        for _ in 0..iterations {
            let mut input = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                mutate(&mut rng, &mut input);
            }
            target(&input);
        }
    }

    #[test]
    fn request_decoding_never_panics() {
        run(request_frame, &seeds(), 200_000);
    }

    #[test]
    fn record_batch_validation_never_panics() {
        let seeds = vec![vec![0u8; 61], vec![0xff; 80], Vec::new()];
        run(record_batches, &seeds, 100_000);
    }

    #[test]
    fn snapshot_decoding_never_panics() {
        let image = crate::metadata::MetadataImage {
            version: 1,
            cluster_id: "c".into(),
            ..Default::default()
        };
        run(
            metadata_snapshot,
            &[crate::metadata::snapshot::encode(&image)],
            50_000,
        );
    }
}
