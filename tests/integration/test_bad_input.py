"""Hostile and broken input over raw sockets. Each case hurts only its own connection: after
it, a fresh raw connection and a real client (kcat -L, kafka-python) are still served."""

import json
import os
import struct
import subprocess

import pytest
from kafka import KafkaConsumer, TopicPartition

import wire
from helpers import create_topic, unique_topic


def assert_broker_serves(broker):
    """The broker is alive and well for everyone else: a raw ApiVersions and a kcat listing."""
    assert broker.process.poll() is None, f"broker died:\n{broker.log()}"
    error_code, apis = wire.api_versions(broker.bootstrap)
    assert error_code == wire.ERROR_NONE and wire.API_METADATA in apis
    result = subprocess.run(["kcat", "-b", broker.bootstrap, "-L", "-J", "-m", "10"],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert [b["id"] for b in json.loads(result.stdout)["brokers"]] == [0]


def end_offset(bootstrap, topic, partition=0):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=15000)
    try:
        tp = TopicPartition(topic, partition)
        return consumer.end_offsets([tp])[tp]
    finally:
        consumer.close()


@pytest.mark.parametrize("garbage", [
    b"\xff" * 64,  # length prefix -1
    struct.pack(">i", 16) + b"\xff" * 16,  # api key -1
    struct.pack(">i", 40) + os.urandom(40),
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",  # an HTTP client on the Kafka port
], ids=["negative-length", "all-ones", "random", "http"])
def test_garbage_closes_the_connection(broker, garbage):
    with wire.Conn(broker.bootstrap) as conn:
        conn.send(garbage)
        assert conn.closed_by_peer(), "the broker kept a connection that sent garbage"
    assert_broker_serves(broker)


def test_frame_longer_than_the_default_limit_is_refused_before_reading_it(broker):
    with wire.Conn(broker.bootstrap) as conn:
        conn.send(struct.pack(">i", 104857600 + 1) + wire.request_header(wire.API_METADATA, 1, 1))
        assert conn.closed_by_peer(), "a frame over socket_request_max_bytes must close the connection"
    assert_broker_serves(broker)


def test_socket_request_max_bytes_flag_bounds_frames(broker_factory):
    broker = broker_factory("--socket-request-max-bytes", "65536")
    # At the limit: a real request padded to exactly 65536 bytes is still read (and answered
    # or refused on its merits, not on its size): the connection is not closed for its length.
    topic = create_topic(broker.bootstrap, unique_topic("limit"))
    batch = wire.record_batch([b"v" * 60000])
    request = wire.produce_request_v3(1, topic, 0, batch)
    assert len(request) - 4 <= 65536
    with wire.Conn(broker.bootstrap) as conn:
        correlation_id, results = wire.parse_produce_response_v3(conn.call(request))
    assert correlation_id == 1 and results == [(topic, 0, wire.ERROR_NONE, 0)]
    # Over the limit: closed without the broker waiting for (or allocating) the body.
    with wire.Conn(broker.bootstrap) as conn:
        conn.send(struct.pack(">i", 65537) + wire.request_header(wire.API_METADATA, 1, 2))
        assert conn.closed_by_peer(), "a frame over --socket-request-max-bytes must close the connection"
    assert_broker_serves(broker)


def test_truncated_frame_then_close_leaves_the_broker_fine(broker):
    with wire.Conn(broker.bootstrap) as conn:
        conn.send(struct.pack(">i", 100) + wire.request_header(wire.API_API_VERSIONS, 0, 1))
    # Many half-sent frames at once, closed in the middle.
    conns = [wire.Conn(broker.bootstrap) for _ in range(20)]
    for c in conns:
        c.send(struct.pack(">i", 1000) + b"\x00" * 10)
    for c in conns:
        c.close()
    assert_broker_serves(broker)


def test_unknown_api_key_is_refused(broker):
    with wire.Conn(broker.bootstrap) as conn:
        conn.send(wire.frame(wire.request_header(9999, 0, 5)))
        try:
            payload = conn.recv_frame()
        except (ConnectionError, OSError):
            payload = None  # closed: what Apache Kafka does
        if payload is not None:
            # An answer is acceptable only as an error for this very request.
            (correlation_id,) = struct.unpack_from(">i", payload)
            assert correlation_id == 5
            assert len(payload) >= 6 and struct.unpack_from(">h", payload, 4)[0] != 0, \
                "an unknown API answered without an error code"
    assert_broker_serves(broker)


