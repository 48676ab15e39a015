//! `compare`: one workload against several targets, alternating A/B/A/B round by round so
//! slow drift of the host (page cache, thermal, noisy neighbours) falls on every target
//! alike, then a side-by-side table of medians with ratios against the first target.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;
use crate::report::RunResult;

/// The figures compared, each as (name, how to read it from a result, higher is better).
type Metric = (&'static str, fn(&RunResult) -> f64, bool);

const METRICS: [Metric; 12] = [
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
    ("produce max ms", |r| r.produce_latency.max_us / 1e3, false),
    ("e2e p50 ms", |r| r.end_to_end_latency.p50_us / 1e3, false),
    ("e2e p99 ms", |r| r.end_to_end_latency.p99_us / 1e3, false),
    (
        "e2e p99.9 ms",
        |r| r.end_to_end_latency.p999_us / 1e3,
        false,
    ),
    ("e2e max ms", |r| r.end_to_end_latency.max_us / 1e3, false),
];

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

    /// Medians per target and each target's ratio to the first.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{:<18}", format!("median of {}", self.rounds));
        for t in &self.targets {
            let _ = write!(out, "{:>14}", t.name);
        }
        // A ratio column is as wide as its header ("b/a") plus a gap, at least 12.
        let ratio_headers: Vec<String> = self
            .targets
            .iter()
            .skip(1)
            .map(|t| format!("{}/{}", t.name, self.targets[0].name))
            .collect();
        let ratio_widths: Vec<usize> = ratio_headers
            .iter()
            .map(|h| (h.len() + 2).max(12))
            .collect();
        for (header, width) in ratio_headers.iter().zip(&ratio_widths) {
            let _ = write!(out, "{header:>width$}");
        }
        out.push('\n');
        for (name, metric, higher_is_better) in METRICS {
            let _ = write!(out, "{name:<18}");
            let medians: Vec<f64> = (0..self.targets.len())
                .map(|i| self.median_of(i, metric))
                .collect();
            for m in &medians {
                let _ = write!(out, "{:>14}", format_value(*m));
            }
            for (m, width) in medians.iter().skip(1).zip(&ratio_widths) {
                let ratio = m / medians[0];
                let better = if !ratio.is_finite() || (ratio - 1.0).abs() < 0.005 {
                    ""
                } else if (ratio > 1.0) == higher_is_better {
                    " +"
                } else {
                    " -"
                };
                let _ = write!(out, "{:>width$}", format!("{ratio:.2}x{better}"));
            }
            out.push('\n');
        }
        let all_exact = self
            .targets
            .iter()
            .flat_map(|t| &t.runs)
            .all(|r| r.delivery.exactly_once || !r.delivery.checked);
        let _ = writeln!(
            out,
            "delivery: {}  (+ better, - worse for the target than for {})",
            if all_exact {
                "exactly once in every run"
            } else {
                "SOME RUNS FAILED THE DELIVERY CHECK"
            },
            self.targets[0].name
        );
        out
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
}
