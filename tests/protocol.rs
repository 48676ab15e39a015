//! The real broker binary over raw sockets: protocol edge cases that client libraries never
//! send, and produce/fetch round trips across shards and restarts.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{batches, record_batch, Broker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn create_topic(
    client: &mut common::Client,
    name: &'static str,
    partitions: i32,
) -> CreateTopicsResponse {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    client.call(ApiKey::CreateTopics, 5, &request)
}

fn produce(
    client: &mut common::Client,
    topic: &'static str,
    partition: i32,
    records: Vec<u8>,
) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(records)))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch(
    client: &mut common::Client,
    topic: &'static str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
) -> (i16, i64, Bytes) {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = client.call(ApiKey::Fetch, 11, &request);
    let p = &response.responses[0].partitions[0];
    (
        p.error_code,
        p.high_watermark,
        p.records.clone().unwrap_or_default(),
    )
}

#[test]
fn produce_and_fetch_round_trip_on_every_partition_and_survive_restart() {
    let mut broker = Broker::start(&[]);
    let mut client = broker.connect();
    let created = create_topic(&mut client, "orders", 4);
    assert_eq!(
        created.topics[0].error_code, 0,
        "{:?}",
        created.topics[0].error_message
    );
    for partition in 0..4 {
        for round in 0..3i64 {
            let value = format!("p{partition}-r{round}");
            let (error, base) = produce(
                &mut client,
                "orders",
                partition,
                record_batch(&[value.as_bytes(), b"second"]),
            );
            assert_eq!(
                (error, base),
                (0, round * 2),
                "partition {partition} round {round}"
            );
        }
    }
    let check = |client: &mut common::Client| {
        for partition in 0..4 {
            let (error, high_watermark, records) = fetch(client, "orders", partition, 2, 0);
            assert_eq!((error, high_watermark), (0, 6));
            let fetched = batches(records);
            assert_eq!(
                fetched.iter().map(|(base, _)| *base).collect::<Vec<_>>(),
                vec![2, 4]
            );
            let expected = format!("p{partition}-r1");
            assert!(fetched[0]
                .1
                .windows(expected.len())
                .any(|w| w == expected.as_bytes()));
        }
    };
    check(&mut client);
    broker.restart();
    check(&mut broker.connect());
}

#[test]
fn bad_crc_is_rejected_and_nothing_is_appended() {
    let broker = Broker::start(&[]);
    let mut client = broker.connect();
    create_topic(&mut client, "crc", 1);
    let mut batch = record_batch(&[b"hello"]);
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    assert_eq!(
        produce(&mut client, "crc", 0, batch).0,
        2,
        "CORRUPT_MESSAGE"
    );
    assert_eq!(
        produce(&mut client, "crc", 0, record_batch(&[b"ok"])),
        (0, 0)
    );
}

/// A consumer that stops reading fills its socket: sendfile then meets EAGAIN, the broker
/// waits for the socket to drain (a readiness wait, not a sleep loop) and, once the reader is
/// back, every byte of the fetched range arrives intact and in order.
#[test]
fn a_reader_whose_socket_fills_still_gets_every_fetched_byte() {
    let metrics = common::free_addr();
    let broker = Broker::start(&["--metrics-listen", &metrics.to_string()]);
    let tasks = || common::metric(metrics, "weir_reactor_tasks_total");
    let mut client = broker.connect();
    create_topic(&mut client, "slow", 1);
    let value = vec![0x5au8; 200 * 1024];
    let mut produced = Vec::new();
    for i in 0..40u8 {
        let mut value = value.clone();
        value[0] = i;
        let batch = record_batch(&[&value]);
        assert_eq!(produce(&mut client, "slow", 0, batch.clone()).0, 0);
        produced.push(batch);
    }
    // A small receive buffer, so the broker's sends stall long before 8 MB are through.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&broker.addr.into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut slow = common::Client::from_stream(stream);
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(64 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("slow")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(64 << 20)])]);
    // What the idle broker runs in 1.5 s (timers, the scrapes themselves).
    let before = tasks();
    std::thread::sleep(Duration::from_millis(1500));
    let idle = tasks() - before;
    slow.send_request(ApiKey::Fetch, 11, &request).unwrap();
    // Not reading: the socket fills and stays full for a while.
    std::thread::sleep(Duration::from_millis(200));
    let before = tasks();
    std::thread::sleep(Duration::from_millis(1500));
    let stalled = tasks() - before;
    // A retry loop sleeping at most 5 ms between sendfile attempts would run at least 300
    // times here; a wait for POLLOUT runs once the socket drains.
    assert!(
        stalled < idle + 100,
        "{stalled} tasks run while the socket was full, {idle} while idle: the send polls"
    );
    // Meanwhile the broker serves others.
    assert_eq!(produce(&mut client, "slow", 0, record_batch(&[b"x"])).0, 0);
    let response: FetchResponse = slow.read_response(ApiKey::Fetch, 11).unwrap();
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let fetched = batches(partition.records.clone().unwrap_or_default());
    assert!(fetched.len() >= produced.len(), "{} batches", fetched.len());
    for (i, (batch, (offset, bytes))) in produced.iter().zip(&fetched).enumerate() {
        assert_eq!(*offset, i as i64);
        // The stored batch differs from the produced one only in its base offset.
        assert_eq!(&bytes[8..], &batch[8..], "batch {i}");
    }
}

