//! What each message's value carries so the consumer side can check delivery and measure
//! end-to-end latency: a fixed header, then filler up to the message size.
//!
//! Layout (big-endian): run tag u32 | producer id u32 | sequence u64 | intended send time
//! u64 (monotonic ns, see `clock`). The run tag tells this run's messages from those left in
//! a reused topic by an earlier run.

pub const VALUE_HEADER_BYTES: usize = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueHeader {
    pub run_tag: u32,
    pub producer_id: u32,
    pub seq: u64,
    pub intended_ns: u64,
}

impl ValueHeader {
    pub fn encode(&self) -> [u8; VALUE_HEADER_BYTES] {
        let mut out = [0u8; VALUE_HEADER_BYTES];
        out[0..4].copy_from_slice(&self.run_tag.to_be_bytes());
        out[4..8].copy_from_slice(&self.producer_id.to_be_bytes());
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..24].copy_from_slice(&self.intended_ns.to_be_bytes());
        out
    }

    /// None when the value is too short to be one of ours.
    pub fn decode(value: &[u8]) -> Option<ValueHeader> {
        let header: &[u8; VALUE_HEADER_BYTES] = value.get(..VALUE_HEADER_BYTES)?.try_into().ok()?;
        let u32_at =
            |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let u64_at = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[i..i + 8]);
            u64::from_be_bytes(bytes)
        };
        Some(ValueHeader {
            run_tag: u32_at(0),
            producer_id: u32_at(4),
            seq: u64_at(8),
            intended_ns: u64_at(16),
        })
    }
}

/// Filler for message values past the header. Pseudo-random rather than zeros so that a
/// compressing broker or codec cannot make the payload vanish.
pub fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = crate::rng::SplitMix64::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = ValueHeader {
            run_tag: 0xdead_beef,
            producer_id: 7,
            seq: 1 << 40,
            intended_ns: 123_456_789_012,
        };
        let mut value = header.encode().to_vec();
        value.extend_from_slice(b"filler");
        assert_eq!(ValueHeader::decode(&value), Some(header));
    }

    #[test]
    fn short_values_are_not_ours() {
        assert_eq!(ValueHeader::decode(&[0u8; VALUE_HEADER_BYTES - 1]), None);
    }
}
