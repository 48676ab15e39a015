"""kafka-python: admin operations, produce and consume, offsets."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import (
    InvalidReplicationFactorError,
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
    with pytest.raises(InvalidTopicError):
        admin.create_topics([NewTopic("bad name!", 1, 1)])
    with pytest.raises(InvalidReplicationFactorError):
        admin.create_topics([NewTopic(unique_topic("rf"), 1, 2)])
    described = admin.describe_topics([name])
    assert len(described[0]["partitions"]) == 3


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


# acks=0 is covered with librdkafka in test_confluent.py: kafka-python 2.0.6 with acks=0
# puts no Produce request on the wire at all (seen in the broker's request trace).
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
