"""Restarts: a clean SIGTERM keeps everything; a SIGKILL loses nothing acknowledged."""

import signal
import threading
import time

from confluent_kafka import Producer

from helpers import consume_all, create_topic, unique_topic


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
    stored = {v: (p, o) for p, o, _, v in consume_all(broker.bootstrap, topic, 2, len(acked), timeout_s=30)}
    lost = [v for v in acked if v not in stored]
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:3]}"
    moved = [v for v, where in acked.items() if stored[v] != where]
    assert not moved, f"acknowledged messages at different offsets: {moved[:3]}"
    for partition in (0, 1):
        offsets = sorted(o for p, o in stored.values() if p == partition)
        assert offsets == list(range(len(offsets))), "offsets are dense after recovery"
