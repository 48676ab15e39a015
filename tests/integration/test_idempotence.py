"""Idempotent producers (KIP-98): InitProducerId, sequence checks, retries answered as
duplicates, across restarts and crashes. Driven by librdkafka (confluent-kafka with
`enable.idempotence=true`, what the Java client does by default) and by hand-built batches."""

import threading
import time

import pytest
from confluent_kafka import KafkaException, Producer

import wire
from helpers import consume_all, consume_to_end, create_topic, unique_topic

OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47


def idempotent_producer(bootstrap, **config):
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 2, **config})


def test_an_idempotent_producer_writes_every_message_once_in_order(broker):
    topic = create_topic(broker.bootstrap, unique_topic("idem"), partitions=4)
    producer = idempotent_producer(broker.bootstrap)
    failures = []
    for i in range(20_000):
        while True:
            try:
                producer.produce(topic, value=f"{i % 4}-{i // 4}".encode(), partition=i % 4,
                                 on_delivery=lambda err, _m: err and failures.append(err))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert failures == []
    messages = consume_all(broker.bootstrap, topic, 4, 20_000)
    assert len(messages) == 20_000
    for p in range(4):
        values = [v.decode() for part, _, _, v in sorted(messages) if part == p]
        assert values == [f"{p}-{n}" for n in range(5_000)], f"partition {p}: once each, in order"


def test_retries_across_broker_crashes_are_not_duplicated(broker):
    """SIGKILL while an idempotent producer has batches in flight: librdkafka retries them
    after the restart, and a retry of a batch the broker had already written must be answered
    as a duplicate, not appended again (the state comes back from the log and its snapshot)."""
    topic = create_topic(broker.bootstrap, unique_topic("idemkill"), partitions=2)
    producer = idempotent_producer(broker.bootstrap, **{"message.timeout.ms": 60_000, "retry.backoff.ms": 50})
    acked, errors = [], []
    stop = threading.Event()

    def report(err, msg):
        if err is None:
            acked.append(msg.value())
        else:
            errors.append(err)

    def run():
        i = 0
        while not stop.is_set():
            try:
                producer.produce(topic, value=f"m-{i}".encode(), partition=i % 2, on_delivery=report)
                i += 1
            except BufferError:
                producer.poll(0.01)
            producer.poll(0)
            if i % 200 == 0:
                time.sleep(0.002)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        for _ in range(3):
            time.sleep(1.0)
            broker.kill_and_restart()
    finally:
        time.sleep(1.0)
        stop.set()
        thread.join()
    assert producer.flush(60) == 0, "every message delivered once the broker is back"
    assert errors == []
    stored = [v for _, _, _, v in consume_to_end(broker.bootstrap, topic, 2)]
    assert len(stored) == len(set(stored)), f"{len(stored) - len(set(stored))} duplicates in the log"
    assert set(acked) <= set(stored), "every acknowledged message is there"
    assert len(acked) > 1000


def test_hand_built_batches_are_checked_like_kafka(broker):
    """A retried batch gets the original's offset and is stored once; a gap in sequences is
    OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch is INVALID_PRODUCER_EPOCH; plain batches are
    untouched."""
    topic = create_topic(broker.bootstrap, unique_topic("idemwire"))

    def produce(correlation_id, batch):
        with wire.Conn(broker.bootstrap) as conn:
            payload = conn.call(wire.produce_request_v3(correlation_id, topic, 0, batch))
        _, [(_, _, error_code, base_offset)] = wire.parse_produce_response_v3(payload)
        return error_code, base_offset

    def batch(values, epoch, sequence, producer_id=4242):
        return wire.record_batch(values, producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence)

    assert produce(1, batch([b"a", b"b"], 0, 0)) == (0, 0)
    assert produce(2, batch([b"c"], 0, 2)) == (0, 2)
    assert produce(3, batch([b"a", b"b"], 0, 0)) == (0, 0), "a retry: the original offset"
    assert produce(4, batch([b"c"], 0, 2)) == (0, 2), "a retry: the original offset"
    assert produce(5, batch([b"d"], 0, 7))[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
    assert produce(6, batch([b"d"], 1, 0)) == (0, 3), "a new epoch starts at sequence 0"
    assert produce(7, batch([b"e"], 0, 3))[0] == INVALID_PRODUCER_EPOCH
    assert produce(8, wire.record_batch([b"plain"])) == (0, 4)
    assert [v for _, _, _, v in consume_to_end(broker.bootstrap, topic, 1)] == [b"a", b"b", b"c", b"d", b"plain"]


def test_producer_ids_are_unique_across_restarts(broker):
    """InitProducerId never hands out an id twice, even after a crash."""
    ids = []
    for restart in (None, broker.restart, broker.kill_and_restart):
        if restart:
            restart()
        with wire.Conn(broker.bootstrap) as conn:
            ids += [wire.init_producer_id(conn), wire.init_producer_id(conn)]
    assert len(set(ids)) == len(ids), f"ids {ids}"


def test_transactions_are_refused_clearly(broker):
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "weir-txn"})
    started = time.monotonic()
    with pytest.raises(KafkaException):
        producer.init_transactions(10)
    assert time.monotonic() - started < 15