#[test]
fn long_poll_fetch_wakes_on_produce_from_another_connection() {
    let broker = Broker::start(&[]);
    let mut consumer = broker.connect();
    create_topic(&mut consumer, "wake", 2);
    let addr = broker.addr;
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut client = common::Client::connect(addr);
        produce(&mut client, "wake", 1, record_batch(&[b"late"]))
    });
    let started = Instant::now();
    let (error, high_watermark, records) = fetch(&mut consumer, "wake", 1, 0, 10_000);
    assert_eq!(producer.join().unwrap(), (0, 0));
    assert_eq!((error, high_watermark), (0, 1));
    assert_eq!(batches(records).len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "fetch waited for its timeout instead of the data"
    );
    // And an empty long poll returns at its deadline with nothing.
    let (error, _, records) = fetch(&mut consumer, "wake", 0, 0, 200);
    assert_eq!((error, records.len()), (0, 0));
}

#[test]
fn fetch_past_the_end_is_out_of_range() {
    let broker = Broker::start(&[]);
    let mut client = broker.connect();
    create_topic(&mut client, "range", 1);
    produce(&mut client, "range", 0, record_batch(&[b"a"]));
    assert_eq!(
        fetch(&mut client, "range", 0, 5, 0).0,
        1,
        "OFFSET_OUT_OF_RANGE"
    );
    assert_eq!(
        fetch(&mut client, "range", 0, 1, 0).2.len(),
        0,
        "at the high watermark: empty"
    );
}

#[test]
fn forged_array_count_closes_the_connection_without_hurting_the_broker() {
    let mut broker = Broker::start(&[]);
    let mut attacker = broker.connect();
    // CreateTopics v4 header, then a topics array claiming 2^31-1 entries with nothing behind it.
    let mut body = vec![0, 19, 0, 4, 0, 0, 0, 1, 0, 0];
    body.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
    attacker.send_frame(&body);
    assert!(attacker.is_closed());
    assert!(broker.is_running(), "broker died: {}", broker.log_text());
    let mut client = broker.connect();
    let versions: ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0);
}

#[test]
fn api_versions_newer_than_ours_gets_a_v0_answer_with_the_list() {
    let broker = Broker::start(&[]);
    let mut client = broker.connect();
    // ApiVersions v99, correlation id 42, client id "x", no body.
    client.send_frame(&[0, 18, 0, 99, 0, 0, 0, 42, 0, 1, b'x']);
    let mut frame = client.read_frame().expect("a response");
    use kafka_protocol::protocol::Decodable;
    let header = ResponseHeader::decode(&mut frame, 0).unwrap();
    assert_eq!(header.correlation_id, 42);
    let response = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
    assert_eq!(response.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(response
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Fetch as i16));
}