def test_unsupported_version_of_a_known_api_closes_the_connection(broker):
    with wire.Conn(broker.bootstrap) as conn:
        conn.send(wire.frame(wire.request_header(wire.API_METADATA, 99, 6, flexible=True) + b"\x00\x00"))
        assert conn.closed_by_peer(), "Metadata v99 must close the connection, as Kafka does"
    assert_broker_serves(broker)


@pytest.mark.parametrize("flexible", [True, False], ids=["header-v2", "header-v1"])
def test_api_versions_newer_than_supported_gets_a_v0_answer_with_error_35(broker, flexible):
    # KIP-511: the body of an unknown ApiVersions version cannot be parsed, so the broker
    # answers in v0 with UNSUPPORTED_VERSION and its list, and the client retries lower.
    body = b"\x05weir\x041.0\x00" if flexible else b""  # v3-style compact strings + tags
    with wire.Conn(broker.bootstrap) as conn:
        payload = conn.call(wire.frame(wire.request_header(wire.API_API_VERSIONS, 99, 4242,
                                                           flexible=flexible) + body))
        correlation_id, error_code, apis = wire.parse_api_versions_v0(payload)
        assert correlation_id == 4242
        assert error_code == wire.ERROR_UNSUPPORTED_VERSION
        assert apis[wire.API_API_VERSIONS] == (0, 4)
        assert apis[wire.API_PRODUCE][0] <= 3 <= apis[wire.API_PRODUCE][1]
        assert apis[wire.API_METADATA][0] <= 12 <= apis[wire.API_METADATA][1]
        # The same connection stays usable for the retry at a supported version.
        correlation_id, error_code, _ = wire.parse_api_versions_v0(
            conn.call(wire.frame(wire.request_header(wire.API_API_VERSIONS, 0, 4243))))
        assert (correlation_id, error_code) == (4243, wire.ERROR_NONE)
    assert_broker_serves(broker)


def test_bad_crc_is_corrupt_message_and_nothing_is_appended(broker):
    topic = create_topic(broker.bootstrap, unique_topic("crc"))
    good = wire.record_batch([b"one", b"two", b"three"])
    with wire.Conn(broker.bootstrap) as conn:
        correlation_id, results = wire.parse_produce_response_v3(conn.call(wire.produce_request_v3(11, topic, 0, good)))
    assert correlation_id == 11 and results == [(topic, 0, wire.ERROR_NONE, 0)]
    assert end_offset(broker.bootstrap, topic) == 3

    bad = bytearray(wire.record_batch([b"four", b"five"]))
    bad[-1] ^= 0x01  # flip one bit of the last value: the CRC32C no longer matches
    with wire.Conn(broker.bootstrap) as conn:
        correlation_id, results = wire.parse_produce_response_v3(conn.call(wire.produce_request_v3(12, topic, 0, bytes(bad))))
    assert correlation_id == 12
    assert [(t, p, e) for t, p, e, _ in results] == [(topic, 0, wire.ERROR_CORRUPT_MESSAGE)]
    assert end_offset(broker.bootstrap, topic) == 3, "a corrupt batch must not be appended"

    # The next good batch lands right after the first one.
    with wire.Conn(broker.bootstrap) as conn:
        _, results = wire.parse_produce_response_v3(conn.call(wire.produce_request_v3(13, topic, 0, wire.record_batch([b"six"]))))
    assert results == [(topic, 0, wire.ERROR_NONE, 3)]
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, consumer_timeout_ms=5000,
                             auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    values = [(r.offset, r.value) for r in consumer]
    consumer.close()
    assert values == [(0, b"one"), (1, b"two"), (2, b"three"), (3, b"six")]
    assert_broker_serves(broker)


def test_truncated_record_batch_is_rejected_and_nothing_is_appended(broker):
    topic = create_topic(broker.bootstrap, unique_topic("short"))
    batch = wire.record_batch([b"a" * 100, b"b" * 100])
    # Cut the batch short while the request's own length fields stay consistent.
    with wire.Conn(broker.bootstrap) as conn:
        conn.send(wire.produce_request_v3(21, topic, 0, batch[:-50]))
        try:
            _, results = wire.parse_produce_response_v3(conn.recv_frame())
            assert len(results) == 1 and results[0][2] != wire.ERROR_NONE, results
        except (ConnectionError, OSError):
            pass  # closing the connection is an acceptable answer to a malformed batch
    assert end_offset(broker.bootstrap, topic) == 0
    assert_broker_serves(broker)


def _longer_batch_length(values):
    batch = bytearray(wire.record_batch(values))
    struct.pack_into(">i", batch, 8, struct.unpack_from(">i", batch, 8)[0] + 100)
    return bytes(batch)


