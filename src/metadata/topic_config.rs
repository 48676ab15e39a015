//! Kafka's topic-level configs: the names Weir knows, their defaults and value types.
//!
//! An unknown name or a value of the wrong type is rejected at CreateTopics with
//! INVALID_CONFIG, as Kafka does. DescribeConfigs lists these with their effective values.

use std::collections::BTreeMap;

use weir_storage::{CompactionPolicy, LogConfig, RetentionPolicy};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    Int,
    Long,
    Double,
    String,
    List,
}

impl ConfigType {
    /// Kafka's DescribeConfigs `config_type` codes (KIP-569).
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

/// One known topic config. `default` is the value a topic has without an override.
pub struct TopicConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ConfigType,
    /// Smallest legal value for numeric configs.
    pub min: i64,
}

const fn def(
    name: &'static str,
    default: &'static str,
    kind: ConfigType,
    min: i64,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        default,
        kind,
        min,
    }
}

/// Kafka 3.x topic configs with Kafka's defaults (sorted by name).
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def("cleanup.policy", "delete", ConfigType::List, 0),
    def("compression.type", "producer", ConfigType::String, 0),
    def("delete.retention.ms", "86400000", ConfigType::Long, 0),
    def("file.delete.delay.ms", "60000", ConfigType::Long, 0),
    def("flush.messages", "9223372036854775807", ConfigType::Long, 1),
    def("flush.ms", "9223372036854775807", ConfigType::Long, 0),
    def("index.interval.bytes", "4096", ConfigType::Int, 0),
    def(
        "max.compaction.lag.ms",
        "9223372036854775807",
        ConfigType::Long,
        1,
    ),
    def("max.message.bytes", "1048588", ConfigType::Int, 0),
    def(
        "message.timestamp.after.max.ms",
        "9223372036854775807",
        ConfigType::Long,
        0,
    ),
    def(
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        ConfigType::Long,
        0,
    ),
    def(
        "message.timestamp.type",
        "CreateTime",
        ConfigType::String,
        0,
    ),
    def("min.cleanable.dirty.ratio", "0.5", ConfigType::Double, 0),
    def("min.compaction.lag.ms", "0", ConfigType::Long, 0),
    def("min.insync.replicas", "1", ConfigType::Int, 1),
    def("preallocate", "false", ConfigType::Boolean, 0),
    def("retention.bytes", "-1", ConfigType::Long, -1),
    def("retention.ms", "604800000", ConfigType::Long, -1),
    def("segment.bytes", "1073741824", ConfigType::Int, 14),
    def("segment.index.bytes", "10485760", ConfigType::Int, 4),
    def("segment.jitter.ms", "0", ConfigType::Long, 0),
    def("segment.ms", "604800000", ConfigType::Long, 1),
    def(
        "unclean.leader.election.enable",
        "false",
        ConfigType::Boolean,
        0,
    ),
];

pub fn find(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one override; the error text is what Kafka's INVALID_CONFIG message would say.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let def = find(name).ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    let bad = || format!("Invalid value {value} for configuration {name}");
    match def.kind {
        ConfigType::Boolean => value.parse::<bool>().map(|_| ()).map_err(|_| bad()),
        ConfigType::Int | ConfigType::Long => {
            let n: i64 = value.parse().map_err(|_| bad())?;
            if def.kind == ConfigType::Int && i32::try_from(n).is_err() {
                return Err(bad());
            }
            if n < def.min {
                return Err(format!("{}: Value must be at least {}", bad(), def.min));
            }
            Ok(())
        }
        ConfigType::Double => {
            let n: f64 = value.parse().map_err(|_| bad())?;
            if !n.is_finite() {
                return Err(bad());
            }
            if n < def.min as f64 {
                return Err(format!("{}: Value must be at least {}", bad(), def.min));
            }
            match double_max(name) {
                Some(max) if n > max => Err(format!("{}: Value must be no more than {max}", bad())),
                _ => Ok(()),
            }
        }
        ConfigType::String | ConfigType::List => validate_enum(name, value).ok_or_else(bad),
    }
}

/// The largest legal value of a Double config, where Kafka bounds it (`between(0, 1)`).
fn double_max(name: &str) -> Option<f64> {
    (name == "min.cleanable.dirty.ratio").then_some(1.0)
}

fn validate_enum(name: &str, value: &str) -> Option<()> {
    let ok = match name {
        "cleanup.policy" => value
            .split(',')
            .all(|p| matches!(p.trim(), "delete" | "compact")),
        "compression.type" => matches!(
            value,
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd"
        ),
        "message.timestamp.type" => matches!(value, "CreateTime" | "LogAppendTime"),
        _ => true,
    };
    ok.then_some(())
}

/// Topic config defaults set for the whole broker (the config file's `[topic_defaults]` or
/// `--topic-default`, Kafka's static broker configs such as `log.retention.ms`). Set once at
/// start, before any shard runs, and only read afterwards: a plain load, no lock.
static BROKER_DEFAULTS: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();

