//! What to run: topic shape, producers and consumers, message shape, producer settings, pace
//! and duration. Built from a preset, then a TOML file, then flags (each overriding the last),
//! and validated before anything connects.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;
use crate::payload::VALUE_HEADER_BYTES;

/// Largest message the generator builds; a broker's default `message.max.bytes` is 1 MiB.
pub const MESSAGE_BYTES_MAX: u32 = 16 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    /// None: a fresh topic named after the run, so runs never read each other's data.
    pub topic: Option<String>,
    pub partitions: u32,
    pub replication_factor: i16,
    pub producers: u32,
    /// 0 disables consumers (and with them end-to-end latency and the delivery check).
    pub consumers: u32,
    pub message_size: MessageSize,
    pub keys: KeyStrategy,
    /// 0, 1 or -1 (all).
    pub acks: i16,
    pub compression: Compression,
    /// Kafka's `batch.size`: a partition's batch is sent when the next record would overflow it.
    pub batch_bytes: u32,
    /// Kafka's `linger.ms`: a batch is sent at the latest this long after its first record.
    pub linger_ms: u64,
    /// Kafka's `max.in.flight.requests.per.connection`.
    pub max_in_flight: u32,
    /// Kafka's `buffer.memory`, per producer: record bytes accumulated or in flight.
    pub buffer_bytes: u64,
    /// Kafka's `max.partition.fetch.bytes` for the consumers.
    pub fetch_partition_max_bytes: i32,
    /// Whole workload, all producers together; 0 = as fast as possible.
    pub rate_msgs_per_s: u64,
    pub warmup_s: u64,
    pub duration_s: u64,
    /// Seed for message sizes and random keys.
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            topic: None,
            partitions: 1,
            replication_factor: 1,
            producers: 1,
            consumers: 1,
            message_size: MessageSize::Fixed(100),
            keys: KeyStrategy::None,
            acks: -1,
            compression: Compression::None,
            batch_bytes: 128 * 1024,
            linger_ms: 1,
            max_in_flight: 5,
            buffer_bytes: 8 * 1024 * 1024,
            fetch_partition_max_bytes: 1024 * 1024,
            rate_msgs_per_s: 0,
            warmup_s: 2,
            duration_s: 10,
            seed: 1,
        }
    }
}

impl Workload {
    pub fn from_toml(text: &str) -> Result<Workload, BenchError> {
        toml::from_str(text).map_err(|e| BenchError::Config(format!("workload file: {e}")))
    }

    pub fn validate(&self) -> Result<(), BenchError> {
        let fail = |m: String| Err(BenchError::Workload(m));
        if self.partitions == 0 || self.producers == 0 {
            return fail("partitions and producers must be at least 1".into());
        }
        if ![0, 1, -1].contains(&self.acks) {
            return fail(format!("acks must be 0, 1 or -1, not {}", self.acks));
        }
        let (min, max) = self.message_size.bounds();
        if (min as usize) < VALUE_HEADER_BYTES || max > MESSAGE_BYTES_MAX || min > max {
            return fail(format!(
                "message size must be within {VALUE_HEADER_BYTES}..={MESSAGE_BYTES_MAX} bytes (the value carries a {VALUE_HEADER_BYTES}-byte header), got {}",
                self.message_size
            ));
        }
        if self.duration_s == 0 {
            return fail("duration must be at least 1 s".into());
        }
        if self.max_in_flight == 0 || self.batch_bytes == 0 || self.fetch_partition_max_bytes <= 0 {
            return fail(
                "max_in_flight, batch_bytes and fetch_partition_max_bytes must be at least 1"
                    .into(),
            );
        }
        if self.buffer_bytes < u64::from(self.batch_bytes) {
            return fail("buffer_bytes must hold at least one batch".into());
        }
        Ok(())
    }
}

/// Fixed (`100`) or uniform over an inclusive range (`100..1024`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MessageSize {
    Fixed(u32),
    Uniform { min: u32, max: u32 },
}

impl MessageSize {
    pub fn bounds(&self) -> (u32, u32) {
        match *self {
            MessageSize::Fixed(n) => (n, n),
            MessageSize::Uniform { min, max } => (min, max),
        }
    }

    pub fn mean(&self) -> f64 {
        let (min, max) = self.bounds();
        (f64::from(min) + f64::from(max)) / 2.0
    }
}

