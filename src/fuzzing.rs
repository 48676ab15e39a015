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
    let _ = weir_storage::validate_produce_batches(data, &unbounded());
}

/// A produce payload whose batch CRCs are made right first, so mutations get past the CRC to
/// the header checks and the strict reading of (compressed) records: lying counts, lengths
/// and varints in a batch a client signed correctly.
pub fn record_batches_signed(data: &[u8]) {
    let _ = weir_storage::validate_produce_batches(&signed(data), &unbounded());
}

/// CreateTime without timestamp bounds: every input gets as far into the records as it can.
fn unbounded() -> weir_storage::batch::TimestampPolicy {
    weir_storage::batch::TimestampPolicy::create_time_unbounded()
}

/// `data` with the CRC of each batch it frames recomputed.
fn signed(data: &[u8]) -> Vec<u8> {
    let mut data = data.to_vec();
    let mut at = 0;
    while at + weir_storage::batch::HEADER_BYTES <= data.len() {
        let length = i32::from_be_bytes([data[at + 8], data[at + 9], data[at + 10], data[at + 11]]);
        let end = (at + 12)
            .saturating_add(length.max(0) as usize)
            .min(data.len());
        if end < at + 21 {
            break;
        }
        let crc = crc32c::crc32c(&data[at + 21..end]);
        data[at + 17..at + 21].copy_from_slice(&crc.to_be_bytes());
        at = end;
    }
    data
}

/// The records inside a stored batch, read with the strict reader the cleaner, ListOffsets
/// and group load use: no CRC stands in the way, as for bytes that passed produce's check.
/// The input is `[codec, records_count (4 bytes, big-endian), records section...]`.
pub fn stored_records(data: &[u8]) {
    use weir_storage::batch::{parse_header, HEADER_BYTES};
    if data.len() < 5 {
        return;
    }
    let mut batch = vec![0u8; HEADER_BYTES];
    let length = (HEADER_BYTES - 12 + data.len() - 5) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    batch[16] = 2; // magic
    batch[21..23].copy_from_slice(&i16::from(data[0] % 8).to_be_bytes());
    batch[57..61].copy_from_slice(&data[1..5]);
    batch.extend_from_slice(&data[5..]);
    let Ok(header) = parse_header(&batch) else {
        return;
    };
    let _ = weir_storage::records::with_records(&batch, &header, |records| {
        records
            .map(|r| r.map(|r| r.raw.len()))
            .sum::<Result<usize, _>>()
    });
    let _ = weir_storage::every_record_has_a_key(&batch);
}

/// The metadata snapshot file read at start.
pub fn metadata_snapshot(data: &[u8]) {
    let _ = crate::metadata::snapshot::decode(data);
}

/// A `__consumer_offsets` record's key and value, as the group load reads them at every
/// start (the first byte picks which decoder gets the rest).
pub fn offsets_topic_record(data: &[u8]) {
    use crate::group::records;
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => drop(records::decode_key(bytes)),
        1 => drop(records::decode_offset_value(bytes)),
        _ => drop(records::decode_group_value(bytes)),
    }
}

/// The files of a partition directory read at open, after a crash or a power cut left them
/// as it did: the first byte picks the decoder (`StoredFile`), the rest is the file.
pub fn stored_files(data: &[u8]) {
    let Some((&kind, file)) = data.split_first() else {
        return;
    };
    match StoredFile::from_byte(kind) {
        StoredFile::ProducerSnapshot => {
            let _ = weir_storage::producer_state::snapshot::decode(file);
        }
        StoredFile::RecoveryCheckpoint => {
            let _ = weir_storage::log::RecoveryCheckpoint::decode(file);
        }
        StoredFile::OffsetIndex => {
            // The log's size bounds the positions an index may name: take it from the input.
            let (size, index) = file.split_at(file.len().min(8));
            let mut log_size = [0u8; 8];
            log_size[..size.len()].copy_from_slice(size);
            let _ = weir_storage::index::OffsetIndex::decode(index, u64::from_be_bytes(log_size));
        }
        StoredFile::TimeIndex => {
            let _ = weir_storage::index::TimeIndex::decode(file);
        }
        StoredFile::PartitionMetadata => {
            if let Ok(text) = std::str::from_utf8(file) {
                let _ = weir_storage::partition_dir::parse_metadata(text);
            }
        }
        StoredFile::OffsetCheckpoint => {
            let _ = weir_storage::log::parse_offset_file(file);
        }
        StoredFile::ProducerIdBlock => {
            let _ = crate::producer_ids::decode(file);
        }
    }
}

/// The stored files `stored_files` decodes.
#[derive(Clone, Copy, Debug)]
pub enum StoredFile {
    ProducerSnapshot,
    RecoveryCheckpoint,
    OffsetIndex,
    TimeIndex,
    PartitionMetadata,
    /// `log-start-offset` and `cleaner-offset-checkpoint`.
    OffsetCheckpoint,
    /// The broker's `producer-id-block` file.
    ProducerIdBlock,
}

impl StoredFile {
    pub const ALL: [StoredFile; 7] = [
        StoredFile::ProducerSnapshot,
        StoredFile::RecoveryCheckpoint,
        StoredFile::OffsetIndex,
        StoredFile::TimeIndex,
        StoredFile::PartitionMetadata,
        StoredFile::OffsetCheckpoint,
        StoredFile::ProducerIdBlock,
    ];

