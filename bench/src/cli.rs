//! Command-line interface: `run`, `compare` and `presets`, with the workload flags shared by
//! `run` and `compare`. Precedence: preset, then `--workload` file, then flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::BenchError;
use crate::host_limits::HostLimitsOptions;
use crate::presets;
use crate::workload::{Compression, KeyStrategy, MessageSize, Workload};

#[derive(Parser, Debug)]
#[command(
    name = "weir-bench",
    version,
    about = "Throughput and latency benchmark for Kafka-compatible brokers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run one workload against one broker.
    Run(RunArgs),
    /// Run one workload against several brokers, alternating A/B/A/B, and compare medians.
    Compare(CompareArgs),
    /// List the named presets.
    Presets,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClientKind {
    /// The built-in thread-per-core client (glommio + kafka-protocol).
    Native,
    /// librdkafka through the `rdkafka` crate (build with `--features rdkafka`).
    Rdkafka,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Broker to bootstrap from (host:port).
    #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Measure the host's limits (loopback TCP, disk writes) after the run and report the
    /// result as a fraction of them.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub host_limits: bool,
    /// The broker's Prometheus endpoint (host:port, Weir's --metrics-listen): scraped before
    /// and after the run to print where the broker spent each produce's time.
    #[arg(long)]
    pub broker_metrics: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// NAME=host:port, two or more; the first is the baseline of the ratios.
    #[arg(long = "target", required = true, value_parser = parse_target)]
    pub targets: Vec<(String, String)>,
    /// Rounds; each runs every target once, in alternating order.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Measure host limits once, after the last round.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub host_limits: bool,
    /// NAME=host:port of a target's Prometheus endpoint (Weir's --metrics-listen), to print
    /// the broker's produce-stage breakdown of each of its runs.
    #[arg(long = "broker-metrics", value_parser = parse_target)]
    pub broker_metrics: Vec<(String, String)>,
    /// NAME=PID of a target's broker process on this host, to report the CPU seconds per GB
    /// produced and the resident memory of each of its runs.
    #[arg(long = "broker-pid", value_parser = parse_pid)]
    pub broker_pids: Vec<(String, u32)>,
    /// Percentages, like `25,50,75`: after the max-rate rounds (the workload's rate is
    /// ignored then), run the workload at each of these shares of the lowest target's median
    /// max produce rate, so every target is compared at loads all of them sustain.
    #[arg(long, value_delimiter = ',')]
    pub levels: Vec<u32>,
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Cores (pinned executors) for the native client; default: one per CPU of the cpuset.
    #[arg(long)]
    pub cores: Option<usize>,
    /// The CPUs weir-bench runs on, as a list like `2-3`: every thread of it, the client
    /// library's too. Give the broker the others (`weir --cpuset 0-1`) so that the two do not
    /// share cores by accident [default: the CPUs the process may use].
    #[arg(long)]
    pub cpuset: Option<String>,
    #[arg(long, value_enum, default_value_t = ClientKind::Native)]
    pub client: ClientKind,
    /// Directory for result.json and the plots (default ./bench-results/<timestamp>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// After producers finish, how long consumers may take to catch up, in seconds.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout_s: u64,
    /// No per-second progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Also report throughput and latency per window of this many seconds of the measured
    /// part (a long soak shows whether anything drifts); 0 for none.
    #[arg(long, default_value_t = 0)]
    pub window_s: u64,
    /// Directory whose disk the host-limit write test measures (the broker's data dir is a
    /// good choice).
    #[arg(long, default_value = ".")]
    pub host_limits_dir: PathBuf,
    /// Bytes written by each disk test.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub host_limits_bytes: u64,
}

#[derive(Args, Debug, Clone, Default)]
pub struct WorkloadArgs {
    /// A named workload (see `weir-bench presets`), e.g. omb-1p-100b-max.
    #[arg(long)]
    pub preset: Option<String>,
    /// A TOML workload file (keys as in the JSON result's "workload").
    #[arg(long)]
    pub workload: Option<PathBuf>,
    /// Topic to use (default: a fresh one per run).
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long)]
    pub partitions: Option<u32>,
    #[arg(long)]
    pub replication_factor: Option<i16>,
    #[arg(long)]
    pub producers: Option<u32>,
    #[arg(long)]
    pub consumers: Option<u32>,
    /// Value bytes: fixed (100, 1k) or uniform (100..1k); at least 24.
    #[arg(long)]
    pub message_size: Option<MessageSize>,
    /// none, round-robin:N or random:N.
    #[arg(long)]
    pub keys: Option<KeyStrategy>,
    /// 0, 1 or -1 (all).
    #[arg(long, allow_hyphen_values = true)]
    pub acks: Option<i16>,
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,
    #[arg(long)]
    pub batch_bytes: Option<u32>,
    #[arg(long)]
    pub linger_ms: Option<u64>,
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    #[arg(long)]
    pub buffer_bytes: Option<u64>,
    #[arg(long)]
    pub fetch_partition_max_bytes: Option<i32>,
    /// Messages per second, all producers together; 0 = max.
    #[arg(long)]
    pub rate: Option<u64>,
    #[arg(long)]
    pub warmup_s: Option<u64>,
    #[arg(long)]
    pub duration_s: Option<u64>,
    #[arg(long)]
    pub seed: Option<u64>,
}

