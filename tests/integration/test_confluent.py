"""confluent-kafka (librdkafka): volume, ordering, codecs, acks, long poll."""

import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from helpers import consume_all, create_topic, unique_topic


def produce(bootstrap, topic, messages, **config):
    """Produces (key, value) pairs and returns the delivery reports' (partition, offset) by index."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    delivered = {}
    errors = []

    def report(err, msg, i):
        if err is not None:
            errors.append(err)
        else:
            delivered[i] = (msg.partition(), msg.offset())

    for i, (key, value) in enumerate(messages):
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=lambda e, m, i=i: report(e, m, i))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0, "messages left unsent"
    assert not errors, errors[:5]
    return delivered


def test_100k_keyed_messages_over_8_partitions_keep_count_content_and_key_order(broker):
    topic = create_topic(broker.bootstrap, unique_topic("keyed"), partitions=8)
    keys = [f"key-{k:04d}".encode() for k in range(1000)]
    messages = [(keys[i % 1000], f"{i % 1000}:{i // 1000}:".encode() + b"v" * 64) for i in range(100_000)]
    delivered = produce(broker.bootstrap, topic, messages, acks="all")
    assert len(delivered) == 100_000
    consumed = consume_all(broker.bootstrap, topic, 8, 100_000)
    assert len(consumed) == 100_000, f"consumed {len(consumed)}"
    assert sorted(v for _, _, _, v in consumed) == sorted(v for _, v in messages)
    partitions_of_key = {}
    last_seq = {}
    for partition, offset, key, value in sorted(consumed, key=lambda m: (m[0], m[1])):
        assert partitions_of_key.setdefault(key, partition) == partition, "a key stays on one partition"
        k, seq, _ = value.split(b":", 2)
        assert k == key[4:].lstrip(b"0") or int(k) == int(key[4:])
        assert int(seq) == last_seq.get(key, -1) + 1, f"per-key order broken for {key}"
        last_seq[key] = int(seq)
    assert len(set(partitions_of_key.values())) == 8, "keys spread over all partitions"
    # Offsets in the delivery reports are where the messages were read back.
    where = {(p, o): v for p, o, _, v in consumed}
    assert all(where[delivered[i]] == messages[i][1] for i in range(0, 100_000, 997))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip(broker, codec):
    topic = create_topic(broker.bootstrap, unique_topic(f"cc-{codec}"), partitions=2)
    messages = [(f"k{i}".encode(), (f"{codec}-{i}-" * 8).encode()) for i in range(5000)]
    produce(broker.bootstrap, topic, messages, acks="all", **{"compression.codec": codec})
    consumed = consume_all(broker.bootstrap, topic, 2, 5000)
    assert sorted(v for _, _, _, v in consumed) == sorted(v for _, v in messages)


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_every_acks_setting_appends(broker, acks):
    topic = create_topic(broker.bootstrap, unique_topic(f"acks{acks}"), partitions=1)
    messages = [(None, f"m{i}".encode()) for i in range(1000)]
    produce(broker.bootstrap, topic, messages, acks=acks)
    consumed = consume_all(broker.bootstrap, topic, 1, 1000)
    assert [v for _, _, _, v in consumed] == [v for _, v in messages]
    assert [o for _, o, _, _ in consumed] == list(range(1000))


def test_long_poll_delivers_a_message_produced_later(broker):
    topic = create_topic(broker.bootstrap, unique_topic("poll"), partitions=1)
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "weir-test-assign",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 5000,
    })
    consumer.assign([TopicPartition(topic, 0, 0)])
    consumer.poll(0.5)  # connected and parked in a long-poll fetch on the empty partition

    def later():
        time.sleep(1.0)
        produce(broker.bootstrap, topic, [(None, b"late")], acks="all")

    threading.Thread(target=later).start()
    started = time.monotonic()
    message = None
    while message is None and time.monotonic() - started < 15:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            message = m
    consumer.close()
    assert message is not None and message.value() == b"late"
    assert time.monotonic() - started < 4.5, "the parked fetch was woken by the produce, not its timeout"


def test_consuming_data_evicted_from_the_page_cache(broker):
    """Old data is served from disk: the broker reads cold ranges in first, then sends them."""
    import os

    topic = create_topic(broker.bootstrap, unique_topic("cold"), partitions=2)
    messages = [(None, f"cold-{i}-".encode() + b"c" * 200) for i in range(20_000)]
    produce(broker.bootstrap, topic, messages, acks="all")
    dropped = 0
    for log in broker.data_dir.glob(f"{topic}-*/*.log"):
        fd = os.open(log, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            dropped += 1
        finally:
            os.close(fd)
    assert dropped == 2
    consumed = consume_all(broker.bootstrap, topic, 2, 20_000)
    assert sorted(v for _, _, _, v in consumed) == sorted(v for _, v in messages)