#[test]
fn broken_frames_close_only_their_own_connection() {
    let mut broker = Broker::start(&["--socket-request-max-bytes", "4096"]);
    let mut bystander = broker.connect();
    let cases: Vec<Vec<u8>> = vec![
        vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3], // length prefix far over the limit
        5000u32.to_be_bytes().to_vec(),        // just over the configured limit
        vec![0, 0, 0, 2, 0, 0],                // too short for a header
        [
            &12u32.to_be_bytes()[..],
            &[0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
        ]
        .concat(), // api key 9999
        [&10u32.to_be_bytes()[..], &[0, 3, 0, 99, 0, 0, 0, 1, 0, 0]].concat(), // Metadata v99
    ];
    for case in cases {
        let mut client = broker.connect();
        client.send_raw(&case);
        assert!(client.is_closed(), "connection survived {case:?}");
    }
    // A truncated frame: the client gives up mid-frame.
    let mut client = broker.connect();
    client.send_raw(&[0, 0, 1, 0, 0, 18]);
    drop(client);
    assert!(broker.is_running());
    let versions: ApiVersionsResponse =
        bystander.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0);
}

#[test]
fn a_second_broker_on_the_same_data_dir_refuses_to_start() {
    let broker = Broker::start(&[]);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(broker.data_path())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stderr).contains("in use"));
}

