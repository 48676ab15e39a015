//! The request budget (`--queued-max-request-bytes`, Kafka's queued.max.request.bytes) on
//! the real binary: a flood of connections announcing 100 MiB frames and sending them slowly
//! must not grow the broker's memory past the budget, nor stop other clients being served,
//! and the budget comes back once the flood is gone.

mod common;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{free_addr, metric, record_batch, Broker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const MIB: u64 = 1024 * 1024;
/// Per shard; the harness starts two shards.
const BUDGET_BYTES: u64 = 16 * MIB;
const SHARDS: u64 = 2;
const FLOOD_CONNECTIONS: usize = 200;
/// What each flood connection announces, within `--socket-request-max-bytes`.
const FLOOD_FRAME_BYTES: u32 = 100 * 1024 * 1024;
/// What each flood connection sends of its frame before it stalls: 400 MiB in all.
const FLOOD_SENT_BYTES: usize = 2 * 1024 * 1024;
/// Growth of RSS allowed past the budgets: the connections' read buffers (64 KiB each),
/// allocator slack, and the one oversized frame per shard admitted over the budget.
const RSS_ALLOWANCE_BYTES: u64 = 64 * MIB;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("status has VmRSS");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS is a number of kB");
    kib * 1024
}

fn produce(client: &mut common::Client, topic: &'static str) -> i16 {
    produce_value(client, topic, b"during the flood")
}

fn produce_value(client: &mut common::Client, topic: &'static str, value: &[u8]) -> i16 {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(record_batch(&[value]))))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    response.responses[0].partition_responses[0].error_code
}

fn fetch(client: &mut common::Client, topic: &'static str) -> (i16, usize) {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = client.call(ApiKey::Fetch, 11, &request);
    let p = &response.responses[0].partitions[0];
    (p.error_code, p.records.as_ref().map_or(0, Bytes::len))
}

/// Other clients on fresh connections are served while the flood holds the budget.
fn serve_a_fresh_client(broker: &Broker) {
    let started = Instant::now();
    let mut client = broker.connect();
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let metadata: MetadataResponse = client.call(ApiKey::Metadata, 9, &MetadataRequest::default());
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(produce(&mut client, "during-flood"), 0);
    let (error, bytes) = fetch(&mut client, "during-flood");
    assert_eq!(error, 0);
    assert!(bytes > 0, "the record produced during the flood is fetched");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served in {:?}",
        started.elapsed()
    );
}

/// Opens the flood: each connection announces a 100 MiB frame, then sends as much of its
/// first `FLOOD_SENT_BYTES` as the broker reads, without blocking. Returns the peak RSS.
fn flood(pid: u32, addr: SocketAddr, flooders: &mut Vec<(TcpStream, usize)>) -> u64 {
    let chunk = vec![0x5a_u8; 64 * 1024];
    for _ in 0..FLOOD_CONNECTIONS {
        let mut stream = TcpStream::connect(addr).unwrap();
        // The prefix and the first bytes of the body in one segment, as a client sends
        // them: the broker's read buffer takes them in before the frame waits for budget.
        let mut first = FLOOD_FRAME_BYTES.to_be_bytes().to_vec();
        first.extend_from_slice(&chunk);
        stream.write_all(&first).unwrap();
        stream.set_nonblocking(true).unwrap();
        flooders.push((stream, chunk.len()));
    }
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let mut all_sent = true;
        for (stream, sent) in flooders.iter_mut() {
            let want = (FLOOD_SENT_BYTES - *sent).min(chunk.len());
            if want == 0 {
                continue;
            }
            all_sent = false;
            match stream.write(&chunk[..want]) {
                Ok(n) => *sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("flood connection failed: {e}"),
            }
        }
        peak = peak.max(rss_bytes(pid));
        if all_sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the broker read what it will of the bytes in flight.
    std::thread::sleep(Duration::from_millis(500));
    peak.max(rss_bytes(pid))
}

#[test]
fn a_flood_of_huge_slow_frames_stays_within_the_request_budget() {
    let metrics = free_addr();
    let broker = Broker::start(&[
        "--queued-max-request-bytes",
        &BUDGET_BYTES.to_string(),
        "--socket-request-max-bytes",
        &(200 * MIB).to_string(),
        "--metrics-listen",
        &metrics.to_string(),
    ]);
    let pid = broker.pid().expect("broker runs");
    let mut client = broker.connect();
    let created: CreateTopicsResponse = client.call(
        ApiKey::CreateTopics,
        5,
        &CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("during-flood")))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
    );
    assert_eq!(created.topics[0].error_code, 0);
    let rss_before = rss_bytes(pid);

    let mut flooders = Vec::new();
    let rss_peak = flood(pid, broker.addr, &mut flooders);
    let sent: usize = flooders.iter().map(|(_, sent)| sent).sum();
    eprintln!(
        "RSS before the flood {} MiB, peak under it {} MiB (+{} MiB); flood sent {} MiB",
        rss_before / MIB,
        rss_peak / MIB,
        rss_peak.saturating_sub(rss_before) / MIB,
        sent as u64 / MIB
    );
    assert!(
        rss_peak <= rss_before + SHARDS * BUDGET_BYTES + RSS_ALLOWANCE_BYTES,
        "RSS grew from {rss_before} to {rss_peak} bytes under the flood"
    );
    let waiting = metric(metrics, "weir_connections_waiting_for_request_budget");
    assert!(waiting > 0, "the flood waits for budget");
    serve_a_fresh_client(&broker);

    drop(flooders);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let in_use = metric(metrics, "weir_queued_request_bytes");
        let waiting = metric(metrics, "weir_connections_waiting_for_request_budget");
        if in_use == 0 && waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "budget not returned: {in_use} bytes in use, {waiting} connections waiting"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    serve_a_fresh_client(&broker);
}

#[test]
fn a_request_larger_than_the_whole_budget_is_served_alone() {
    // The smallest budget accepted (512 KiB), so one record within max.message.bytes
    // (1 MiB) makes a request larger than all of it.
    let broker = Broker::start(&["--queued-max-request-bytes", &(MIB / 2).to_string()]);
    let mut client = broker.connect();
    let created: CreateTopicsResponse = client.call(
        ApiKey::CreateTopics,
        5,
        &CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("oversized")))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
    );
    assert_eq!(created.topics[0].error_code, 0);
    // 900 KiB in one request, almost twice the budget: admitted when no other large request
    // holds budget (it overdraws), so it is answered rather than waiting forever.
    let value = vec![7u8; 900 * 1024];
    for _ in 0..3 {
        assert_eq!(produce_value(&mut client, "oversized", &value), 0);
    }
    let (error, bytes) = fetch(&mut client, "oversized");
    assert_eq!(error, 0);
    assert!(bytes > value.len());
}