impl FromStr for MessageSize {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |v: &str| {
            parse_bytes(v).ok_or_else(|| BenchError::Workload(format!("bad message size {s:?}")))
        };
        match s.split_once("..") {
            Some((min, max)) => Ok(MessageSize::Uniform {
                min: parse(min)?,
                max: parse(max.trim_start_matches('='))?,
            }),
            None => Ok(MessageSize::Fixed(parse(s)?)),
        }
    }
}

/// `100`, `1k`/`1KiB` (1024), `1m`/`1MiB`.
fn parse_bytes(s: &str) -> Option<u32> {
    let s = s.trim().to_ascii_lowercase();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s.as_str(), ""),
    };
    let n: u32 = digits.parse().ok()?;
    let multiplier = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(multiplier)
}

impl fmt::Display for MessageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageSize::Fixed(n) => write!(f, "{n}"),
            MessageSize::Uniform { min, max } => write!(f, "{min}..{max}"),
        }
    }
}

impl TryFrom<String> for MessageSize {
    type Error = BenchError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MessageSize> for String {
    fn from(m: MessageSize) -> String {
        m.to_string()
    }
}

/// `none`, `round-robin:N` or `random:N`. Keyed messages go to the partition Kafka's Java
/// producer would pick (murmur2); unkeyed ones use the sticky partitioner (KIP-480).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyStrategy {
    None,
    RoundRobin(u32),
    Random(u32),
}

impl FromStr for KeyStrategy {
    type Err = BenchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || BenchError::Workload(format!("bad keys {s:?}: none, round-robin:N or random:N"));
        if s == "none" {
            return Ok(KeyStrategy::None);
        }
        let (kind, n) = s.split_once(':').ok_or_else(bad)?;
        let n: u32 = n.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?;
        match kind {
            "round-robin" => Ok(KeyStrategy::RoundRobin(n)),
            "random" => Ok(KeyStrategy::Random(n)),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for KeyStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyStrategy::None => write!(f, "none"),
            KeyStrategy::RoundRobin(n) => write!(f, "round-robin:{n}"),
            KeyStrategy::Random(n) => write!(f, "random:{n}"),
        }
    }
}

impl TryFrom<String> for KeyStrategy {
    type Error = BenchError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KeyStrategy> for String {
    fn from(k: KeyStrategy) -> String {
        k.to_string()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(
            "100".parse::<MessageSize>().ok(),
            Some(MessageSize::Fixed(100))
        );
        assert_eq!(
            "1KiB".parse::<MessageSize>().ok(),
            Some(MessageSize::Fixed(1024))
        );
        assert_eq!(
            "64..1k".parse::<MessageSize>().ok(),
            Some(MessageSize::Uniform { min: 64, max: 1024 })
        );
        assert!("ten".parse::<MessageSize>().is_err());
    }

    #[test]
    fn keys_parse() {
        assert_eq!("none".parse::<KeyStrategy>().ok(), Some(KeyStrategy::None));
        assert_eq!(
            "random:10".parse::<KeyStrategy>().ok(),
            Some(KeyStrategy::Random(10))
        );
        assert!("random:0".parse::<KeyStrategy>().is_err());
        assert!("sticky:3".parse::<KeyStrategy>().is_err());
    }

    #[test]
    fn toml_round_trip_and_unknown_keys_rejected() {
        let workload = Workload {
            message_size: MessageSize::Uniform { min: 100, max: 200 },
            keys: KeyStrategy::RoundRobin(8),
            ..Workload::default()
        };
        let text = toml::to_string(&workload).expect("serializes");
        assert_eq!(Workload::from_toml(&text).expect("parses"), workload);
        assert!(Workload::from_toml("partitons = 3").is_err());
        let partial =
            Workload::from_toml("partitions = 16\nmessage_size = \"1k\"").expect("parses");
        assert_eq!(partial.partitions, 16);
        assert_eq!(partial.message_size, MessageSize::Fixed(1024));
        assert_eq!(partial.producers, 1);
    }

    #[test]
    fn validation_rejects_nonsense() {
        let ok = Workload::default();
        assert!(ok.validate().is_ok());
        assert!(Workload {
            acks: 2,
            ..ok.clone()
        }
        .validate()
        .is_err());
        assert!(Workload {
            message_size: MessageSize::Fixed(10),
            ..ok.clone()
        }
        .validate()
        .is_err());
        assert!(Workload {
            partitions: 0,
            ..ok.clone()
        }
        .validate()
        .is_err());
        assert!(Workload {
            compression: Compression::Zstd,
            ..ok
        }
        .validate()
        .is_ok());
    }
}
