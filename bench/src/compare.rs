//! `compare`: one workload against several targets, alternating A/B/A/B round by round so
//! slow drift of the host (page cache, thermal, noisy neighbours) falls on every target
//! alike, then a side-by-side table of medians with ratios against the first target.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;
use crate::report::RunResult;

/// The figures compared, each as (name, how to read it from a result, higher is better).
type Metric = (&'static str, fn(&RunResult) -> f64, bool);

const METRICS: [Metric; 16] = [
    ("produce msg/s", |r| r.produce.msgs_per_s, true),
    ("produce MB/s", |r| r.produce.mb_per_s, true),
    ("consume msg/s", |r| r.consume.msgs_per_s, true),
    ("consume MB/s", |r| r.consume.mb_per_s, true),
    ("produce p50 ms", |r| r.produce_latency.p50_us / 1e3, false),
    ("produce p99 ms", |r| r.produce_latency.p99_us / 1e3, false),
    (
        "produce p99.9 ms",
        |r| r.produce_latency.p999_us / 1e3,
        false,
    ),
    (
        "produce p99.99 ms",
        |r| r.produce_latency.p9999_us / 1e3,
        false,
    ),
    ("produce max ms", |r| r.produce_latency.max_us / 1e3, false),
    ("e2e p50 ms", |r| r.end_to_end_latency.p50_us / 1e3, false),
    ("e2e p99 ms", |r| r.end_to_end_latency.p99_us / 1e3, false),
    (
        "e2e p99.9 ms",
        |r| r.end_to_end_latency.p999_us / 1e3,
        false,
    ),
    (
        "e2e p99.99 ms",
        |r| r.end_to_end_latency.p9999_us / 1e3,
        false,
    ),
    ("e2e max ms", |r| r.end_to_end_latency.max_us / 1e3, false),
    // Without `--broker-pid` these are NaN and print as "-".
    (
        "broker CPU s/GB",
        |r| r.broker_usage.as_ref().map_or(f64::NAN, |u| u.cpu_s_per_gb),
        false,
    ),
    (
        "broker RSS MiB",
        |r| {
            r.broker_usage
                .as_ref()
                .map_or(f64::NAN, |u| u.rss_bytes as f64 / f64::from(1 << 20))
        },
        false,
    ),
];

/// One row of a comparison: the metric, each target's median, and each later target's
/// ratio to the first with its verdict ("+" better, "-" worse, "" even or unknown).
struct Row {
    name: &'static str,
    medians: Vec<f64>,
    ratios: Vec<(f64, &'static str)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetRuns {
    pub name: String,
    pub address: String,
    pub runs: Vec<RunResult>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    pub rounds: u32,
    pub targets: Vec<TargetRuns>,
}

/// Runs `run_one(address)` for every target, `rounds` times, in A/B/A/B order.
pub fn compare(
    targets: &[(String, String)],
    rounds: u32,
    mut run_one: impl FnMut(&str, &str, u32) -> Result<RunResult, BenchError>,
) -> Result<Comparison, BenchError> {
    let mut out: Vec<TargetRuns> = targets
        .iter()
        .map(|(name, address)| TargetRuns {
            name: name.clone(),
            address: address.clone(),
            runs: Vec::new(),
        })
        .collect();
    for round in 0..rounds {
        for target in out.iter_mut() {
            let result = run_one(&target.name, &target.address, round)?;
            target.runs.push(result);
        }
    }
    Ok(Comparison {
        rounds,
        targets: out,
    })
}

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

impl Comparison {
    pub fn median_of(&self, target: usize, metric: fn(&RunResult) -> f64) -> f64 {
        let mut values: Vec<f64> = self.targets[target].runs.iter().map(metric).collect();
        median(&mut values)
    }

    fn rows(&self) -> Vec<Row> {
        METRICS
            .iter()
            .map(|&(name, metric, higher_is_better)| {
                let medians: Vec<f64> = (0..self.targets.len())
                    .map(|i| self.median_of(i, metric))
                    .collect();
                let ratios = medians
                    .iter()
                    .skip(1)
                    .map(|m| {
                        let ratio = m / medians[0];
                        let verdict = if !ratio.is_finite() || (ratio - 1.0).abs() < 0.005 {
                            ""
                        } else if (ratio > 1.0) == higher_is_better {
                            " +"
                        } else {
                            " -"
                        };
                        (ratio, verdict)
                    })
                    .collect();
                Row {
                    name,
                    medians,
                    ratios,
                }
            })
            .collect()
    }

    fn ratio_headers(&self) -> Vec<String> {
        self.targets
            .iter()
            .skip(1)
            .map(|t| format!("{}/{}", t.name, self.targets[0].name))
            .collect()
    }

    /// Every run of every target delivered each acknowledged message exactly once (or had
    /// no consumers to check).
    pub fn all_exact(&self) -> bool {
        self.targets
            .iter()
            .flat_map(|t| &t.runs)
            .all(|r| r.delivery.exactly_once || !r.delivery.checked)
    }

    fn delivery_line(&self) -> String {
        format!(
            "delivery: {}  (+ better, - worse for the target than for {})",
            if self.all_exact() {
                "exactly once in every run"
            } else {
                "SOME RUNS FAILED THE DELIVERY CHECK"
            },
            self.targets[0].name
        )
    }

    /// Medians per target and each target's ratio to the first.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{:<18}", format!("median of {}", self.rounds));
        for t in &self.targets {
            let _ = write!(out, "{:>14}", t.name);
        }
        // A ratio column is as wide as its header ("b/a") plus a gap, at least 12.
        let ratio_headers = self.ratio_headers();
        let ratio_widths: Vec<usize> = ratio_headers
            .iter()
            .map(|h| (h.len() + 2).max(12))
            .collect();
        for (header, width) in ratio_headers.iter().zip(&ratio_widths) {
            let _ = write!(out, "{header:>width$}");
        }
        out.push('\n');
        for row in self.rows() {
            let _ = write!(out, "{:<18}", row.name);
            for m in &row.medians {
                let _ = write!(out, "{:>14}", format_value(*m));
            }
            for ((ratio, verdict), width) in row.ratios.iter().zip(&ratio_widths) {
                let _ = write!(out, "{:>width$}", format!("{ratio:.2}x{verdict}"));
            }
            out.push('\n');
        }
        let _ = writeln!(out, "{}", self.delivery_line());
        out
    }

    /// The same table in Markdown, for a report or the README.
    pub fn render_markdown(&self) -> String {
        let mut out = format!("| median of {} |", self.rounds);
        for t in &self.targets {
            let _ = write!(out, " {} |", t.name);
        }
        for header in self.ratio_headers() {
            let _ = write!(out, " {header} |");
        }
        out.push_str("\n|---|");
        for _ in 0..(2 * self.targets.len() - 1) {
            out.push_str("---:|");
        }
        out.push('\n');
        for row in self.rows() {
            let _ = write!(out, "| {} |", row.name);
            for m in &row.medians {
                let _ = write!(out, " {} |", format_value(*m));
            }
            for (ratio, verdict) in &row.ratios {
                let ratio = if ratio.is_finite() {
                    format!("{ratio:.2}x{verdict}")
                } else {
                    "-".to_string()
                };
                let _ = write!(out, " {ratio} |");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "\n{}", self.delivery_line());
        out
    }
}

/// A comparison at max rate and then at fixed shares of it (`--levels`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sweep {
    pub phases: Vec<Phase>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Phase {
    /// "max", or the share of the lowest max in percent.
    pub level_percent: Option<u32>,
    /// The fixed rate of this phase's runs; 0 at max rate.
    pub rate_msgs_per_s: u64,
    pub comparison: Comparison,
}

impl Phase {
    pub fn title(&self) -> String {
        match self.level_percent {
            None => "max rate".to_string(),
            Some(p) => format!(
                "{p}% of the lowest max: {} msg/s",
                crate::report::table::thousands(self.rate_msgs_per_s as f64)
            ),
        }
    }
}

/// Max rate first, every target in turn; then each level's share of the lowest target's
/// median max produce rate, so that every target is measured at loads all of them can
/// carry. `run_one(name, address, round, rate)` runs one round at `rate` (0 = max).
pub fn sweep(
    targets: &[(String, String)],
    rounds: u32,
    levels: &[u32],
    mut run_one: impl FnMut(&str, &str, u32, u64) -> Result<RunResult, BenchError>,
) -> Result<Sweep, BenchError> {
    let max = compare(targets, rounds, |name, address, round| {
        run_one(name, address, round, 0)
    })?;
    let lowest_max = (0..targets.len())
        .map(|i| max.median_of(i, |r| r.produce.msgs_per_s))
        .fold(f64::INFINITY, f64::min);
    let mut phases = vec![Phase {
        level_percent: None,
        rate_msgs_per_s: 0,
        comparison: max,
    }];
    for &level in levels {
        // At least 1 msg/s: a rate of 0 would mean max.
        let rate = ((lowest_max * f64::from(level) / 100.0).round() as u64).max(1);
        let comparison = compare(targets, rounds, |name, address, round| {
            run_one(name, address, round, rate)
        })?;
        phases.push(Phase {
            level_percent: Some(level),
            rate_msgs_per_s: rate,
            comparison,
        });
    }
    Ok(Sweep { phases })
}

impl Sweep {
    pub fn render_markdown(&self) -> String {
        let mut out = String::new();
        for phase in &self.phases {
            let _ = writeln!(out, "### {}\n", phase.title());
            out.push_str(&phase.comparison.render_markdown());
            out.push('\n');
        }
        out
    }

    pub fn all_exact(&self) -> bool {
        self.phases.iter().all(|p| p.comparison.all_exact())
    }
}

fn format_value(v: f64) -> String {
    if !v.is_finite() {
        "-".to_string()
    } else if v >= 1000.0 {
        crate::report::table::thousands(v)
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_result;

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn alternates_and_ratios_against_the_first_target() {
        let targets = vec![
            ("a".to_string(), "x:1".to_string()),
            ("b".to_string(), "y:2".to_string()),
        ];
        let mut order = Vec::new();
        let comparison = compare(&targets, 3, |name, _, round| {
            order.push(name.to_string());
            let mut r = sample_result();
            let base = if name == "a" { 100_000.0 } else { 200_000.0 };
            r.produce.msgs_per_s = base + f64::from(round);
            Ok(r)
        })
        .expect("runs");
        assert_eq!(order, ["a", "b", "a", "b", "a", "b"]);
        assert_eq!(comparison.median_of(1, |r| r.produce.msgs_per_s), 200_001.0);
        let table = comparison.render();
        let row = table
            .lines()
            .find(|l| l.starts_with("produce msg/s"))
            .expect("row");
        assert!(row.contains("2.00x +"), "{row}");
        assert!(table.contains("exactly once in every run"));
    }

    #[test]
    fn long_target_names_keep_their_columns_apart() {
        let targets = vec![
            ("nolimit".to_string(), "x:1".to_string()),
            ("gate8".to_string(), "y:2".to_string()),
        ];
        let comparison = compare(&targets, 1, |_, _, _| Ok(sample_result())).expect("runs");
        let table = comparison.render();
        let header = table.lines().next().expect("a header");
        assert!(header.ends_with("gate8  gate8/nolimit"), "{header:?}");
        assert!(header.contains(" gate8 "), "{header:?}");
    }

    #[test]
    fn a_sweep_runs_max_first_then_shares_of_the_lowest_max() {
        let targets = vec![
            ("a".to_string(), "x:1".to_string()),
            ("b".to_string(), "y:2".to_string()),
        ];
        let mut calls = Vec::new();
        let sweep = sweep(&targets, 2, &[25, 50], |name, _, _, rate| {
            calls.push((name.to_string(), rate));
            let mut r = sample_result();
            r.produce.msgs_per_s = match (name, rate) {
                ("a", 0) => 100_000.0,
                ("b", 0) => 80_000.0,
                (_, rate) => rate as f64,
            };
            Ok(r)
        })
        .expect("runs");
        let rates: Vec<u64> = sweep.phases.iter().map(|p| p.rate_msgs_per_s).collect();
        assert_eq!(
            rates,
            [0, 20_000, 40_000],
            "shares of b's 80,000, the lower max"
        );
        assert_eq!(calls.len(), 3 * 2 * 2, "phases x rounds x targets");
        assert_eq!(
            &calls[..4],
            &[
                ("a".into(), 0),
                ("b".into(), 0),
                ("a".into(), 0),
                ("b".into(), 0)
            ]
        );
        assert!(sweep.all_exact());
        let md = sweep.render_markdown();
        assert!(
            md.contains("### max rate") && md.contains("### 50% of the lowest max: 40,000 msg/s"),
            "{md}"
        );
        let row = md
            .lines()
            .find(|l| l.starts_with("| produce msg/s |"))
            .expect("row");
        assert_eq!(row, "| produce msg/s | 100,000 | 80,000 | 0.80x - |");
        let rss = md
            .lines()
            .find(|l| l.starts_with("| broker RSS MiB |"))
            .expect("row");
        assert_eq!(rss, "| broker RSS MiB | - | - | - |", "no --broker-pid");
    }
}