def _two_batches_second_corrupt(values):
    second = bytearray(wire.record_batch(values))
    second[-1] ^= 0xFF
    return wire.record_batch(values) + bytes(second)


@pytest.mark.parametrize("make_batch", [
    lambda v: wire.record_batch(v, record_count=1000),  # header claims more records than it holds
    lambda v: wire.record_batch(v, record_count=1),  # ... or fewer
    lambda v: wire.record_batch(v, last_offset_delta=7),  # last offset delta disagrees with the count
    lambda v: wire.record_batch(v, magic=1),  # magic 1 framing of a v2 batch
    lambda v: wire.record_batch(v, attributes=0x07),  # compression codec 7 does not exist
    _longer_batch_length,  # batch length runs past the records field
    _two_batches_second_corrupt,  # one good batch then a corrupt one: all or nothing
    lambda v: b"",  # empty records
], ids=["count-high", "count-low", "offset-delta", "magic-1", "codec-7", "length-overrun",
        "second-batch-corrupt", "empty"])
def test_malformed_batch_is_rejected_and_nothing_is_appended(broker, make_batch):
    topic = create_topic(broker.bootstrap, unique_topic("malformed"))
    with wire.Conn(broker.bootstrap) as conn:
        conn.send(wire.produce_request_v3(31, topic, 0, make_batch([b"a" * 10, b"b" * 10, b"c" * 10])))
        try:
            correlation_id, results = wire.parse_produce_response_v3(conn.recv_frame())
            assert correlation_id == 31
            assert len(results) == 1 and results[0][2] != wire.ERROR_NONE, f"malformed batch accepted: {results}"
        except (ConnectionError, OSError):
            pass  # closing the connection is an acceptable answer too
    assert end_offset(broker.bootstrap, topic) == 0, "nothing of a rejected request may be appended"
    assert_broker_serves(broker)


def _gzip(data):
    import gzip
    return gzip.compress(data)


GZIP = 1
TWO_BILLION = 2**31 - 1


@pytest.mark.parametrize("batch, reason", [
    # The 377 GB abort: a valid CRC over 3 gzipped records, the header claiming 2^31 - 1.
    (lambda v: wire.record_batch(v, attributes=GZIP, compress=_gzip, record_count=TWO_BILLION,
                                 last_offset_delta=TWO_BILLION - 1), "count-2^31"),
    (lambda v: wire.record_batch(v, attributes=GZIP, compress=_gzip, offset_deltas=[0, 0, 2]),
     "offsets-not-incremental"),
    (lambda v: wire.record_batch(v, attributes=GZIP, compress=lambda b: _gzip(b)[:-9]), "gzip-cut-short"),
    (lambda v: wire.record_batch(v, attributes=GZIP, compress=lambda b: _gzip(b + b"\x02")), "trailing-bytes"),
    (lambda v: wire.record_batch(v, attributes=0x20), "control-batch"),
    (lambda v: wire.record_batch(v, producer_id=5, producer_epoch=0, base_sequence=-3), "negative-sequence"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_a_batch_whose_records_lie_is_refused_and_readers_survive(broker, batch, reason):
    """Produce reads every record of every batch, compressed or not, as Kafka's LogValidator:
    a batch whose records break the format is refused and nothing is appended. Then the
    readers that look inside stored batches (ListOffsets by time) still work."""
    topic = create_topic(broker.bootstrap, unique_topic("lying"))
    good = wire.record_batch([b"x", b"y", b"z"], attributes=GZIP, compress=_gzip, timestamp_deltas=[0, 10, 20])
    with wire.Conn(broker.bootstrap) as conn:
        _, results = wire.parse_produce_response_v3(conn.call(wire.produce_request_v3(41, topic, 0, good)))
        assert results == [(topic, 0, wire.ERROR_NONE, 0)]
        _, results = wire.parse_produce_response_v3(
            conn.call(wire.produce_request_v3(42, topic, 0, batch([b"a" * 10, b"b" * 10, b"c" * 10]))))
    [(_, _, error_code, _)] = results
    assert error_code in (wire.ERROR_INVALID_RECORD, wire.ERROR_CORRUPT_MESSAGE), f"{reason}: {results}"
    assert end_offset(broker.bootstrap, topic) == 3, "nothing of a refused batch may be appended"
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, request_timeout_ms=15000)
    try:
        tp = TopicPartition(topic, 0)
        found = consumer.offsets_for_times({tp: 1_700_000_000_015})[tp]
        assert (found.offset, found.timestamp) == (2, 1_700_000_000_020)
    finally:
        consumer.close()
    assert_broker_serves(broker)
