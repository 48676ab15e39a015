//! Drives the real `weir` broker with the real `weir-bench` binary: a short fixed-rate run
//! whose counts must be exact, and a short max-rate run with keys, several producers and
//! consumers, and variable sizes that must deliver every message exactly once; and every
//! codec, stored as asked and read back exactly.

mod common;

use common::{assert_exact_counts, bench, codec_id, first_batch_codec, Broker};
use weir_bench::workload::Compression;

#[test]
fn fixed_rate_counts_are_exact() {
    let broker = Broker::start();
    let result = bench(
        &broker,
        &[
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
    // 1,000 msg/s for 2 s: the schedule sends exactly 2,000 messages.
    assert_exact_counts(&result, 2_000);
    assert_eq!(result.produce.bytes_total, 2_000 * 100);
    assert_eq!((result.delivery.lost, result.delivery.duplicates), (0, 0));
    assert!(result.delivery.exactly_once);
    // Every message was intended inside the measured window, so each has a latency sample.
    assert_eq!(result.produce_latency.count, 2_000);
    assert_eq!(result.end_to_end_latency.count, 2_000);
    assert!(result.produce_latency.p50_us > 0.0);
    assert!(result.end_to_end_latency.p50_us >= result.produce_latency.p50_us * 0.1);
    assert!(result.series.len() >= 2, "a sample per second");
    assert_eq!(result.errors.produce_failed_msgs, 0);
}

#[test]
fn max_rate_with_keys_and_several_clients_is_exactly_once() {
    let broker = Broker::start();
    let result = bench(
        &broker,
        &[
            "--partitions",
            "4",
            "--producers",
            "2",
            "--consumers",
            "3",
            "--rate",
            "0",
            "--message-size",
            "24..512",
            "--keys",
            "round-robin:50",
            "--acks",
            "1",
            "--batch-bytes",
            "16384",
            "--duration-s",
            "1",
            "--warmup-s",
            "0",
        ],
    );
    assert!(result.delivery.acked > 1_000, "{:?}", result.delivery);
    assert_eq!(result.delivery.consumed_unique, result.delivery.acked);
    assert_eq!(result.consume.messages_total, result.produce.messages_total);
    assert_eq!(result.delivery.out_of_order, 0);
    assert!(result.delivery.exactly_once);
}

#[test]
fn every_codec_is_stored_compressed_and_read_back_exactly() {
    let broker = Broker::start();
    for (name, compression) in [
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let result = bench(
            &broker,
            &[
                "--partitions",
                "2",
                "--keys",
                "round-robin:10",
                "--compression",
                name,
                "--rate",
                "1000",
                "--duration-s",
                "1",
                "--warmup-s",
                "0",
                "--linger-ms",
                "20",
            ],
        );
        let context = format!("{name}: {:?}", result.delivery);
        assert_eq!(result.workload.compression, compression, "{context}");
        assert_eq!(result.delivery.acked, 1_000, "{context}");
        assert_eq!(result.delivery.consumed_unique, 1_000, "{context}");
        assert_eq!(
            result.consume.bytes_total, result.produce.bytes_total,
            "{context}"
        );
        assert!(result.delivery.exactly_once, "{context}");
        assert_eq!(
            first_batch_codec(&broker, &result.topic),
            codec_id(compression),
            "{context}: stored with the codec asked for"
        );
    }
}

#[test]
fn cpuset_keeps_the_load_generator_on_the_cpus_given() {
    // The last CPU for the bench: on a 2-CPU host the broker keeps the other one.
    let allowed = weir_shard::cpuset::allowed_cpus();
    let cpu = allowed.last().expect("a CPU").to_string();
    let broker = Broker::start();
    let result = bench(
        &broker,
        &[
            "--cpuset",
            &cpu,
            "--partitions",
            "2",
            "--rate",
            "500",
            "--duration-s",
            "1",
            "--warmup-s",
            "0",
        ],
    );
    assert_eq!(result.cores, 1, "one executor per CPU of the cpuset");
    assert!(result.delivery.exactly_once, "{:?}", result.delivery);
}
