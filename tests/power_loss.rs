//! Power loss (issue 11): the broker's data dir lives on weir-powercut, a FUSE file system
//! that keeps in memory what was fsynced apart from what was merely written. Producers
//! (an idempotent one, plain ones) and a group's offset commits run with acks=all; at a
//! seeded moment the broker is SIGKILLed and the power cut: every byte and every directory
//! entry that no fsync covered is dropped (optionally tearing each file's last write at a
//! sector boundary), the file system is remounted, the broker restarted on what survived.
//! Then every acknowledged batch must be there, at its offset, once; offsets dense;
//! committed offsets no older than the last acknowledged commit.
//!
//! Replay and knobs: the seed is printed, `WEIR_POWERCUT_SEED=<u64>` replays it;
//! `WEIR_POWERCUT_CYCLES=N` (default 10), `WEIR_POWERCUT_MODE=posix|journal` (default posix:
//! only what POSIX promises survives; journal models ext4 data=ordered, where any fsync also
//! commits every pending directory entry), `WEIR_POWERCUT_VERBOSE=1`. It never skips: no
//! /dev/fuse or no mount permission fails the test.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::rng::{seed_from_env_or_clock, Rng};
use common::{batches, idempotent_record_batch, record_batch, Broker, Client};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir_powercut::{DurabilityMode, PowerCutMount};

const TOPIC: &str = "power";
const PARTITIONS: i32 = 4;
const GROUP: &str = "power-group";
const CI_CYCLES: usize = 10;
const PLAIN_PRODUCERS: usize = 2;
/// The cut lands this long after the clients start, plus up to `CUT_SPREAD_MS` more.
const CUT_AFTER_MS_MIN: u64 = 100;
const CUT_SPREAD_MS: u64 = 500;
/// Segments this small roll every few dozen batches, so cuts land between a roll and the
/// next directory fsync of the partition (the producer-state snapshot that follows a roll
/// syncs the directory too and would hide a missing one at 64 KiB).
const SMALL_SEGMENT_BYTES: &str = "4096";
const MAX_RECORDS_PER_BATCH: u64 = 3;

struct Settings {
    seed: u64,
    cycles: usize,
    mode: DurabilityMode,
    verbose: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let seed = seed_from_env_or_clock("WEIR_POWERCUT_SEED");
        let cycles = std::env::var("WEIR_POWERCUT_CYCLES").map_or(CI_CYCLES, |text| {
            text.trim()
                .parse()
                .unwrap_or_else(|_| panic!("WEIR_POWERCUT_CYCLES={text:?} is not a count"))
        });
        let mode = std::env::var("WEIR_POWERCUT_MODE").map_or(DurabilityMode::Posix, |text| {
            text.trim()
                .parse()
                .unwrap_or_else(|e: String| panic!("{e}"))
        });
        let verbose = std::env::var("WEIR_POWERCUT_VERBOSE").is_ok_and(|v| v != "0");
        Settings {
            seed,
            cycles,
            mode,
            verbose,
        }
    }
}

/// What an acknowledged batch was, keyed by (partition, offset) in `Acked`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Idempotent { base_sequence: i32, records: i32 },
    Plain { value: String },
}

/// Everything the broker acknowledged, over all cycles: all of it must survive every cut.
#[derive(Default)]
struct Acked {
    batches: BTreeMap<(i32, i64), Sent>,
    /// The offset of the group's last acknowledged commit (the same for every partition).
    committed_offset: i64,
}

type Shared<T> = Arc<Mutex<T>>;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

fn produce_request(partition: i32, batch: Vec<u8>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(batch)))])])
}

fn connect(addr: SocketAddr) -> Option<Client> {
    let stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    Some(Client::from_stream(stream))
}

/// A batch of the idempotent producer: sent, not yet acknowledged.
#[derive(Debug, Clone, Copy)]
struct PendingBatch {
    partition: i32,
    base_sequence: i32,
    records: i32,
}

/// An idempotent client as Kafka's own behaves across a broker restart: same producer id
/// and epoch, and a batch without an answer is retried with its sequence numbers unchanged.
struct IdempotentProducer {
    producer_id: i64,
    producer_epoch: i16,
    next_sequence: [i32; PARTITIONS as usize],
    pending: Option<PendingBatch>,
    rng: Rng,
}

