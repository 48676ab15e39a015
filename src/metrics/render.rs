//! Prometheus text exposition format (version 0.0.4) from every shard's snapshot.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use kafka_protocol::messages::ApiKey;

use super::snapshot::ShardSnapshot;
use super::HistogramSnapshot;

/// Renders the merged metrics. Per-shard series carry a `shard` label; per-API, per-topic
/// and per-partition series are summed over shards.
pub fn render(shards: &[ShardSnapshot]) -> String {
    let mut text = String::with_capacity(16 * 1024);
    let header = |text: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };

    per_shard(&mut text, shards, "weir_reactor_busy_seconds_total", "counter", "Time each shard's executor spent running tasks and polling I/O; its rate is the reactor utilization.", |s| s.busy_seconds);
    per_shard(
        &mut text,
        shards,
        "weir_reactor_tasks_total",
        "counter",
        "Tasks run by each shard's executor.",
        |s| s.tasks_executed as f64,
    );

    // Requests, per API (summed over shards).
    let mut apis: BTreeMap<i16, (u64, u64, HistogramSnapshot)> = BTreeMap::new();
    for s in shards {
        for (key, requests, failures, latency) in &s.apis {
            let entry = apis.entry(*key).or_default();
            entry.0 += requests;
            entry.1 += failures;
            entry.2.merge(latency);
        }
    }
    header(
        &mut text,
        "weir_requests_total",
        "counter",
        "Requests received, per Kafka API.",
    );
    for (key, (requests, _, _)) in &apis {
        let _ = writeln!(
            text,
            "weir_requests_total{{api=\"{}\"}} {requests}",
            api_name(*key)
        );
    }
    header(
        &mut text,
        "weir_request_failures_total",
        "counter",
        "Requests that could not be answered (the connection was closed), per API.",
    );
    for (key, (_, failures, _)) in &apis {
        let _ = writeln!(
            text,
            "weir_request_failures_total{{api=\"{}\"}} {failures}",
            api_name(*key)
        );
    }
    let mut errors: BTreeMap<(i16, i16), u64> = BTreeMap::new();
    for s in shards {
        for &(api, code, n) in &s.errors {
            *errors.entry((api, code)).or_default() += n;
        }
    }
    header(
        &mut text,
        "weir_request_errors_total",
        "counter",
        "Error codes in responses, per API and error (Kafka's ErrorsPerSec).",
    );
    for ((api, code), n) in &errors {
        let _ = writeln!(
            text,
            "weir_request_errors_total{{api=\"{}\",error=\"{}\"}} {n}",
            api_name(*api),
            error_name(*code)
        );
    }
    header(&mut text, "weir_request_duration_seconds", "histogram", "Time from a request's arrival to its answer being ready, per API (long-poll fetches wait by design).");
    for (key, (_, _, latency)) in &apis {
        histogram(
            &mut text,
            "weir_request_duration_seconds",
            &format!("api=\"{}\"", api_name(*key)),
            latency,
        );
    }

    // Bytes per topic.
    for (name, help, pick) in [
        (
            "weir_topic_bytes_in_total",
            "Record batch bytes produced, per topic.",
            0,
        ),
        (
            "weir_topic_bytes_out_total",
            "Record batch bytes fetched, per topic.",
            1,
        ),
    ] {
        let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
        for s in shards {
            let counters = if pick == 0 { &s.bytes_in } else { &s.bytes_out };
            for (topic, bytes) in counters {
                *totals.entry(topic).or_default() += bytes;
            }
        }
        header(&mut text, name, "counter", help);
        for (topic, bytes) in totals {
            let _ = writeln!(text, "{name}{{topic=\"{}\"}} {bytes}", escape(topic));
        }
    }
    let mut batches = HistogramSnapshot::default();
    for s in shards {
        batches.merge(&s.produce_batch_bytes);
    }
    header(
        &mut text,
        "weir_produce_batch_bytes",
        "histogram",
        "Size of produced record batches.",
    );
    histogram(&mut text, "weir_produce_batch_bytes", "", &batches);
    let mut stages: Vec<(&str, HistogramSnapshot)> = Vec::new();
    for s in shards {
        for (stage, h) in &s.produce_stages {
            match stages.iter_mut().find(|(name, _)| name == stage) {
                Some((_, merged)) => merged.merge(h),
                None => stages.push((stage, h.clone())),
            }
        }
    }
    header(&mut text, "weir_produce_stage_seconds", "histogram", "Time in each stage of a produce, per partition payload: validate (connection shard), hop (to the owner shard), append (until durable), and within append the log's log_queued (group-commit wait), log_gate, log_write and log_fdatasync (per flush window).");
    for (stage, h) in &stages {
        histogram(
            &mut text,
            "weir_produce_stage_seconds",
            &format!("stage=\"{stage}\""),
            h,
        );
    }

    per_shard(
        &mut text,
        shards,
        "weir_connections_open",
        "gauge",
        "Client connections open, per shard.",
        |s| s.connections_open as f64,
    );
    per_shard(
        &mut text,
        shards,
        "weir_connections_accepted_total",
        "counter",
        "Client connections accepted, per shard.",
        |s| s.connections_accepted as f64,
    );
    per_shard(
        &mut text,
        shards,
        "weir_queued_request_bytes",
        "gauge",
        "Bytes of requests read and not yet answered (queued.max.request.bytes in use), per shard; one oversized request may take it past the maximum.",
        |s| s.queued_request_bytes as f64,
    );
    per_shard(
        &mut text,
        shards,
        "weir_queued_max_request_bytes",
        "gauge",
        "The request budget (queued.max.request.bytes), per shard.",
        |s| s.queued_max_request_bytes as f64,
    );
    per_shard(
        &mut text,
        shards,
        "weir_connections_waiting_for_request_budget",
        "gauge",
        "Connections not reading their sockets until request budget is free, per shard.",
        |s| s.connections_waiting_for_budget as f64,
    );
    per_shard(
        &mut text,
        shards,
        "weir_recovery_truncated_bytes",
        "gauge",
        "Bytes of torn or corrupt log tail that recovery cut away when the partitions this shard owns were opened (a crash or power cut; 0 after a clean stop), per shard.",
        |s| s.recovery_truncated_bytes as f64,
    );
    per_shard(
        &mut text,
        shards,
        "weir_group_load_skipped_records",
        "gauge",
        "__consumer_offsets records the group load at start could not decode and skipped, per shard.",
        |s| s.offsets_records_skipped as f64,
    );
    per_shard(
        &mut text,
        shards,
        "weir_log_erase_backlog_bytes",
        "gauge",
        "Bytes of segments deleted by retention whose blocks are not yet freed (freed a slice at a time so that online discard does not stall syncs), per shard.",
        |s| s.erase_backlog_bytes as f64,
    );
    per_shard(
        &mut text,
        shards,
        "weir_cross_shard_calls_total",
        "counter",
        "Calls a shard made to other shards.",
        |s| s.cross_shard_calls as f64,
    );
    per_shard(
        &mut text,
        shards,
        "weir_cross_shard_call_seconds_total",
        "counter",
        "Round-trip time of those calls, in total (divide by the count for the mean).",
        |s| s.cross_shard_seconds,
    );

    // Partitions.
    per_shard(
        &mut text,
        shards,
        "weir_partitions",
        "gauge",
        "Partitions owned, per shard.",
        |s| s.partitions.len() as f64,
    );
    per_shard(
        &mut text,
        shards,
        "weir_log_flushes_total",
        "counter",
        "Log flush windows written (each one fdatasync on a durable topic), per shard.",
        |s| (s.retired_log_io.flushes + s.partitions.iter().map(|p| p.flushes).sum::<u64>()) as f64,
    );
    per_shard(
        &mut text,
        shards,
        "weir_fsyncs_total",
        "counter",
        "fdatasyncs of log data, per shard.",
        |s| (s.retired_log_io.syncs + s.partitions.iter().map(|p| p.syncs).sum::<u64>()) as f64,
    );
    per_shard(
        &mut text,
        shards,
        "weir_fsync_seconds_total",
        "counter",
        "Time spent in those fdatasyncs (divide by the count for the mean latency).",
        |s| {
            s.retired_log_io.sync_seconds + s.partitions.iter().map(|p| p.sync_seconds).sum::<f64>()
        },
    );
    let offline = shards
        .iter()
        .flat_map(|s| &s.partitions)
        .filter(|p| p.failed)
        .count();
    header(
        &mut text,
        "weir_offline_partitions",
        "gauge",
        "Partitions whose log failed a write and takes no appends until restart.",
    );
    let _ = writeln!(text, "weir_offline_partitions {offline}");
    header(
        &mut text,
        "weir_under_replicated_partitions",
        "gauge",
        "Partitions with fewer in-sync replicas than replicas (none on a single node).",
    );
    let _ = writeln!(text, "weir_under_replicated_partitions 0");
    let mut partitions: Vec<_> = shards.iter().flat_map(|s| &s.partitions).collect();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    for (name, kind, help) in [
        (
            "weir_log_size_bytes",
            "gauge",
            "Bytes in a partition's log.",
        ),
        (
            "weir_log_segments",
            "gauge",
            "Segments in a partition's log.",
        ),
        (
            "weir_log_start_offset",
            "gauge",
            "First offset a partition serves.",
        ),
        (
            "weir_log_high_watermark",
            "gauge",
            "Offset after the last durable (readable) record of a partition.",
        ),
    ] {
        header(&mut text, name, kind, help);
        for p in &partitions {
            let value = match name {
                "weir_log_size_bytes" => p.size_bytes as i64,
                "weir_log_segments" => p.segments as i64,
                "weir_log_start_offset" => p.log_start_offset,
                _ => p.high_watermark,
            };
            let _ = writeln!(
                text,
                "{name}{{topic=\"{}\",partition=\"{}\"}} {value}",
                escape(&p.topic),
                p.partition
            );
        }
    }

    // Consumer lag: committed offset against the partition's high watermark.
    let watermarks: HashMap<(&str, i32), i64> = partitions
        .iter()
        .map(|p| ((p.topic.as_str(), p.partition), p.high_watermark))
        .collect();
    let mut committed: Vec<_> = shards.iter().flat_map(|s| &s.committed).collect();
    committed.sort();
    header(
        &mut text,
        "weir_consumer_group_committed_offset",
        "gauge",
        "Offset a consumer group committed, per partition.",
    );
    for (group, topic, partition, offset) in &committed {
        let _ = writeln!(text, "weir_consumer_group_committed_offset{{group=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {offset}", escape(group), escape(topic));
    }
    header(
        &mut text,
        "weir_consumer_group_lag",
        "gauge",
        "Messages between a group's committed offset and the partition's high watermark.",
    );
    for (group, topic, partition, offset) in &committed {
        if let Some(hw) = watermarks.get(&(topic.as_str(), *partition)) {
            let lag = (hw - offset).max(0);
            let _ = writeln!(text, "weir_consumer_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {lag}", escape(group), escape(topic));
        }
    }
    text
}

