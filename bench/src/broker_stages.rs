//! The broker's own view of a run: Weir's produce-stage histograms
//! (`weir_produce_stage_seconds{stage=...}` on its Prometheus endpoint), scraped before and
//! after the run, so the client's percentiles can be read beside where the broker spent the
//! time (validate, hop, append, and the log's queued/gate/write/fdatasync). Against a broker
//! without the metric (stock Kafka) the breakdown is simply empty.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::BenchError;

/// The histogram scraped.
pub const STAGE_METRIC: &str = "weir_produce_stage_seconds";

/// One stage's numbers over a run (the difference of two scrapes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub stage: String,
    pub count: u64,
    pub mean_ms: f64,
    /// Estimated from the buckets as Prometheus' `histogram_quantile` does (linear within
    /// the bucket), so only as fine as the bucket bounds.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A scrape of one histogram family: stage → (cumulative bucket counts by bound, sum).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageScrape {
    stages: BTreeMap<String, (Vec<(f64, u64)>, f64)>,
}

/// GETs `/metrics` from `address` (host:port) with plain HTTP/1.0.
pub fn scrape(address: &str) -> Result<StageScrape, BenchError> {
    let fail = |e: std::io::Error| BenchError::Config(format!("scraping {address}/metrics: {e}"));
    let mut stream = TcpStream::connect(address).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").map_err(fail)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(fail)?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok(parse(body))
}

/// Reads the stage histogram's `_bucket` and `_sum` samples out of Prometheus text.
pub fn parse(text: &str) -> StageScrape {
    let mut scrape = StageScrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(rest) = series.strip_prefix(STAGE_METRIC) else {
            continue;
        };
        let (kind, labels) = match rest.split_once('{') {
            Some((kind, labels)) => (kind, labels.trim_end_matches('}')),
            None => continue,
        };
        let Some(stage) = label(labels, "stage") else {
            continue;
        };
        let entry = scrape.stages.entry(stage.to_string()).or_default();
        match kind {
            "_bucket" => {
                let bound = match label(labels, "le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => match le.parse() {
                        Ok(bound) => bound,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                if let Ok(count) = value.parse::<f64>() {
                    entry.0.push((bound, count as u64));
                }
            }
            "_sum" => entry.1 = value.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    for (buckets, _) in scrape.stages.values_mut() {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    scrape
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

/// What happened between two scrapes, per stage that saw observations, in pipeline order.
pub fn between(before: &StageScrape, after: &StageScrape) -> Vec<StageSummary> {
    let mut summaries: Vec<StageSummary> = after
        .stages
        .iter()
        .filter_map(|(stage, (buckets, sum))| {
            let (earlier, earlier_sum) = before.stages.get(stage).cloned().unwrap_or_default();
            let delta: Vec<(f64, u64)> = buckets
                .iter()
                .map(|&(bound, count)| {
                    let was = earlier
                        .iter()
                        .find(|(b, _)| *b == bound)
                        .map_or(0, |(_, c)| *c);
                    (bound, count.saturating_sub(was))
                })
                .collect();
            let count = delta.last().map_or(0, |(_, c)| *c);
            (count > 0).then(|| StageSummary {
                stage: stage.clone(),
                count,
                mean_ms: (sum - earlier_sum) / count as f64 * 1e3,
                p50_ms: quantile(&delta, 0.5) * 1e3,
                p99_ms: quantile(&delta, 0.99) * 1e3,
            })
        })
        .collect();
    summaries.sort_by_key(|s| stage_order(&s.stage));
    summaries
}

fn stage_order(stage: &str) -> usize {
    const ORDER: [&str; 7] = [
        "validate",
        "hop",
        "append",
        "log_queued",
        "log_gate",
        "log_write",
        "log_fdatasync",
    ];
    ORDER
        .iter()
        .position(|s| *s == stage)
        .unwrap_or(ORDER.len())
}

/// `histogram_quantile` over cumulative buckets: linear within the bucket that holds the
/// rank; the highest finite bound when the rank falls in +Inf.
fn quantile(buckets: &[(f64, u64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return 0.0;
    };
    let rank = q * total as f64;
    let mut lower = (0.0, 0);
    for &(bound, count) in buckets {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return lower.0;
            }
            let in_bucket = (count - lower.1) as f64;
            let fraction = if in_bucket > 0.0 {
                (rank - lower.1 as f64) / in_bucket
            } else {
                1.0
            };
            return lower.0 + (bound - lower.0) * fraction;
        }
        lower = (bound, count);
    }
    lower.0
}

/// The breakdown as a table, under the run's own percentiles.
pub fn render(stages: &[StageSummary]) -> String {
    let mut out = String::from("broker produce stages (from its /metrics; bucket estimates)\n");
    out.push_str(&format!(
        "{:<16}{:>12}{:>11}{:>11}{:>11}\n",
        "stage", "count", "mean ms", "p50 ms", "p99 ms"
    ));
    for s in stages {
        out.push_str(&format!(
            "{:<16}{:>12}{:>11.3}{:>11.3}{:>11.3}\n",
            s.stage, s.count, s.mean_ms, s.p50_ms, s.p99_ms
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(append: [u64; 3], sum: f64) -> String {
        format!(
            "# HELP weir_produce_stage_seconds x\n\
             weir_produce_stage_seconds_bucket{{stage=\"append\",le=\"0.001\"}} {}\n\
             weir_produce_stage_seconds_bucket{{stage=\"append\",le=\"0.01\"}} {}\n\
             weir_produce_stage_seconds_bucket{{stage=\"append\",le=\"+Inf\"}} {}\n\
             weir_produce_stage_seconds_sum{{stage=\"append\"}} {sum}\n\
             weir_produce_stage_seconds_count{{stage=\"append\"}} {}\n\
             weir_produce_stage_seconds_bucket{{stage=\"hop\",le=\"+Inf\"}} 5\n\
             weir_requests_total{{api=\"Produce\"}} 9\n",
            append[0], append[1], append[2], append[2]
        )
    }

    #[test]
    fn the_difference_of_two_scrapes_gives_each_stage_of_the_run() {
        let before = parse(&text([10, 10, 10], 0.005));
        let after = parse(&text([10, 110, 110], 0.505));
        let stages = between(&before, &after);
        assert_eq!(
            stages.len(),
            1,
            "hop saw nothing during the run: {stages:?}"
        );
        let append = &stages[0];
        assert_eq!((append.stage.as_str(), append.count), ("append", 100));
        assert!((append.mean_ms - 5.0).abs() < 1e-9);
        // All 100 fell in (1 ms, 10 ms]: the median interpolates to the middle.
        assert!((append.p50_ms - 5.5).abs() < 1e-9, "{append:?}");
        assert!((append.p99_ms - 9.91).abs() < 1e-9, "{append:?}");
    }

    #[test]
    fn a_broker_without_the_metric_gives_no_stages() {
        let kafka = parse("kafka_server_x 1\n");
        assert!(between(&kafka, &kafka).is_empty());
        assert!(render(&[]).starts_with("broker produce stages"));
    }
}
