//! AlterConfigs, IncrementalAlterConfigs and CreatePartitions against the real binary over
//! raw sockets: the altered configs show in DescribeConfigs, act on the open logs and survive
//! a restart; new partitions take produce and fetch; Kafka's errors for everything refused.

mod common;

use common::requests::{create_topic, fetched_bases, produce, produce_batch, s};
use common::{batches, record_batch, Broker, Client};
use kafka_protocol::messages::alter_configs_request::{
    AlterConfigsResource, AlterableConfig as ReplacedConfig,
};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource as IncrementalResource, AlterableConfig as ConfigOperation,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
// Kafka error codes.
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;

/// AlterConfigs v0 of one resource: (error code, message).
fn replace_configs(
    client: &mut Client,
    resource_type: i8,
    name: &str,
    configs: &[(&str, &str)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let configs = configs
        .iter()
        .map(|(k, v)| {
            ReplacedConfig::default()
                .with_name(s(k))
                .with_value(Some(s(v)))
        })
        .collect();
    let request = AlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(configs)]);
    let r: AlterConfigsResponse = client.call(ApiKey::AlterConfigs, 0, &request);
    let answer = &r.responses[0];
    assert_eq!(answer.resource_name.as_str(), name);
    (
        answer.error_code,
        answer.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// IncrementalAlterConfigs v1 of one topic: (error code, message).
fn alter_incrementally(
    client: &mut Client,
    name: &str,
    ops: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    let configs = ops
        .iter()
        .map(|(k, op, v)| {
            ConfigOperation::default()
                .with_name(s(k))
                .with_config_operation(*op)
                .with_value(v.map(s))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default()
        .with_validate_only(validate_only)
        .with_resources(vec![IncrementalResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s(name))
            .with_configs(configs)]);
    let r: IncrementalAlterConfigsResponse =
        client.call(ApiKey::IncrementalAlterConfigs, 1, &request);
    let answer = &r.responses[0];
    (
        answer.error_code,
        answer.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// (value, source) of one topic config, by DescribeConfigs v4.
fn described(client: &mut Client, topic: &str, config: &str) -> (String, i8) {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(s(topic))
            .with_configuration_keys(Some(vec![s(config)]))]);
    let r: DescribeConfigsResponse = client.call(ApiKey::DescribeConfigs, 4, &request);
    let entry = &r.results[0].configs[0];
    (
        entry
            .value
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default(),
        entry.config_source,
    )
}

fn create_partitions(
    client: &mut Client,
    topic: &str,
    count: i32,
    assignments: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> (i16, Option<String>) {
    let assignments = assignments.map(|a| {
        a.into_iter()
            .map(|ids| {
                CreatePartitionsAssignment::default()
                    .with_broker_ids(ids.into_iter().map(BrokerId).collect())
            })
            .collect()
    });
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(5000)
        .with_validate_only(validate_only)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_count(count)
            .with_assignments(assignments)]);
    let r: CreatePartitionsResponse = client.call(ApiKey::CreatePartitions, 3, &request);
    let result = &r.results[0];
    (
        result.error_code,
        result.error_message.as_ref().map(|m| m.to_string()),
    )
}

fn partition_count(client: &mut Client, topic: &str) -> usize {
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(s(topic)))),
    ]));
    let r: MetadataResponse = client.call(ApiKey::Metadata, 12, &request);
    assert_eq!(r.topics[0].error_code, 0);
    r.topics[0].partitions.len()
}

fn segment_files(broker: &Broker, dir: &str) -> usize {
    std::fs::read_dir(broker.data_path().join(dir))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "log"))
        })
        .count()
}

