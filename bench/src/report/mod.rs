//! The result of a run, as written to `result.json`, printed as a table and drawn as SVG.

pub mod plot;
pub mod table;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::BenchError;
use crate::host_limits::HostLimits;
use crate::stats::delivery::DeliveryReport;
use crate::stats::latency::{LatencySummary, PercentilePoint};
use crate::stats::series::{SecondSample, WindowSummary};
use crate::workload::Workload;

/// Bumped when a field is removed or changes meaning.
pub const RESULT_FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub format_version: u32,
    pub tool: String,
    pub started_at_unix_ms: i64,
    pub target: String,
    pub client: String,
    pub cores: usize,
    pub topic: String,
    pub workload: Workload,
    /// Measured over the `duration_s` after warm-up, by acknowledgement time.
    pub produce: Throughput,
    /// Measured over the same window, by receipt time.
    pub consume: Throughput,
    pub produce_latency: LatencySummary,
    pub end_to_end_latency: LatencySummary,
    pub produce_latency_percentiles: Vec<PercentilePoint>,
    pub end_to_end_latency_percentiles: Vec<PercentilePoint>,
    pub series: Vec<SecondSample>,
    /// The measured part in windows of `--window-s` seconds (empty without it).
    #[serde(default)]
    pub windows: Vec<WindowSummary>,
    pub delivery: DeliveryReport,
    pub errors: Errors,
    pub host_limits: Option<HostLimits>,
    /// The broker's produce stages over the run (`--broker-metrics`; empty without it).
    #[serde(default)]
    pub broker_stages: Vec<crate::broker_stages::StageSummary>,
    /// The broker process's CPU and memory over the run (`--broker-pid`; none without it).
    #[serde(default)]
    pub broker_usage: Option<crate::broker_usage::BrokerUsage>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Messages in the measurement window.
    pub messages: u64,
    /// Value bytes in the measurement window.
    pub bytes: u64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    /// Messages over the whole run (warm-up and drain included).
    pub messages_total: u64,
    pub bytes_total: u64,
}

impl Throughput {
    pub fn new(
        messages: u64,
        bytes: u64,
        window_s: f64,
        messages_total: u64,
        bytes_total: u64,
    ) -> Throughput {
        Throughput {
            messages,
            bytes,
            msgs_per_s: messages as f64 / window_s,
            mb_per_s: bytes as f64 / window_s / 1e6,
            messages_total,
            bytes_total,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    pub produce_failed_msgs: u64,
    /// Kafka error code → messages that failed with it (-1: no answer).
    pub produce_error_codes: std::collections::BTreeMap<i16, u64>,
    pub fetch_errors: u64,
    /// Produce batches sent again after a retriable error (the native client), and those
    /// errors' codes. Absent in results written before retries existed.
    #[serde(default)]
    pub produce_retried_batches: u64,
    #[serde(default)]
    pub produce_retry_codes: std::collections::BTreeMap<i16, u64>,
}

impl RunResult {
    pub fn to_json(&self) -> Result<String, BenchError> {
        serde_json::to_string_pretty(self)
            .map_err(|e| BenchError::Config(format!("result JSON: {e}")))
    }

    pub fn from_json(text: &str) -> Result<RunResult, BenchError> {
        serde_json::from_str(text).map_err(|e| BenchError::Config(format!("result JSON: {e}")))
    }

    /// Writes result.json and the plots into `dir`; returns the files written.
    pub fn write_to(&self, dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
        std::fs::create_dir_all(dir)?;
        let json = dir.join("result.json");
        std::fs::write(&json, self.to_json()?)?;
        let latency_svg = dir.join("latency-percentiles.svg");
        plot::latency_percentiles(self, &latency_svg)?;
        let series_svg = dir.join("over-time.svg");
        plot::over_time(self, &series_svg)?;
        Ok(vec![json, latency_svg, series_svg])
    }
}

/// `./bench-results/<UTC timestamp>` style directory name, from the run's start.
pub fn default_out_dir(started_at_unix_ms: i64) -> PathBuf {
    let secs = started_at_unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    PathBuf::from("bench-results").join(format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    ))
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::stats::latency::LatencyRecorder;

    pub fn sample_result() -> RunResult {
        let mut latency = LatencyRecorder::new();
        for i in 1..=10_000u64 {
            latency.record_ns(i * 1_000);
        }
        RunResult {
            format_version: RESULT_FORMAT_VERSION,
            tool: "weir-bench 0.1.0".into(),
            started_at_unix_ms: 1_764_000_000_000,
            target: "127.0.0.1:9092".into(),
            client: "native".into(),
            cores: 2,
            topic: "t".into(),
            workload: Workload::default(),
            produce: Throughput::new(1_000_000, 100_000_000, 10.0, 1_200_000, 120_000_000),
            consume: Throughput::new(999_000, 99_900_000, 10.0, 1_200_000, 120_000_000),
            produce_latency: latency.summary(),
            end_to_end_latency: latency.summary(),
            produce_latency_percentiles: latency.percentile_points(),
            end_to_end_latency_percentiles: latency.percentile_points(),
            series: (0..12)
                .map(|s| SecondSample {
                    second: s,
                    acked_msgs: 100_000,
                    acked_bytes: 10_000_000,
                    consumed_msgs: 99_000,
                    consumed_bytes: 9_900_000,
                    produce_p50_us: Some(500.0),
                    produce_p99_us: Some(2_000.0 + s as f64),
                    end_to_end_p50_us: Some(800.0),
                    end_to_end_p99_us: None,
                })
                .collect(),
            delivery: DeliveryReport {
                acked: 1_200_000,
                consumed_unique: 1_200_000,
                checked: true,
                exactly_once: true,
                ..DeliveryReport::default()
            },
            errors: Errors::default(),
            host_limits: None,
            broker_stages: Vec::new(),
            windows: Vec::new(),
            broker_usage: None,
        }
    }

    #[test]
    fn json_round_trips() {
        let result = sample_result();
        let text = result.to_json().expect("serializes");
        assert_eq!(RunResult::from_json(&text).expect("parses"), result);
    }

    #[test]
    fn writes_json_and_two_svgs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = sample_result().write_to(dir.path()).expect("writes");
        assert_eq!(files.len(), 3);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable");
            assert!(!text.is_empty(), "{}", file.display());
        }
        let svg = std::fs::read_to_string(dir.path().join("latency-percentiles.svg")).expect("svg");
        assert!(
            svg.starts_with("<svg") && svg.contains("99.9%"),
            "percentile labels drawn"
        );
    }

    #[test]
    fn out_dir_is_a_utc_timestamp() {
        // 2025-11-24 16:00:00 UTC
        assert_eq!(
            default_out_dir(1_764_000_000_000),
            PathBuf::from("bench-results/20251124-160000")
        );
    }
}
