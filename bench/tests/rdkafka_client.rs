//! `--client rdkafka` against the real `weir` broker: a fixed-rate run through the binary
//! whose counts must be exact, as the native client's are, and runs with every codec, keys,
//! several producers and consumers and variable sizes that must deliver every message
//! exactly once, their batches stored with the codec asked for. Only with the `rdkafka`
//! feature.
//!
//! The compressed runs call the library, so that the test builds the workload itself.
#![cfg(feature = "rdkafka")]

mod common;

use std::time::Duration;

use common::{assert_exact_counts, bench, codec_id, first_batch_codec, Broker};
use weir_bench::report::RunResult;
use weir_bench::runner::RunOptions;
use weir_bench::workload::{Compression, KeyStrategy, MessageSize, Workload};

fn run_in_process(broker: &Broker, workload: Workload) -> RunResult {
    let options = RunOptions {
        bootstrap: broker.addr.to_string(),
        workload,
        cores: 1,
        drain_timeout: Duration::from_secs(30),
        progress: false,
        host_limits: None,
        window_s: 0,
    };
    match weir_bench::rdkafka_client::run(&options) {
        Ok(result) => result,
        Err(e) => panic!("rdkafka run failed: {e}\nbroker log:\n{}", broker.log()),
    }
}

#[test]
fn fixed_rate_counts_are_exact() {
    let broker = Broker::start();
    let result = bench(
        &broker,
        &[
            "--client",
            "rdkafka",
            "--partitions",
            "2",
            "--rate",
            "1000",
            "--duration-s",
            "2",
            "--warmup-s",
            "0",
            "--acks",
            "-1",
        ],
    );
    assert!(result.client.starts_with("rdkafka 2."), "{}", result.client);
    // 1,000 msg/s for 2 s: the schedule sends exactly 2,000 messages.
    assert_exact_counts(&result, 2_000);
    assert_eq!(result.produce.bytes_total, 2_000 * 100);
    assert_eq!(result.consume.bytes_total, 2_000 * 100);
    assert_eq!((result.delivery.lost, result.delivery.duplicates), (0, 0));
    assert_eq!(result.delivery.out_of_order, 0);
    assert!(result.delivery.exactly_once);
    // Every message was intended inside the measured window, so each has a latency sample.
    assert_eq!(result.produce_latency.count, 2_000);
    assert_eq!(result.end_to_end_latency.count, 2_000);
    assert!(result.produce_latency.p50_us > 0.0);
    assert!(result.series.len() >= 2, "a sample per second");
    assert_eq!(result.errors.fetch_errors, 0);
}

/// Every codec librdkafka has, on one broker: each run's counts exact, every message
/// consumed once and in order per partition, through keys (murmur2), two producers and
/// three consumers over four partitions.
#[test]
fn every_codec_with_keys_and_several_clients_is_exactly_once() {
    let broker = Broker::start();
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let result = run_in_process(
            &broker,
            Workload {
                partitions: 4,
                producers: 2,
                consumers: 3,
                message_size: MessageSize::Uniform { min: 24, max: 512 },
                keys: KeyStrategy::RoundRobin(50),
                acks: 1,
                compression,
                // Several records per batch: librdkafka sends a batch uncompressed when the
                // codec would not shrink it, as with one record of pseudo-random filler.
                linger_ms: 50,
                rate_msgs_per_s: 1_000,
                warmup_s: 0,
                duration_s: 1,
                ..Workload::default()
            },
        );
        let context = format!("{compression}: {:?}", result.delivery);
        assert_eq!(result.workload.compression, compression);
        assert_eq!(result.delivery.acked, 1_000, "{context}");
        assert_eq!(result.delivery.consumed_unique, 1_000, "{context}");
        assert_eq!(result.produce.messages_total, 1_000, "{context}");
        assert_eq!(result.consume.messages_total, 1_000, "{context}");
        assert_eq!(
            result.consume.bytes_total, result.produce.bytes_total,
            "{context}"
        );
        assert_eq!(result.delivery.out_of_order, 0, "{context}");
        assert!(result.delivery.exactly_once, "{context}");
        assert_eq!(result.errors.produce_failed_msgs, 0, "{context}");
        assert_eq!(
            first_batch_codec(&broker, &result.topic),
            codec_id(compression),
            "{context}: the batches on disk are compressed with the codec asked for"
        );
    }
}

#[test]
fn max_rate_with_lz4_is_exactly_once() {
    let broker = Broker::start();
    let result = run_in_process(
        &broker,
        Workload {
            partitions: 2,
            producers: 2,
            consumers: 2,
            compression: Compression::Lz4,
            acks: -1,
            batch_bytes: 16 * 1024,
            rate_msgs_per_s: 0,
            warmup_s: 0,
            duration_s: 1,
            ..Workload::default()
        },
    );
    assert!(result.delivery.acked > 1_000, "{:?}", result.delivery);
    assert_eq!(result.delivery.consumed_unique, result.delivery.acked);
    assert_eq!(result.consume.messages_total, result.produce.messages_total);
    assert_eq!(result.delivery.out_of_order, 0);
    assert!(result.delivery.exactly_once, "{:?}", result.delivery);
    assert_eq!(
        first_batch_codec(&broker, &result.topic),
        codec_id(Compression::Lz4)
    );
}
