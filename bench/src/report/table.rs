//! The human-readable summary printed at the end of a run.

use std::fmt::Write;

use super::RunResult;
use crate::stats::latency::LatencySummary;
use crate::stats::series::WindowSummary;

pub fn render(result: &RunResult) -> String {
    let mut out = String::new();
    let w = &result.workload;
    let rate = match w.rate_msgs_per_s {
        0 => "max".to_string(),
        r => format!("{} msg/s", thousands(r as f64)),
    };
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        "weir-bench → {} ({} client, {} cores), topic {}",
        result.target, result.client, result.cores, result.topic
    );
    let _ = writeln!(
        out,
        "workload: {} partitions, {} producers, {} consumers, {} B messages, keys {}, acks={}, compression {}, batch {} B, linger {} ms, rate {}, {} s warm-up + {} s measured",
        w.partitions, w.producers, w.consumers, w.message_size, w.keys, w.acks, w.compression, w.batch_bytes, w.linger_ms, rate, w.warmup_s, w.duration_s
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<14}{:>14}{:>10}", "throughput", "msg/s", "MB/s");
    for (name, t) in [("produce", &result.produce), ("consume", &result.consume)] {
        let _ = writeln!(
            out,
            "{:<14}{:>14}{:>10.1}",
            name,
            thousands(t.msgs_per_s),
            t.mb_per_s
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<14}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>12}",
        "latency (ms)", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean", "samples"
    );
    latency_row(&mut out, "produce-ack", &result.produce_latency);
    latency_row(&mut out, "end-to-end", &result.end_to_end_latency);
    let _ = writeln!(out);
    let d = &result.delivery;
    let verdict = if !d.checked {
        "not checked (no consumers)".to_string()
    } else if d.exactly_once {
        "every acknowledged message consumed exactly once".to_string()
    } else {
        "DELIVERY CHECK FAILED".to_string()
    };
    let _ = writeln!(
        out,
        "delivery: {} acked, {} consumed, {} lost, {} duplicates, {} out of order, {} consumed unacked: {}",
        thousands(d.acked as f64),
        thousands(d.consumed_unique as f64),
        d.lost,
        d.duplicates,
        d.out_of_order,
        d.consumed_unacked,
        verdict
    );
    if result.errors.produce_failed_msgs > 0 || result.errors.fetch_errors > 0 {
        let _ = writeln!(
            out,
            "errors: {} messages failed to produce {:?}, {} fetch errors",
            result.errors.produce_failed_msgs,
            result.errors.produce_error_codes,
            result.errors.fetch_errors
        );
    }
    if result.errors.produce_retried_batches > 0 {
        let _ = writeln!(
            out,
            "retries: {} produce batches sent again after retriable errors {:?}",
            result.errors.produce_retried_batches, result.errors.produce_retry_codes
        );
    }
    if !result.windows.is_empty() {
        let _ = writeln!(out);
        windows_table(&mut out, &result.windows);
    }
    if !result.broker_stages.is_empty() {
        let _ = writeln!(out);
        out.push_str(&crate::broker_stages::render(&result.broker_stages));
    }
    if let Some(limits) = &result.host_limits {
        let _ = writeln!(out);
        out.push_str(&limits.render_against(result.produce.mb_per_s, result.consume.mb_per_s));
    }
    out
}

fn latency_row(out: &mut String, name: &str, l: &LatencySummary) {
    if l.count == 0 {
        let _ = writeln!(out, "{name:<14}{:>9}", "-");
        return;
    }
    let ms = |us: f64| us / 1000.0;
    let _ = writeln!(
        out,
        "{:<14}{:>9.3}{:>9.3}{:>9.3}{:>9.3}{:>9.3}{:>9.3}{:>9.3}{:>12}",
        name,
        ms(l.p50_us),
        ms(l.p90_us),
        ms(l.p99_us),
        ms(l.p999_us),
        ms(l.p9999_us),
        ms(l.max_us),
        ms(l.mean_us),
        thousands(l.count as f64)
    );
}

/// One line per window: when, how fast, and produce/end-to-end p50, p99, p99.9 and max.
fn windows_table(out: &mut String, windows: &[WindowSummary]) {
    let _ = writeln!(
        out,
        "{:<14}{:>12}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        "window (s)",
        "msg/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "e2e p50",
        "e2e p99",
        "e2e p99.9",
        "e2e max"
    );
    let ms = |us: f64| format!("{:.2}", us / 1000.0);
    for w in windows {
        let (p, e) = (&w.produce_latency, &w.end_to_end_latency);
        let _ = writeln!(
            out,
            "{:<14}{:>12}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
            format!("{}-{}", w.from_s, w.to_s),
            thousands(w.produce_msgs_per_s),
            ms(p.p50_us),
            ms(p.p99_us),
            ms(p.p999_us),
            ms(p.max_us),
            ms(e.p50_us),
            ms(e.p99_us),
            ms(e.p999_us),
            ms(e.max_us)
        );
    }
}

/// 1234567.8 → "1,234,568".
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_result;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_234_567.6), "1,234,568");
    }

    #[test]
    fn table_shows_throughput_latency_and_delivery() {
        let table = render(&sample_result());
        assert!(
            table.contains("produce              100,000      10.0"),
            "{table}"
        );
        assert!(
            table.contains("consume               99,900      10.0"),
            "{table}"
        );
        assert!(table.contains("produce-ack"));
        // p50 of 1..=10,000 µs is 5 ms.
        let row = table
            .lines()
            .find(|l| l.starts_with("produce-ack"))
            .expect("row");
        assert!(row.contains("5.003"), "{row}");
        assert!(table.contains("1,200,000 acked"));
        assert!(table.contains("exactly once"));
    }

    #[test]
    fn failed_delivery_is_loud() {
        let mut result = sample_result();
        result.delivery.lost = 3;
        result.delivery.exactly_once = false;
        assert!(render(&result).contains("DELIVERY CHECK FAILED"));
    }

    #[test]
    fn windows_get_a_row_each_only_when_asked_for() {
        let mut result = sample_result();
        assert!(!render(&result).contains("window (s)"));
        let latency = |max_us: f64| LatencySummary {
            count: 10,
            p50_us: 1_500.0,
            p99_us: 4_000.0,
            max_us,
            ..LatencySummary::default()
        };
        result.windows = vec![
            WindowSummary {
                from_s: 0,
                to_s: 300,
                produce_msgs_per_s: 50_000.0,
                consume_msgs_per_s: 50_000.0,
                produce_latency: latency(9_000.0),
                end_to_end_latency: latency(12_000.0),
            };
            2
        ];
        result.windows[1].from_s = 300;
        result.windows[1].to_s = 600;
        let table = render(&result);
        let rows: Vec<&str> = table
            .lines()
            .filter(|l| l.contains("-300") || l.contains("300-600"))
            .collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert!(
            rows[1].starts_with("300-600") && rows[1].contains("50,000"),
            "{}",
            rows[1]
        );
        assert!(
            rows[0].contains("1.50") && rows[0].contains("9.00") && rows[0].contains("12.00"),
            "{}",
            rows[0]
        );
    }
}