impl IdempotentProducer {
    fn init(client: &mut Client, seed: u64) -> IdempotentProducer {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response: InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &request);
        assert_eq!(response.error_code, 0, "InitProducerId");
        IdempotentProducer {
            producer_id: response.producer_id.0,
            producer_epoch: response.producer_epoch,
            next_sequence: [0; PARTITIONS as usize],
            pending: None,
            rng: Rng(seed),
        }
    }

    fn next_batch(&mut self) -> PendingBatch {
        let partition = self.rng.below(PARTITIONS as u64) as i32;
        let records = 1 + self.rng.below(MAX_RECORDS_PER_BATCH) as i32;
        let base_sequence = self.next_sequence[partition as usize];
        self.next_sequence[partition as usize] += records;
        PendingBatch {
            partition,
            base_sequence,
            records,
        }
    }

    /// Sends the pending batch (or a new one); false when the broker is gone.
    fn send_one(
        &mut self,
        client: &mut Client,
        acked: &Shared<Acked>,
        faults: &Shared<Vec<String>>,
    ) -> bool {
        let batch = match self.pending {
            Some(batch) => batch,
            None => self.next_batch(),
        };
        self.pending = Some(batch);
        let values: Vec<String> = (0..batch.records)
            .map(|i| format!("idem-{}-{}", batch.partition, batch.base_sequence + i))
            .collect();
        let values: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let bytes = idempotent_record_batch(
            &values,
            self.producer_id,
            self.producer_epoch,
            batch.base_sequence,
        );
        let request = produce_request(batch.partition, bytes);
        let Some(response) = client.try_call::<_, ProduceResponse>(ApiKey::Produce, 9, &request)
        else {
            return false;
        };
        let answer = &response.responses[0].partition_responses[0];
        if answer.error_code != 0 {
            faults.lock().unwrap().push(format!(
                "idempotent batch (partition {}, sequence {}) answered error {}",
                batch.partition, batch.base_sequence, answer.error_code
            ));
            return false;
        }
        let sent = Sent::Idempotent {
            base_sequence: batch.base_sequence,
            records: batch.records,
        };
        acked
            .lock()
            .unwrap()
            .batches
            .insert((batch.partition, answer.base_offset), sent);
        self.pending = None;
        true
    }

    fn run(
        mut self,
        addr: SocketAddr,
        acked: Shared<Acked>,
        faults: Shared<Vec<String>>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        if let Some(mut client) = connect(addr) {
            while !stop.load(Ordering::Relaxed) && self.send_one(&mut client, &acked, &faults) {}
        }
        self
    }
}

/// A producer without idempotence: its unanswered batches are not retried (a retry could
/// be stored twice, legitimately), so only its acknowledged batches are checked.
fn run_plain_producer(
    addr: SocketAddr,
    name: String,
    seed: u64,
    acked: Shared<Acked>,
    stop: Arc<AtomicBool>,
) {
    let Some(mut client) = connect(addr) else {
        return;
    };
    let mut rng = Rng(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let partition = rng.below(PARTITIONS as u64) as i32;
        let value = format!("{name}-{n}");
        let request = produce_request(partition, record_batch(&[value.as_bytes()]));
        let Some(response) = client.try_call::<_, ProduceResponse>(ApiKey::Produce, 9, &request)
        else {
            return;
        };
        let answer = &response.responses[0].partition_responses[0];
        if answer.error_code == 0 {
            let sent = Sent::Plain { value };
            acked
                .lock()
                .unwrap()
                .batches
                .insert((partition, answer.base_offset), sent);
        }
        n += 1;
    }
}

