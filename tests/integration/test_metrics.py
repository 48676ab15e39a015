"""The Prometheus endpoint (--metrics-listen): counters move by what real clients did, and
consumer lag matches what ListOffsets and OffsetFetch say."""

import re
import socket
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import free_port
from helpers import create_topic, unique_topic


def scrape(port, path="/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def value(text, name, **labels):
    """The sample of `name` with exactly these labels (0 if absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if got == {k: str(v) for k, v in labels.items()}:
            return float(m.group(3))
    return 0.0


@pytest.fixture
def metered(broker_factory):
    port = free_port()
    broker = broker_factory("--metrics-listen", f"127.0.0.1:{port}", "--group-initial-rebalance-delay-ms", "0")
    broker.metrics_port = port
    return broker


def test_counters_move_by_what_clients_did(metered):
    topic = create_topic(metered.bootstrap, unique_topic("metered"), partitions=3)
    before = scrape(metered.metrics_port)
    producer = Producer({"bootstrap.servers": metered.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(30):
        producer.produce(topic, value=b"x" * 100, partition=i % 3)
        producer.flush(10)  # one Produce request per message
    after = scrape(metered.metrics_port)
    produced = value(after, "weir_requests_total", api="Produce") - value(before, "weir_requests_total", api="Produce")
    assert produced == 30
    bytes_in = value(after, "weir_topic_bytes_in_total", topic=topic)
    assert 30 * 100 < bytes_in < 30 * 300, "payload plus batch framing"
    for p in range(3):
        assert value(after, "weir_log_high_watermark", topic=topic, partition=p) == 10
        assert value(after, "weir_log_segments", topic=topic, partition=p) == 1
    assert value(after, "weir_produce_batch_bytes_count") - value(before, "weir_produce_batch_bytes_count") == 30
    # Every produce went through each stage once (one partition payload per request); the
    # log's stages count flush windows, at least one per durable produce here, since each
    # produce waited for its acknowledgement before the next was sent.
    stage = lambda text, name: value(text, "weir_produce_stage_seconds_count", stage=name)
    for name in ("validate", "hop", "append"):
        assert stage(after, name) - stage(before, name) == 30, name
    for name in ("log_queued", "log_gate", "log_write", "log_fdatasync"):
        assert stage(after, name) - stage(before, name) >= 30, name
    assert value(after, "weir_produce_stage_seconds_sum", stage="append") > 0
    syncs = sum(value(after, "weir_fsyncs_total", shard=s) - value(before, "weir_fsyncs_total", shard=s) for s in (0, 1))
    assert syncs >= 30, "durable: every acknowledged produce was fdatasync'd"
    assert sum(value(after, "weir_fsync_seconds_total", shard=s) for s in (0, 1)) > 0
    assert sum(value(after, "weir_partitions", shard=s) for s in (0, 1)) >= 3
    assert value(after, "weir_under_replicated_partitions") == 0
    assert value(after, "weir_offline_partitions") == 0
    assert value(after, "weir_reactor_busy_seconds_total", shard=0) > 0
    assert value(after, 'weir_request_duration_seconds_count', api="Produce") >= 30


def test_lag_matches_list_offsets_and_offset_fetch(metered):
    topic = create_topic(metered.bootstrap, unique_topic("lag"), partitions=2)
    producer = Producer({"bootstrap.servers": metered.bootstrap, "acks": "all"})
    for i in range(50):
        producer.produce(topic, value=b"m", partition=i % 2)
    producer.flush(10)
    group = unique_topic("lag-group")
    consumer = Consumer({"bootstrap.servers": metered.bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 7), TopicPartition(topic, 1, 20)], asynchronous=False)
    committed = {tp.partition: tp.offset for tp in consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)}
    high = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1)}
    consumer.close()
    text = scrape(metered.metrics_port)
    for p in (0, 1):
        assert value(text, "weir_consumer_group_lag", group=group, topic=topic, partition=p) == high[p] - committed[p]
        assert value(text, "weir_consumer_group_committed_offset", group=group, topic=topic, partition=p) == committed[p]
    assert (high[0] - committed[0], high[1] - committed[1]) == (18, 5)


def test_other_paths_and_methods_are_refused(metered):
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(metered.metrics_port, "/nope")
    assert e.value.code == 404
    with socket.create_connection(("127.0.0.1", metered.metrics_port), timeout=5) as s:
        s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 405")


def test_error_codes_in_responses_are_counted_per_api_and_error(metered):
    """Kafka's ErrorsPerSec: every error code a response carries, per API and error name."""
    import wire

    topic = create_topic(metered.bootstrap, unique_topic("errs"), partitions=1)
    before = scrape(metered.metrics_port)
    with wire.Conn(metered.bootstrap) as conn:
        for i in range(3):  # partition 7 does not exist: UNKNOWN_TOPIC_OR_PARTITION
            conn.call(wire.produce_request_v3(10 + i, topic, 7, wire.record_batch([b"x"])))
        # Two batches of one producer with a gap between them: OUT_OF_ORDER_SEQUENCE_NUMBER.
        for i, sequence in enumerate((0, 5)):
            batch = wire.record_batch([b"y"], producer_id=99, producer_epoch=0, base_sequence=sequence)
            conn.call(wire.produce_request_v3(20 + i, topic, 0, batch))
        conn.call(wire.produce_request_v3(30, topic, 0, wire.record_batch([b"ok"])))
    after = scrape(metered.metrics_port)

    def delta(**labels):
        return value(after, "weir_request_errors_total", **labels) - value(before, "weir_request_errors_total", **labels)

    assert delta(api="Produce", error="UNKNOWN_TOPIC_OR_PARTITION") == 3
    assert delta(api="Produce", error="OUT_OF_ORDER_SEQUENCE_NUMBER") == 1
    assert value(after, "weir_request_errors_total", api="Produce", error="NONE") == 0, "successes are not errors"


def test_fsync_counters_never_go_down_when_a_topic_is_deleted(metered):
    from confluent_kafka.admin import AdminClient

    topic = create_topic(metered.bootstrap, unique_topic("gone"), partitions=2)
    producer = Producer({"bootstrap.servers": metered.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(10):
        producer.produce(topic, value=b"x", partition=i % 2)
        producer.flush(10)

    def totals(text):
        return [sum(value(text, name, shard=s) for s in (0, 1))
                for name in ("weir_fsyncs_total", "weir_log_flushes_total", "weir_fsync_seconds_total")]

    before = totals(scrape(metered.metrics_port))
    assert before[0] >= 10
    admin = AdminClient({"bootstrap.servers": metered.bootstrap})
    admin.delete_topics([topic])[topic].result(15)
    after = totals(scrape(metered.metrics_port))
    assert all(a >= b for a, b in zip(after, before)), f"{before} -> {after}: counters only grow"


def test_what_start_up_cut_away_is_counted(metered):
    """A torn tail that recovery cut after a crash shows in weir_recovery_truncated_bytes, so an
    operator sees it without reading the log; nothing the client had acknowledged is lost."""
    import signal

    topic = create_topic(metered.bootstrap, unique_topic("cut"))
    producer = Producer({"bootstrap.servers": metered.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(20):
        producer.produce(topic, value=f"v{i}".encode())
        producer.flush(10)
    assert sum(value(scrape(metered.metrics_port), "weir_recovery_truncated_bytes", shard=s) for s in (0, 1)) == 0
    metered.stop(signal.SIGKILL)
    log = sorted((metered.data_dir / f"{topic}-0").glob("*.log"))[-1]
    garbage = b"\xde\xad\xbe\xef" * 16
    log.write_bytes(log.read_bytes() + garbage)
    metered.start()
    text = scrape(metered.metrics_port)
    assert sum(value(text, "weir_recovery_truncated_bytes", shard=s) for s in (0, 1)) == len(garbage)
    assert sum(value(text, "weir_group_load_skipped_records", shard=s) for s in (0, 1)) == 0
    assert value(text, "weir_log_high_watermark", topic=topic, partition=0) == 20
