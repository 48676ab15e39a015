//! Broker configuration: command-line flags, optionally layered over a TOML file.
//!
//! A flag given on the command line wins over the file; the file wins over the defaults.
//! Names follow Kafka's broker configs where Kafka has one (`auto.create.topics.enable` is
//! `auto_create_topics_enable` here).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

/// Kafka's `socket.request.max.bytes` default: the largest request frame accepted.
pub const SOCKET_REQUEST_MAX_BYTES_DEFAULT: u32 = 100 * 1024 * 1024;
/// A SIGTERM shutdown that takes longer than this gives up and exits non-zero, so a wedged
/// shard cannot keep a supervisor from restarting the broker (issue 16).
pub const SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 30_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// Command-line flags. Every field is optional so that the config file can supply it.
#[derive(Debug, Default, Parser)]
#[command(
    name = "weir",
    version,
    about = "Kafka-compatible streaming broker, thread-per-core on io_uring"
)]
pub struct Flags {
    /// TOML config file; flags given on the command line override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to accept Kafka clients on [default: 127.0.0.1:9092].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// host:port advertised to clients in Metadata [default: the listen address].
    #[arg(long)]
    pub advertised_listener: Option<String>,
    /// Directory holding the logs and metadata [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Number of shards (one pinned executor each) [default: one per CPU of the cpuset].
    #[arg(long)]
    pub smp: Option<usize>,
    /// The CPUs the broker runs on, as a list like `0-3,6`; shards pin to them in order
    /// [default: the CPUs the process may use (taskset, cgroup cpuset)].
    #[arg(long)]
    pub cpuset: Option<String>,
    /// This broker's node id [default: 0].
    #[arg(long)]
    pub node_id: Option<i32>,
    /// Create a topic when a client asks for its metadata [default: true].
    #[arg(long)]
    pub auto_create_topics_enable: Option<bool>,
    /// Partitions of an auto-created topic [default: 1].
    #[arg(long)]
    pub num_partitions: Option<i32>,
    /// Largest request frame accepted, in bytes [default: 104857600].
    #[arg(long)]
    pub socket_request_max_bytes: Option<u32>,
    /// Bytes of requests read and not yet answered, per shard; when spent, connections stop
    /// reading until requests are answered (Kafka's queued.max.request.bytes, which defaults
    /// to unbounded) [default: 268435456].
    #[arg(long)]
    pub queued_max_request_bytes: Option<u64>,
    /// How long the first rebalance of an empty group waits for more members [default: 3000].
    #[arg(long)]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Shortest session timeout a group member may ask for [default: 6000].
    #[arg(long)]
    pub group_min_session_timeout_ms: Option<i32>,
    /// Longest session timeout a group member may ask for [default: 1800000].
    #[arg(long)]
    pub group_max_session_timeout_ms: Option<i32>,
    /// Partitions of __consumer_offsets, used when it is created [default: 50].
    #[arg(long)]
    pub offsets_topic_num_partitions: Option<i32>,
    /// Committed offsets of a group empty this long are deleted [default: 10080].
    #[arg(long)]
    pub offsets_retention_minutes: Option<u64>,
    /// How often old segments are deleted by retention.ms / retention.bytes [default: 300000].
    #[arg(long)]
    pub log_retention_check_interval_ms: Option<u64>,
    /// How often compacted topics are checked for cleaning [default: 15000].
    #[arg(long)]
    pub log_cleaner_backoff_ms: Option<u64>,
    /// Address of the Prometheus metrics endpoint [default: 127.0.0.1:9644].
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Flushes (write + fdatasync) a shard keeps in flight at once over all its partitions;
    /// 0 = no limit [default: the disk profile's knee shared by the shards, else no limit].
    #[arg(long)]
    pub log_flush_concurrency: Option<usize>,
    /// How long SIGTERM may take: past it the broker exits non-zero without a clean-shutdown
    /// marker, even if a shard is wedged (the next start re-validates the logs) [default: 30000].
    #[arg(long)]
    pub shutdown_timeout_ms: Option<u64>,
    /// A broker-wide default for a topic config, as name=value (e.g. retention.ms=86400000);
    /// repeatable. Topics' own configs override it.
    #[arg(long = "topic-default")]
    pub topic_defaults: Vec<String>,
    /// Log filter, e.g. "debug" or "info,weir::group=debug" [default: $WEIR_LOG, else info].
    #[arg(long)]
    pub log_level: Option<String>,
}

/// The same keys as the flags, from a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub advertised_listener: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub smp: Option<usize>,
    pub cpuset: Option<String>,
    pub node_id: Option<i32>,
    pub auto_create_topics_enable: Option<bool>,
    pub num_partitions: Option<i32>,
    pub socket_request_max_bytes: Option<u32>,
    pub queued_max_request_bytes: Option<u64>,
    pub group_initial_rebalance_delay_ms: Option<u64>,
    pub group_min_session_timeout_ms: Option<i32>,
    pub group_max_session_timeout_ms: Option<i32>,
    pub offsets_topic_num_partitions: Option<i32>,
    pub offsets_retention_minutes: Option<u64>,
    pub log_retention_check_interval_ms: Option<u64>,
    pub log_cleaner_backoff_ms: Option<u64>,
    pub metrics_listen: Option<SocketAddr>,
    pub log_flush_concurrency: Option<usize>,
    pub shutdown_timeout_ms: Option<u64>,
    /// `[topic_defaults]`: topic config name = value.
    #[serde(default)]
    pub topic_defaults: std::collections::BTreeMap<String, String>,
}