impl WorkloadArgs {
    /// Preset, then file, then flags.
    pub fn resolve(&self) -> Result<Workload, BenchError> {
        let mut w = match &self.preset {
            Some(name) => presets::preset(name)?,
            None => Workload::default(),
        };
        if let Some(path) = &self.workload {
            let text = std::fs::read_to_string(path)
                .map_err(|e| BenchError::Config(format!("reading {}: {e}", path.display())))?;
            let file: toml::Table = toml::from_str(&text)
                .map_err(|e| BenchError::Config(format!("{}: {e}", path.display())))?;
            // Overlay the file's keys on the preset: serialize, merge tables, parse back.
            let mut base =
                toml::Table::try_from(&w).map_err(|e| BenchError::Config(e.to_string()))?;
            base.extend(file);
            w = Workload::from_toml(
                &toml::to_string(&base).map_err(|e| BenchError::Config(e.to_string()))?,
            )?;
        }
        macro_rules! flag {
            ($field:ident) => {
                if let Some(v) = self.$field.clone() {
                    w.$field = v;
                }
            };
        }
        if self.topic.is_some() {
            w.topic = self.topic.clone();
        }
        flag!(partitions);
        flag!(replication_factor);
        flag!(producers);
        flag!(consumers);
        flag!(message_size);
        flag!(keys);
        flag!(acks);
        flag!(compression);
        flag!(batch_bytes);
        flag!(linger_ms);
        flag!(max_in_flight);
        flag!(buffer_bytes);
        flag!(fetch_partition_max_bytes);
        flag!(warmup_s);
        flag!(duration_s);
        flag!(seed);
        if let Some(rate) = self.rate {
            w.rate_msgs_per_s = rate;
        }
        w.validate()?;
        Ok(w)
    }
}

impl CommonArgs {
    pub fn cores(&self) -> usize {
        self.cores
            .unwrap_or_else(|| weir_shard::cpuset::allowed_cpus().len().max(1))
    }

    /// Restricts the process to `--cpuset`, if given. Before any client thread starts.
    pub fn apply_cpuset(&self) -> Result<(), BenchError> {
        let Some(list) = &self.cpuset else {
            return Ok(());
        };
        let cpus = weir_shard::cpuset::parse_cpu_list(list)
            .map_err(|e| BenchError::Config(format!("--cpuset: {e}")))?;
        weir_shard::cpuset::restrict_process_to(&cpus)
            .map_err(|e| BenchError::Config(format!("--cpuset: {e}")))
    }

    pub fn host_limits_options(&self) -> HostLimitsOptions {
        HostLimitsOptions {
            loopback_duration: Duration::from_secs(1),
            disk_dir: self.host_limits_dir.clone(),
            disk_bytes: self.host_limits_bytes,
        }
    }
}

fn parse_target(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, addr)) if !name.is_empty() && !addr.is_empty() => {
            Ok((name.to_string(), addr.to_string()))
        }
        _ => Err(format!("expected NAME=host:port, got {s:?}")),
    }
}

fn parse_pid(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = parse_target(s).map_err(|_| format!("expected NAME=PID, got {s:?}"))?;
    let pid = pid
        .parse()
        .map_err(|_| format!("expected NAME=PID, got {s:?}"))?;
    Ok((name, pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_takes_levels_and_broker_pids() {
        let Command::Compare(c) = parse(&[
            "compare",
            "--target",
            "weir=127.0.0.1:1",
            "--target",
            "kafka=127.0.0.1:2",
            "--levels",
            "25,50,75",
            "--broker-pid",
            "kafka=4242",
        ])
        .command
        else {
            panic!("compare");
        };
        assert_eq!(c.levels, [25, 50, 75]);
        assert_eq!(c.broker_pids, [("kafka".to_string(), 4242)]);
        assert!(Cli::try_parse_from([
            "weir-bench",
            "compare",
            "--target",
            "a=b:1",
            "--broker-pid",
            "kafka=x"
        ])
        .is_err());
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("weir-bench").chain(args.iter().copied()))
            .expect("parses")
    }

    #[test]
    fn flags_override_the_preset() {
        let Command::Run(run) = parse(&[
            "run",
            "--preset",
            "omb-16p-1kb-max",
            "--duration-s",
            "10",
            "--acks",
            "-1",
        ])
        .command
        else {
            panic!("run");
        };
        let w = run.common.workload.resolve().expect("valid");
        assert_eq!(w.partitions, 16);
        assert_eq!(w.duration_s, 10);
        assert_eq!(w.acks, -1);
        assert!(run.host_limits, "host limits on by default for run");
    }

    #[test]
    fn workload_file_sits_between_preset_and_flags() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("w.toml");
        std::fs::write(
            &path,
            "partitions = 4\nkeys = \"random:100\"\nduration_s = 7\n",
        )
        .expect("write");
        let Command::Run(run) = parse(&[
            "run",
            "--preset",
            "omb-1p-100b-fixed",
            "--workload",
            path.to_str().expect("utf-8"),
            "--duration-s",
            "3",
        ])
        .command
        else {
            panic!("run");
        };
        let w = run.common.workload.resolve().expect("valid");
        assert_eq!(w.partitions, 4);
        assert_eq!(w.keys, KeyStrategy::Random(100));
        assert_eq!(w.duration_s, 3);
        assert_eq!(w.rate_msgs_per_s, 50_000);
    }

    #[test]
    fn compare_takes_named_targets() {
        let Command::Compare(c) = parse(&[
            "compare",
            "--target",
            "weir=127.0.0.1:1",
            "--target",
            "kafka=127.0.0.1:2",
            "--rounds",
            "2",
        ])
        .command
        else {
            panic!("compare");
        };
        assert_eq!(
            c.targets[1],
            ("kafka".to_string(), "127.0.0.1:2".to_string())
        );
        assert_eq!(c.rounds, 2);
        assert!(Cli::try_parse_from(["weir-bench", "compare", "--target", "nonsense"]).is_err());
    }
}