/// Commits ever larger offsets for every partition as a simple (non-member) consumer;
/// records the last commit the broker acknowledged.
fn run_committer(addr: SocketAddr, acked: Shared<Acked>, stop: Arc<AtomicBool>) {
    let Some(mut client) = connect(addr) else {
        return;
    };
    let mut offset = acked.lock().unwrap().committed_offset;
    while !stop.load(Ordering::Relaxed) {
        offset += 1;
        let partitions = (0..PARTITIONS)
            .map(|p| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(offset)
            })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_partitions(partitions)]);
        let Some(response) =
            client.try_call::<_, OffsetCommitResponse>(ApiKey::OffsetCommit, 8, &request)
        else {
            return;
        };
        if response.topics[0]
            .partitions
            .iter()
            .all(|p| p.error_code == 0)
        {
            acked.lock().unwrap().committed_offset = offset;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One batch as stored: where it is and who wrote it.
struct StoredBatch {
    base_offset: i64,
    last_offset_delta: i32,
    producer_id: i64,
    base_sequence: i32,
    first_value: String,
}

impl StoredBatch {
    fn parse(base_offset: i64, batch: &[u8]) -> StoredBatch {
        let i32_at = |at: usize| i32::from_be_bytes(batch[at..at + 4].try_into().expect("4 bytes"));
        let producer_id = i64::from_be_bytes(batch[43..51].try_into().expect("8 bytes"));
        StoredBatch {
            base_offset,
            last_offset_delta: i32_at(23),
            producer_id,
            base_sequence: i32_at(53),
            first_value: first_value(&batch[61..]),
        }
    }
}

fn read_varint(bytes: &[u8], at: &mut usize) -> i64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return ((value >> 1) as i64) ^ -((value & 1) as i64);
        }
        shift += 7;
    }
}

/// The value of the first record of an uncompressed batch (the test's own batches).
fn first_value(records: &[u8]) -> String {
    let mut at = 0;
    read_varint(records, &mut at); // record length
    at += 1; // attributes
    read_varint(records, &mut at); // timestamp delta
    read_varint(records, &mut at); // offset delta
    let key_len = read_varint(records, &mut at);
    at += key_len.max(0) as usize;
    let value_len = read_varint(records, &mut at) as usize;
    String::from_utf8_lossy(&records[at..at + value_len]).into_owned()
}

/// Every batch of a partition, or the fetch's error code.
fn read_partition(client: &mut Client, partition: i32) -> Result<Vec<StoredBatch>, i16> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(s(TOPIC)))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let response: FetchResponse = client.call(ApiKey::Fetch, 11, &request);
        let answer = &response.responses[0].partitions[0];
        if answer.error_code != 0 {
            return Err(answer.error_code);
        }
        let fetched = batches(answer.records.clone().unwrap_or_default());
        if fetched.is_empty() {
            return Ok(out);
        }
        for (base, bytes) in fetched {
            let batch = StoredBatch::parse(base, &bytes);
            offset = base + i64::from(batch.last_offset_delta) + 1;
            out.push(batch);
        }
    }
}

/// Everything wrong with what the restarted broker holds, as readable lines.
fn check(client: &mut Client, acked: &Acked, producer_id: i64) -> Vec<String> {
    let mut faults = Vec::new();
    for partition in 0..PARTITIONS {
        let stored = match read_partition(client, partition) {
            Ok(stored) => stored,
            Err(code) => {
                faults.push(format!("partition {partition}: fetch error {code}"));
                continue;
            }
        };
        check_partition(partition, &stored, acked, producer_id, &mut faults);
    }
    let fetched = match fetch_committed(client) {
        Ok(fetched) => fetched,
        Err(code) => {
            faults.push(format!("OffsetFetch: error {code}"));
            return faults;
        }
    };
    for (partition, committed) in fetched.iter().enumerate() {
        if *committed < acked.committed_offset {
            faults.push(format!(
                "partition {partition}: committed offset {committed}, but commit {} was \
                 acknowledged",
                acked.committed_offset
            ));
        }
    }
    faults
}

