"""Retention (retention.ms, retention.bytes) and DeleteRecords, driven by confluent-kafka.

The broker runs its retention pass every 200 ms here (--log-retention-check-interval-ms), so
what Kafka would do within log.retention.check.interval.ms happens within a second or two.
"""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from helpers import create_topic, unique_topic

RETENTION_FLAGS = ("--log-retention-check-interval-ms", "200")


def produce(bootstrap, topic, count, size=100, timestamp_ms=None):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(count):
        kwargs = {"timestamp": timestamp_ms} if timestamp_ms else {}
        producer.produce(topic, value=b"%06d" % i + b"x" * (size - 6), partition=0, **kwargs)
        if i % 10 == 9:
            producer.flush(10)  # many small batches, so segments roll
    assert producer.flush(30) == 0


def watermarks(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def first_consumed(bootstrap, topic, reset, group, produce_after_s=None):
    """The offset a consumer asking for offset 0 (gone) first gets. With `produce_after_s`,
    one message is produced once the consumer has polled that long (for "latest")."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": reset,
        "enable.auto.commit": False,
    })
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        start = time.monotonic()
        while time.monotonic() < start + 20:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                return m.offset()
            if produce_after_s is not None and time.monotonic() > start + produce_after_s:
                produce(bootstrap, topic, 1)
                produce_after_s = None
        raise AssertionError("nothing consumed")
    finally:
        c.close()


def segment_files(broker, topic):
    return sorted(p.name for p in (broker.data_dir / f"{topic}-0").glob("*.log"))


def eventually(what, check, timeout_s=15):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_time_retention_deletes_expired_segments_even_the_active_one(broker_factory):
    broker = broker_factory(*RETENTION_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("rms"),
                         configs={"retention.ms": "60000", "segment.bytes": "2048"})
    # Records an hour old: expired as soon as the retention pass sees them.
    produce(broker.bootstrap, topic, 100, timestamp_ms=int(time.time() * 1000) - 3_600_000)
    eventually("every expired segment deleted", lambda: watermarks(broker.bootstrap, topic) == (100, 100))
    # The files go right after the log start moves.
    eventually("only the fresh active segment left on disk", lambda: len(segment_files(broker, topic)) == 1)
    # Fresh data is kept, and offsets go on from where they were.
    produce(broker.bootstrap, topic, 10)
    time.sleep(1)
    assert watermarks(broker.bootstrap, topic) == (100, 110)
    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (100, 110)


def test_size_retention_keeps_about_retention_bytes_and_consumers_reset(broker_factory):
    broker = broker_factory(*RETENTION_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("rbytes"),
                         configs={"retention.bytes": "8192", "segment.bytes": "2048"})
    produce(broker.bootstrap, topic, 300)

    def kept():
        return sum((broker.data_dir / f"{topic}-0" / f).stat().st_size for f in segment_files(broker, topic))

    # A pass may run while the producer is still writing: wait for one after the last write.
    eventually("the log cut to about retention.bytes", lambda: kept() < 8192 + 2048 + 1024)
    low, high = watermarks(broker.bootstrap, topic)
    assert high == 300 and low > 0
    assert kept() >= 8192, f"{kept()} bytes kept: never below retention.bytes"
    # A consumer asking for the deleted offset 0 is reset as auto.offset.reset says.
    assert first_consumed(broker.bootstrap, topic, "earliest", "g-earliest") == low
    assert first_consumed(broker.bootstrap, topic, "latest", "g-latest", produce_after_s=3) == 300


def test_delete_records_moves_the_start_and_survives_restart(broker_factory):
    broker = broker_factory()
    topic = create_topic(broker.bootstrap, unique_topic("delrec"), configs={"segment.bytes": "2048"})
    produce(broker.bootstrap, topic, 100)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    result = admin.delete_records([TopicPartition(topic, 0, 42)])
    deleted = list(result.values())[0].result(10)
    assert deleted.low_watermark == 42
    assert watermarks(broker.bootstrap, topic) == (42, 100)
    assert first_consumed(broker.bootstrap, topic, "earliest", "g1") == 42
    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (42, 100)
    # Beyond the high watermark: OFFSET_OUT_OF_RANGE.
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as e:
        list(admin.delete_records([TopicPartition(topic, 0, 1000)]).values())[0].result(10)
    assert "OFFSET_OUT_OF_RANGE" in str(e.value)
    # A compacted topic refuses it, as Kafka does.
    compacted = create_topic(broker.bootstrap, unique_topic("compacted"), configs={"cleanup.policy": "compact"})
    produce(broker.bootstrap, compacted, 5)
    with pytest.raises(KafkaException) as e:
        list(admin.delete_records([TopicPartition(compacted, 0, 2)]).values())[0].result(10)
    assert "POLICY_VIOLATION" in str(e.value)


def test_segments_roll_by_segment_ms_and_segment_index_bytes(broker_factory):
    broker = broker_factory()
    by_time = create_topic(broker.bootstrap, unique_topic("segms"), configs={"segment.ms": "1000"})
    base = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for offset_ms in (0, 500, 1000, 1001, 1500, 2500):
        producer.produce(by_time, value=b"x", partition=0, timestamp=base + offset_ms)
        producer.flush(10)
    # A new segment when a batch is more than segment.ms after the segment's first batch:
    # [0, 500, 1000], [1001, 1500], [2500].
    assert len(segment_files(broker, by_time)) == 3
    by_index = create_topic(broker.bootstrap, unique_topic("segidx"),
                            configs={"segment.index.bytes": "32", "index.interval.bytes": "1"})
    for i in range(40):
        producer.produce(by_index, value=b"y" * 50, partition=0)
        producer.flush(10)  # a batch per message, an index entry per batch
    assert len(segment_files(broker, by_index)) >= 8, "4 index entries per segment at most"
    assert watermarks(broker.bootstrap, by_index) == (0, 40)


def test_record_timestamps_outside_the_topics_bounds_are_refused_with_invalid_timestamp(broker):
    """message.timestamp.before.max.ms / after.max.ms (KIP-937): librdkafka sees Kafka's
    INVALID_TIMESTAMP for a record an hour old or an hour ahead, and nothing of it is stored."""
    topic = create_topic(broker.bootstrap, unique_topic("bounded"), configs={
        "message.timestamp.before.max.ms": "60000",
        "message.timestamp.after.max.ms": "60000",
    })
    now = int(time.time() * 1000)
    results = {}
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for name, timestamp in [("now", now), ("hour-old", now - 3_600_000), ("hour-ahead", now + 3_600_000)]:
        producer.produce(topic, value=name.encode(), partition=0, timestamp=timestamp,
                         on_delivery=lambda err, msg, name=name: results.__setitem__(name, err))
        assert producer.flush(30) == 0
    assert results["now"] is None
    for name in ("hour-old", "hour-ahead"):
        assert results[name] is not None and results[name].code() == KafkaError.INVALID_TIMESTAMP, results
    assert watermarks(broker.bootstrap, topic) == (0, 1)