/// Installs the broker-wide defaults; the first call wins (start-up makes exactly one).
pub fn set_broker_defaults(defaults: BTreeMap<String, String>) {
    let _ = BROKER_DEFAULTS.set(defaults);
}

/// The broker-wide default of a topic config, if the operator set one.
pub fn broker_default(name: &str) -> Option<&'static str> {
    BROKER_DEFAULTS.get()?.get(name).map(String::as_str)
}

/// The broker config a topic config defaults from, by Kafka's names (its
/// `TopicConfigSynonyms`): DescribeConfigs lists it among a topic config's synonyms.
pub fn broker_config_name(topic_config: &str) -> String {
    let name = match topic_config {
        "max.message.bytes" => "message.max.bytes",
        "segment.ms" => "log.roll.ms",
        "segment.index.bytes" => "log.index.size.max.bytes",
        "flush.messages" => "log.flush.interval.messages",
        "flush.ms" => "log.flush.interval.ms",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "max.compaction.lag.ms" => "log.cleaner.max.compaction.lag.ms",
        "file.delete.delay.ms" => "log.segment.delete.delay.ms",
        "compression.type" | "min.insync.replicas" | "unclean.leader.election.enable" => {
            topic_config
        }
        other => return format!("log.{other}"),
    };
    name.to_owned()
}

/// Where a topic's config value comes from (DescribeConfigs' sources).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Set on the topic.
    Topic,
    /// The broker's `[topic_defaults]`.
    Broker,
    /// Kafka's default.
    Default,
}

/// A topic's value for `name`: its override, else the broker default (None for a name that
/// has neither, the table default applying).
fn lookup<'a>(overrides: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    overrides
        .get(name)
        .map(String::as_str)
        .or_else(|| broker_default(name))
}

/// The effective value of `name` for a topic with these overrides.
pub fn effective<'a>(
    overrides: &'a BTreeMap<String, String>,
    def: &'static TopicConfigDef,
) -> &'a str {
    lookup(overrides, def.name).unwrap_or(def.default)
}

/// The effective value and where it comes from.
pub fn effective_with_source<'a>(
    overrides: &'a BTreeMap<String, String>,
    def: &'static TopicConfigDef,
) -> (&'a str, Source) {
    match (overrides.get(def.name), broker_default(def.name)) {
        (Some(v), _) => (v, Source::Topic),
        (None, Some(v)) => (v, Source::Broker),
        (None, None) => (def.default, Source::Default),
    }
}

/// Kafka's `segment.ms` default: a segment is rolled at the latest a week after its first
/// batch.
const SEGMENT_MS_DEFAULT: i64 = 604_800_000;

/// Storage settings derived from a topic's configs.
pub fn log_config(overrides: &BTreeMap<String, String>) -> LogConfig {
    let number =
        |name: &str| -> Option<i64> { lookup(overrides, name).and_then(|v| v.parse().ok()) };
    let mut config = LogConfig::default();
    if let Some(bytes) = number("segment.bytes") {
        config.segment_bytes = bytes.max(1) as u64;
    }
    if let Some(bytes) = number("index.interval.bytes") {
        config.index_interval_bytes = bytes.clamp(0, i64::from(u32::MAX)) as u32;
    }
    let segment_ms = number("segment.ms").unwrap_or(SEGMENT_MS_DEFAULT);
    config.segment_ms = (segment_ms < i64::MAX).then_some(segment_ms);
    if let Some(bytes) = number("segment.index.bytes") {
        config.segment_index_bytes = bytes.max(4) as usize;
    }
    // Durable by default: every acknowledged write is fdatasync'd. flush.messages > 1 or
    // flush.ms > 0, set on the topic, relax that explicitly (Kafka's meaning; Long.MAX_VALUE
    // is "never by this measure", leaving the sync to the other one, to segment rolls and to
    // shutdown).
    let messages = number("flush.messages").filter(|&n| n > 1);
    let interval_ms = number("flush.ms").filter(|&ms| ms > 0);
    if messages.is_some() || interval_ms.is_some() {
        config.flush_on_append = false;
        config.flush_messages = messages.filter(|&n| n < i64::MAX).map(|n| n as u64);
        config.flush_interval = interval_ms
            .filter(|&ms| ms < i64::MAX)
            .map(|ms| std::time::Duration::from_millis(ms as u64));
    }
    config
}