/// The resolved configuration the broker runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub data_dir: PathBuf,
    pub smp: usize,
    /// `--cpuset`, if given: the process is restricted to these CPUs at start.
    pub cpuset: Option<Vec<usize>>,
    pub node_id: i32,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    pub socket_request_max_bytes: u32,
    /// Per shard (`server::budget`).
    pub queued_max_request_bytes: usize,
    pub group_initial_rebalance_delay_ms: u64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub offsets_topic_num_partitions: i32,
    pub offsets_retention_minutes: u64,
    pub log_retention_check_interval_ms: u64,
    pub log_cleaner_backoff_ms: u64,
    pub metrics_listen: SocketAddr,
    /// Flushes in flight per shard (0: no limit). Set by flag or file; None until the broker
    /// sizes it at start from the disk profile (`host_checks::flush_concurrency`).
    pub log_flush_concurrency: Option<usize>,
    /// Bound on a SIGTERM shutdown (`--shutdown-timeout-ms`).
    pub shutdown_timeout_ms: u64,
    /// Broker-wide topic config defaults (validated like topic configs).
    pub topic_defaults: std::collections::BTreeMap<String, String>,
}

impl Config {
    pub fn from_flags(flags: Flags) -> Result<Config, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let listen = flags
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9092)));
        let advertised = flags
            .advertised_listener
            .or(file.advertised_listener)
            .unwrap_or_else(|| listen.to_string());
        let (advertised_host, advertised_port) = parse_host_port(&advertised)?;
        let cpuset = match flags.cpuset.as_deref().or(file.cpuset.as_deref()) {
            Some(list) => Some(weir_shard::cpuset::parse_cpu_list(list).map_err(|e| {
                ConfigError::Invalid {
                    field: "cpuset",
                    reason: e.to_string(),
                }
            })?),
            None => None,
        };
        let smp = flags.smp.or(file.smp).unwrap_or_else(|| {
            cpuset
                .as_ref()
                .map_or_else(|| weir_shard::cpuset::allowed_cpus().len(), Vec::len)
        });
        if smp == 0 || smp > 1024 {
            return Err(ConfigError::Invalid {
                field: "smp",
                reason: format!("{smp} is not in 1..=1024"),
            });
        }
        let num_partitions = flags.num_partitions.or(file.num_partitions).unwrap_or(1);
        if num_partitions < 1 {
            return Err(ConfigError::Invalid {
                field: "num_partitions",
                reason: format!("{num_partitions} must be at least 1"),
            });
        }
        let socket_request_max_bytes = flags
            .socket_request_max_bytes
            .or(file.socket_request_max_bytes)
            .unwrap_or(SOCKET_REQUEST_MAX_BYTES_DEFAULT);
        if socket_request_max_bytes < 1024 {
            return Err(ConfigError::Invalid {
                field: "socket_request_max_bytes",
                reason: format!("{socket_request_max_bytes} is below 1024"),
            });
        }
        let queued_max_request_bytes = queued_max_request_bytes(
            flags
                .queued_max_request_bytes
                .or(file.queued_max_request_bytes),
        )?;
        let group_min_session_timeout_ms = flags
            .group_min_session_timeout_ms
            .or(file.group_min_session_timeout_ms)
            .unwrap_or(6_000);
        let group_max_session_timeout_ms = flags
            .group_max_session_timeout_ms
            .or(file.group_max_session_timeout_ms)
            .unwrap_or(1_800_000);
        if group_min_session_timeout_ms < 1
            || group_max_session_timeout_ms < group_min_session_timeout_ms
        {
            return Err(ConfigError::Invalid {
                field: "group_min_session_timeout_ms",
                reason: format!("need 1 <= min ({group_min_session_timeout_ms}) <= max ({group_max_session_timeout_ms})"),
            });
        }
        let offsets_topic_num_partitions = flags
            .offsets_topic_num_partitions
            .or(file.offsets_topic_num_partitions)
            .unwrap_or(50);
        if !(1..=10_000).contains(&offsets_topic_num_partitions) {
            return Err(ConfigError::Invalid {
                field: "offsets_topic_num_partitions",
                reason: format!("{offsets_topic_num_partitions} is not in 1..=10000"),
            });
        }
        let mut topic_defaults = file.topic_defaults.clone();
        for pair in &flags.topic_defaults {
            let (name, value) = pair.split_once('=').ok_or_else(|| ConfigError::Invalid {
                field: "topic_default",
                reason: format!("{pair:?} is not name=value"),
            })?;
            topic_defaults.insert(name.to_owned(), value.to_owned());
        }
        for (name, value) in &topic_defaults {
            crate::metadata::topic_config::validate(name, value).map_err(|reason| {
                ConfigError::Invalid {
                    field: "topic_defaults",
                    reason,
                }
            })?;
        }
        Ok(Config {
            topic_defaults,
            log_flush_concurrency: flags.log_flush_concurrency.or(file.log_flush_concurrency),
            shutdown_timeout_ms: flags
                .shutdown_timeout_ms
                .or(file.shutdown_timeout_ms)
                .unwrap_or(SHUTDOWN_TIMEOUT_MS_DEFAULT),
            metrics_listen: flags
                .metrics_listen
                .or(file.metrics_listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9644))),
            log_cleaner_backoff_ms: flags
                .log_cleaner_backoff_ms
                .or(file.log_cleaner_backoff_ms)
                .unwrap_or(15_000),
            log_retention_check_interval_ms: flags
                .log_retention_check_interval_ms
                .or(file.log_retention_check_interval_ms)
                .unwrap_or(300_000),
            group_initial_rebalance_delay_ms: flags
                .group_initial_rebalance_delay_ms
                .or(file.group_initial_rebalance_delay_ms)
                .unwrap_or(3_000),
            group_min_session_timeout_ms,
            group_max_session_timeout_ms,
            offsets_topic_num_partitions,
            offsets_retention_minutes: flags
                .offsets_retention_minutes
                .or(file.offsets_retention_minutes)
                .unwrap_or(7 * 24 * 60),
            listen,
            advertised_host,
            advertised_port,
            data_dir: flags
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            smp,
            cpuset,
            node_id: flags.node_id.or(file.node_id).unwrap_or(0),
            auto_create_topics_enable: flags
                .auto_create_topics_enable
                .or(file.auto_create_topics_enable)
                .unwrap_or(true),
            num_partitions,
            socket_request_max_bytes,
            queued_max_request_bytes,
        })
    }
}

