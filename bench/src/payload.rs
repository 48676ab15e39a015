//! What each message's value carries so the consumer side can check delivery and measure
//! end-to-end latency: a fixed header, then filler up to the message size.
//!
//! Layout (big-endian): run tag u32 | producer id u32 | sequence u64 | intended send time
//! u64 (monotonic ns, see `clock`). The run tag tells this run's messages from those left in
//! a reused topic by an earlier run.
//!
//! `MessageShape` draws each message's value length and key from the workload's seed.

use crate::rng::SplitMix64;
use crate::workload::{KeyStrategy, MessageSize, Workload};

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

/// The value length and key index of each message of one producer. Lengths are drawn
/// before keys from one generator seeded as the native producer seeds its own, so a seed
/// gives the same message shapes in both clients.
#[derive(Clone, Debug)]
pub struct MessageShape {
    size: MessageSize,
    keys: KeyStrategy,
    rng: SplitMix64,
}

impl MessageShape {
    pub fn new(workload: &Workload, producer_id: u32) -> MessageShape {
        MessageShape {
            size: workload.message_size,
            keys: workload.keys,
            rng: SplitMix64::new(workload.seed ^ (u64::from(producer_id) << 32)),
        }
    }

    /// Value bytes and key index (None: no key) of message `seq`.
    pub fn next(&mut self, seq: u64) -> (usize, Option<u64>) {
        let value_len = match self.size {
            MessageSize::Fixed(n) => n as usize,
            MessageSize::Uniform { min, max } => {
                (u64::from(min) + self.rng.below(u64::from(max - min) + 1)) as usize
            }
        };
        let key = match self.keys {
            KeyStrategy::None => None,
            KeyStrategy::RoundRobin(n) => Some(seq % u64::from(n)),
            KeyStrategy::Random(n) => Some(self.rng.below(u64::from(n))),
        };
        (value_len, key)
    }
}

/// Writes `n` in decimal into `buf` and returns the digits: keys without allocation.
pub fn decimal_key(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_stay_in_bounds_and_replay_from_the_seed() {
        let workload = Workload {
            message_size: MessageSize::Uniform { min: 24, max: 30 },
            keys: KeyStrategy::Random(5),
            ..Workload::default()
        };
        let draw = |producer_id| {
            let mut shape = MessageShape::new(&workload, producer_id);
            (0..1_000).map(|seq| shape.next(seq)).collect::<Vec<_>>()
        };
        let shapes = draw(0);
        assert_eq!(shapes, draw(0), "same seed, same shapes");
        assert_ne!(shapes, draw(1), "each producer its own stream");
        assert!(shapes.iter().all(|&(len, _)| (24..=30).contains(&len)));
        assert!(shapes.iter().all(|&(_, key)| key.is_some_and(|k| k < 5)));
        assert!((24..=30).all(|len| shapes.iter().any(|&(l, _)| l == len)));
    }

    #[test]
    fn round_robin_keys_follow_the_sequence_and_no_keys_mean_none() {
        let keyed = Workload {
            keys: KeyStrategy::RoundRobin(3),
            ..Workload::default()
        };
        let mut shape = MessageShape::new(&keyed, 0);
        let keys: Vec<_> = (0..5).map(|seq| shape.next(seq).1).collect();
        assert_eq!(keys, [Some(0), Some(1), Some(2), Some(0), Some(1)]);
        let mut unkeyed = MessageShape::new(&Workload::default(), 0);
        assert_eq!(unkeyed.next(0), (100, None));
    }

    #[test]
    fn decimal_keys() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal_key(0, &mut buf), b"0");
        assert_eq!(decimal_key(1234567, &mut buf), b"1234567");
        assert_eq!(decimal_key(u64::MAX, &mut buf), b"18446744073709551615");
    }

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
