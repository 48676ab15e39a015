//! Sparse indexes of a segment, in Kafka's file formats: `.index` maps a relative offset to
//! a byte position (8 bytes per entry: u32 BE, u32 BE) and `.timeindex` maps a timestamp to a
//! relative offset (12 bytes: i64 BE, u32 BE). Kept in memory; the files are appended to.
//!
//! Pure data structures: this module does no I/O and must never trust a decoded file that
//! is not well-formed (the caller rebuilds the index from the log instead).

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

/// relative offset → position of the batch containing it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry; entries must increase in both offset and position.
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        debug_assert!(
            self.entries
                .last()
                .is_none_or(|&(o, p)| o < relative_offset && p < position),
            "index entries increase"
        );
        self.entries.push((relative_offset, position));
    }

    /// The position of the last entry at or before `relative_offset` (0 if none).
    pub fn floor_position(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// The last entry: (relative offset, position).
    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    /// Entries pointing below byte `position`: those a recovery checkpoint at `position`
    /// may trust (entries for batches written later are not covered by it).
    pub fn entries_below(&self, position: u64) -> usize {
        self.entries
            .partition_point(|&(_, p)| u64::from(p) < position)
    }

    pub fn encode_from(&self, first: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity((self.entries.len() - first) * OFFSET_ENTRY_BYTES);
        for &(o, p) in &self.entries[first..] {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Parses a `.index` file; None if it is malformed (not a whole number of increasing
    /// entries, or pointing past `log_size`), in which case the caller rebuilds it.
    pub fn decode(bytes: &[u8], log_size: u64) -> Option<OffsetIndex> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
            return None;
        }
        let mut index = OffsetIndex::default();
        for entry in bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
            let o = u32::from_be_bytes(entry[..4].try_into().expect("4 bytes"));
            let p = u32::from_be_bytes(entry[4..].try_into().expect("4 bytes"));
            if u64::from(p) >= log_size
                || index
                    .entries
                    .last()
                    .is_some_and(|&(lo, lp)| lo >= o || lp >= p)
            {
                return None;
            }
            index.entries.push((o, p));
        }
        Some(index)
    }
}

/// timestamp → relative offset of the first batch whose max timestamp reached it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry if `timestamp` is newer than the last one (Kafka keeps them increasing).
    pub fn maybe_push(&mut self, timestamp: i64, relative_offset: u32) -> bool {
        if self.entries.last().is_some_and(|&(t, _)| t >= timestamp) {
            return false;
        }
        self.entries.push((timestamp, relative_offset));
        true
    }

    /// The relative offset to start scanning from for the first batch with a timestamp at or
    /// after `timestamp`: the entry before the first one that reaches it (0 if none).
    pub fn scan_start(&self, timestamp: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// The last entry: (timestamp, relative offset). Its timestamp is the max of the
    /// batches up to its offset; batches after the last offset index entry may be newer.
    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// The first entry: the segment's first batch's max timestamp (it always raises the
    /// max from nothing), with its last offset.
    pub fn first(&self) -> Option<(i64, u32)> {
        self.entries.first().copied()
    }

    /// Entries for batches ending below relative offset `relative_end`: those a recovery
    /// checkpoint whose next offset is `base + relative_end` may trust.
    pub fn entries_below(&self, relative_end: u64) -> usize {
        self.entries
            .partition_point(|&(_, o)| u64::from(o) < relative_end)
    }

    pub fn encode_from(&self, first: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity((self.entries.len() - first) * TIME_ENTRY_BYTES);
        for &(t, o) in &self.entries[first..] {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    /// Parses a `.timeindex` file; None if it is malformed (not a whole number of entries,
    /// timestamps not strictly increasing, or relative offsets going backwards).
    pub fn decode(bytes: &[u8]) -> Option<TimeIndex> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_BYTES) {
            return None;
        }
        let mut index = TimeIndex::default();
        for entry in bytes.chunks_exact(TIME_ENTRY_BYTES) {
            let t = i64::from_be_bytes(entry[..8].try_into().expect("8 bytes"));
            let o = u32::from_be_bytes(entry[8..].try_into().expect("4 bytes"));
            if index
                .entries
                .last()
                .is_some_and(|&(lt, lo)| lt >= t || lo > o)
            {
                return None;
            }
            index.entries.push((t, o));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_lookup_finds_the_last_entry_at_or_before() {
        let mut index = OffsetIndex::default();
        assert_eq!(index.floor_position(5), 0);
        index.push(10, 4096);
        index.push(20, 8192);
        assert_eq!(index.floor_position(9), 0);
        assert_eq!(index.floor_position(10), 4096);
        assert_eq!(index.floor_position(19), 4096);
        assert_eq!(index.floor_position(1000), 8192);
    }

    #[test]
    fn file_format_round_trips_and_rejects_garbage() {
        let mut index = OffsetIndex::default();
        index.push(3, 100);
        index.push(7, 5000);
        let bytes = index.encode_from(0);
        assert_eq!(bytes.len(), 16);
        assert_eq!(OffsetIndex::decode(&bytes, 6000), Some(index.clone()));
        assert_eq!(
            OffsetIndex::decode(&bytes[..15], 6000),
            None,
            "partial entry"
        );
        assert_eq!(
            OffsetIndex::decode(&bytes, 4000),
            None,
            "points past the log"
        );
        let mut swapped = index.encode_from(1);
        swapped.extend(index.encode_from(0));
        assert_eq!(OffsetIndex::decode(&swapped, 6000), None, "not increasing");
        assert_eq!(index.encode_from(1), bytes[8..].to_vec());
    }

    #[test]
    fn entries_below_count_what_a_checkpoint_covers() {
        let mut index = OffsetIndex::default();
        assert_eq!(index.entries_below(1000), 0);
        index.push(3, 100);
        index.push(7, 5000);
        assert_eq!(
            index.entries_below(100),
            0,
            "an entry at the point is past it"
        );
        assert_eq!(index.entries_below(101), 1);
        assert_eq!(index.entries_below(u64::MAX), 2);
        let mut time = TimeIndex::default();
        time.maybe_push(10, 2);
        time.maybe_push(20, 6);
        assert_eq!(time.entries_below(2), 0);
        assert_eq!(time.entries_below(3), 1);
        assert_eq!(time.entries_below(7), 2);
        assert_eq!(time.first(), Some((10, 2)));
    }

    #[test]
    fn time_index_keeps_increasing_timestamps_only() {
        let mut index = TimeIndex::default();
        assert!(index.maybe_push(100, 0));
        assert!(!index.maybe_push(100, 5));
        assert!(!index.maybe_push(50, 6));
        assert!(index.maybe_push(200, 9));
        assert_eq!(index.scan_start(50), 0);
        assert_eq!(index.scan_start(150), 0);
        assert_eq!(index.scan_start(201), 9);
        assert_eq!(index.encode_from(0).len(), 24);
        assert_eq!(index.last(), Some((200, 9)));
    }

    #[test]
    fn time_index_file_round_trips_and_rejects_garbage() {
        let mut index = TimeIndex::default();
        index.maybe_push(100, 0);
        index.maybe_push(300, 4);
        let bytes = index.encode_from(0);
        assert_eq!(TimeIndex::decode(&bytes), Some(index.clone()));
        assert_eq!(TimeIndex::decode(&[]), Some(TimeIndex::default()));
        assert_eq!(TimeIndex::decode(&bytes[..13]), None, "partial entry");
        let mut backwards = index.encode_from(1);
        backwards.extend(index.encode_from(0));
        assert_eq!(TimeIndex::decode(&backwards), None, "not increasing");
    }
}
