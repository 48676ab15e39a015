//! Idempotent producers' state in one partition (KIP-98): for each producer id, its epoch
//! and the sequence ranges and offsets of its last five batches. With it the owner shard
//! answers a retried batch with the offsets it already has instead of appending it twice,
//! refuses a gap in a producer's sequence (OUT_OF_ORDER_SEQUENCE_NUMBER) and a zombie's
//! older epoch (INVALID_PRODUCER_EPOCH), as Kafka's `ProducerStateManager` does.
//!
//! Checked on the produce path only for batches that carry a producer id, from the batch
//! header alone (no record is decoded); a map lookup per batch, nothing per record. The
//! state is rebuilt on open from a snapshot (an rkyv archive behind a checksummed header,
//! written at segment roll and at clean shutdown) plus the batches after it.

use std::collections::{HashMap, VecDeque};

use rkyv::{Archive, Deserialize, Serialize};

use crate::batch::BatchHeader;

/// Batches remembered per producer: a producer has at most five requests in flight per
/// connection (`max.in.flight.requests.per.connection` ≤ 5 with idempotence), so a retry is
/// always of one of its last five (Kafka's `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`).
pub const BATCHES_PER_PRODUCER: usize = 5;
/// Kafka's `producer.id.expiration.ms` default (KIP-854): a producer silent this long is
/// forgotten, which bounds the map.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;
/// Producers one partition remembers at most; past it the longest-silent tenth is forgotten,
/// so a flood of producer ids cannot grow the map without bound.
pub const PRODUCERS_MAX: usize = 100_000;

/// No producer id: the batch is not idempotent (Kafka's `RecordBatch.NO_PRODUCER_ID`).
const NO_PRODUCER_ID: i64 = -1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct ProducerBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first; at most `BATCHES_PER_PRODUCER`.
    pub batches: VecDeque<ProducerBatch>,
    /// When it last appended, on the broker's clock (ms): what expiry is measured from.
    pub last_timestamp: i64,
}

impl ProducerEntry {
    fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }
}

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("producer {producer_id}: epoch {epoch} is older than its current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error(
        "producer {producer_id} epoch {epoch}: sequence {first_seq} does not follow {last_seq:?}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: Option<i32>,
    },
}

/// What to do with a produce payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// A retry of a batch already in the log: answer with its offsets, append nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// The producers of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct ProducerStateMap {
    producers: HashMap<i64, ProducerEntry>,
}

/// A batch's last sequence: sequences wrap from `i32::MAX` to 0 (Kafka's
/// `DefaultRecordBatch.incrementSequence`).
pub fn last_sequence(header: &BatchHeader) -> i32 {
    let delta = header.last_offset_delta;
    if header.base_sequence > i32::MAX - delta {
        delta - (i32::MAX - header.base_sequence) - 1
    } else {
        header.base_sequence + delta
    }
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    next_seq == last_seq.wrapping_add(1) || (last_seq == i32::MAX && next_seq == 0)
}

impl ProducerStateMap {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks the batches of one produce payload, in order, without changing anything: a
    /// batch must follow the one before it of the same producer (in the log or earlier in
    /// the payload). A retry of a batch in the log makes the whole payload a duplicate, as
    /// Kafka answers it.
    pub fn check(&self, headers: &[BatchHeader]) -> Result<SequenceCheck, ProducerError> {
        // (producer id, epoch, last sequence) of earlier batches of this payload: a payload
        // holds one batch per producer in practice, so this stays a few entries at most.
        let mut earlier: Vec<(i64, i16, i32)> = Vec::new();
        for header in headers.iter().filter(|h| h.producer_id > NO_PRODUCER_ID) {
            let id = header.producer_id;
            let entry = self.producers.get(&id);
            if let Some(duplicate) = entry.and_then(|e| find_duplicate(e, header)) {
                return Ok(duplicate);
            }
            let current = earlier
                .iter()
                .rev()
                .find(|(p, _, _)| *p == id)
                .map(|&(_, epoch, last)| (epoch, Some(last)))
                .or_else(|| entry.map(|e| (e.epoch, e.last_seq())));
            check_one(header, current)?;
            earlier.push((id, header.producer_epoch, last_sequence(header)));
        }
        Ok(SequenceCheck::Append)
    }

