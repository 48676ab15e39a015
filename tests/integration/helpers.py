"""Small shared helpers for the client tests."""

import time
import uuid

from kafka.admin import KafkaAdminClient, NewTopic


def unique_topic(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap, name, partitions=1, configs=None):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    finally:
        admin.close()
    return name


def consume_all(bootstrap, topic, partitions, expected, timeout_s=60, **config):
    """Reads every partition of `topic` from the beginning with confluent-kafka (assign, no
    group) until `expected` messages arrived; returns them as (partition, offset, key, value)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "weir-test-assign",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **config,
    })
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for m in consumer.consume(num_messages=10000, timeout=1.0):
                if m.error():
                    raise AssertionError(f"consume error: {m.error()}")
                out.append((m.partition(), m.offset(), m.key(), m.value()))
    finally:
        consumer.close()
    return out


def high_watermarks(bootstrap, topic, partitions, timeout_s=15):
    """The latest offset (high watermark) of each partition, by ListOffsets."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-test-assign", "enable.auto.commit": False})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1] for p in range(partitions)]
    finally:
        consumer.close()


def consume_to_end(bootstrap, topic, partitions, timeout_s=60):
    """Everything stored in `topic` right now: reads up to each partition's high watermark."""
    total = sum(high_watermarks(bootstrap, topic, partitions))
    out = consume_all(bootstrap, topic, partitions, total, timeout_s)
    assert len(out) == total, f"read {len(out)} of the {total} stored messages"
    return out


# Broker flags for consumer-group tests: no initial rebalance delay, short sessions allowed, and
# a small __consumer_offsets, so scenarios take seconds.
GROUP_FLAGS = (
    "--group-initial-rebalance-delay-ms", "0",
    "--group-min-session-timeout-ms", "1000",
    "--offsets-topic-num-partitions", "4",
)
