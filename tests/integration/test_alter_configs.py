"""Altering topic configs and growing topics with real admin clients: kafka-python's
KafkaAdminClient (AlterConfigs, CreatePartitions, DescribeConfigs) and confluent-kafka's
AdminClient (IncrementalAlterConfigs, CreatePartitions, DescribeConfigs)."""

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigSource,
    NewPartitions as ConfluentNewPartitions,
    ResourceType,
)
from confluent_kafka.admin import ConfigResource as ConfluentResource
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions
from kafka.errors import InvalidPartitionsError, InvalidReplicationAssignmentError, UnknownTopicOrPartitionError

from helpers import consume_all, create_topic, unique_topic

TIMEOUT_S = 15
# Kafka error codes as kafka-python's responses carry them.
NO_ERROR = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_CONFIG = 40
INVALID_REQUEST = 42
# DescribeConfigs config_source (KIP-226).
DYNAMIC_TOPIC_CONFIG = 1
DEFAULT_CONFIG = 5


class Admins:
    """One admin client of each library for a test's broker, kept for the whole test: a
    confluent-kafka client dropped mid-test is destroyed from librdkafka's thread, which
    holds Python up long enough for kafka-python's 2 s version probe to give up."""

    def __init__(self, broker):
        self.bootstrap = broker.bootstrap
        self.kafka_python = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
        self.confluent = AdminClient({"bootstrap.servers": broker.bootstrap})

    def restart(self, broker):
        """Restarts the broker. librdkafka reconnects by itself; kafka-python fails the first
        request on its dead connection, so it gets a new client."""
        self.kafka_python.close()
        broker.restart()
        self.kafka_python = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000)

    def described(self, topic):
        """name -> (value, source) of every config of `topic`, by kafka-python."""
        (response,) = self.kafka_python.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        error_code, _, _, _, entries = response.resources[0]
        assert error_code == NO_ERROR
        # v1+ entries: (name, value, read_only, config_source, is_sensitive, synonyms)
        return {entry[0]: (entry[1], entry[3]) for entry in entries}

    def alter(self, resource_type, name, configs):
        """AlterConfigs of one resource by kafka-python: (error_code, error_message)."""
        response = self.kafka_python.alter_configs([ConfigResource(resource_type, name, configs=configs)])
        error_code, error_message, _, resource_name = response.resources[0]
        assert resource_name == name
        return error_code, error_message

    def incremental(self, topic, ops, validate_only=False):
        """IncrementalAlterConfigs of one topic by confluent-kafka; raises KafkaException."""
        entries = [ConfigEntry(name, value, incremental_operation=op) for name, op, value in ops]
        resource = ConfluentResource(ResourceType.TOPIC, topic, incremental_configs=entries)
        futures = self.confluent.incremental_alter_configs([resource], validate_only=validate_only)
        (future,) = futures.values()
        return future.result(TIMEOUT_S)


@pytest.fixture
def admins(broker):
    clients = Admins(broker)
    yield clients
    clients.kafka_python.close()


def error_of(call):
    with pytest.raises(KafkaException) as e:
        call()
    return e.value.args[0].code()


def test_alter_configs_replaces_the_overrides_and_survives_restart(broker, admins):
    topic = create_topic(broker.bootstrap, unique_topic("alter"), configs={"retention.ms": "100000"})
    assert admins.described(topic)["retention.ms"] == ("100000", DYNAMIC_TOPIC_CONFIG)

    configs = {"max.message.bytes": "5000", "cleanup.policy": "compact"}
    assert admins.alter(ConfigResourceType.TOPIC, topic, configs) == (NO_ERROR, None)

    def check():
        now = admins.described(topic)
        assert now["max.message.bytes"] == ("5000", DYNAMIC_TOPIC_CONFIG)
        assert now["cleanup.policy"] == ("compact", DYNAMIC_TOPIC_CONFIG)
        # AlterConfigs sets the whole set: the override not named is gone.
        assert now["retention.ms"] == ("604800000", DEFAULT_CONFIG)

    check()
    admins.restart(broker)
    check()


