//! Rebuilds a shard's groups from its `__consumer_offsets` partitions at start-up.
//!
//! Records are replayed in offset order: the last record for a key wins and a tombstone
//! removes. A group stored with members comes back Stable with the same generation, member
//! ids and assignments, so consumers that keep heartbeating across a broker restart carry on
//! without a rebalance (members that do not come back expire by session timeout). A record
//! that does not decode is skipped with a warning: one bad record must not lose every group.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use indexmap::IndexMap;

use super::records::{self, GroupValue, Key};
use super::state::{Group, GroupState, Member};
use super::OFFSETS_TOPIC;
use crate::clock::now_ms;
use crate::shard_context::ShardContext;

/// The control bit of a batch's attributes: markers hold no group records.
const CONTROL_FLAG: i16 = 0x20;

/// Bytes read from the log per step while replaying.
const READ_CHUNK_BYTES: u32 = 1 << 20;

/// Replays every `__consumer_offsets` partition this shard owns.
pub async fn load_groups(ctx: &Rc<ShardContext>) -> anyhow::Result<HashMap<String, Group>> {
    let mut replay = Replay::default();
    let partitions = ctx
        .image()
        .topic(OFFSETS_TOPIC)
        .map_or(0, |t| t.partitions.len() as i32);
    for partition in 0..partitions {
        let Some(log) = ctx.partition(OFFSETS_TOPIC, partition) else {
            continue;
        };
        let mut offset = log.log_start_offset();
        while let Some(slice) = log.read(offset, READ_CHUNK_BYTES, true).await? {
            // Read off the reactor: start-up must not stall the shard's other work on disk.
            let bytes = glommio::executor()
                .spawn_blocking(move || {
                    let mut buf = vec![0u8; slice.len as usize];
                    std::os::unix::fs::FileExt::read_exact_at(
                        &*slice.file,
                        &mut buf,
                        slice.position,
                    )
                    .map(|()| buf)
                })
                .await?;
            let next = replay.batches(Bytes::from(bytes))?;
            anyhow::ensure!(
                next > offset,
                "{OFFSETS_TOPIC}-{partition}: no progress at offset {offset}"
            );
            offset = next;
        }
    }
    ctx.metrics
        .offsets_records_skipped
        .set(replay.skipped as u64);
    Ok(replay.finish())
}

#[derive(Default)]
struct Replay {
    groups: HashMap<String, Group>,
    skipped: usize,
}

impl Replay {
    /// Applies whole batches; returns the offset after the last one. The log's recovery
    /// checked every batch's framing and CRC, but the records inside are a client's bytes
    /// (a produce to `__consumer_offsets` is refused, yet a log may predate that): they are
    /// read strictly, and a batch whose records do not read is skipped, not fatal, since
    /// one bad batch must not keep the broker from starting.
    fn batches(&mut self, bytes: Bytes) -> anyhow::Result<i64> {
        let mut next = i64::MIN;
        let mut rest = &bytes[..];
        while rest.len() >= weir_storage::batch::HEADER_BYTES {
            let header = weir_storage::batch::parse_header(rest)
                .map_err(|e| anyhow::anyhow!("a {OFFSETS_TOPIC} batch header: {e}"))?;
            if header.batch_len > rest.len() {
                break;
            }
            let (batch, after) = rest.split_at(header.batch_len);
            rest = after;
            next = next.max(header.next_offset());
            if header.attributes & CONTROL_FLAG != 0 {
                continue;
            }
            let applied = weir_storage::records::with_records(batch, &header, |records| {
                for record in records {
                    let record = record?;
                    match record.key {
                        Some(key) => self.apply(key, record.value),
                        None => self.skipped += 1,
                    }
                }
                Ok(())
            });
            if let Err(e) = applied {
                self.skip(&format_args!("batch at offset {}: {e}", header.base_offset));
            }
        }
        Ok(next)
    }

    fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        let now = now_ms();
        match records::decode_key(key) {
            Ok(Key::Offset {
                group,
                topic,
                partition,
            }) => match value.map(records::decode_offset_value) {
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, partition));
                    }
                }
                Some(Ok(v)) => {
                    self.groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now))
                        .offsets
                        .insert((topic, partition), v.into());
                }
                Some(Err(e)) => self.skip(&e),
            },
            Ok(Key::Group { group }) => match value.map(records::decode_group_value) {
                None => {
                    self.groups.remove(&group);
                }
                Some(Ok(v)) => {
                    let g = self
                        .groups
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, now));
                    restore(g, v);
                }
                Some(Err(e)) => self.skip(&e),
            },
            Err(e) => self.skip(&e),
        }
    }

    fn skip(&mut self, e: &dyn std::fmt::Display) {
        if self.skipped == 0 {
            tracing::warn!("skipping an undecodable {OFFSETS_TOPIC} record: {e}");
        }
        self.skipped += 1;
    }

    fn finish(self) -> HashMap<String, Group> {
        if self.skipped > 0 {
            tracing::warn!(
                "skipped {} undecodable {OFFSETS_TOPIC} records",
                self.skipped
            );
        }
        self.groups
    }
}

