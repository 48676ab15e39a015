"""Log compaction (cleanup.policy=compact), driven by confluent-kafka and kafka-python.

The broker's cleaner runs every 200 ms here (--log-cleaner-backoff-ms), and the topics use
small segments and a low min.cleanable.dirty.ratio, so compaction happens within seconds.
The timed tests (compaction lag, tombstone horizon) use lags of a few seconds.
"""

import signal
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, TopicPartition

from helpers import consume_all, create_topic, unique_topic

CLEANER_FLAGS = ("--log-cleaner-backoff-ms", "200")
RETENTION_FLAGS = ("--log-retention-check-interval-ms", "200")
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
        records = read_all(broker.bootstrap, topic)
        by_key = latest_by_key(records)
        done = all(len(by_key.get(f"k{k}".encode(), [])) == 1 for k in range(10) if k != 5)
        # KIP-534: the cleaning that removes k5's values keeps its tombstone (it gets a delete
        # horizon); a later cleaning drops it (the horizon test follows it there).
        if done and all(value is None for _, value in by_key.get(b"k5", [])):
            break
        assert time.monotonic() < deadline, f"not compacted: {[(k, len(v)) for k, v in by_key.items()][:12]}"
        time.sleep(0.5)
    for k in range(10):
        if k == 5:
            assert len(by_key.get(b"k5", [])) <= 1
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


def now_ms():
    return int(time.time() * 1000)


def produce(bootstrap, topic, records, one_batch_each=True):
    """Produces (key, value, timestamp or None) with acks=all, one batch each unless told."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    for key, value, timestamp in records:
        if timestamp is None:
            producer.produce(topic, key=key, value=value)
        else:
            producer.produce(topic, key=key, value=value, timestamp=timestamp)
        if one_batch_each:
            producer.flush(10)
    producer.flush(10)


def filler(bootstrap, topic, tag, count=30):
    """Distinct keys (more than a segment of them): they close the segments before them, and
    make the log dirty again."""
    produce(bootstrap, topic, [(f"filler-{tag}-{i}".encode(), b"f" * 60, None) for i in range(count)],
            one_batch_each=False)


def updates(rounds, keys):
    return [(f"k{k}".encode(), f"k{k}-r{rnd}".encode() * 3, None) for rnd in range(rounds) for k in range(keys)]


def read_all(bootstrap, topic):
    """Everything in partition 0 now, up to its end (a compacted log has holes, so counting
    records would not tell when the end is reached): (partition, offset, key, value)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer
    from confluent_kafka import TopicPartition as Partition

    # Short waits: the end shows as an empty fetch, and consume() waits out its timeout.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-test-assign",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "fetch.wait.max.ms": 10})
    consumer.assign([Partition(topic, 0, OFFSET_BEGINNING)])
    out = []
    deadline = time.monotonic() + 15
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(num_messages=10000, timeout=0.1):
                if m.error() and m.error().code() == KafkaError._PARTITION_EOF:
                    return out
                if m.error():
                    raise AssertionError(f"consume error: {m.error()}")
                out.append((m.partition(), m.offset(), m.key(), m.value()))
    finally:
        consumer.close()
    raise AssertionError(f"no end of partition after {len(out)} records")


def read(bootstrap, topic):
    """Everything in the partition now, as latest_by_key groups it."""
    return latest_by_key(read_all(bootstrap, topic))


def test_compact_and_delete_both_apply(broker_factory):
    """cleanup.policy=compact,delete: retention deletes the segments of old records (and the
    log start moves past them) while compaction keeps the last value of every live key."""
    broker = broker_factory(*CLEANER_FLAGS, *RETENTION_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("compact-delete"), configs={
        **COMPACTED,
        "cleanup.policy": "compact,delete",
        "retention.ms": "600000",
        # The first recent record is an hour after the old ones: it starts a new segment.
        "segment.ms": "60000",
    })
    hour_ago = now_ms() - 3_600_000
    old = [(f"old-{i}".encode(), b"o" * 60, hour_ago + i) for i in range(40)]
    produce(broker.bootstrap, topic, old)
    produce(broker.bootstrap, topic, updates(10, 10))
    filler(broker.bootstrap, topic, "a")
    produced = 40 + 100 + 30

    deadline = time.monotonic() + 20
    while True:
        by_key = read(broker.bootstrap, topic)
        olds = [k for k in by_key if k.startswith(b"old-")]
        compacted = all(len(by_key.get(f"k{k}".encode(), [])) == 1 for k in range(10))
        if not olds and compacted:
            break
        assert time.monotonic() < deadline, f"old keys left: {len(olds)}, compacted: {compacted}"
        time.sleep(0.5)
    for k in range(10):
        [(_, value)] = by_key[f"k{k}".encode()]
        assert value == f"k{k}-r9".encode() * 3
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None)
    partition = TopicPartition(topic, 0)
    # Past the old records; maybe past segments the cleaner emptied too (nothing in them).
    start = consumer.beginning_offsets([partition])[partition]
    first_kept = min(offset for values in by_key.values() for offset, _ in values)
    assert 40 <= start <= first_kept, (start, first_kept)
    assert consumer.end_offsets([partition])[partition] == produced
    consumer.close()