fn check_partition(
    partition: i32,
    stored: &[StoredBatch],
    acked: &Acked,
    producer_id: i64,
    faults: &mut Vec<String>,
) {
    let mut next_offset = 0;
    let mut by_offset = HashMap::new();
    let mut idempotent_copies: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for batch in stored {
        if batch.base_offset != next_offset {
            faults.push(format!(
                "partition {partition}: batch at offset {} where {next_offset} was next (not dense)",
                batch.base_offset
            ));
        }
        next_offset = batch.base_offset + i64::from(batch.last_offset_delta) + 1;
        by_offset.insert(batch.base_offset, batch);
        if batch.producer_id == producer_id {
            idempotent_copies
                .entry(batch.base_sequence)
                .or_default()
                .push(batch.base_offset);
        }
    }
    for (sequence, offsets) in &idempotent_copies {
        if offsets.len() > 1 {
            faults.push(format!(
                "partition {partition}: idempotent batch with sequence {sequence} stored {} \
                 times, at offsets {offsets:?}",
                offsets.len()
            ));
        }
    }
    let acked_here = acked
        .batches
        .range((partition, i64::MIN)..=(partition, i64::MAX));
    for (&(_, offset), sent) in acked_here {
        let found = by_offset.get(&offset);
        let matches = match (sent, found) {
            (_, None) => false,
            (Sent::Plain { value }, Some(batch)) => &batch.first_value == value,
            (
                Sent::Idempotent {
                    base_sequence,
                    records,
                },
                Some(batch),
            ) => {
                batch.producer_id == producer_id
                    && batch.base_sequence == *base_sequence
                    && batch.last_offset_delta == records - 1
            }
        };
        if !matches {
            let what = found.map_or("nothing".to_owned(), |b| format!("{:?}", b.first_value));
            faults.push(format!(
                "partition {partition}: acknowledged {sent:?} at offset {offset} lost ({what} there; \
                 log ends at {next_offset})"
            ));
        }
    }
}

/// The group's committed offset of every partition, or the error code that came instead.
fn fetch_committed(client: &mut Client) -> Result<Vec<i64>, i16> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partition_indexes((0..PARTITIONS).collect())]));
    let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 7, &request);
    if response.error_code != 0 {
        return Err(response.error_code);
    }
    let topic = response.topics.first().ok_or(-1i16)?;
    Ok(topic
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect())
}

/// FindCoordinator, as a consumer's first act: it makes `__consumer_offsets`, without which
/// every commit answers NOT_COORDINATOR.
fn find_coordinator(client: &mut Client) {
    let request = FindCoordinatorRequest::default().with_key(s(GROUP));
    let found: FindCoordinatorResponse = client.call(ApiKey::FindCoordinator, 3, &request);
    assert_eq!(found.error_code, 0, "FindCoordinator");
}

fn create_topic(client: &mut Client, segment_bytes: Option<&str>) {
    let configs = segment_bytes
        .map(|bytes| {
            CreatableTopicConfig::default()
                .with_name(s("segment.bytes"))
                .with_value(Some(s(bytes)))
        })
        .into_iter()
        .collect();
    let created: CreateTopicsResponse = client.call(
        ApiKey::CreateTopics,
        5,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_num_partitions(PARTITIONS)
            .with_replication_factor(1)
            .with_configs(configs)]),
    );
    assert_eq!(created.topics[0].error_code, 0, "CreateTopics");
}

/// One cycle's clients, run until the broker dies; returns the idempotent producer (its
/// pending batch, if any, is what it will retry).
fn run_clients(
    addr: SocketAddr,
    producer: IdempotentProducer,
    rng: &mut Rng,
    acked: &Shared<Acked>,
    faults: &Shared<Vec<String>>,
    broker: &mut Broker,
) -> (IdempotentProducer, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let idempotent = {
        let (acked, faults, stop) = (acked.clone(), faults.clone(), stop.clone());
        std::thread::spawn(move || producer.run(addr, acked, faults, stop))
    };
    let mut others: Vec<_> = (0..PLAIN_PRODUCERS)
        .map(|p| {
            let (acked, stop, seed) = (acked.clone(), stop.clone(), rng.next());
            let name = format!("plain{p}-{seed:x}");
            std::thread::spawn(move || run_plain_producer(addr, name, seed, acked, stop))
        })
        .collect();
    let (acked_for_commits, stop_commits) = (acked.clone(), stop.clone());
    others.push(std::thread::spawn(move || {
        run_committer(addr, acked_for_commits, stop_commits)
    }));
    let cut_after_ms = CUT_AFTER_MS_MIN + rng.below(CUT_SPREAD_MS);
    std::thread::sleep(Duration::from_millis(cut_after_ms));
    broker.kill();
    stop.store(true, Ordering::Relaxed);
    for thread in others {
        thread.join().expect("client thread");
    }
    (
        idempotent.join().expect("idempotent producer thread"),
        cut_after_ms,
    )
}