/// Every version of every API Weir advertises gets a decodable answer: kafka-protocol refuses
/// to encode a field set in a version that lacks it, so a handler that sets one breaks only
/// the clients that negotiate that version.
#[test]
fn every_advertised_version_of_every_api_answers() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;

    let broker = Broker::start(&[]);
    let mut client = broker.connect();
    create_topic(&mut client, "versions", 2);
    produce(&mut client, "versions", 0, record_batch(&[b"v"]));
    let versions: ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    let range = |key: ApiKey| {
        let api = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .expect("advertised");
        api.min_version..=api.max_version
    };
    let name = || TopicName(StrBytes::from_static_str("versions"));
    for v in range(ApiKey::Metadata) {
        let topics = vec![MetadataRequestTopic::default().with_name(Some(name()))];
        let r: MetadataResponse = client.call(
            ApiKey::Metadata,
            v,
            &MetadataRequest::default().with_topics(Some(topics)),
        );
        assert_eq!(r.topics[0].error_code, 0, "Metadata v{v}");
        assert_eq!(r.topics[0].partitions.len(), 2, "Metadata v{v}");
    }
    for v in range(ApiKey::Produce) {
        let data = TopicProduceData::default()
            .with_name(name())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(1)
                .with_records(Some(Bytes::from(record_batch(&[b"p"]))))]);
        let r: ProduceResponse = client.call(
            ApiKey::Produce,
            v,
            &ProduceRequest::default()
                .with_acks(-1)
                .with_topic_data(vec![data]),
        );
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "Produce v{v}"
        );
    }
    for v in range(ApiKey::ListOffsets) {
        let topic = ListOffsetsTopic::default()
            .with_name(name())
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)]);
        let r: ListOffsetsResponse = client.call(
            ApiKey::ListOffsets,
            v,
            &ListOffsetsRequest::default().with_topics(vec![topic]),
        );
        assert_eq!(
            (
                r.topics[0].partitions[0].error_code,
                r.topics[0].partitions[0].offset
            ),
            (0, 1),
            "ListOffsets v{v}"
        );
    }
    for v in range(ApiKey::CreateTopics) {
        let topic = CreatableTopic::default()
            .with_name(name())
            .with_num_partitions(1)
            .with_replication_factor(1);
        let r: CreateTopicsResponse = client.call(
            ApiKey::CreateTopics,
            v,
            &CreateTopicsRequest::default().with_topics(vec![topic]),
        );
        assert_eq!(
            r.topics[0].error_code, 36,
            "CreateTopics v{v}: TOPIC_ALREADY_EXISTS"
        );
    }
    for v in range(ApiKey::DescribeConfigs) {
        let resources = vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("versions")),
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("0")),
        ];
        // Null keys: every config (an empty list means none, as in Kafka).
        let resources: Vec<_> = resources
            .into_iter()
            .map(|r| r.with_configuration_keys(None))
            .collect();
        let r: DescribeConfigsResponse = client.call(
            ApiKey::DescribeConfigs,
            v,
            &DescribeConfigsRequest::default().with_resources(resources),
        );
        assert!(
            r.results
                .iter()
                .all(|res| res.error_code == 0 && res.configs.len() > 5),
            "DescribeConfigs v{v}"
        );
        let one = vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("versions"))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("segment.bytes")]))];
        let r: DescribeConfigsResponse = client.call(
            ApiKey::DescribeConfigs,
            v,
            &DescribeConfigsRequest::default().with_resources(one),
        );
        let values: Vec<_> = r.results[0]
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        assert_eq!(
            values,
            vec![("segment.bytes".to_string(), Some("1073741824".to_string()))],
            "DescribeConfigs v{v}"
        );
    }
    for v in range(ApiKey::DeleteRecords) {
        use kafka_protocol::messages::delete_records_request::{
            DeleteRecordsPartition, DeleteRecordsTopic,
        };
        // Partition 1 holds one record per Produce version tried above; move the start by one.
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(name())
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(1)
                    .with_offset(i64::from(v) + 1)])]);
        let r: DeleteRecordsResponse = client.call(ApiKey::DeleteRecords, v, &request);
        let p = &r.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.low_watermark),
            (0, i64::from(v) + 1),
            "DeleteRecords v{v}"
        );
    }
    for v in range(ApiKey::DescribeLogDirs) {
        use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
        // Every partition (null), then partition 1 of this topic and one it does not have.
        let all: DescribeLogDirsResponse = client.call(
            ApiKey::DescribeLogDirs,
            v,
            &DescribeLogDirsRequest::default().with_topics(None),
        );
        assert_eq!(all.results.len(), 1, "one log dir, v{v}");
        let dir = &all.results[0];
        assert!(
            dir.log_dir.ends_with("data"),
            "DescribeLogDirs v{v}: {:?}",
            dir.log_dir
        );
        let topic = dir
            .topics
            .iter()
            .find(|t| t.name == name())
            .expect("listed");
        assert_eq!(topic.partitions.len(), 2, "DescribeLogDirs v{v}");
        assert!(
            topic.partitions.iter().all(|p| p.partition_size > 0),
            "v{v}"
        );
        if v >= 4 {
            assert!(
                dir.total_bytes >= dir.usable_bytes && dir.usable_bytes > 0,
                "v{v}"
            );
        } else {
            assert_eq!((dir.total_bytes, dir.usable_bytes), (-1, -1), "v{v}");
        }
        let some: DescribeLogDirsResponse = client.call(
            ApiKey::DescribeLogDirs,
            v,
            &DescribeLogDirsRequest::default().with_topics(Some(vec![
                DescribableLogDirTopic::default()
                    .with_topic(name())
                    .with_partitions(vec![1, 7]),
            ])),
        );
        let topics = &some.results[0].topics;
        assert_eq!(topics.len(), 1, "DescribeLogDirs v{v}");
        let sizes: Vec<_> = topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.partition_size))
            .collect();
        let expected = topic.partitions.iter().find(|p| p.partition_index == 1);
        assert_eq!(
            sizes,
            vec![(1, expected.unwrap().partition_size)],
            "only partition 1, at its size: v{v}"
        );
    }
    for v in range(ApiKey::DescribeCluster) {
        let r: DescribeClusterResponse = client.call(
            ApiKey::DescribeCluster,
            v,
            &DescribeClusterRequest::default(),
        );
        assert_eq!(r.brokers.len(), 1, "DescribeCluster v{v}");
    }
    for v in range(ApiKey::Fetch) {
        // Fetch names topics up to v12 and identifies them by id from v13 (KIP-516).
        let topic = if v >= 13 {
            FetchTopic::default().with_topic_id(uuid_of(&mut client))
        } else {
            FetchTopic::default().with_topic(name())
        };
        let topic = topic.with_partitions(vec![FetchPartition::default()
            .with_partition(0)
            .with_partition_max_bytes(1 << 20)]);
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![topic]);
        let r: FetchResponse = client.call(ApiKey::Fetch, v, &request);
        let p = &r.responses[0].partitions[0];
        assert_eq!((p.error_code, p.high_watermark), (0, 1), "Fetch v{v}");
        assert_eq!(
            batches(p.records.clone().unwrap_or_default()).len(),
            1,
            "Fetch v{v}"
        );
    }
    for v in range(ApiKey::DeleteTopics) {
        let r: DeleteTopicsResponse = client.call(
            ApiKey::DeleteTopics,
            v,
            &if v >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    kafka_protocol::messages::delete_topics_request::DeleteTopicState::default()
                        .with_name(Some(TopicName(StrBytes::from_static_str("no-such-topic")))),
                ])
            } else {
                DeleteTopicsRequest::default()
                    .with_topic_names(vec![TopicName(StrBytes::from_static_str("no-such-topic"))])
            },
        );
        assert_eq!(
            r.responses[0].error_code, 3,
            "DeleteTopics v{v}: UNKNOWN_TOPIC_OR_PARTITION"
        );
    }
    alter_configs_and_create_partitions_answer_every_version(&mut client, &range);
}