#[test]
fn altered_configs_show_as_dynamic_and_survive_restart() {
    let mut broker = Broker::start(&[]);
    let mut client = broker.connect();
    create_topic(&mut client, "cfg", 2, &[("retention.ms", "100000")]);

    let replaced = replace_configs(
        &mut client,
        TOPIC,
        "cfg",
        &[("max.message.bytes", "5000")],
        false,
    );
    assert_eq!(replaced, (0, None));
    assert_eq!(
        described(&mut client, "cfg", "max.message.bytes"),
        ("5000".into(), SOURCE_DYNAMIC_TOPIC)
    );
    assert_eq!(
        described(&mut client, "cfg", "retention.ms"),
        ("604800000".into(), SOURCE_DEFAULT),
        "AlterConfigs replaces the whole set of overrides"
    );

    let ops = [
        ("cleanup.policy", APPEND, Some("compact")),
        ("retention.ms", SET, Some("3600000")),
        ("max.message.bytes", DELETE, None),
    ];
    assert_eq!(
        alter_incrementally(&mut client, "cfg", &ops, false),
        (0, None)
    );
    let check = |client: &mut Client| {
        assert_eq!(
            described(client, "cfg", "cleanup.policy"),
            ("delete,compact".into(), SOURCE_DYNAMIC_TOPIC)
        );
        assert_eq!(
            described(client, "cfg", "retention.ms"),
            ("3600000".into(), SOURCE_DYNAMIC_TOPIC)
        );
        assert_eq!(
            described(client, "cfg", "max.message.bytes"),
            ("1048588".into(), SOURCE_DEFAULT)
        );
    };
    check(&mut client);
    broker.restart();
    check(&mut broker.connect());
}