/// Rolling segments: new files whose names must be durable before their data is acknowledged.
#[test]
fn power_cut_with_rolling_segments_loses_no_acknowledged_batch_and_duplicates_none() {
    power_cuts(Some(SMALL_SEGMENT_BYTES));
}

/// The default segment size: one active segment per partition, appended to across cuts.
#[test]
fn power_cut_in_one_segment_loses_no_acknowledged_batch_and_duplicates_none() {
    power_cuts(None);
}

fn power_cuts(segment_bytes: Option<&str>) {
    let settings = Settings::from_env();
    let mut rng = Rng(settings.seed);
    let seed = settings.seed;
    let mode = settings.mode;
    eprintln!(
        "power-loss seed {seed} (replay: WEIR_POWERCUT_SEED={seed} WEIR_POWERCUT_MODE={}): \
         {mode:?} mode, {} cuts, segment.bytes {}",
        format!("{mode:?}").to_lowercase(),
        settings.cycles,
        segment_bytes.unwrap_or("default"),
    );
    if settings.verbose {
        // The broker inherits it: recovery's per-partition report shows what each restart found.
        std::env::set_var("WEIR_LOG", "info,weir_storage::log::recovery=debug");
    }
    let started = Instant::now();
    let mount_root = tempfile::tempdir().unwrap();
    let mut mount = PowerCutMount::mount(&mount_root.path().join("mnt"), mode)
        .unwrap_or_else(|e| panic!("power-loss test cannot run: {e}"));
    let mut broker = Broker::start_on(mount.path().join("data"), &[]);
    let mut admin = broker.connect();
    create_topic(&mut admin, segment_bytes);
    find_coordinator(&mut admin);
    let mut producer = IdempotentProducer::init(&mut admin, rng.next());
    drop(admin);
    let acked: Shared<Acked> = Shared::default();
    let faults: Shared<Vec<String>> = Shared::default();
    for cycle in 0..settings.cycles {
        let cut_after_ms;
        (producer, cut_after_ms) = run_clients(
            broker.addr,
            producer,
            &mut rng,
            &acked,
            &faults,
            &mut broker,
        );
        let tear_seed = (rng.below(2) == 0).then(|| rng.next());
        let report = mount
            .cut(tear_seed)
            .unwrap_or_else(|e| panic!("cut {cycle}: {e}"));
        broker.start_again();
        // The idempotent client's first act after the restart: retry what got no answer.
        if let Some(pending) = producer.pending {
            let mut client = broker.connect();
            producer.send_one(&mut client, &acked, &faults);
            if settings.verbose {
                eprintln!("cut {cycle}: retried {pending:?} after the restart");
            }
        }
        let acked = acked.lock().unwrap();
        let mut found = check(&mut broker.connect(), &acked, producer.producer_id);
        found.extend(faults.lock().unwrap().drain(..));
        eprintln!(
            "cut {cycle} after {cut_after_ms} ms: {} batches acknowledged so far, commit {}; \
             dropped {} unsynced bytes in {} files, {} directories with unsynced entries; {} \
             torn writes",
            acked.batches.len(),
            acked.committed_offset,
            report.dropped.unsynced_bytes,
            report.dropped.unsynced_files,
            report.dropped.unsynced_directories,
            report.torn_writes.len(),
        );
        if settings.verbose {
            for line in broker
                .log_text()
                .lines()
                .filter(|l| l.contains("re-validated"))
            {
                eprintln!("  {line}");
            }
        }
        assert!(
            found.is_empty(),
            "after power cut {cycle} ({mode:?} mode, seed {seed}; replay with \
             WEIR_POWERCUT_SEED={seed}):\n  {}",
            found.join("\n  ")
        );
    }
    eprintln!("{} cuts in {:?}", settings.cycles, started.elapsed());
}
