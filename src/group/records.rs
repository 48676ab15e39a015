//! The records of `__consumer_offsets`, in Kafka's own format, so that Kafka's tools (and a
//! log copied between Kafka and Weir) read them: key and value schemas as in Kafka's
//! `OffsetCommitKey`/`OffsetCommitValue` (v3) and `GroupMetadataKey`/`GroupMetadataValue` (v3),
//! non-flexible encodings. A null value is a tombstone: the offset or the group is gone.
//!
//! Decoding reads bytes from disk, so it is defensive: every length is checked against what
//! is left and a bad record is an error, never a panic.

use bytes::{BufMut, Bytes, BytesMut};

/// Key versions 0 and 1 are offset commits, 2 is group metadata (Kafka's numbering).
const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
const GROUP_METADATA_KEY_VERSION: i16 = 2;
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record ends early")]
    Truncated,
    #[error("unknown key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown value version {0}")]
    UnknownValueVersion(i16),
    #[error("string is not UTF-8")]
    Utf8,
    #[error("negative length {0}")]
    NegativeLength(i32),
}

/// A decoded key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// A group's membership and assignment as stored after each completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + 2 + group.len() + 2 + topic.len() + 4);
    out.put_i16(OFFSET_COMMIT_KEY_VERSION);
    put_str(&mut out, group);
    put_str(&mut out, topic);
    out.put_i32(partition);
    out.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + 2 + group.len());
    out.put_i16(GROUP_METADATA_KEY_VERSION);
    put_str(&mut out, group);
    out.freeze()
}

pub fn offset_value(value: &OffsetValue) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + 8 + 4 + 2 + value.metadata.len() + 8);
    out.put_i16(OFFSET_COMMIT_VALUE_VERSION);
    out.put_i64(value.offset);
    out.put_i32(value.leader_epoch);
    put_str(&mut out, &value.metadata);
    out.put_i64(value.commit_timestamp);
    out.freeze()
}

pub fn group_value(value: &GroupValue) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_str(&mut out, &value.protocol_type);
    out.put_i32(value.generation);
    put_nullable_str(&mut out, value.protocol.as_deref());
    put_nullable_str(&mut out, value.leader.as_deref());
    out.put_i64(value.state_timestamp);
    out.put_i32(value.members.len() as i32);
    for m in &value.members {
        put_str(&mut out, &m.member_id);
        put_nullable_str(&mut out, m.group_instance_id.as_deref());
        put_str(&mut out, &m.client_id);
        put_str(&mut out, &m.client_host);
        out.put_i32(m.rebalance_timeout_ms);
        out.put_i32(m.session_timeout_ms);
        out.put_i32(m.subscription.len() as i32);
        out.put_slice(&m.subscription);
        out.put_i32(m.assignment.len() as i32);
        out.put_slice(&m.assignment);
    }
    out.freeze()
}

pub fn decode_key(bytes: &[u8]) -> Result<Key, RecordError> {
    let mut r = Reader(bytes);
    match r.i16()? {
        0 | 1 => Ok(Key::Offset {
            group: r.string()?,
            topic: r.string()?,
            partition: r.i32()?,
        }),
        2 => Ok(Key::Group { group: r.string()? }),
        v => Err(RecordError::UnknownKeyVersion(v)),
    }
}

pub fn decode_offset_value(bytes: &[u8]) -> Result<OffsetValue, RecordError> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnknownValueVersion(version));
    }
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp = r.i64()?;
    // v1 carries an expire timestamp after the commit timestamp; retention is decided from
    // the commit timestamp and the broker's offsets.retention.minutes instead (KIP-211).
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

pub fn decode_group_value(bytes: &[u8]) -> Result<GroupValue, RecordError> {
    let mut r = Reader(bytes);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion(version));
    }
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let state_timestamp = if version >= 2 { r.i64()? } else { -1 };
    let count = r.len()?;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 {
            r.nullable_string()?
        } else {
            None
        };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let subscription = Bytes::copy_from_slice(r.bytes()?);
        let assignment = Bytes::copy_from_slice(r.bytes()?);
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp,
        members,
    })
}

/// The topics a consumer-protocol subscription names (Kafka's `ConsumerProtocolSubscription`:
/// version, then an array of topic names first in every version), for OffsetDelete's check
/// that no member still consumes a topic. None if the bytes are not that schema.
pub fn subscribed_topics(subscription: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(subscription);
    let _version = r.i16().ok()?;
    let count = r.len().ok()?;
    let mut topics = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        topics.push(r.string().ok()?);
    }
    Some(topics)
}

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_i16(s.len() as i16);
    out.put_slice(s.as_bytes());
}

fn put_nullable_str(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.put_i16(-1),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, RecordError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, RecordError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, RecordError> {
        let b = self.take(8)?;
        Ok(i64::from_be_bytes(b.try_into().expect("took 8 bytes")))
    }

    fn len(&mut self) -> Result<usize, RecordError> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| RecordError::NegativeLength(n))
    }

    fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let b = self.take(n as usize)?;
        std::str::from_utf8(b)
            .map(|s| Some(s.to_owned()))
            .map_err(|_| RecordError::Utf8)
    }

    fn string(&mut self) -> Result<String, RecordError> {
        let n = self.i16()?;
        if n < 0 {
            return Err(RecordError::NegativeLength(n.into()));
        }
        let b = self.take(n as usize)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| RecordError::Utf8)
    }

    fn bytes(&mut self) -> Result<&'a [u8], RecordError> {
        let n = self.len()?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_are_told_apart_by_version() {
        assert_eq!(
            decode_key(&offset_key("g", "orders", 7)).unwrap(),
            Key::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 7
            }
        );
        assert_eq!(
            decode_key(&group_key("g")).unwrap(),
            Key::Group { group: "g".into() }
        );
        assert_eq!(
            decode_key(&[0, 9, 0, 0]),
            Err(RecordError::UnknownKeyVersion(9))
        );
    }

    #[test]
    fn offset_value_matches_kafkas_v3_layout() {
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 1000,
        };
        let bytes = offset_value(&value);
        // version, offset, leader epoch, metadata (len + "m"), commit timestamp
        assert_eq!(bytes.len(), 2 + 8 + 4 + 3 + 8);
        assert_eq!(&bytes[..2], &[0, 3]);
        assert_eq!(decode_offset_value(&bytes).unwrap(), value);
    }

    #[test]
    fn group_value_round_trips_with_members() {
        let value = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 77,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(&group_value(&value)).unwrap(), value);
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let bytes = group_value(&GroupValue {
            protocol_type: "consumer".into(),
            members: vec![MemberValue::default()],
            ..GroupValue::default()
        });
        for cut in 0..bytes.len() {
            assert!(decode_group_value(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut forged = BytesMut::from(&bytes[..]);
        forged[2 + 2 + 8 + 4 + 2 + 2 + 8..][..4].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(decode_group_value(&forged).is_err());
    }

    #[test]
    fn subscription_topics_are_read_from_the_consumer_protocol() {
        let mut sub = BytesMut::new();
        sub.put_i16(1);
        sub.put_i32(2);
        put_str(&mut sub, "a");
        put_str(&mut sub, "b");
        sub.put_i32(-1); // user data
        assert_eq!(
            subscribed_topics(&sub),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(subscribed_topics(&[0]), None);
    }
}
