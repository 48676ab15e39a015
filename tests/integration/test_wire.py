"""Wire-level behaviour no client library shows directly: acks=0 sends no response, and
pipelined requests are answered in request order."""

import struct
import time

from kafka import KafkaConsumer, TopicPartition

import wire
from helpers import create_topic, unique_topic


def end_offsets(bootstrap, topic, partitions):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, request_timeout_ms=15000)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = consumer.end_offsets(tps)
        return [ends[tp] for tp in tps]
    finally:
        consumer.close()


def test_acks_0_appends_and_sends_no_response(broker):
    topic = create_topic(broker.bootstrap, unique_topic("acks0"))
    with wire.Conn(broker.bootstrap) as conn:
        for i in range(5):
            conn.send(wire.produce_request_v3(100 + i, topic, 0, wire.record_batch([f"m{i}".encode()] * 10), acks=0))
        # The next frame on this connection must answer the ApiVersions, not any produce.
        correlation_id, error_code, _ = wire.parse_api_versions_v0(
            conn.call(wire.frame(wire.request_header(wire.API_API_VERSIONS, 0, 200))))
        assert (correlation_id, error_code) == (200, 0), "acks=0 produce must not be answered"
    deadline = time.monotonic() + 10
    while end_offsets(broker.bootstrap, topic, 1) != [50] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert end_offsets(broker.bootstrap, topic, 1) == [50]


def test_pipelined_requests_are_answered_in_order(broker):
    topic = create_topic(broker.bootstrap, unique_topic("pipe"), partitions=4)
    requests = []
    expected = []
    for i in range(40):
        correlation_id = 1000 + i
        kind = i % 3
        if kind == 0:  # acks=all produce: waits for fsync, on whichever shard owns the partition
            requests.append(wire.produce_request_v3(correlation_id, topic, i % 4, wire.record_batch([b"x" * 100])))
        elif kind == 1:
            requests.append(wire.frame(wire.request_header(wire.API_API_VERSIONS, 0, correlation_id)))
        else:
            requests.append(wire.metadata_request_v4(correlation_id, [topic]))
        expected.append((correlation_id, kind))
    with wire.Conn(broker.bootstrap, timeout_s=30) as conn:
        conn.send(b"".join(requests))  # all at once: the broker sees them pipelined
        answered = []
        next_offset = [0, 0, 0, 0]
        for correlation_id, kind in expected:
            payload = conn.recv_frame()
            (got_id,) = struct.unpack_from(">i", payload)
            answered.append(got_id)
            if got_id != correlation_id:
                continue
            if kind == 0:
                _, results = wire.parse_produce_response_v3(payload)
                (name, partition, error_code, base_offset), = results
                assert (name, error_code) == (topic, 0)
                assert base_offset == next_offset[partition], "offsets dense per partition, in request order"
                next_offset[partition] += 1
            elif kind == 2:
                assert wire.parse_metadata_response_v4(payload)["topics"][topic][0] == 0
    assert answered == [c for c, _ in expected], "responses must leave in request order"
    assert end_offsets(broker.bootstrap, topic, 4) == next_offset


def test_produce_to_a_missing_partition_or_topic_is_unknown_topic_or_partition(broker):
    topic = create_topic(broker.bootstrap, unique_topic("one"))
    missing = unique_topic("missing")
    with wire.Conn(broker.bootstrap) as conn:
        _, results = wire.parse_produce_response_v3(conn.call(wire.produce_request_v3(1, topic, 5, wire.record_batch([b"x"]))))
        assert [(t, p, e) for t, p, e, _ in results] == [(topic, 5, 3)]
        _, results = wire.parse_produce_response_v3(conn.call(wire.produce_request_v3(2, missing, 0, wire.record_batch([b"x"]))))
        assert [(t, p, e) for t, p, e, _ in results] == [(missing, 0, 3)]
    assert end_offsets(broker.bootstrap, topic, 1) == [0]
    assert missing not in wire.metadata(broker.bootstrap, None)["topics"], "Produce never auto-creates"


# The API versions Weir promises (the broker's spec); ListOffsets, DescribeCluster and
# DescribeConfigs only need to be there.
SPECIFIED_VERSIONS = {
    0: (3, 12),  # Produce
    1: (4, 16),  # Fetch
    3: (0, 12),  # Metadata
    18: (0, 4),  # ApiVersions
    19: (2, 7),  # CreateTopics
    20: (1, 6),  # DeleteTopics
}


def test_advertised_api_versions_match_the_spec(broker):
    error_code, apis = wire.api_versions(broker.bootstrap)
    assert error_code == 0
    advertised = {key: apis.get(key) for key in SPECIFIED_VERSIONS}
    assert advertised == SPECIFIED_VERSIONS
    for key, name in ((2, "ListOffsets"), (32, "DescribeConfigs"), (60, "DescribeCluster")):
        assert key in apis, f"{name} is not advertised"