/// One series per shard: `name{shard="N"} value`, under its HELP and TYPE lines.
fn per_shard(
    text: &mut String,
    shards: &[ShardSnapshot],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&ShardSnapshot) -> f64,
) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for s in shards {
        let _ = writeln!(text, "{name}{{shard=\"{}\"}} {}", s.shard, value(s));
    }
}

fn histogram(text: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (bound, count) in h.bounds.iter().zip(&h.counts) {
        cumulative += count;
        let _ = writeln!(
            text,
            "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
        );
    }
    let total = h.count();
    let _ = writeln!(text, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(text, "{name}_sum{braces} {}", h.sum);
    let _ = writeln!(text, "{name}_count{braces} {total}");
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|_| key.to_string(), |k| format!("{k:?}"))
}

/// Label values may hold any character (group ids do): escape as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`), or the number.
fn error_name(code: i16) -> String {
    let Some(error) = kafka_protocol::error::ResponseError::try_from_code(code) else {
        return code.to_string();
    };
    let camel = format!("{error:?}");
    let mut name = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::PartitionSnapshot;
    use super::*;

    #[test]
    fn renders_merged_counters_lag_and_escaped_labels() {
        let partition = |shard_topic: &str, hw| PartitionSnapshot {
            topic: shard_topic.into(),
            partition: 0,
            size_bytes: 100,
            segments: 1,
            log_start_offset: 0,
            high_watermark: hw,
            failed: false,
            flushes: 3,
            syncs: 2,
            sync_seconds: 0.5,
        };
        let mut latency = HistogramSnapshot {
            bounds: vec![0.001, 1.0],
            counts: vec![2, 1, 0],
            sum: 0.5,
        };
        let a = ShardSnapshot {
            shard: 0,
            apis: vec![(0, 3, 1, latency.clone())],
            bytes_in: vec![("t".into(), 10)],
            partitions: vec![partition("t", 42)],
            committed: vec![("g\"1".into(), "t".into(), 0, 40)],
            errors: vec![(0, 3, 2), (0, 45, 1)],
            retired_log_io: crate::metrics::LogIo {
                flushes: 10,
                syncs: 20,
                sync_seconds: 1.0,
            },
            ..ShardSnapshot::default()
        };
        latency.counts = vec![1, 0, 0];
        let b = ShardSnapshot {
            shard: 1,
            apis: vec![(0, 1, 0, latency)],
            bytes_in: vec![("t".into(), 5)],
            errors: vec![(0, 3, 1)],
            ..ShardSnapshot::default()
        };
        let text = render(&[a, b]);
        assert!(
            text.contains(
                "weir_request_errors_total{api=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "weir_request_errors_total{api=\"Produce\",error=\"OUT_OF_ORDER_SEQUENCE_NUMBER\"} 1\n"
        ));
        assert!(
            text.contains("weir_requests_total{api=\"Produce\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("weir_request_failures_total{api=\"Produce\"} 1\n"));
        assert!(
            text.contains("weir_request_duration_seconds_bucket{api=\"Produce\",le=\"0.001\"} 3\n")
        );
        assert!(
            text.contains("weir_request_duration_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 4\n")
        );
        assert!(text.contains("weir_topic_bytes_in_total{topic=\"t\"} 15\n"));
        assert!(text
            .contains("weir_consumer_group_lag{group=\"g\\\"1\",topic=\"t\",partition=\"0\"} 2\n"));
        assert!(
            text.contains("weir_log_flushes_total{shard=\"0\"} 13\n"),
            "deleted partitions' flushes stay counted"
        );
        assert!(text.contains("weir_fsyncs_total{shard=\"0\"} 22\n"));
        assert!(text.contains("weir_under_replicated_partitions 0\n"));
    }
}