/// Sets a group from its stored record: generation, protocol, members and assignments.
fn restore(group: &mut Group, value: GroupValue) {
    let now = Instant::now();
    group.generation = value.generation;
    group.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
    group.protocol = value.protocol;
    group.leader = value.leader;
    if value.state_timestamp > 0 {
        group.state_timestamp = value.state_timestamp;
    }
    group.static_members.clear();
    group.members = IndexMap::new();
    for m in value.members {
        if let Some(instance) = &m.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), m.member_id.clone());
        }
        let protocols = group
            .protocol
            .clone()
            .map(|p| vec![(p, m.subscription.clone())])
            .unwrap_or_default();
        group.members.insert(
            m.member_id.clone(),
            Member {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                protocols,
                assignment: m.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                session_deadline: now
                    + std::time::Duration::from_millis(m.session_timeout_ms.max(0) as u64),
            },
        );
    }
    group.state = if group.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::records::{MemberValue, OffsetValue};

    fn batch_of(records: Vec<(Bytes, Option<Bytes>)>) -> Bytes {
        let records = records.into_iter().map(|(k, v)| (Some(k), v)).collect();
        crate::plain_batch::encode_batch(records, 1)
    }

    fn stamp(batch: Bytes, base: i64) -> Bytes {
        let mut b = bytes::BytesMut::from(&batch[..]);
        b[..8].copy_from_slice(&base.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn replay_keeps_the_last_value_and_honours_tombstones() {
        let offset = |o: i64| {
            Some(records::offset_value(&OffsetValue {
                offset: o,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 1,
            }))
        };
        let group = GroupValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 5,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 10_000,
                assignment: Bytes::from_static(b"a"),
                ..MemberValue::default()
            }],
        };
        let first = batch_of(vec![
            (records::offset_key("g", "t", 0), offset(10)),
            (records::offset_key("g", "t", 1), offset(20)),
            (records::offset_key("gone", "t", 0), offset(1)),
            (records::group_key("g"), Some(records::group_value(&group))),
        ]);
        let second = batch_of(vec![
            (records::offset_key("g", "t", 0), offset(15)),
            (records::offset_key("g", "t", 1), None),
            (records::group_key("gone"), None),
            (Bytes::from_static(b"\x00\x09junk"), offset(1)),
        ]);
        let mut log = bytes::BytesMut::new();
        log.extend_from_slice(&stamp(first, 0));
        log.extend_from_slice(&stamp(second, 4));
        let mut replay = Replay::default();
        assert_eq!(replay.batches(log.freeze()).unwrap(), 8);
        assert_eq!(replay.skipped, 1);
        let groups = replay.finish();
        assert!(!groups.contains_key("gone"));
        let g = &groups["g"];
        assert_eq!(g.offsets.len(), 1);
        assert_eq!(g.offsets[&("t".to_string(), 0)].offset, 15);
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(g.generation, 4);
        assert_eq!(g.static_members["i1"], "m1");
        assert_eq!(g.members["m1"].assignment, Bytes::from_static(b"a"));
    }

    #[test]
    fn a_batch_whose_records_lie_is_skipped_and_the_rest_still_loads() {
        let offset = Some(records::offset_value(&OffsetValue {
            offset: 7,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 1,
        }));
        let honest = batch_of(vec![(records::offset_key("g", "t", 0), offset)]);
        // The same batch, its record count raised to 2^31 - 1 (CRC recomputed, as a client
        // would): the records it holds cannot be that many.
        let mut lying = bytes::BytesMut::from(&stamp(honest.clone(), 0)[..]);
        lying[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&lying[21..]);
        lying[17..21].copy_from_slice(&crc.to_be_bytes());
        let mut log = bytes::BytesMut::new();
        log.extend_from_slice(&lying);
        log.extend_from_slice(&stamp(honest, 1));
        let mut replay = Replay::default();
        assert_eq!(replay.batches(log.freeze()).unwrap(), 2);
        assert_eq!(replay.skipped, 1);
        let groups = replay.finish();
        assert_eq!(groups["g"].offsets[&("t".to_string(), 0)].offset, 7);
    }
}
