//! Crash safety: SIGKILL the broker while a producer streams acks=all batches, restart, and
//! check that every acknowledged batch is there, in order, with dense offsets, and that the
//! log takes new writes at the right offset. Bounded: a few kills, well under a minute.
//!
//! The kill points, the number of producers and the topic's `segment.bytes` (small ones roll
//! often, so recovery starts from recovery checkpoints written at rolls; the default one is
//! re-validated whole) come from a seed taken from the clock and printed;
//! `WEIR_CRASH_SEED=<seed>` replays a run.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::rng::{seed_from_env_or_clock, Rng};
use common::{batches, record_batch, Broker, Client};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "crash";
const KILLS: usize = 4;
/// Kills land this long after the producers start (or the broker restarts), plus up to
/// `KILL_SPREAD_MS` more.
const KILL_AFTER_MS_MIN: u64 = 150;
const KILL_SPREAD_MS: u64 = 650;
/// The topic's `segment.bytes`, one chosen per run: tiny and small roll every few hundred
/// or thousand batches; None keeps the default (1 GiB, one active segment).
const SEGMENT_BYTES_CHOICES: [Option<&str>; 3] = [Some("4096"), Some("65536"), None];

impl Rng {
    /// From `WEIR_CRASH_SEED` when set (replaying a failure), else from the clock.
    fn from_env_or_clock() -> (Rng, u64) {
        let seed = seed_from_env_or_clock("WEIR_CRASH_SEED");
        (Rng(seed), seed)
    }
}

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

/// An acks=all Produce of one batch holding `value` to partition 0.
fn produce_request(value: &[u8]) -> ProduceRequest {
    let partition = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(Bytes::from(record_batch(&[value]))));
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic())
            .with_partition_data(vec![partition])])
}

/// Produces numbered batches until told to stop or the connection dies; records what was
/// acknowledged as (offset, sequence number).
fn produce_until_killed(
    addr: std::net::SocketAddr,
    first_seq: u64,
    acked: Arc<Mutex<Vec<(i64, u64)>>>,
    stop: Arc<AtomicBool>,
) {
    let Ok(stream) = std::net::TcpStream::connect(addr) else {
        return;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut client = Client::from_stream(stream);
    let mut seq = first_seq;
    while !stop.load(Ordering::Relaxed) {
        let value = format!("seq-{seq:010}");
        let request = produce_request(value.as_bytes());
        let Some(response) = client.try_call::<_, ProduceResponse>(ApiKey::Produce, 9, &request)
        else {
            return;
        };
        let p = &response.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "produce failed before the kill");
        acked.lock().unwrap().push((p.base_offset, seq));
        seq += 1;
    }
}

/// Every batch in the partition as (offset, sequence number parsed from the value).
fn read_all(client: &mut Client) -> Vec<(i64, u64)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic())
                .with_partitions(vec![FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let response: FetchResponse = client.call(ApiKey::Fetch, 11, &request);
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let fetched = batches(p.records.clone().unwrap_or_default());
        if fetched.is_empty() {
            assert_eq!(
                offset, p.high_watermark,
                "stopped short of the high watermark"
            );
            return out;
        }
        for (base, batch) in fetched {
            let value = &batch[batch.len() - 15..batch.len() - 1];
            let text = std::str::from_utf8(value).expect("value is ASCII");
            let seq: u64 = text
                .trim_start_matches("seq-")
                .parse()
                .unwrap_or_else(|_| panic!("corrupt value {text:?}"));
            out.push((base, seq));
            offset = base + 1;
        }
    }
}

#[test]
fn sigkill_mid_stream_loses_no_acknowledged_batch() {
    let (mut rng, seed) = Rng::from_env_or_clock();
    let segment_bytes =
        SEGMENT_BYTES_CHOICES[rng.below(SEGMENT_BYTES_CHOICES.len() as u64) as usize];
    let producer_count = 1 + rng.below(3);
    eprintln!(
        "crash seed {seed} (replay: WEIR_CRASH_SEED={seed}): segment.bytes {}, {producer_count} \
         producer(s)",
        segment_bytes.unwrap_or("default")
    );
    // Recovery's per-partition report, to show how each restart recovered. Set before the
    // broker starts (it inherits the environment); this file's one test is alone in it.
    std::env::set_var("WEIR_LOG", "info,weir_storage::log::recovery=debug");
    let mut broker = Broker::start(&[]);
    let mut admin = broker.connect();
    let configs = segment_bytes
        .map(|bytes| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("segment.bytes"))
                .with_value(Some(StrBytes::from_static_str(bytes)))
        })
        .into_iter()
        .collect();
    let created: CreateTopicsResponse = admin.call(
        ApiKey::CreateTopics,
        5,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic())
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(configs)]),
    );
    assert_eq!(created.topics[0].error_code, 0, "seed {seed}");
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut next_seq = 0;
    for kill in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..producer_count)
            .map(|p| {
                let (acked, stop, addr) = (acked.clone(), stop.clone(), broker.addr);
                let first = next_seq + p * 1_000_000;
                std::thread::spawn(move || produce_until_killed(addr, first, acked, stop))
            })
            .collect();
        next_seq += 10_000_000;
        let kill_after_ms = KILL_AFTER_MS_MIN + rng.below(KILL_SPREAD_MS);
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        broker.kill();
        stop.store(true, Ordering::Relaxed);
        for producer in producers {
            producer.join().unwrap();
        }
        broker.start_again();
        let recovered = broker
            .log_text()
            .lines()
            .rfind(|line| line.contains(&format!("{TOPIC}-0: re-validated")))
            .map(|line| line[line.find("re-validated").unwrap_or(0)..].to_string());
        eprintln!(
            "restart {kill}: {}",
            recovered.as_deref().unwrap_or("no recovery report")
        );
        let stored = read_all(&mut broker.connect());
        for (i, (offset, _)) in stored.iter().enumerate() {
            assert_eq!(
                *offset, i as i64,
                "offsets are dense from 0 after kill {kill} (seed {seed})"
            );
        }
        let acked = acked.lock().unwrap();
        assert!(
            !acked.is_empty(),
            "nothing was acknowledged before kill {kill} (seed {seed})"
        );
        for &(offset, seq) in acked.iter() {
            let found = stored.get(offset as usize).map(|&(_, s)| s);
            assert_eq!(
                found,
                Some(seq),
                "acknowledged offset {offset} (seq {seq}) lost after kill {kill} (seed {seed})"
            );
        }
        eprintln!(
            "kill {kill} after {kill_after_ms} ms: {} batches acknowledged so far, {} stored",
            acked.len(),
            stored.len()
        );
    }
    // The log still takes writes at the next offset.
    let stored = read_all(&mut broker.connect());
    let request = produce_request(b"seq-9999999999");
    let response: ProduceResponse = broker.connect().call(ApiKey::Produce, 9, &request);
    assert_eq!(
        response.responses[0].partition_responses[0].base_offset,
        stored.len() as i64
    );
}