def test_incremental_alter_configs_and_confluent_describe(broker, admins):
    topic = create_topic(broker.bootstrap, unique_topic("incr"), configs={"retention.ms": "100000"})
    admins.incremental(topic, [
        ("cleanup.policy", AlterConfigOpType.APPEND, "compact"),
        ("segment.ms", AlterConfigOpType.SET, "3600000"),
    ])
    admins.incremental(topic, [("retention.ms", AlterConfigOpType.DELETE, None)])
    admins.incremental(topic, [("cleanup.policy", AlterConfigOpType.SUBTRACT, "delete")])

    def check():
        resource = ConfluentResource(ResourceType.TOPIC, topic)
        (future,) = admins.confluent.describe_configs([resource]).values()
        configs = future.result(TIMEOUT_S)
        assert (configs["cleanup.policy"].value, configs["cleanup.policy"].source) == (
            "compact", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
        assert (configs["segment.ms"].value, configs["segment.ms"].source) == (
            "3600000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
        assert (configs["retention.ms"].value, configs["retention.ms"].source) == (
            "604800000", ConfigSource.DEFAULT_CONFIG.value)

    check()
    admins.restart(broker)
    check()


def test_unknown_and_invalid_configs_are_refused(broker, admins):
    topic = create_topic(broker.bootstrap, unique_topic("strict"))

    code, message = admins.alter(ConfigResourceType.TOPIC, topic, {"no.such.config": "1"})
    assert code == INVALID_CONFIG and "no.such.config" in message
    code, message = admins.alter(ConfigResourceType.TOPIC, topic, {"segment.bytes": "ten"})
    assert code == INVALID_CONFIG and "Invalid value ten" in message
    code, _ = admins.alter(ConfigResourceType.TOPIC, unique_topic("missing"), {"retention.ms": "1"})
    assert code == UNKNOWN_TOPIC_OR_PARTITION
    code, message = admins.alter(ConfigResourceType.BROKER, "0", {"num.partitions": "3"})
    assert code == INVALID_REQUEST and "static" in message

    set_bad = [("retention.ms", AlterConfigOpType.SET, "soon")]
    assert error_of(lambda: admins.incremental(topic, set_bad)) == KafkaError.INVALID_CONFIG
    append_scalar = [("retention.ms", AlterConfigOpType.APPEND, "1")]
    assert error_of(lambda: admins.incremental(topic, append_scalar)) == KafkaError.INVALID_CONFIG
    unknown = [("no.such.config", AlterConfigOpType.SET, "1")]
    assert error_of(lambda: admins.incremental(topic, unknown)) == KafkaError.INVALID_CONFIG
    missing = [("retention.ms", AlterConfigOpType.SET, "1")]
    assert error_of(lambda: admins.incremental(unique_topic("missing"), missing)) == \
        KafkaError.UNKNOWN_TOPIC_OR_PART

    # A refused change applies nothing, and validate_only applies nothing either.
    half = [("retention.ms", AlterConfigOpType.SET, "1000"), ("segment.bytes", AlterConfigOpType.SET, "1")]
    assert error_of(lambda: admins.incremental(topic, half)) == KafkaError.INVALID_CONFIG
    admins.incremental(topic, [("retention.ms", AlterConfigOpType.SET, "1000")], validate_only=True)
    assert admins.described(topic)["retention.ms"] == ("604800000", DEFAULT_CONFIG)
    assert admins.described(topic)["segment.bytes"] == ("1073741824", DEFAULT_CONFIG)


def produce_to_partitions(bootstrap, topic, partitions, per_partition):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    failures = []
    for p in range(partitions):
        for i in range(per_partition):
            producer.produce(topic, value=f"p{p}-{i}".encode(), partition=p,
                             on_delivery=lambda err, _msg: err and failures.append(err))
    assert producer.flush(30) == 0
    assert not failures, failures


def test_create_partitions_grows_the_topic_for_produce_and_consume(broker, admins):
    topic = create_topic(broker.bootstrap, unique_topic("grow"))
    admin = admins.kafka_python
    admin.create_partitions({topic: NewPartitions(3)}, validate_only=True)
    assert len(admin.describe_topics([topic])[0]["partitions"]) == 1, "validate_only creates nothing"
    admin.create_partitions({topic: NewPartitions(3)})
    with pytest.raises(InvalidPartitionsError):
        admin.create_partitions({topic: NewPartitions(3)})
    with pytest.raises(InvalidPartitionsError):
        admin.create_partitions({topic: NewPartitions(2)})
    with pytest.raises(InvalidReplicationAssignmentError):
        admin.create_partitions({topic: NewPartitions(4, [[7]])})
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.create_partitions({unique_topic("missing"): NewPartitions(2)})

    confluent = admins.confluent
    confluent.create_partitions([ConfluentNewPartitions(topic, 5)])[topic].result(TIMEOUT_S)
    assert len(confluent.list_topics(topic, timeout=10).topics[topic].partitions) == 5
    offsets = "__consumer_offsets"
    assert error_of(
        lambda: confluent.create_partitions([ConfluentNewPartitions(offsets, 500)])[offsets].result(TIMEOUT_S)
    ) == KafkaError.INVALID_REQUEST

    produce_to_partitions(broker.bootstrap, topic, 5, 20)

    def check():
        got = consume_all(broker.bootstrap, topic, 5, 100)
        assert sorted((p, v) for p, _, _, v in got) == sorted(
            (p, f"p{p}-{i}".encode()) for p in range(5) for i in range(20))

    check()
    admins.restart(broker)
    check()


def segment_files(broker, topic):
    return sorted((broker.data_dir / f"{topic}-0").glob("*.log"))


def test_segment_bytes_altered_on_a_live_topic_rolls_segments(broker, admins):
    topic = create_topic(broker.bootstrap, unique_topic("roll"))
    produce_to_partitions(broker.bootstrap, topic, 1, 10)
    assert len(segment_files(broker, topic)) == 1

    admins.incremental(topic, [("segment.bytes", AlterConfigOpType.SET, "2048")])
    # One message per batch (no linger), so the open log rolls every few messages.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(60):
        producer.produce(topic, value=b"x" * 200 + str(i).encode(), partition=0)
        producer.flush(10)
    rolled = len(segment_files(broker, topic))
    assert rolled >= 5, f"{rolled} segments"
    assert len(consume_all(broker.bootstrap, topic, 1, 70)) == 70

    broker.restart()
    assert len(segment_files(broker, topic)) >= rolled
    assert len(consume_all(broker.bootstrap, topic, 1, 70)) == 70
