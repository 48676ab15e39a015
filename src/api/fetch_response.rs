//! Hand-written FetchResponse encoder (v4–v16) whose record data are segment file ranges.
//!
//! Hot path. kafka-protocol would need the records in memory; here every partition's
//! records become a `ResponsePart::File` that the connection sends with sendfile, and only
//! the few bytes of framing around them are built in memory. Field order follows
//! FetchResponse.json; the tests check the bytes against kafka-protocol's own encoder.

use bytes::{BufMut, BytesMut};
use weir_storage::FileSlice;

use crate::server::response::{begin_frame, Response, ResponsePart};

/// First flexible (compact, tagged-field) version of FetchResponse.
const FIRST_FLEXIBLE_VERSION: i16 = 12;
/// First version naming topics by id rather than name.
const FIRST_TOPIC_ID_VERSION: i16 = 13;

pub struct FetchedPartition {
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// None: no records field content (sent as an empty record set, as Kafka does).
    pub records: Option<FileSlice>,
}

pub struct FetchedTopic {
    pub name: String,
    pub id: [u8; 16],
    pub partitions: Vec<FetchedPartition>,
}

pub struct FetchResponseHead {
    pub correlation_id: i32,
    pub version: i16,
    pub header_version: i16,
    pub error_code: i16,
    pub session_id: i32,
    pub read_committed: bool,
}

enum Chunk {
    Memory(BytesMut),
    File(FileSlice),
}

