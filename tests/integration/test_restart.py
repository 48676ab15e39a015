"""Restarts: a clean SIGTERM keeps everything; a SIGKILL loses nothing acknowledged."""

import random
import signal
import threading
import time

from confluent_kafka import Producer

from helpers import consume_all, consume_to_end, create_topic, unique_topic


def test_sigterm_exits_zero_and_everything_survives(broker):
    topics = {create_topic(broker.bootstrap, unique_topic("keep"), partitions=p): p for p in (1, 3)}
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for topic in topics:
        for i in range(300):
            producer.produce(topic, key=f"{i}".encode(), value=f"{topic}-{i}".encode())
    assert producer.flush(30) == 0
    before = {t: sorted(consume_all(broker.bootstrap, t, p, 300)) for t, p in topics.items()}
    broker.restart()
    after = {t: sorted(consume_all(broker.bootstrap, t, p, 300)) for t, p in topics.items()}
    assert after == before
    assert all(len(v) == 300 for v in after.values())
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    offsets = []
    topic = next(t for t, p in topics.items() if p == 1)
    producer.produce(topic, value=b"after-restart", on_delivery=lambda e, m: offsets.append(m.offset()))
    producer.flush(30)
    assert offsets == [300]


def test_sigkill_mid_stream_loses_no_acknowledged_message(broker):
    topic = create_topic(broker.bootstrap, unique_topic("kill"), partitions=2)
    acked = {}
    stop = threading.Event()

    def run():
        producer = Producer({
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "linger.ms": 2,
            "message.timeout.ms": 3000,
        })
        i = 0
        while not stop.is_set():
            value = f"m-{i}".encode()

            def report(err, msg, value=value):
                if err is None:
                    acked[value] = (msg.partition(), msg.offset())

            try:
                producer.produce(topic, value=value, partition=i % 2, on_delivery=report)
            except BufferError:
                pass
            producer.poll(0)
            i += 1
            if i % 100 == 0:
                time.sleep(0.001)
        producer.flush(5)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.5)
    broker.stop(signal.SIGKILL)
    stop.set()
    thread.join()
    assert len(acked) > 100, f"only {len(acked)} acknowledged before the kill"
    broker.start()
    stored = {v: (p, o) for p, o, _, v in consume_to_end(broker.bootstrap, topic, 2)}
    lost = [v for v in acked if v not in stored]
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:3]}"
    moved = [v for v, where in acked.items() if stored[v] != where]
    assert not moved, f"acknowledged messages at different offsets: {moved[:3]}"
    # Order: within a partition, acknowledged messages were produced in increasing i and
    # must sit at increasing offsets.
    for partition in (0, 1):
        in_order = sorted((int(v.split(b"-")[1]), o) for v, (p, o) in acked.items() if p == partition)
        assert [o for _, o in in_order] == sorted(o for _, o in in_order), "acknowledged order kept"
    next_offsets = {}
    for partition in (0, 1):
        offsets = sorted(o for p, o in stored.values() if p == partition)
        assert offsets == list(range(len(offsets))), "offsets are dense after recovery"
        next_offsets[partition] = len(offsets)
    # New writes continue right after the recovered log.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    after = {}
    for partition in (0, 1):
        producer.produce(topic, value=b"after-kill", partition=partition,
                         on_delivery=lambda e, m: after.__setitem__(m.partition(), (e, m.offset())))
    assert producer.flush(30) == 0
    assert after == {p: (None, next_offsets[p]) for p in (0, 1)}


def test_many_segments_and_compressed_batches_survive_restart(broker):
    """Small segments force rolls; after a restart every segment, index and codec still serves,
    also from an offset in the middle of the log."""
    topic = create_topic(broker.bootstrap, unique_topic("segs"), partitions=2, configs={"segment.bytes": "1048576"})
    # ≈10 MB that lz4 cannot shrink much, so the segments roll whatever the client's codec does.
    values = [f"{i:06d}-".encode() + random.Random(i).randbytes(500) for i in range(20_000)]
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "compression.codec": "lz4",
                         "linger.ms": 5})
    for i, v in enumerate(values):
        while True:
            try:
                producer.produce(topic, value=v, partition=i % 2)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0
    segments = sorted(broker.data_dir.glob(f"{topic}-*/*.log"))
    assert len(segments) >= 4, f"expected rolled segments, found {[s.name for s in segments]}"
    before = sorted(consume_all(broker.bootstrap, topic, 2, 20_000))
    broker.restart()
    after = sorted(consume_all(broker.bootstrap, topic, 2, 20_000))
    assert after == before and len(after) == 20_000
    # From the middle: offset 7,777 of partition 1 holds the 7,777th odd message.
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "weir-test-assign",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 1, 7777)])
    message = None
    deadline = time.monotonic() + 20
    while message is None and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            message = m
    consumer.close()
    assert message is not None and (message.offset(), message.value()) == (7777, values[2 * 7777 + 1])


def test_a_damaged_segment_tail_is_cut_to_the_last_valid_batch(broker):
    """A crash can leave a torn or scribbled tail; recovery keeps every whole, valid batch
    before it, drops the rest, and new messages continue from there."""
    topic = create_topic(broker.bootstrap, unique_topic("torn"))
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(50):
        producer.produce(topic, value=f"v{i}".encode())
        producer.flush(10)  # one batch per message
    assert broker.stop() == 0
    log = sorted((broker.data_dir / f"{topic}-0").glob("*.log"))[-1]
    data = log.read_bytes()
    # Cut the last batch in half, then scribble over what is left of it.
    last_batch = 40  # a one-record batch of "vNN" is well over 40 bytes
    log.write_bytes(data[:-last_batch] + b"\xde\xad\xbe\xef" * 4)
    broker.start()
    got = consume_all(broker.bootstrap, topic, 1, 49)
    assert [v for _, _, _, v in sorted(got)] == [f"v{i}".encode() for i in range(49)]
    offsets = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    producer.produce(topic, value=b"after", on_delivery=lambda e, m: offsets.append(m.offset()))
    producer.flush(10)
    assert offsets == [49], "the damaged batch's offset is reused, leaving no gap"
    assert [v for _, _, _, v in sorted(consume_all(broker.bootstrap, topic, 1, 50))][-1] == b"after"


def test_only_a_clean_shutdown_lets_the_next_start_skip_tail_validation(broker):
    """The clean-shutdown marker exists only between a clean stop and the next start; after a
    SIGKILL the next start re-validates (and says so)."""
    marker = broker.data_dir / ".clean-shutdown"
    topic = create_topic(broker.bootstrap, unique_topic("marker"))
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(100):
        producer.produce(topic, value=f"v{i}".encode())
    assert producer.flush(10) == 0
    assert not marker.exists(), "no marker while running"
    assert broker.stop() == 0
    assert marker.exists()
    broker.start()
    assert not marker.exists(), "taken at start, before anything is written"
    assert "last shutdown clean" in broker.log()
    assert len(consume_all(broker.bootstrap, topic, 1, 100)) == 100
    broker.stop(signal.SIGKILL)
    assert not marker.exists()
    broker.start()
    assert broker.log().count("last shutdown unclean") == 2, "the first start and this one"
    assert len(consume_all(broker.bootstrap, topic, 1, 100)) == 100
