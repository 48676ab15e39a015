"""weirctl, the admin CLI, against a running broker: every command, human and JSON output,
and clear errors (exit 2 for bad usage, exit 1 for what the broker refused)."""

import json
import pathlib
import subprocess
import time

from confluent_kafka import Consumer, Producer

from helpers import unique_topic

WEIRCTL = pathlib.Path(__file__).resolve().parents[2] / "target" / "release" / "weirctl"


def ctl(broker, *args, json_out=False, expect=0, stdin=None):
    assert WEIRCTL.exists(), f"{WEIRCTL} is missing: run `cargo build --release --bin weirctl`"
    argv = [str(WEIRCTL), "-b", broker.bootstrap, *(["--json"] if json_out else []), *args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, input=stdin)
    assert r.returncode == expect, f"{args}: exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return json.loads(r.stdout) if json_out and expect == 0 else r


def test_topic_commands(broker):
    topic = unique_topic("ctl")
    assert ctl(broker, "topic", "create", topic, "--partitions", "3", "--config", "retention.ms=3600000",
               json_out=True) == {"topic": topic, "partitions": 3}
    listed = ctl(broker, "topic", "list", json_out=True)
    assert {"topic": topic, "partitions": 3, "internal": False} in listed
    assert topic in ctl(broker, "topic", "list").stdout
    ctl(broker, "produce", topic, "a", "b", "c")
    described = ctl(broker, "topic", "describe", topic, json_out=True)
    assert described["configs"] == {"retention.ms": "3600000"}
    assert [(p["partition"], p["earliest"], p["latest"]) for p in described["partitions"]] == [(0, 0, 3), (1, 0, 0), (2, 0, 0)]
    ctl(broker, "topic", "alter-config", topic, "--set", "segment.bytes=1048576", "--delete", "retention.ms")
    assert ctl(broker, "topic", "describe", topic, json_out=True)["configs"] == {"segment.bytes": "1048576"}
    ctl(broker, "topic", "add-partitions", topic, "--total", "5")
    assert len(ctl(broker, "topic", "describe", topic, json_out=True)["partitions"]) == 5
    # The broker's refusals: exit 1 with Kafka's error named.
    r = ctl(broker, "topic", "create", topic, expect=1)
    assert "TopicAlreadyExists" in r.stderr
    r = ctl(broker, "topic", "alter-config", topic, "--set", "no.such.config=1", expect=1)
    assert "InvalidConfig" in r.stderr
    r = ctl(broker, "topic", "add-partitions", topic, "--total", "2", expect=1)
    assert "InvalidPartitions" in r.stderr
    ctl(broker, "topic", "delete", topic)
    r = ctl(broker, "topic", "describe", topic, expect=1)
    assert "UnknownTopicOrPartition" in r.stderr


def test_produce_consume_and_cluster(broker):
    topic = unique_topic("ctlrec")
    ctl(broker, "topic", "create", topic, "--partitions", "2")
    out = ctl(broker, "produce", topic, "--partition", "1", "--key", "k", "x", "y", json_out=True)
    assert out["base_offset"] == 0 and out["count"] == 2
    ctl(broker, "produce", topic, "--partition", "1", stdin="line1\nline2\n")
    got = ctl(broker, "consume", topic, "--partition", "1", "--count", "4", json_out=True)["records"]
    assert [(r["offset"], r["key"], r["value"]) for r in got] == [(0, "k", "x"), (1, "k", "y"), (2, None, "line1"), (3, None, "line2")]
    got = ctl(broker, "consume", topic, "--partition", "1", "--from", "2", "--count", "1", json_out=True)["records"]
    assert [r["value"] for r in got] == ["line1"]
    assert ctl(broker, "consume", topic, "--from", "latest", "--wait-ms", "300", json_out=True)["records"] == []
    cluster = ctl(broker, "cluster", "describe", json_out=True)
    assert cluster["brokers"] == [{"id": 0, "host": "127.0.0.1", "port": int(broker.bootstrap.split(":")[1]), "rack": None}]
    assert len(cluster["cluster_id"]) == 22


def test_group_commands_show_lag_and_reset_offsets(broker_factory):
    broker = broker_factory("--group-initial-rebalance-delay-ms", "0")
    topic = unique_topic("ctlgrp")
    ctl(broker, "topic", "create", topic, "--partitions", "2")
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        producer.produce(topic, value=b"v", partition=i % 2)
    producer.flush(10)
    group = unique_topic("g")
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "client.id": "ctl-test",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 15 and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            seen += 1
    assert seen == 15
    consumer.commit(asynchronous=False)  # the positions of both partitions: 15 consumed
    # While the consumer is a member: it shows up as the owner of both partitions.
    described = ctl(broker, "group", "describe", group, json_out=True)
    assert described["state"] == "Stable" and len(described["members"]) == 1
    assert described["members"][0]["client_id"] == "ctl-test"
    assert {p["consumer_id"] for p in described["partitions"]} == {described["members"][0]["member_id"]}
    lags = {p["partition"]: (p["current_offset"], p["log_end_offset"], p["lag"]) for p in described["partitions"]}
    assert sum(c for c, _, _ in lags.values()) == 15
    assert sum(lag for _, _, lag in lags.values()) == 5
    assert {end for _, end, _ in lags.values()} == {10}
    assert group in [g["group"] for g in ctl(broker, "group", "list", json_out=True)]
    # A live group's offsets cannot be reset, nor the group deleted.
    r = ctl(broker, "group", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute", expect=1)
    assert "is the group empty" in r.stderr
    r = ctl(broker, "group", "delete", group, expect=1)
    assert "NonEmptyGroup" in r.stderr
    consumer.close()
    plan = ctl(broker, "group", "reset-offsets", group, "--topic", topic, "--to-earliest", json_out=True)
    assert plan["executed"] is False and {o["offset"] for o in plan["offsets"]} == {0}
    ctl(broker, "group", "reset-offsets", group, "--topic", topic, "--to-offset", "3", "--execute")
    described = ctl(broker, "group", "describe", group, json_out=True)
    assert described["state"] == "Empty"
    assert {(p["partition"], p["current_offset"], p["lag"]) for p in described["partitions"]} == {(0, 3, 7), (1, 3, 7)}
    ctl(broker, "group", "reset-offsets", group, "--topic", topic, "--to-datetime", "2000-01-01T00:00:00", "--execute")
    assert {p["current_offset"] for p in ctl(broker, "group", "describe", group, json_out=True)["partitions"]} == {0}
    ctl(broker, "group", "delete", group)
    r = ctl(broker, "group", "delete", group, expect=1)
    assert "GroupIdNotFound" in r.stderr


def test_bad_usage_exits_2_with_a_message(broker):
    for args, needle in [
        (("group", "reset-offsets", "g", "--topic", "t"), "needs one of"),
        (("group", "reset-offsets", "g", "--topic", "t", "--to-datetime", "someday"), "bad --to-datetime"),
        (("topic", "alter-config", "t"), "needs --set"),
        (("consume", "t", "--from", "middle"), "--from takes"),
        (("topic", "create", "t", "--config", "novalue"), "expected name=value"),
        (("no-such-command",), "unrecognized subcommand"),
    ]:
        r = ctl(broker, *args, expect=2)
        assert needle in r.stderr, (args, r.stderr)
    r = subprocess.run([str(WEIRCTL), "-b", "127.0.0.1:1", "topic", "list"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "connecting to 127.0.0.1:1" in r.stderr
