//! Soak (issue 16): the broker under sustained load stays whole. Max-rate produce and consume
//! over 16 and then 100 partitions, a keyed fixed-rate phase, retention deleting segments and
//! the cleaner compacting them the whole time (`cleanup.policy=compact,delete`, small
//! segments), and slow consumers whose sockets fill (they send Fetch requests and never read
//! the responses). Every phase must deliver every acknowledged message exactly once, the
//! broker must never exit or log a panic, and its resident memory must stay bounded.
//!
//! `WEIR_SOAK_SECS` is each phase's length: 8 s by default, 1200 for an hour in all.
//!
//! It found a heap corruption before glommio patch 3 (`vendor/glommio/WEIR-PATCH.md`): the
//! broker aborted with `double free or corruption` in the keyed phase about one run in eight.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use common::{bench, Broker};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use weir_bench::client::admin::AdminClient;
use weir_bench::client::codec::encode_request;

/// Resident memory the broker may reach: budgets (256 MiB of queued requests per shard),
/// the page cache is not counted in RSS, and it never needed more than ~200 MiB in runs.
const RSS_MAX_BYTES: u64 = 1024 * 1024 * 1024;

fn phase_secs() -> String {
    std::env::var("WEIR_SOAK_SECS").unwrap_or_else(|_| "8".to_string())
}

/// A consumer that asks for 32 MiB at a time, a few requests ahead, and never reads: its
/// socket's buffers fill and the broker's sends to it stop with EAGAIN, which must park
/// only that connection.
fn slow_consumer(addr: &str, topic: &str, partitions: i32) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connects");
    let partitions = (0..partitions)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(0)
                .with_partition_max_bytes(32 << 20)
        })
        .collect();
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_max_bytes(32 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(partitions)]);
    let mut frame = BytesMut::new();
    for correlation_id in 0..4 {
        encode_request(&mut frame, ApiKey::Fetch, 11, correlation_id, &request).unwrap();
        stream.write_all(&frame).expect("sends");
    }
    stream
}

fn create_topic(addr: &str, topic: &str, partitions: u32) {
    AdminClient::connect(addr)
        .and_then(|mut admin| admin.create_topic(topic, partitions, 1))
        .expect("topic created");
}

#[test]
fn the_broker_stays_whole_under_sustained_load() {
    let mut broker = Broker::start_with(&[
        "--topic-default",
        "cleanup.policy=compact,delete",
        "--topic-default",
        "segment.bytes=1048576",
        "--topic-default",
        "retention.ms=20000",
        // Compaction may remove a record only once the phase that wrote it has consumed it,
        // so the exactly-once check stays valid; earlier phases' data is compacted while the
        // next phase runs.
        "--topic-default",
        "min.compaction.lag.ms=10000",
        "--log-retention-check-interval-ms",
        "1000",
        "--log-cleaner-backoff-ms",
        "1000",
    ]);
    let addr = broker.addr.to_string();
    let secs = phase_secs();
    create_topic(&addr, "soak-16", 16);
    create_topic(&addr, "soak-100", 100);
    let slow: Vec<TcpStream> = [("soak-16", 16), ("soak-100", 100)]
        .iter()
        .flat_map(|&(topic, n)| {
            [
                slow_consumer(&addr, topic, n),
                slow_consumer(&addr, topic, n),
            ]
        })
        .collect();
    // Keyed throughout: a compacted topic refuses records without a key, as Kafka's does.
    const KEYS: &str = "random:100000";
    let phases: [(&str, &[&str]); 3] = [
        (
            "soak-16",
            &["--partitions", "16", "--rate", "0", "--keys", KEYS],
        ),
        (
            "soak-100",
            &["--partitions", "100", "--rate", "0", "--keys", KEYS],
        ),
        (
            "soak-16",
            &[
                "--partitions",
                "16",
                "--rate",
                "20000",
                "--keys",
                "random:1000",
            ],
        ),
    ];
    let mut rss = Vec::new();
    for (topic, args) in phases {
        let mut all = vec!["--topic", topic, "--duration-s", &secs, "--warmup-s", "1"];
        all.extend_from_slice(args);
        let result = bench(&broker, &all);
        assert!(
            result.delivery.acked > 0 && result.errors.produce_failed_msgs == 0,
            "{topic} {args:?}: {:?} {:?}",
            result.delivery,
            result.errors
        );
        assert!(broker.is_running(), "the broker exited: {}", broker.log());
        rss.push(broker.rss_bytes());
        eprintln!(
            "{topic} {args:?}: produce {:.0} msg/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             broker RSS {} MiB",
            result.produce.msgs_per_s,
            result.produce_latency.p50_us / 1e3,
            result.produce_latency.p99_us / 1e3,
            result.produce_latency.max_us / 1e3,
            rss.last().unwrap() >> 20
        );
    }
    // The slow consumers' connections are still served: reading now gets a response.
    for mut stream in slow {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut prefix = [0u8; 4];
        stream
            .read_exact(&mut prefix)
            .expect("a slow consumer gets its response once it reads");
    }
    let log = broker.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        rss.iter().all(|&r| r > 0 && r < RSS_MAX_BYTES),
        "broker RSS per phase: {rss:?}"
    );
    assert!(broker.is_running());
}