def test_min_compaction_lag_keeps_young_records(broker_factory):
    """min.compaction.lag.ms: records younger than the lag are not compacted away, however
    dirty the log; once they are older, the cleaner compacts them."""
    broker = broker_factory(*CLEANER_FLAGS)
    lag_s = 8
    topic = create_topic(broker.bootstrap, unique_topic("lag"), configs={
        **COMPACTED, "min.compaction.lag.ms": str(lag_s * 1000)})
    started = time.monotonic()
    produce(broker.bootstrap, topic, updates(20, 10))
    filler(broker.bootstrap, topic, "a")
    produced = 200 + 30

    # Well inside the lag, after many cleaner passes: every update is still there.
    time.sleep(max(0.0, started + lag_s / 2 - time.monotonic()))
    young = read(broker.bootstrap, topic)
    assert time.monotonic() < started + lag_s, "the check ran inside the lag"
    assert sum(len(v) for v in young.values()) == produced
    assert all(len(young[f"k{k}".encode()]) == 20 for k in range(10))

    deadline = started + lag_s + 15
    while True:
        by_key = read(broker.bootstrap, topic)
        if all(len(by_key[f"k{k}".encode()]) == 1 for k in range(10)):
            break
        assert time.monotonic() < deadline, "not compacted after the lag"
        time.sleep(0.5)
    assert time.monotonic() >= started + lag_s, "nothing was compacted before the lag"


def test_a_tombstone_outlives_the_first_cleaning_by_delete_retention_ms(broker_factory):
    """KIP-534: a tombstone stays delete.retention.ms after the first cleaning that passed it,
    even when its own timestamp is a day old; a cleaning after that removes it."""
    broker = broker_factory(*CLEANER_FLAGS)
    retention_s = 8
    topic = create_topic(broker.bootstrap, unique_topic("horizon"), configs={
        **COMPACTED, "delete.retention.ms": str(retention_s * 1000)})
    produce(broker.bootstrap, topic, updates(5, 5))
    produced_at = time.monotonic()
    produce(broker.bootstrap, topic, [(b"k2", None, now_ms() - 86_400_000)])
    filler(broker.bootstrap, topic, "a")

    def k2():
        return [value for _, value in read(broker.bootstrap, topic).get(b"k2", [])]

    # The first cleaning removes what the tombstone deletes, and keeps the tombstone.
    deadline = produced_at + retention_s - 1
    while k2() != [None]:
        assert time.monotonic() < deadline, f"k2 after the first cleaning: {k2()}"
        time.sleep(0.3)
    # More cleanings before the horizon (the filler makes the log dirty again) keep it too.
    filler(broker.bootstrap, topic, "b")
    time.sleep(1)
    still = k2()
    assert time.monotonic() < produced_at + retention_s, "checked before any horizon"
    assert still == [None], "the tombstone stays until delete.retention.ms after the cleaning"

    # Past the horizon, the next cleaning removes it.
    deadline = produced_at + retention_s + 15
    round_ = 0
    while k2():
        assert time.monotonic() < deadline, "the tombstone outlived its horizon"
        round_ += 1
        filler(broker.bootstrap, topic, f"c{round_}", count=10)
        time.sleep(0.5)
    assert time.monotonic() >= produced_at + retention_s


def test_a_dirty_ratio_outside_zero_to_one_is_refused(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for bad, words in (("1.5", "no more than 1"), ("-0.1", "at least 0"), ("NaN", "Invalid value")):
        topic = unique_topic("ratio")
        futures = admin.create_topics([NewTopic(topic, 1, 1, config={"min.cleanable.dirty.ratio": bad})])
        with pytest.raises(KafkaException) as refused:
            futures[topic].result(15)
        error = refused.value.args[0]
        assert error.code() == KafkaError.INVALID_CONFIG and words in error.str(), (bad, error)
    ok = unique_topic("ratio")
    admin.create_topics([NewTopic(ok, 1, 1, config={"min.cleanable.dirty.ratio": "1"})])[ok].result(15)