#[test]
fn refused_alterations_change_nothing() {
    let broker = Broker::start(&[]);
    let mut client = broker.connect();
    create_topic(&mut client, "strict", 1, &[]);

    let unknown = replace_configs(
        &mut client,
        TOPIC,
        "strict",
        &[("no.such.config", "1")],
        false,
    );
    assert_eq!(unknown.0, INVALID_CONFIG);
    assert!(unknown.1.unwrap().contains("no.such.config"));
    let bad = alter_incrementally(
        &mut client,
        "strict",
        &[("segment.bytes", SET, Some("ten"))],
        false,
    );
    assert_eq!(bad.0, INVALID_CONFIG);
    assert!(bad.1.unwrap().contains("Invalid value ten"));
    let not_a_list = alter_incrementally(
        &mut client,
        "strict",
        &[("retention.ms", APPEND, Some("1"))],
        false,
    );
    assert_eq!(not_a_list.0, INVALID_CONFIG);
    let no_topic = alter_incrementally(
        &mut client,
        "missing",
        &[("retention.ms", SET, Some("1"))],
        false,
    );
    assert_eq!(no_topic.0, UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(
        replace_configs(&mut client, TOPIC, "missing", &[], false).0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    let bad_op = alter_incrementally(
        &mut client,
        "strict",
        &[("retention.ms", 9, Some("1"))],
        false,
    );
    assert_eq!(bad_op.0, INVALID_REQUEST);
    let broker_config =
        replace_configs(&mut client, BROKER, "0", &[("num.partitions", "3")], false);
    assert_eq!(broker_config.0, INVALID_REQUEST);
    assert!(broker_config.1.unwrap().contains("static"));

    // A half-valid change applies nothing; validate_only applies nothing either.
    let half = [
        ("retention.ms", SET, Some("1000")),
        ("segment.bytes", SET, Some("1")),
    ];
    assert_eq!(
        alter_incrementally(&mut client, "strict", &half, false).0,
        INVALID_CONFIG
    );
    let valid = [("retention.ms", SET, Some("1000"))];
    assert_eq!(
        alter_incrementally(&mut client, "strict", &valid, true),
        (0, None)
    );
    assert_eq!(
        described(&mut client, "strict", "retention.ms"),
        ("604800000".into(), SOURCE_DEFAULT)
    );
}

#[test]
fn a_smaller_segment_bytes_rolls_the_open_log() {
    let mut broker = Broker::start(&[]);
    let mut client = broker.connect();
    create_topic(&mut client, "rolling", 1, &[]);
    let value = [b'x'; 200];
    for _ in 0..5 {
        assert_eq!(produce(&mut client, "rolling", 0, &value).0, 0);
    }
    assert_eq!(segment_files(&broker, "rolling-0"), 1);

    let small = [("segment.bytes", SET, Some("1024"))];
    assert_eq!(
        alter_incrementally(&mut client, "rolling", &small, false),
        (0, None)
    );
    for _ in 0..20 {
        assert_eq!(produce(&mut client, "rolling", 0, &value).0, 0);
    }
    // About four 270-byte batches fit in 1024 bytes: 20 batches need at least 5 segments.
    let rolled = segment_files(&broker, "rolling-0");
    assert!(rolled >= 5, "{rolled} segments");
    assert_eq!(
        fetched_bases(&mut client, "rolling", 0),
        (0..25).collect::<Vec<_>>()
    );

    // The config was persisted: after a restart the log still rolls by it.
    broker.restart();
    let mut client = broker.connect();
    for _ in 0..8 {
        assert_eq!(produce(&mut client, "rolling", 0, &value).0, 0);
    }
    assert!(segment_files(&broker, "rolling-0") >= rolled + 2);
}

#[test]
fn created_partitions_take_produce_and_fetch_and_survive_restart() {
    let mut broker = Broker::start(&[]);
    let mut client = broker.connect();
    create_topic(&mut client, "grow", 1, &[]);

    assert_eq!(
        create_partitions(&mut client, "grow", 3, None, true),
        (0, None)
    );
    assert_eq!(
        partition_count(&mut client, "grow"),
        1,
        "validate_only creates nothing"
    );
    assert_eq!(
        create_partitions(&mut client, "grow", 3, None, false),
        (0, None)
    );
    assert_eq!(partition_count(&mut client, "grow"), 3);
    let assigned = create_partitions(&mut client, "grow", 4, Some(vec![vec![0]]), false);
    assert_eq!(assigned, (0, None));
    for partition in 0..4 {
        assert_eq!(produce(&mut client, "grow", partition, b"v"), (0, 0));
    }
    broker.restart();
    let mut client = broker.connect();
    assert_eq!(partition_count(&mut client, "grow"), 4);
    for partition in 0..4 {
        assert_eq!(fetched_bases(&mut client, "grow", partition), vec![0]);
    }
}

#[test]
fn refused_partition_changes() {
    let broker = Broker::start(&[]);
    let mut client = broker.connect();
    create_topic(&mut client, "fixed", 2, &[]);
    let code = |client: &mut Client, topic, count, assignments| {
        create_partitions(client, topic, count, assignments, false).0
    };
    assert_eq!(code(&mut client, "fixed", 2, None), INVALID_PARTITIONS);
    assert_eq!(code(&mut client, "fixed", 1, None), INVALID_PARTITIONS);
    assert_eq!(code(&mut client, "fixed", 10_001, None), INVALID_PARTITIONS);
    assert_eq!(
        code(&mut client, "missing", 3, None),
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        code(&mut client, "fixed", 3, Some(vec![vec![7]])),
        INVALID_REPLICA_ASSIGNMENT
    );
    assert_eq!(
        code(&mut client, "fixed", 4, Some(vec![vec![0]])),
        INVALID_REPLICA_ASSIGNMENT,
        "one assignment per new partition"
    );
    assert_eq!(
        code(&mut client, "__consumer_offsets", 100, None),
        INVALID_REQUEST
    );
    assert_eq!(partition_count(&mut client, "fixed"), 2);

    // The same topic twice in one request: both refused.
    let twice = CreatePartitionsRequest::default().with_topics(vec![
        CreatePartitionsTopic::default()
            .with_name(TopicName(s("fixed")))
            .with_count(3),
        CreatePartitionsTopic::default()
            .with_name(TopicName(s("fixed")))
            .with_count(4),
    ]);
    let r: CreatePartitionsResponse = client.call(ApiKey::CreatePartitions, 0, &twice);
    assert!(r.results.iter().all(|t| t.error_code == INVALID_REQUEST));
    assert_eq!(partition_count(&mut client, "fixed"), 2);
}

/// Produces one batch a test has edited to partition 0 of `topic`, its CRC recomputed as a
/// client would; returns the partition's error code.
fn produce_signed(c: &mut Client, topic: &str, mut batch: Vec<u8>) -> i16 {
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    produce_batch(c, topic, 0, batch).0
}

#[test]
fn record_timestamps_outside_the_topics_bounds_are_invalid_timestamp_and_nothing_is_appended() {
    let broker = Broker::start(&[]);
    let mut c = broker.connect();
    create_topic(
        &mut c,
        "bounded",
        1,
        &[
            ("message.timestamp.before.max.ms", "60000"),
            ("message.timestamp.after.max.ms", "60000"),
        ],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let produce_at = |c: &mut Client, timestamp: i64| {
        let mut batch = record_batch(&[b"when"]);
        batch[27..35].copy_from_slice(&timestamp.to_be_bytes());
        batch[35..43].copy_from_slice(&timestamp.to_be_bytes());
        produce_signed(c, "bounded", batch)
    };
    assert_eq!(produce_at(&mut c, now), 0);
    assert_eq!(
        produce_at(&mut c, now - 3_600_000),
        32,
        "an hour old: INVALID_TIMESTAMP"
    );
    assert_eq!(produce_at(&mut c, now + 3_600_000), 32, "an hour ahead");
    assert_eq!(produce_at(&mut c, -1), 0, "no timestamp is exempt");
    assert_eq!(
        fetched_bases(&mut c, "bounded", 0),
        [0, 1],
        "nothing refused was appended"
    );
}

/// Sarama (Version V2_0_0_0) sends `maxTimestamp = -1` in every batch header while its records
/// carry real timestamps. Retention reads the header, so, stored as sent, every such batch
/// looked ancient and was deleted at the next pass. As Kafka's LogValidator, the broker takes
/// the records' timestamps and rewrites the header (CRC included) before appending.
#[test]
fn a_header_max_timestamp_of_minus_one_does_not_let_retention_delete_fresh_data() {
    let broker = Broker::start(&["--log-retention-check-interval-ms", "200"]);
    let mut c = broker.connect();
    create_topic(&mut c, "sarama", 1, &[("retention.ms", "60000")]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for i in 0..20 {
        let mut batch = record_batch(&[b"fresh"]);
        batch[27..35].copy_from_slice(&now.to_be_bytes()); // firstTimestamp
        batch[35..43].copy_from_slice(&(-1i64).to_be_bytes()); // maxTimestamp, as Sarama
        batch[12..16].copy_from_slice(&1000i32.to_be_bytes()); // a leader epoch of its own
        if i % 2 == 1 {
            // The LogAppendTime bit on a CreateTime topic must not shield the -1 from the fix.
            batch[22] |= 0x08;
        }
        assert_eq!(produce_signed(&mut c, "sarama", batch), 0);
    }
    // Ten retention passes.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        fetched_bases(&mut c, "sarama", 0),
        (0..20).collect::<Vec<_>>()
    );
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s("sarama")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r: FetchResponse = c.call(ApiKey::Fetch, 11, &request);
    let records = r.responses[0].partitions[0].records.clone().unwrap();
    for (_, batch) in batches(records) {
        let max_timestamp = i64::from_be_bytes(batch[35..43].try_into().unwrap());
        assert_eq!(max_timestamp, now, "the header says what the records say");
        assert_eq!(batch[22] & 0x08, 0, "CreateTime, as the topic says");
        let epoch = i32::from_be_bytes(batch[12..16].try_into().unwrap());
        assert_eq!(epoch, 0, "the broker's leader epoch, not the client's");
        let crc = u32::from_be_bytes(batch[17..21].try_into().unwrap());
        assert_eq!(crc, crc32c::crc32c(&batch[21..]), "and its CRC matches");
    }
}
