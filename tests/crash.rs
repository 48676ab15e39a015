//! Crash safety: SIGKILL the broker while a producer streams acks=all batches, restart, and
//! check that every acknowledged batch is there, in order, with dense offsets, and that the
//! log takes new writes at the right offset. Bounded: a few kills, well under a minute.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{batches, record_batch, Broker, Client};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const TOPIC: &str = "crash";
const KILLS: usize = 4;

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
    let mut broker = Broker::start(&[]);
    let mut admin = broker.connect();
    let created: CreateTopicsResponse = admin.call(
        ApiKey::CreateTopics,
        5,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic())
            .with_num_partitions(1)
            .with_replication_factor(1)]),
    );
    assert_eq!(created.topics[0].error_code, 0);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_seq = 0;
    for kill in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let (acked, stop, addr) = (acked.clone(), stop.clone(), broker.addr);
                let first = next_seq + p * 1_000_000;
                std::thread::spawn(move || produce_until_killed(addr, first, acked, stop))
            })
            .collect();
        next_seq += 10_000_000;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(200 + seed % 600));
        broker.kill();
        stop.store(true, Ordering::Relaxed);
        for producer in producers {
            producer.join().unwrap();
        }
        broker.start_again();
        let stored = read_all(&mut broker.connect());
        for (i, (offset, _)) in stored.iter().enumerate() {
            assert_eq!(
                *offset, i as i64,
                "offsets are dense from 0 after kill {kill}"
            );
        }
        let acked = acked.lock().unwrap();
        assert!(
            !acked.is_empty(),
            "nothing was acknowledged before kill {kill}"
        );
        for &(offset, seq) in acked.iter() {
            let found = stored.get(offset as usize).map(|&(_, s)| s);
            assert_eq!(
                found,
                Some(seq),
                "acknowledged offset {offset} (seq {seq}) lost after kill {kill}"
            );
        }
        eprintln!(
            "kill {kill}: {} batches acknowledged so far, {} stored",
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
