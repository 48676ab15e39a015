"""Apache Kafka's own command-line tools (the Java client: AdminClient, an idempotent acks=all
producer, a classic-protocol group consumer) against the real broker. The jars are stock
Kafka 4.x from Maven Central, installed by scripts/kafka-peer.sh."""

import re
import subprocess

from conftest import ROOT
from helpers import unique_topic

RECORDS = 20_000
PARTITIONS = 4


def kafka_tool(name, *args, timeout=180):
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "kafka-peer.sh"), "tool", name, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, f"kafka {name} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def end_offsets(bootstrap, topic):
    """GetOffsetShell's `topic:partition:offset` lines, as {partition: latest offset}."""
    out = kafka_tool("get-offsets", "--bootstrap-server", bootstrap, "--topic", topic)
    offsets = {}
    for line in out.splitlines():
        name, partition, offset = line.rsplit(":", 2)
        assert name == topic, line
        offsets[int(partition)] = int(offset)
    return offsets


def test_kafka_topics_creates_lists_and_describes(broker):
    topic = unique_topic("java-admin")
    kafka_tool("topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", topic,
               "--partitions", str(PARTITIONS), "--replication-factor", "1", "--config", "retention.ms=3600000")
    assert topic in kafka_tool("topics", "--bootstrap-server", broker.bootstrap, "--list").split()
    described = kafka_tool("topics", "--bootstrap-server", broker.bootstrap, "--describe", "--topic", topic)
    assert re.search(rf"Topic: {topic}\s.*PartitionCount: {PARTITIONS}\s.*ReplicationFactor: 1", described), described
    assert "retention.ms=3600000" in described, described
    # One line per partition, each led by this broker.
    assert len(re.findall(rf"Topic: {topic}\s+Partition: \d+\s+Leader: \d+", described)) == PARTITIONS, described


def test_perf_tests_move_every_record_and_the_group_commits_all_of_it(broker):
    topic = unique_topic("java-perf")
    group = unique_topic("java-group")
    kafka_tool("topics", "--bootstrap-server", broker.bootstrap, "--create", "--topic", topic,
               "--partitions", str(PARTITIONS), "--replication-factor", "1")
    # The Java producer's defaults: idempotence on, acks=all, up to 5 requests in flight.
    produced = kafka_tool("producer-perf-test", "--topic", topic, "--num-records", str(RECORDS),
                          "--record-size", "512", "--throughput", "-1",
                          "--producer-props", f"bootstrap.servers={broker.bootstrap}", "acks=all")
    assert f"{RECORDS} records sent" in produced.splitlines()[-1], produced
    offsets = end_offsets(broker.bootstrap, topic)
    assert sorted(offsets) == list(range(PARTITIONS)) and sum(offsets.values()) == RECORDS, offsets

    consumed = kafka_tool("consumer-perf-test", "--bootstrap-server", broker.bootstrap, "--topic", topic,
                          "--messages", str(RECORDS), "--group", group, "--timeout", "60000")
    # The summary: a CSV header naming data.consumed.in.nMsg, then the values.
    lines = [line for line in consumed.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if "nMsg" in line)
    columns = [c.strip() for c in lines[header].split(",")]
    values = [v.strip() for v in lines[header + 1].split(",")]
    stats = dict(zip(columns, values))
    count = next(v for k, v in stats.items() if k.endswith("nMsg"))
    assert int(count) == RECORDS, consumed

    # The consumer commits on close; the group tool must see every partition at its end.
    described = kafka_tool("consumer-groups", "--bootstrap-server", broker.bootstrap, "--describe",
                           "--group", group)
    rows = [line.split() for line in described.splitlines() if line.split()[:2] == [group, topic]]
    assert len(rows) == PARTITIONS, described
    for row in rows:
        partition, current, end, lag = int(row[2]), int(row[3]), int(row[4]), int(row[5])
        assert (current, end, lag) == (offsets[partition], offsets[partition], 0), described