    /// Records a batch appended (or replayed from the log) at its stamped base offset, at
    /// `now_ms` on the broker's clock. Expiry goes by that clock, not by the batch's
    /// timestamps: a client's timestamps (MirrorMaker keeps the source's, a backfill writes
    /// old ones) say nothing about when the producer was last active, and a producer taken
    /// for expired loses its deduplication, so its retry would be stored twice.
    pub fn record(&mut self, header: &BatchHeader, now_ms: i64) {
        if header.producer_id <= NO_PRODUCER_ID {
            return;
        }
        let batch = ProducerBatch {
            first_seq: header.base_sequence,
            last_seq: last_sequence(header),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        };
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::with_capacity(BATCHES_PER_PRODUCER),
                last_timestamp: now_ms,
            });
        if header.producer_epoch != entry.epoch {
            // A new epoch starts a new sequence: the old epoch's batches are no retries.
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        entry.last_timestamp = entry.last_timestamp.max(now_ms);
        if self.producers.len() > PRODUCERS_MAX {
            // A tenth at once, so the sort this costs is paid once per many new producers.
            self.forget_longest_silent(self.producers.len() - PRODUCERS_MAX * 9 / 10);
        }
    }

    /// Forgets producers that appended nothing for `PRODUCER_ID_EXPIRATION_MS`.
    pub fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(PRODUCER_ID_EXPIRATION_MS);
        self.producers.retain(|_, e| e.last_timestamp >= horizon);
    }

    /// Forgets what refers to offsets below `log_start_offset` (retention, DeleteRecords):
    /// a producer whose batches are all gone is unknown again, as in Kafka.
    pub fn truncate_head(&mut self, log_start_offset: i64) {
        self.producers.retain(|_, e| {
            e.batches.retain(|b| b.last_offset >= log_start_offset);
            !e.batches.is_empty()
        });
    }

    /// Forgets what refers to offsets at or past `end`. A snapshot is encoded a moment after
    /// its end offset is chosen, so it can hold batches assigned after `end` that a crash
    /// then lost; kept, they would answer the producer's retry of a lost batch as a
    /// duplicate, acknowledging a write the log does not have. The replay from `end`
    /// records again whatever of them survived.
    pub fn truncate_tail(&mut self, end: i64) {
        self.producers.retain(|_, e| {
            e.batches.retain(|b| b.last_offset < end);
            !e.batches.is_empty()
        });
    }

    fn forget_longest_silent(&mut self, count: usize) {
        let mut by_age: Vec<(i64, i64)> = self
            .producers
            .iter()
            .map(|(id, e)| (e.last_timestamp, *id))
            .collect();
        by_age.sort_unstable();
        for (_, id) in by_age.into_iter().take(count) {
            self.producers.remove(&id);
        }
    }
}

fn find_duplicate(entry: &ProducerEntry, header: &BatchHeader) -> Option<SequenceCheck> {
    if entry.epoch != header.producer_epoch {
        return None;
    }
    let last_seq = last_sequence(header);
    entry
        .batches
        .iter()
        .find(|b| b.first_seq == header.base_sequence && b.last_seq == last_seq)
        .map(|b| SequenceCheck::Duplicate {
            base_offset: b.base_offset,
            last_offset: b.last_offset,
        })
}

/// Kafka's `ProducerAppendInfo.checkProducerEpoch` and `checkSequence`. `current` is the
/// producer's epoch and last sequence, None for a producer this partition does not know,
/// which may start at any sequence (KIP-360: its state may have been removed by retention).
fn check_one(
    header: &BatchHeader,
    current: Option<(i16, Option<i32>)>,
) -> Result<(), ProducerError> {
    let Some((epoch, last_seq)) = current else {
        return Ok(());
    };
    let (id, first_seq) = (header.producer_id, header.base_sequence);
    if header.producer_epoch < epoch {
        return Err(ProducerError::InvalidProducerEpoch {
            producer_id: id,
            epoch: header.producer_epoch,
            current: epoch,
        });
    }
    let follows = if header.producer_epoch > epoch {
        first_seq == 0
    } else {
        last_seq.is_none_or(|last| in_sequence(last, first_seq))
    };
    if follows {
        Ok(())
    } else {
        Err(ProducerError::OutOfOrderSequence {
            producer_id: id,
            epoch: header.producer_epoch,
            first_seq,
            last_seq,
        })
    }
}