    fn from_byte(byte: u8) -> StoredFile {
        StoredFile::ALL[usize::from(byte) % StoredFile::ALL.len()]
    }
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
    fn stored_record_reading_never_panics() {
        use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
        let batch = crate::plain_batch::encode_batch(
            vec![
                (
                    Some(Bytes::from_static(b"key")),
                    Some(Bytes::from_static(b"v")),
                ),
                (None, None),
            ],
            1,
        );
        let section = batch.slice(61..);
        let mut seeds = Vec::new();
        for codec in 0u8..=4 {
            let mut out = bytes::BytesMut::new();
            let put = |b: &mut bytes::BytesMut| {
                b.extend_from_slice(&section);
                Ok(())
            };
            match codec {
                0 => out.extend_from_slice(&section),
                1 => Gzip::compress(&mut out, put).unwrap(),
                2 => Snappy::compress(&mut out, put).unwrap(),
                3 => Lz4::compress(&mut out, put).unwrap(),
                _ => Zstd::compress(&mut out, put).unwrap(),
            }
            let mut seed = vec![codec];
            seed.extend_from_slice(&2i32.to_be_bytes());
            seed.extend_from_slice(&out);
            seeds.push(seed);
        }
        run(stored_records, &seeds, 50_000);
        // The same records as whole signed produce batches, each codec.
        let produce_seeds: Vec<Vec<u8>> = seeds
            .iter()
            .map(|seed| {
                let mut whole = batch[..61].to_vec();
                whole[21..23].copy_from_slice(&i16::from(seed[0]).to_be_bytes());
                whole.extend_from_slice(&seed[5..]);
                let length = (whole.len() - 12) as i32;
                whole[8..12].copy_from_slice(&length.to_be_bytes());
                whole
            })
            .collect();
        for seed in &produce_seeds {
            let codec = seed[22];
            assert!(
                weir_storage::validate_produce_batches(&signed(seed), &unbounded()).is_ok(),
                "codec {codec}: the unmutated seed is a valid batch"
            );
        }
        run(record_batches_signed, &produce_seeds, 50_000);
    }

    #[test]
    fn stored_file_decoding_never_panics() {
        use weir_storage::index::{OffsetIndex, TimeIndex};
        use weir_storage::log::{LogPoint, RecoveryCheckpoint};
        use weir_storage::producer_state::{snapshot, ProducerStateMap};
        let mut producers = ProducerStateMap::default();
        let mut header = weir_storage::parse_header(&crate::plain_batch::encode_batch(
            vec![(None, Some(Bytes::from_static(b"v")))],
            1,
        ))
        .unwrap();
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
        ) = (9, 0, 0);
        producers.record(&header, 1);
        let checkpoint = RecoveryCheckpoint {
            point: LogPoint {
                segment_base: 0,
                position: 4096,
                next_offset: 40,
            },
            index_entries: 1,
            time_index_entries: 1,
        };
        let mut index = OffsetIndex::default();
        index.push(3, 100);
        index.push(7, 900);
        let mut offset_index = 4096u64.to_be_bytes().to_vec();
        offset_index.extend(index.encode_from(0));
        let mut time_index = TimeIndex::default();
        time_index.maybe_push(1_000, 3);
        time_index.maybe_push(2_000, 7);
        let files: [(StoredFile, Vec<u8>); 7] = [
            (
                StoredFile::ProducerSnapshot,
                snapshot::encode(&producers, 1),
            ),
            (StoredFile::RecoveryCheckpoint, checkpoint.encode()),
            (StoredFile::OffsetIndex, offset_index),
            (StoredFile::TimeIndex, time_index.encode_from(0)),
            (
                StoredFile::PartitionMetadata,
                b"version: 0\ntopic_id: MDEyMzQ1Njc4OWFiY2RlZg\n".to_vec(),
            ),
            (StoredFile::OffsetCheckpoint, b"1234567".to_vec()),
            (
                StoredFile::ProducerIdBlock,
                crate::producer_ids::encode(4_000),
            ),
        ];
        let seeds: Vec<Vec<u8>> = files
            .into_iter()
            .map(|(kind, file)| {
                let mut seed = vec![kind as u8];
                seed.extend(file);
                seed
            })
            .collect();
        run(stored_files, &seeds, 100_000);
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

    #[test]
    fn offsets_topic_record_decoding_never_panics() {
        use crate::group::records::{self, GroupValue, MemberValue, OffsetValue};
        let group = GroupValue {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            state_timestamp: 1,
            members: vec![MemberValue {
                member_id: "m-1".into(),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                ..MemberValue::default()
            }],
        };
        let offset = OffsetValue {
            offset: 7,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp: 1,
        };
        let with_kind = |kind: u8, bytes: Bytes| {
            let mut seed = vec![kind];
            seed.extend_from_slice(&bytes);
            seed
        };
        let seeds = [
            with_kind(0, records::offset_key("g", "t", 0)),
            with_kind(0, records::group_key("g")),
            with_kind(1, records::offset_value(&offset)),
            with_kind(2, records::group_value(&group)),
        ];
        run(offsets_topic_record, &seeds, 100_000);
    }
}
