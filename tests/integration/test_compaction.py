"""Log compaction (cleanup.policy=compact), driven by confluent-kafka and kafka-python.

The broker's cleaner runs every 200 ms here (--log-cleaner-backoff-ms), and the topics use
small segments and a low min.cleanable.dirty.ratio, so compaction happens within seconds.
"""

import signal
import time

from confluent_kafka import Producer
from kafka import KafkaConsumer, TopicPartition

from helpers import consume_all, create_topic, unique_topic

CLEANER_FLAGS = ("--log-cleaner-backoff-ms", "200")
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.bytes": "2048",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "0",
}


def produce_updates(bootstrap, topic):
    """20 rounds of updates to k0..k9 (some compressed), a tombstone for k5, then filler with
    distinct keys so that every update ends up in a closed (cleanable) segment."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    for rnd in range(20):
        for k in range(10):
            producer.produce(topic, key=f"k{k}".encode(), value=f"k{k}-r{rnd}".encode() * 3)
        producer.flush(10)
    gz = Producer({"bootstrap.servers": bootstrap, "acks": "all", "compression.type": "gzip"})
    for k in range(10):
        gz.produce(topic, key=f"k{k}".encode(), value=f"k{k}-final".encode())
    gz.flush(10)
    producer.produce(topic, key=b"k5", value=None)
    producer.flush(10)
    for i in range(60):
        producer.produce(topic, key=f"filler-{i}".encode(), value=b"f" * 60)
        producer.flush(10)
    return 20 * 10 + 10 + 1 + 60


def latest_by_key(records):
    out = {}
    for _, offset, key, value in sorted(records, key=lambda r: r[1]):
        out.setdefault(key, []).append((offset, value))
    return out


def test_a_compacted_topic_keeps_only_the_last_value_per_key(broker_factory):
    broker = broker_factory(*CLEANER_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("compact"), configs=COMPACTED)
    produced = produce_updates(broker.bootstrap, topic)

    deadline = time.monotonic() + 30
    while True:
        records = consume_all(broker.bootstrap, topic, 1, 10**9, timeout_s=3)
        by_key = latest_by_key(records)
        done = all(len(by_key.get(f"k{k}".encode(), [])) == 1 for k in range(10) if k != 5)
        if done and b"k5" not in by_key:
            break
        assert time.monotonic() < deadline, f"not compacted: {[(k, len(v)) for k, v in by_key.items()][:12]}"
        time.sleep(0.5)
    for k in range(10):
        if k == 5:
            continue
        [(offset, value)] = by_key[f"k{k}".encode()]
        assert value == f"k{k}-final".encode()
    offsets = [offset for _, offset, _, _ in records]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert offsets[-1] == produced - 1, "the last offset never moves"
    assert len(offsets) < produced, "the log has holes now"
    assert all(len(by_key[f"filler-{i}".encode()]) == 1 for i in range(60)), "distinct keys all stay"

    # kafka-python reads across the holes too.
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, consumer_timeout_ms=3000,
                             auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    assert [r.offset for r in consumer] == offsets
    consumer.close()

    # The compacted log survives a restart (full recovery walks over the holes).
    broker.stop(signal.SIGKILL)
    broker.start()
    again = consume_all(broker.bootstrap, topic, 1, len(records))
    assert sorted(again) == sorted(records)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    got = []
    producer.produce(topic, key=b"k0", value=b"after", on_delivery=lambda e, m: got.append(m.offset()))
    producer.flush(10)
    assert got == [produced]


def test_a_compacted_topic_refuses_records_without_a_key(broker):
    topic = create_topic(broker.bootstrap, unique_topic("nokey"), configs={"cleanup.policy": "compact"})
    results = []
    for codec in ("none", "gzip"):
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "compression.type": codec,
                             "message.send.max.retries": 0})
        producer.produce(topic, value=b"keyless", on_delivery=lambda e, m: results.append(e))
        producer.produce(topic, key=b"k", value=b"keyed", on_delivery=lambda e, m: results.append(e))
        producer.flush(10)
    errors = [e for e in results if e is not None]
    assert len(results) == 4 and errors, results
    assert all(e.name() == "INVALID_RECORD" for e in errors)
    records = consume_all(broker.bootstrap, topic, 1, 10, timeout_s=3)
    assert all(key is not None for _, _, key, _ in records), "no keyless record was stored"
