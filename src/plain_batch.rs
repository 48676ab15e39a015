//! A plain record batch built from keys and values, for records the broker writes itself
//! (`__consumer_offsets`) and for `weirctl produce`.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One uncompressed v2 batch of (key, value) records stamped `timestamp`, with no producer
/// id; offsets count from 0 (the log stamps the base offset).
pub fn encode_batch(records: Vec<(Option<Bytes>, Option<Bytes>)>, timestamp: i64) -> Bytes {
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch wherever offset - sequence changes; this keeps
            // one batch whose base sequence is -1 (no producer id, no sequence).
            sequence: i as i32 - 1,
            timestamp,
            key,
            value,
            headers: Default::default(),
        })
        .collect();
    let mut out = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("an uncompressed v2 batch of in-memory records always encodes");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_encoded_as_one_plain_batch() {
        let batch = encode_batch(
            vec![
                (
                    Some(Bytes::from_static(b"k1")),
                    Some(Bytes::from_static(b"v")),
                ),
                (Some(Bytes::from_static(b"k2")), None),
                (None, Some(Bytes::from_static(b"no key"))),
            ],
            1_000,
        );
        let header = weir_storage::batch::check_batch(&batch).unwrap();
        assert_eq!(header.batch_len, batch.len(), "exactly one batch");
        assert_eq!(header.records_count, 3);
        assert_eq!(header.producer_id, -1);
        assert_eq!(header.base_sequence, -1);
        assert_eq!(header.max_timestamp, 1_000);
    }
}