/// Encodes the whole response frame.
pub fn encode(head: &FetchResponseHead, topics: &[FetchedTopic]) -> Response {
    let version = head.version;
    let flexible = version >= FIRST_FLEXIBLE_VERSION;
    let mut chunks = Vec::new();
    let mut buf = begin_frame(head.correlation_id, head.header_version, 64);
    buf.put_i32(0); // throttle_time_ms
    if version >= 7 {
        buf.put_i16(head.error_code);
        buf.put_i32(head.session_id);
    }
    put_array_len(&mut buf, topics.len(), flexible);
    for topic in topics {
        if version >= FIRST_TOPIC_ID_VERSION {
            buf.put_slice(&topic.id);
        } else {
            put_string(&mut buf, &topic.name, flexible);
        }
        put_array_len(&mut buf, topic.partitions.len(), flexible);
        for partition in &topic.partitions {
            buf.put_i32(partition.partition);
            buf.put_i16(partition.error_code);
            buf.put_i64(partition.high_watermark);
            buf.put_i64(partition.last_stable_offset);
            if version >= 5 {
                buf.put_i64(partition.log_start_offset);
            }
            // aborted_transactions: null under read_uncommitted, empty under read_committed
            // (no transactions are aborted in a log without transactions).
            if head.read_committed {
                put_array_len(&mut buf, 0, flexible);
            } else if flexible {
                put_unsigned_varint(&mut buf, 0);
            } else {
                buf.put_i32(-1);
            }
            if version >= 11 {
                buf.put_i32(-1); // preferred_read_replica: none
            }
            let len = partition.records.as_ref().map_or(0, |s| s.len as usize);
            if flexible {
                put_unsigned_varint(&mut buf, len as u64 + 1);
            } else {
                buf.put_i32(len as i32);
            }
            if let Some(slice) = partition.records.as_ref().filter(|s| s.len > 0) {
                chunks.push(Chunk::Memory(std::mem::replace(
                    &mut buf,
                    BytesMut::with_capacity(64),
                )));
                chunks.push(Chunk::File(slice.clone()));
            }
            if flexible {
                buf.put_u8(0); // partition tagged fields
            }
        }
        if flexible {
            buf.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        buf.put_u8(0); // response tagged fields
    }
    chunks.push(Chunk::Memory(buf));
    let mut response = finish(chunks);
    response.error_codes = std::iter::once(head.error_code)
        .chain(
            topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        )
        .filter(|&code| code != 0)
        .collect();
    response
}

/// Patches the frame length into the first chunk and freezes the parts.
fn finish(mut chunks: Vec<Chunk>) -> Response {
    let total: usize = chunks
        .iter()
        .map(|c| match c {
            Chunk::Memory(b) => b.len(),
            Chunk::File(s) => s.len as usize,
        })
        .sum();
    if let Some(Chunk::Memory(first)) = chunks.first_mut() {
        first[..4].copy_from_slice(&((total - 4) as u32).to_be_bytes());
    }
    let parts = chunks
        .into_iter()
        .map(|c| match c {
            Chunk::Memory(b) => ResponsePart::Bytes(b.freeze()),
            Chunk::File(s) => ResponsePart::File(s),
        })
        .collect();
    Response {
        parts,
        error_codes: Vec::new(),
    }
}

fn put_array_len(buf: &mut BytesMut, len: usize, flexible: bool) {
    if flexible {
        put_unsigned_varint(buf, len as u64 + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

fn put_string(buf: &mut BytesMut, s: &str, flexible: bool) {
    if flexible {
        put_unsigned_varint(buf, s.len() as u64 + 1);
    } else {
        buf.put_i16(s.len() as i16);
    }
    buf.put_slice(s.as_bytes());
}

fn put_unsigned_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    use bytes::Bytes;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    /// The frame as the peer sees it: file parts replaced by their bytes.
    fn flatten(response: &Response) -> Vec<u8> {
        let mut out = Vec::new();
        for part in &response.parts {
            match part {
                ResponsePart::Bytes(b) => out.extend_from_slice(b),
                ResponsePart::File(s) => {
                    use std::os::unix::fs::FileExt;
                    let mut data = vec![0; s.len as usize];
                    s.file.read_exact_at(&mut data, s.position).unwrap();
                    out.extend_from_slice(&data);
                }
            }
        }
        out
    }

    fn reference(
        version: i16,
        correlation_id: i32,
        records: &[u8],
        read_committed: bool,
    ) -> Vec<u8> {
        let partition = |index: i32, records: Option<Bytes>| {
            PartitionData::default()
                .with_partition_index(index)
                .with_high_watermark(42)
                .with_last_stable_offset(42)
                .with_log_start_offset(3)
                .with_aborted_transactions(read_committed.then(Vec::new))
                .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
                .with_records(records)
        };
        let topic = FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("orders")))
            .with_topic_id(uuid::Uuid::from_bytes([7; 16]))
            .with_partitions(vec![
                partition(0, Some(Bytes::copy_from_slice(records))),
                partition(1, Some(Bytes::new())),
            ]);
        let body = FetchResponse::default().with_responses(vec![topic]);
        let header_version = ApiKey::Fetch.response_header_version(version);
        let mut buf = BytesMut::new();
        buf.put_u32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buf, header_version)
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        buf.to_vec()
    }

    #[test]
    fn matches_kafka_protocol_encoding_for_every_version() {
        let records: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"prefix").unwrap();
        file.write_all(&records).unwrap();
        let file = Arc::new(file);
        for version in 4..=16 {
            for read_committed in [false, true] {
                let slice = FileSlice {
                    file: file.clone(),
                    position: 6,
                    len: records.len() as u32,
                };
                let topics = vec![FetchedTopic {
                    name: "orders".into(),
                    id: [7; 16],
                    partitions: vec![
                        FetchedPartition {
                            partition: 0,
                            error_code: 0,
                            high_watermark: 42,
                            last_stable_offset: 42,
                            log_start_offset: 3,
                            records: Some(slice),
                        },
                        FetchedPartition {
                            partition: 1,
                            error_code: 0,
                            high_watermark: 42,
                            last_stable_offset: 42,
                            log_start_offset: 3,
                            records: None,
                        },
                    ],
                }];
                let head = FetchResponseHead {
                    correlation_id: 99,
                    version,
                    header_version: ApiKey::Fetch.response_header_version(version),
                    error_code: 0,
                    session_id: 0,
                    read_committed,
                };
                assert_eq!(
                    flatten(&encode(&head, &topics)),
                    reference(version, 99, &records, read_committed),
                    "FetchResponse v{version} read_committed={read_committed}"
                );
            }
        }
    }
}