/// The per-shard request budget: at least a small-request reserve's worth; no unbounded
/// setting (Kafka's -1), since the bound is the point.
fn queued_max_request_bytes(value: Option<u64>) -> Result<usize, ConfigError> {
    use crate::server::budget::{QUEUED_MAX_REQUEST_BYTES_DEFAULT, QUEUED_MAX_REQUEST_BYTES_MIN};
    let bytes = value.unwrap_or(QUEUED_MAX_REQUEST_BYTES_DEFAULT);
    if bytes < QUEUED_MAX_REQUEST_BYTES_MIN {
        return Err(ConfigError::Invalid {
            field: "queued_max_request_bytes",
            reason: format!("{bytes} is below {QUEUED_MAX_REQUEST_BYTES_MIN}"),
        });
    }
    usize::try_from(bytes).map_err(|_| ConfigError::Invalid {
        field: "queued_max_request_bytes",
        reason: format!("{bytes} does not fit this platform's address space"),
    })
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn parse_host_port(text: &str) -> Result<(String, i32), ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        field: "advertised_listener",
        reason: format!("{text:?}: {reason}"),
    };
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("port is not a number in 0..=65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid("empty host"));
    }
    Ok((host.to_owned(), i32::from(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_loopback_9092() {
        let config = Config::from_flags(Flags::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(
            (config.advertised_host.as_str(), config.advertised_port),
            ("127.0.0.1", 9092)
        );
        assert!(config.auto_create_topics_enable);
        assert_eq!(
            config.socket_request_max_bytes,
            SOCKET_REQUEST_MAX_BYTES_DEFAULT
        );
        assert_eq!(config.queued_max_request_bytes, 256 << 20);
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:19092\"\nsmp = 1\nnum_partitions = 3\n",
        )
        .unwrap();
        let flags = Flags {
            config: Some(path),
            smp: Some(2),
            ..Flags::default()
        };
        let config = Config::from_flags(flags).unwrap();
        assert_eq!(config.listen.port(), 19092);
        assert_eq!(config.smp, 2);
        assert_eq!(config.num_partitions, 3);
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let flags = Flags {
            config: Some(path),
            ..Flags::default()
        };
        assert!(matches!(
            Config::from_flags(flags),
            Err(ConfigError::Parse { .. })
        ));
        let flags = Flags {
            smp: Some(0),
            ..Flags::default()
        };
        assert!(matches!(
            Config::from_flags(flags),
            Err(ConfigError::Invalid { field: "smp", .. })
        ));
        let flags = Flags {
            queued_max_request_bytes: Some(1000),
            ..Flags::default()
        };
        assert!(matches!(
            Config::from_flags(flags),
            Err(ConfigError::Invalid {
                field: "queued_max_request_bytes",
                ..
            })
        ));
        let flags = Flags {
            advertised_listener: Some("nohost".into()),
            ..Flags::default()
        };
        assert!(Config::from_flags(flags).is_err());
    }
}
