"""kcat (librdkafka's command-line client) against the real broker."""

import json
import subprocess

import pytest

from helpers import create_topic, unique_topic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def kcat(bootstrap, *args, input_bytes=None, timeout=120):
    result = subprocess.run(
        ["kcat", "-b", bootstrap, *args], input=input_bytes, capture_output=True, timeout=timeout
    )
    assert result.returncode == 0, f"kcat {' '.join(args)} failed: {result.stderr.decode(errors='replace')}"
    return result.stdout


def test_metadata_lists_broker_and_topics(broker):
    topic = create_topic(broker.bootstrap, unique_topic("meta"), partitions=3)
    listing = json.loads(kcat(broker.bootstrap, "-L", "-J"))
    assert [b["id"] for b in listing["brokers"]] == [0]
    assert listing["brokers"][0]["name"] == broker.bootstrap
    topics = {t["topic"]: t for t in listing["topics"]}
    assert len(topics[topic]["partitions"]) == 3
    assert all(p["leader"] == 0 for p in topics[topic]["partitions"])


def test_produce_and_consume_200k_messages(broker, tmp_path):
    topic = create_topic(broker.bootstrap, unique_topic("bulk"), partitions=4)
    messages = [f"{i:08d}-".encode() + b"x" * 90 for i in range(200_000)]
    source = tmp_path / "messages"
    source.write_bytes(b"\n".join(messages) + b"\n")
    kcat(broker.bootstrap, "-P", "-t", topic, "-X", "acks=all", "-l", str(source))
    out = kcat(broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q")
    consumed = out.split(b"\n")[:-1]
    assert len(consumed) == len(messages)
    assert sorted(consumed) == messages


def test_keys_headers_and_timestamps_round_trip(broker):
    topic = unique_topic("keyed")
    lines = b"".join(f"key-{i}:value-{i}\n".encode() for i in range(50))
    kcat(broker.bootstrap, "-P", "-t", topic, "-K:", "-H", "trace=abc", "-H", "n=1", input_bytes=lines)
    out = kcat(broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k|%s|%h|%o|%T\n")
    rows = [line.split("|") for line in out.decode().splitlines()]
    assert [(r[0], r[1]) for r in rows] == [(f"key-{i}", f"value-{i}") for i in range(50)]
    assert all(r[2] == "trace=abc,n=1" for r in rows)
    assert [int(r[3]) for r in rows] == list(range(50))
    assert all(int(r[4]) > 1_600_000_000_000 for r in rows), "create timestamps are kept"


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_is_stored_and_served_as_produced(broker, codec):
    topic = unique_topic(f"codec-{codec}")
    values = [f"{codec}-{i}-".encode() + b"abcdefgh" * 20 for i in range(2000)]
    kcat(broker.bootstrap, "-P", "-t", topic, "-z", codec, "-X", "linger.ms=50", input_bytes=b"\n".join(values) + b"\n")
    out = kcat(broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q")
    assert out.split(b"\n")[:-1] == values


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_every_acks_setting_appends_in_order(broker, acks):
    topic = create_topic(broker.bootstrap, unique_topic(f"kacks{acks}"))
    values = [f"acks{acks}-{i}".encode() for i in range(5000)]
    kcat(broker.bootstrap, "-P", "-t", topic, "-p", "0", "-X", f"acks={acks}", input_bytes=b"\n".join(values) + b"\n")
    out = kcat(broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%o %s\n")
    assert out.decode().splitlines() == [f"{i} {v.decode()}" for i, v in enumerate(values)]


def test_consume_from_an_offset_and_a_count(broker):
    topic = create_topic(broker.bootstrap, unique_topic("window"))
    kcat(broker.bootstrap, "-P", "-t", topic, input_bytes=b"".join(f"m{i}\n".encode() for i in range(100)))
    out = kcat(broker.bootstrap, "-C", "-t", topic, "-o", "40", "-c", "10", "-e", "-q", "-f", "%o:%s\n")
    assert out.decode().splitlines() == [f"{i}:m{i}" for i in range(40, 50)]
    out = kcat(broker.bootstrap, "-C", "-t", topic, "-o", "-5", "-e", "-q", "-f", "%o:%s\n")
    assert out.decode().splitlines() == [f"{i}:m{i}" for i in range(95, 100)]
