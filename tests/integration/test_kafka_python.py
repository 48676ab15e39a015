"""kafka-python: admin operations, produce and consume, offsets."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import (
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    OffsetOutOfRangeError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from helpers import unique_topic


@pytest.fixture
def admin(broker):
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    yield client
    client.close()


def topic_names(admin):
    return set(admin.list_topics())


def test_create_topics_validates_like_kafka(admin):
    name = unique_topic("admin")
    admin.create_topics([NewTopic(name, 3, 1)], validate_only=True)
    assert name not in topic_names(admin), "validate_only creates nothing"
    admin.create_topics([NewTopic(name, 3, 1)])
    assert name in topic_names(admin)
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(name, 3, 1)])
    for bad in ("bad name!", "..", ".", "a" * 250, "tab\there", "slash/no"):
        with pytest.raises(InvalidTopicError):
            admin.create_topics([NewTopic(bad, 1, 1)])
    longest = "l" * 249
    admin.create_topics([NewTopic(longest, 1, 1)])
    assert longest in topic_names(admin), "249 characters is still a legal name"
    for partitions in (0, -5):
        with pytest.raises(InvalidPartitionsError):
            admin.create_topics([NewTopic(unique_topic("np"), partitions, 1)])
    with pytest.raises(InvalidReplicationFactorError):
        admin.create_topics([NewTopic(unique_topic("rf"), 1, 2)])
    described = admin.describe_topics([name])
    assert len(described[0]["partitions"]) == 3
    assert not any(t.startswith(("np-", "rf-")) for t in topic_names(admin)), "failed creates leave nothing"


def test_delete_topics(admin):
    name = unique_topic("doomed")
    admin.create_topics([NewTopic(name, 2, 1)])
    admin.delete_topics([name])
    assert name not in topic_names(admin)
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics([name])


def test_describe_configs_for_topic_and_broker(admin):
    name = unique_topic("configs")
    admin.create_topics([NewTopic(name, 1, 1, topic_configs={"segment.bytes": "1048576"})])
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    configs = {entry[0]: entry[1] for entry in result[0].resources[0][4]}
    assert configs["segment.bytes"] == "1048576"
    assert configs["cleanup.policy"] == "delete"
    result = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "0")])
    configs = {entry[0]: entry[1] for entry in result[0].resources[0][4]}
    assert configs["broker.id"] == "0"
    assert configs["num.partitions"] == "1"


def test_describe_cluster(admin):
    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 0
    assert [b["node_id"] for b in cluster["brokers"]] == [0]
    assert len(cluster["cluster_id"]) == 22


# acks=0 is covered with librdkafka (test_confluent.py, test_kcat.py) and over a raw socket
# (test_wire.py): kafka-python (2.0.6, and 2.3.3 alike) never writes an acks=0 Produce request
# to its socket at all; strace shows no send(2) for it, so that is a client bug, not Weir's.
@pytest.mark.parametrize("acks", [1, "all"])
def test_produce_and_consume_keys_values_headers_timestamps(broker, acks):
    topic = unique_topic(f"kp-acks{acks}")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=acks)
    base_ts = 1_700_000_000_000
    for i in range(100):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(),
                      headers=[("h", f"{i}".encode())], timestamp_ms=base_ts + i)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, consumer_timeout_ms=5000,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 100 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            got.extend(records)
    consumer.close()
    assert [(r.offset, r.key, r.value, r.headers, r.timestamp) for r in got] == [
        (i, f"k{i}".encode(), f"v{i}".encode(), [("h", f"{i}".encode())], base_ts + i) for i in range(100)
    ]


def test_list_offsets_earliest_latest_and_by_time(broker):
    topic = unique_topic("offsets")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0)
    for i in range(10):
        producer.send(topic, value=b"x", timestamp_ms=1_000_000 + i * 1000).get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    tp = TopicPartition(topic, 0)
    assert consumer.beginning_offsets([tp]) == {tp: 0}
    assert consumer.end_offsets([tp]) == {tp: 10}
    found = consumer.offsets_for_times({tp: 1_004_500})[tp]
    assert (found.offset, found.timestamp) == (5, 1_005_000)
    assert consumer.offsets_for_times({tp: 9_999_999})[tp] is None
    consumer.close()


def test_out_of_range_offset_resets_as_configured(broker):
    topic = unique_topic("reset")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for i in range(5):
        producer.send(topic, value=f"m{i}".encode())
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest")
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 1000)  # past the end: OFFSET_OUT_OF_RANGE, then reset to earliest
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 5 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(r.value for r in records)
    consumer.close()
    assert got == [f"m{i}".encode() for i in range(5)]


def test_produce_to_a_new_topic_auto_creates_it(broker, admin):
    topic = unique_topic("auto")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    metadata = producer.send(topic, value=b"hello").get(timeout=20)
    producer.close()
    assert (metadata.topic, metadata.partition, metadata.offset) == (topic, 0, 0)
    assert topic in topic_names(admin)


def test_out_of_range_offset_with_reset_none_raises(broker):
    topic = unique_topic("noreset")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for i in range(3):
        producer.send(topic, value=f"m{i}".encode()).get(timeout=20)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="none")
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 50)
    try:
        with pytest.raises(OffsetOutOfRangeError):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                assert not consumer.poll(timeout_ms=500), "records served from past the end"
        # In range again (the end itself is a valid position: nothing yet, no error).
        consumer.seek(tp, 3)
        assert consumer.poll(timeout_ms=1000) == {}
        consumer.seek(tp, 1)
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend((r.offset, r.value) for r in records)
        assert got == [(1, b"m1"), (2, b"m2")]
    finally:
        consumer.close()


def test_deleted_topic_recreated_starts_empty_and_deletion_survives_restart(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    gone, again = unique_topic("gone"), unique_topic("again")
    admin.create_topics([NewTopic(gone, 2, 1), NewTopic(again, 1, 1)])
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for topic in (gone, again):
        for i in range(10):
            producer.send(topic, value=f"old-{i}".encode(), partition=0).get(timeout=20)
    producer.close()
    admin.delete_topics([gone, again])
    admin.create_topics([NewTopic(again, 1, 1)])
    admin.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    tp = TopicPartition(again, 0)
    assert consumer.end_offsets([tp]) == {tp: 0}, "a re-created topic must not inherit the old log"
    consumer.close()

    broker.restart()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    names = topic_names(admin)
    admin.close()
    assert gone not in names, "a deleted topic stays deleted after a restart"
    assert again in names
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    assert producer.send(again, value=b"new").get(timeout=20).offset == 0
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, consumer_timeout_ms=3000,
                             auto_offset_reset="earliest")
    consumer.assign([tp])
    assert [(r.offset, r.value) for r in consumer] == [(0, b"new")]
    consumer.close()


def test_small_fetch_limits_still_make_progress(broker):
    topic = unique_topic("limits")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", max_request_size=1_000_000)
    values = [bytes([97 + i]) * 50_000 for i in range(10)]
    for v in values:
        producer.send(topic, value=v).get(timeout=20)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest",
                             fetch_max_bytes=1024, max_partition_fetch_bytes=1024)
    consumer.assign([TopicPartition(topic, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 10 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(r.value for r in records)
    consumer.close()
    assert got == values


@pytest.mark.parametrize("codec", [None, "gzip"])
def test_offsets_for_times_finds_the_record_inside_a_batch(broker, codec):
    """Kafka answers a timestamp lookup with the first record at or after the time, even in
    the middle of a (compressed) batch."""
    topic = unique_topic(f"tsbatch-{codec}")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=500,
                             batch_size=1_000_000, compression_type=codec)
    futures = [producer.send(topic, value=f"m{i}".encode(), timestamp_ms=2_000_000 + i * 1000) for i in range(10)]
    producer.flush()
    producer.close()
    assert [f.get(timeout=10).offset for f in futures] == list(range(10))
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    tp = TopicPartition(topic, 0)
    for target, expected in ((0, 0), (2_000_000, 0), (2_004_500, 5), (2_009_000, 9)):
        found = consumer.offsets_for_times({tp: target})[tp]
        assert (found.offset, found.timestamp) == (expected, 2_000_000 + expected * 1000), target
    assert consumer.offsets_for_times({tp: 2_009_001})[tp] is None
    consumer.close()


def test_null_and_empty_keys_and_values_are_distinct(broker):
    topic = unique_topic("nulls")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    rows = [(None, b"v"), (b"", b"v"), (b"k", None), (b"k", b""), (b"k", b"v")]
    for key, value in rows:
        producer.send(topic, key=key, value=value, headers=[("empty", b""), ("x", b"y")]).get(timeout=20)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, consumer_timeout_ms=3000,
                             auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    got = [(r.key, r.value, r.headers) for r in consumer]
    consumer.close()
    assert got == [(k, v, [("empty", b""), ("x", b"y")]) for k, v in rows]


def test_topic_configs_and_partitions_survive_restart(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    name = unique_topic("cfgkeep")
    admin.create_topics([NewTopic(name, 5, 1, topic_configs={"retention.ms": "123456789"})])
    admin.close()
    broker.restart()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    configs = {entry[0]: entry[1] for entry in result[0].resources[0][4]}
    described = admin.describe_topics([name])
    admin.close()
    assert configs["retention.ms"] == "123456789"
    assert sorted(p["partition"] for p in described[0]["partitions"]) == [0, 1, 2, 3, 4]


def test_invalid_topic_configs_are_rejected_and_missing_topics_reported(admin):
    for configs in ({"cleanup.policy": "bogus"}, {"no.such.config": "1"}, {"retention.ms": "abc"}):
        with pytest.raises(InvalidConfigurationError):
            admin.create_topics([NewTopic(unique_topic("badcfg"), 1, 1, topic_configs=configs)])
    assert not any(t.startswith("badcfg-") for t in topic_names(admin))
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, unique_topic("nowhere"))])
    assert result[0].resources[0][0] == 3, "UNKNOWN_TOPIC_OR_PARTITION for a missing topic"


def test_log_append_time_topics_stamp_the_broker_time(broker, admin):
    """message.timestamp.type=LogAppendTime: the broker overwrites the producer's timestamp with
    its own clock, returns it in the produce response and marks the batch (timestamp type 1)."""
    topic = unique_topic("lat")
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"message.timestamp.type": "LogAppendTime"})])
    before = int(time.time() * 1000)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    sent = producer.send(topic, value=b"x", timestamp_ms=1000).get(timeout=20)
    producer.close()
    after = int(time.time() * 1000)
    assert before - 1000 <= sent.timestamp <= after + 1000, f"produce response timestamp {sent.timestamp}"
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, consumer_timeout_ms=3000,
                             auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    got = [(r.timestamp, r.timestamp_type) for r in consumer]
    consumer.close()
    assert got == [(sent.timestamp, 1)]