/// The config and partition APIs at every advertised version: a change that succeeds and a
/// topic that does not exist, so both answers encode.
fn alter_configs_and_create_partitions_answer_every_version(
    client: &mut common::Client,
    range: &dyn Fn(ApiKey) -> std::ops::RangeInclusive<i16>,
) {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::incremental_alter_configs_request as incremental;

    let topic = |name: &'static str| StrBytes::from_static_str(name);
    for v in range(ApiKey::AlterConfigs) {
        let resources = ["versions", "no-such-topic"].map(|name| {
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(topic(name))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(topic("retention.ms"))
                    .with_value(Some(topic("86400000")))])
        });
        let r: AlterConfigsResponse = client.call(
            ApiKey::AlterConfigs,
            v,
            &AlterConfigsRequest::default().with_resources(resources.to_vec()),
        );
        let codes: Vec<_> = r.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0, 3], "AlterConfigs v{v}");
    }
    for v in range(ApiKey::IncrementalAlterConfigs) {
        let resources = ["versions", "no-such-topic"].map(|name| {
            incremental::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(topic(name))
                .with_configs(vec![incremental::AlterableConfig::default()
                    .with_name(topic("retention.ms"))
                    .with_config_operation(1)])
        });
        let r: IncrementalAlterConfigsResponse = client.call(
            ApiKey::IncrementalAlterConfigs,
            v,
            &IncrementalAlterConfigsRequest::default().with_resources(resources.to_vec()),
        );
        let codes: Vec<_> = r.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0, 3], "IncrementalAlterConfigs v{v}");
    }
    for (count, v) in (3..).zip(range(ApiKey::CreatePartitions)) {
        let topics = [("versions", count), ("no-such-topic", 2)].map(|(name, count)| {
            CreatePartitionsTopic::default()
                .with_name(TopicName(topic(name)))
                .with_count(count)
                // Null: placed by the broker (an empty list would be zero assignments).
                .with_assignments(None)
        });
        let r: CreatePartitionsResponse = client.call(
            ApiKey::CreatePartitions,
            v,
            &CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(topics.to_vec()),
        );
        let codes: Vec<_> = r.results.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, vec![0, 3], "CreatePartitions v{v}");
    }
    let mut producer_ids = Vec::new();
    for v in range(ApiKey::InitProducerId) {
        // No transactional id: an idempotent producer (an empty one is INVALID_REQUEST).
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let r: InitProducerIdResponse = client.call(ApiKey::InitProducerId, v, &request);
        assert_eq!(
            (r.error_code, r.producer_epoch),
            (0, 0),
            "InitProducerId v{v}"
        );
        producer_ids.push(r.producer_id.0);
    }
    assert!(
        producer_ids.windows(2).all(|w| w[0] < w[1]),
        "a new producer id every time: {producer_ids:?}"
    );
    assert_eq!(producer_ids.len(), 6, "InitProducerId v0-5");
}

fn uuid_of(client: &mut common::Client) -> uuid::Uuid {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let topics = vec![MetadataRequestTopic::default()
        .with_name(Some(TopicName(StrBytes::from_static_str("versions"))))];
    let r: MetadataResponse = client.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(topics)),
    );
    r.topics[0].topic_id
}