/// The snapshot file: producer state covering every batch below `offset`.
pub mod snapshot {
    use rkyv::{Archive, Deserialize, Serialize};

    use super::ProducerStateMap;

    pub const FILE_NAME: &str = "producer-state.snapshot";
    const MAGIC: &[u8; 8] = b"WEIRPROD";
    const FORMAT_VERSION: u32 = 1;
    /// Far above `PRODUCERS_MAX` entries; checked before allocating for a file from disk.
    pub const SNAPSHOT_BYTES_MAX: u64 = 64 * 1024 * 1024;

    #[derive(Archive, Serialize, Deserialize)]
    struct Snapshot {
        /// Every batch below this offset is in `state`, and none at or above it.
        offset: i64,
        state: ProducerStateMap,
    }

    pub fn encode(state: &ProducerStateMap, offset: i64) -> Vec<u8> {
        let snapshot = Snapshot {
            offset,
            state: state.clone(),
        };
        crate::archive_file::encode(MAGIC, FORMAT_VERSION, &snapshot)
    }

    /// The state and the offset it covers up to; an error for anything not a whole, valid
    /// snapshot of this format (the caller then rebuilds from the log).
    pub fn decode(bytes: &[u8]) -> Result<(ProducerStateMap, i64), String> {
        let snapshot: Snapshot =
            crate::archive_file::decode(bytes, MAGIC, FORMAT_VERSION, "producer-state snapshot")?;
        Ok((snapshot.state, snapshot.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(id: i64, epoch: i16, first_seq: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_len: 100,
            partition_leader_epoch: -1,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 1_000,
            max_timestamp: 1_000,
            producer_id: id,
            producer_epoch: epoch,
            base_sequence: first_seq,
            records_count: records,
        }
    }

    fn appended(map: &mut ProducerStateMap, h: BatchHeader) {
        assert_eq!(map.check(&[h]), Ok(SequenceCheck::Append), "{h:?}");
        map.record(&h, h.max_timestamp);
    }

    #[test]
    fn in_order_batches_append_and_a_retry_is_a_duplicate() {
        let mut map = ProducerStateMap::default();
        appended(&mut map, header(7, 0, 0, 3, 10));
        appended(&mut map, header(7, 0, 3, 2, 13));
        assert_eq!(
            map.check(&[header(7, 0, 0, 3, -1)]),
            Ok(SequenceCheck::Duplicate {
                base_offset: 10,
                last_offset: 12
            })
        );
        assert_eq!(
            map.check(&[header(7, 0, 3, 2, -1)]),
            Ok(SequenceCheck::Duplicate {
                base_offset: 13,
                last_offset: 14
            })
        );
    }

    #[test]
    fn a_gap_or_an_overlap_is_out_of_order() {
        let mut map = ProducerStateMap::default();
        appended(&mut map, header(7, 0, 0, 3, 0));
        for first_seq in [4, 2, 1] {
            assert!(matches!(
                map.check(&[header(7, 0, first_seq, 1, -1)]),
                Err(ProducerError::OutOfOrderSequence { .. })
            ));
        }
    }

    #[test]
    fn an_unknown_producer_may_start_anywhere_and_a_new_epoch_starts_at_zero() {
        let mut map = ProducerStateMap::default();
        appended(&mut map, header(9, 2, 57, 1, 0));
        assert!(matches!(
            map.check(&[header(9, 1, 58, 1, -1)]),
            Err(ProducerError::InvalidProducerEpoch { current: 2, .. })
        ));
        assert!(matches!(
            map.check(&[header(9, 3, 5, 1, -1)]),
            Err(ProducerError::OutOfOrderSequence { .. })
        ));
        appended(&mut map, header(9, 3, 0, 1, 1));
        assert_eq!(map.get(9).map(|e| (e.epoch, e.batches.len())), Some((3, 1)));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut map = ProducerStateMap::default();
        for i in 0..7 {
            appended(&mut map, header(1, 0, i, 1, i64::from(i)));
        }
        assert!(
            map.check(&[header(1, 0, 1, 1, -1)]).is_err(),
            "too old to be a retry"
        );
        assert!(matches!(
            map.check(&[header(1, 0, 2, 1, -1)]),
            Ok(SequenceCheck::Duplicate { base_offset: 2, .. })
        ));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let h = header(1, 0, i32::MAX - 1, 4, 0);
        assert_eq!(last_sequence(&h), 1);
        let mut map = ProducerStateMap::default();
        appended(&mut map, h);
        appended(&mut map, header(1, 0, 2, 1, 4));
        let mut at_max = ProducerStateMap::default();
        appended(&mut at_max, header(2, 0, i32::MAX, 1, 0));
        appended(&mut at_max, header(2, 0, 0, 1, 1));
    }

    #[test]
    fn batches_of_one_payload_must_follow_each_other() {
        let map = ProducerStateMap::default();
        let ok = [
            header(1, 0, 0, 2, -1),
            header(1, 0, 2, 1, -1),
            header(2, 0, 9, 1, -1),
        ];
        assert_eq!(map.check(&ok), Ok(SequenceCheck::Append));
        let gap = [header(1, 0, 0, 2, -1), header(1, 0, 3, 1, -1)];
        assert!(map.check(&gap).is_err());
        let plain = [header(-1, -1, -1, 5, -1)];
        assert_eq!(map.check(&plain), Ok(SequenceCheck::Append));
    }

    #[test]
    fn a_snapshot_forgets_batches_past_its_end() {
        let mut map = ProducerStateMap::default();
        map.record(&header(1, 0, 0, 2, 0), 0); // offsets 0..=1
        map.record(&header(1, 0, 2, 1, 2), 0); // offset 2, past a snapshot end of 2
        map.record(&header(2, 0, 0, 1, 3), 0); // only past the end
        map.truncate_tail(2);
        assert_eq!(map.len(), 1);
        let retry = [header(1, 0, 2, 1, -1)];
        assert_eq!(
            map.check(&retry),
            Ok(SequenceCheck::Append),
            "the lost batch is written again, not answered as a duplicate"
        );
        assert_eq!(
            map.check(&[header(1, 0, 0, 2, -1)])
                .map(|c| matches!(c, SequenceCheck::Duplicate { .. })),
            Ok(true)
        );
    }

    #[test]
    fn expiry_truncation_and_the_size_bound_forget_producers() {
        let mut map = ProducerStateMap::default();
        // The batches' own timestamps do not matter: the broker's clock at append does.
        let mut old = header(1, 0, 0, 1, 0);
        old.max_timestamp = PRODUCER_ID_EXPIRATION_MS * 9;
        map.record(&old, 0);
        let mut new = header(2, 0, 0, 1, 5);
        new.max_timestamp = 0;
        map.record(&new, PRODUCER_ID_EXPIRATION_MS + 10);
        map.expire(PRODUCER_ID_EXPIRATION_MS + 5);
        assert!(map.get(1).is_none() && map.get(2).is_some());
        map.truncate_head(6);
        assert!(map.is_empty(), "its only batch was deleted");
        for id in 0..(PRODUCERS_MAX as i64 + 3) {
            let mut h = header(id, 0, 0, 1, id);
            h.max_timestamp = id;
            map.record(&h, h.max_timestamp);
        }
        assert_eq!(
            map.len(),
            PRODUCERS_MAX * 9 / 10 + 2,
            "trimmed by a tenth, then two more"
        );
        assert!(map.get(0).is_none() && map.get(PRODUCERS_MAX as i64 + 2).is_some());
    }

    #[test]
    fn snapshots_round_trip_and_damage_is_refused() {
        let mut map = ProducerStateMap::default();
        appended(&mut map, header(7, 1, 0, 3, 10));
        appended(&mut map, header(8, 0, 4, 1, 13));
        let bytes = snapshot::encode(&map, 14);
        assert_eq!(snapshot::decode(&bytes), Ok((map, 14)));
        for at in [0, 10, 15, 22, 26, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(snapshot::decode(&bad).is_err(), "flipped byte {at}");
        }
        assert!(snapshot::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(snapshot::decode(b"").is_err());
    }
}