/// `max.message.bytes` for a topic: the largest record batch a producer may append.
pub fn max_message_bytes(overrides: &BTreeMap<String, String>) -> usize {
    lookup(overrides, "max.message.bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_048_588)
}

/// The compaction settings of a topic whose `cleanup.policy` includes `compact`, with
/// Kafka's default dedupe buffer (the cleaner divides it among the shards).
pub fn compaction_policy(overrides: &BTreeMap<String, String>) -> Option<CompactionPolicy> {
    let value = |name: &str| -> &str {
        effective(
            overrides,
            find(name).expect("compaction configs are in the table"),
        )
    };
    if !value("cleanup.policy")
        .split(',')
        .any(|p| p.trim() == "compact")
    {
        return None;
    }
    Some(CompactionPolicy {
        min_cleanable_dirty_ratio: value("min.cleanable.dirty.ratio").parse().unwrap_or(0.5),
        min_compaction_lag_ms: value("min.compaction.lag.ms").parse().unwrap_or(0),
        delete_retention_ms: value("delete.retention.ms").parse().unwrap_or(86_400_000),
        dedupe_buffer_bytes: weir_storage::log::DEDUPE_BUFFER_BYTES_DEFAULT,
    })
}

/// How produce validation treats a topic's timestamps at `now_ms`: its
/// `message.timestamp.type` and the `message.timestamp.before.max.ms` / `after.max.ms`
/// bounds (KIP-937) on every record's CreateTime.
pub fn timestamp_policy(
    overrides: &BTreeMap<String, String>,
    now_ms: i64,
) -> weir_storage::batch::TimestampPolicy {
    let bound = |name: &str| {
        lookup(overrides, name)
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .unwrap_or(i64::MAX)
    };
    weir_storage::batch::TimestampPolicy {
        log_append_time: log_append_time(overrides),
        now_ms,
        before_max_ms: bound("message.timestamp.before.max.ms"),
        after_max_ms: bound("message.timestamp.after.max.ms"),
    }
}

/// Whether the broker stamps its own time on appended batches
/// (`message.timestamp.type=LogAppendTime`).
pub fn log_append_time(overrides: &BTreeMap<String, String>) -> bool {
    lookup(overrides, "message.timestamp.type").is_some_and(|t| t == "LogAppendTime")
}

/// `retention.ms` / `retention.bytes` of a topic whose `cleanup.policy` deletes old data;
/// None for a compact-only topic (its old data is compacted, never deleted by age or size).
pub fn retention_policy(overrides: &BTreeMap<String, String>) -> Option<RetentionPolicy> {
    let value = |name: &str| -> i64 {
        let def = find(name).expect("retention configs are in the table");
        effective(overrides, def).parse().unwrap_or(-1)
    };
    let policy = find("cleanup.policy").expect("cleanup.policy is in the table");
    if !effective(overrides, policy)
        .split(',')
        .any(|p| p.trim() == "delete")
    {
        return None;
    }
    Some(RetentionPolicy {
        retention_ms: Some(value("retention.ms")).filter(|&ms| ms >= 0),
        retention_bytes: u64::try_from(value("retention.bytes")).ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_configs_relax_durability_only_when_set() {
        let config = |pairs: &[(&str, &str)]| {
            log_config(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert!(config(&[]).flush_on_append, "durable by default");
        assert!(config(&[("flush.messages", "1")]).flush_on_append);
        let relaxed = config(&[("flush.messages", "1000"), ("flush.ms", "200")]);
        assert!(!relaxed.flush_on_append);
        assert_eq!(relaxed.flush_messages, Some(1000));
        assert_eq!(
            relaxed.flush_interval,
            Some(std::time::Duration::from_millis(200))
        );
        let os_only = config(&[("flush.messages", "9223372036854775807")]);
        assert!(!os_only.flush_on_append);
        assert_eq!(
            (os_only.flush_messages, os_only.flush_interval),
            (None, None)
        );
    }

    #[test]
    fn table_is_sorted_and_defaults_are_valid() {
        assert!(TOPIC_CONFIGS.windows(2).all(|w| w[0].name < w[1].name));
        for d in TOPIC_CONFIGS {
            assert_eq!(validate(d.name, d.default), Ok(()), "{}", d.name);
        }
    }

    #[test]
    fn rejects_unknown_names_and_bad_values() {
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate("segment.bytes", "ten").is_err());
        assert!(validate("segment.bytes", "3000000000").is_err());
        assert!(validate("segment.bytes", "1").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("preallocate", "maybe").is_err());
    }

    /// Kafka: `min.cleanable.dirty.ratio` is `between(0, 1)`, checked with the same
    /// INVALID_CONFIG wording.
    #[test]
    fn the_dirty_ratio_is_within_zero_and_one() {
        for ok in ["0", "0.0", "0.5", "1", "1.0"] {
            assert_eq!(validate("min.cleanable.dirty.ratio", ok), Ok(()), "{ok}");
        }
        assert_eq!(
            validate("min.cleanable.dirty.ratio", "1.5"),
            Err(
                "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: \
                 Value must be no more than 1"
                    .to_string()
            )
        );
        assert_eq!(
            validate("min.cleanable.dirty.ratio", "-0.1"),
            Err(
                "Invalid value -0.1 for configuration min.cleanable.dirty.ratio: \
                 Value must be at least 0"
                    .to_string()
            )
        );
        for bad in ["NaN", "inf", "half"] {
            assert!(validate("min.cleanable.dirty.ratio", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_config_follows_overrides() {
        let overrides = [("segment.bytes".to_string(), "2048".to_string())].into();
        assert_eq!(log_config(&overrides).segment_bytes, 2048);
        assert_eq!(max_message_bytes(&BTreeMap::new()), 1_048_588);
    }
}
