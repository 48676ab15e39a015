"""Apache Kafka's own command-line tools (the Java client: AdminClient, an idempotent acks=all
producer, a classic-protocol group consumer) against the real broker. The jars are stock
Kafka 4.x from Maven Central, installed by scripts/kafka-peer.sh."""

import json
import re
import subprocess

from conftest import ROOT
from helpers import unique_topic

RECORDS = 20_000
PARTITIONS = 4


def run_tool(name, *args, input=None, timeout=180):
    """One of Kafka's tools on the kafka-peer jars, fed `input` on stdin; the finished process."""
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "kafka-peer.sh"), "tool", name, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def kafka_tool(name, *args, input=None, timeout=180):
    """A tool that must succeed; its stdout."""
    result = run_tool(name, *args, input=input, timeout=timeout)
    assert result.returncode == 0, f"kafka {name} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def offsets(bootstrap, topic, time="-1"):
    """GetOffsetShell's `topic:partition:offset` lines at `time` (-1 latest, -2 earliest), as
    {partition: offset}."""
    out = kafka_tool("get-offsets", "--bootstrap-server", bootstrap, "--topic", topic, "--time", time)
    found = {}
    for line in out.splitlines():
        name, partition, offset = line.rsplit(":", 2)
        assert name == topic, line
        found[int(partition)] = int(offset)
    return found


def end_offsets(bootstrap, topic):
    return offsets(bootstrap, topic, "-1")


def create_topic(bootstrap, topic, partitions, *configs):
    args = ["--bootstrap-server", bootstrap, "--create", "--topic", topic, "--partitions", str(partitions),
            "--replication-factor", "1"]
    for config in configs:
        args += ["--config", config]
    kafka_tool("topics", *args)


def produce_round_robin(bootstrap, topic, records, record_size):
    """producer-perf-test as fast as it goes, spreading the records evenly over the partitions."""
    kafka_tool("producer-perf-test", "--topic", topic, "--num-records", str(records), "--record-size",
               str(record_size), "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}",
               "partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner")


def test_kafka_topics_creates_lists_and_describes(broker):
    topic = unique_topic("java-admin")
    create_topic(broker.bootstrap, topic, PARTITIONS, "retention.ms=3600000")
    assert topic in kafka_tool("topics", "--bootstrap-server", broker.bootstrap, "--list").split()
    described = kafka_tool("topics", "--bootstrap-server", broker.bootstrap, "--describe", "--topic", topic)
    assert re.search(rf"Topic: {topic}\s.*PartitionCount: {PARTITIONS}\s.*ReplicationFactor: 1", described), described
    assert "retention.ms=3600000" in described, described
    # One line per partition, each led by this broker.
    assert len(re.findall(rf"Topic: {topic}\s+Partition: \d+\s+Leader: \d+", described)) == PARTITIONS, described


def test_perf_tests_move_every_record_and_the_group_commits_all_of_it(broker):
    topic = unique_topic("java-perf")
    group = unique_topic("java-group")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    # The Java producer's defaults: idempotence on, acks=all, up to 5 requests in flight.
    produced = kafka_tool("producer-perf-test", "--topic", topic, "--num-records", str(RECORDS),
                          "--record-size", "512", "--throughput", "-1",
                          "--producer-props", f"bootstrap.servers={broker.bootstrap}", "acks=all")
    assert f"{RECORDS} records sent" in produced.splitlines()[-1], produced
    ends = end_offsets(broker.bootstrap, topic)
    assert sorted(ends) == list(range(PARTITIONS)) and sum(ends.values()) == RECORDS, ends

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
        assert (current, end, lag) == (ends[partition], ends[partition], 0), described


def topic_configs(bootstrap, topic):
    """kafka-configs --describe of a topic, as {name: value} of the overrides it lists."""
    out = kafka_tool("configs", "--bootstrap-server", bootstrap, "--entity-type", "topics", "--entity-name", topic,
                     "--describe")
    return dict(re.findall(r"\b([a-z][a-z.]+)=([^\s,]+)", out.split("are:", 1)[-1]))


def test_kafka_configs_adds_changes_and_deletes_topic_overrides(broker):
    topic = unique_topic("java-configs")
    create_topic(broker.bootstrap, topic, 1, "retention.ms=3600000")
    assert topic_configs(broker.bootstrap, topic).get("retention.ms") == "3600000"
    # IncrementalAlterConfigs: SET two, then DELETE one; the other stays.
    kafka_tool("configs", "--bootstrap-server", broker.bootstrap, "--entity-type", "topics", "--entity-name", topic,
               "--alter", "--add-config", "retention.ms=7200000,max.message.bytes=2000000")
    configs = topic_configs(broker.bootstrap, topic)
    assert (configs.get("retention.ms"), configs.get("max.message.bytes")) == ("7200000", "2000000"), configs
    kafka_tool("configs", "--bootstrap-server", broker.bootstrap, "--entity-type", "topics", "--entity-name", topic,
               "--alter", "--delete-config", "retention.ms")
    configs = topic_configs(broker.bootstrap, topic)
    assert "retention.ms" not in configs and configs.get("max.message.bytes") == "2000000", configs
    # A value the broker cannot take is refused with Kafka's error, and nothing changes.
    refused = run_tool("configs", "--bootstrap-server", broker.bootstrap, "--entity-type", "topics", "--entity-name",
                       topic, "--alter", "--add-config", "retention.ms=soon")
    assert refused.returncode != 0 and "InvalidConfigurationException" in refused.stdout + refused.stderr, refused
    assert topic_configs(broker.bootstrap, topic).get("max.message.bytes") == "2000000"


def test_console_tools_round_trip_and_the_group_tool_resets_offsets(broker):
    topic = unique_topic("java-console")
    group = unique_topic("java-console-group")
    create_topic(broker.bootstrap, topic, 1)
    lines = [f"line {i}" for i in range(50)]
    kafka_tool("console-producer", "--bootstrap-server", broker.bootstrap, "--topic", topic,
               input="\n".join(lines) + "\n")

    def consume(count):
        out = kafka_tool("console-consumer", "--bootstrap-server", broker.bootstrap, "--topic", topic,
                         "--group", group, "--max-messages", str(count), "--timeout-ms", "30000")
        return [line for line in out.splitlines() if line.startswith("line ")]

    def position():
        described = kafka_tool("consumer-groups", "--bootstrap-server", broker.bootstrap, "--describe",
                               "--group", group)
        rows = [line.split() for line in described.splitlines() if line.split()[:2] == [group, topic]]
        assert len(rows) == 1, described
        return int(rows[0][3]), int(rows[0][5])  # current offset, lag

    # A new group starts at the end by default; --from-beginning is the console consumer's
    # way, but the group's reset policy is what the group tool works on: start it earliest.
    kafka_tool("consumer-groups", "--bootstrap-server", broker.bootstrap, "--group", group, "--topic", topic,
               "--reset-offsets", "--to-earliest", "--execute")
    assert position() == (0, 50)
    assert consume(50) == lines
    assert position() == (50, 0)

    kafka_tool("consumer-groups", "--bootstrap-server", broker.bootstrap, "--group", group, "--topic", topic,
               "--reset-offsets", "--to-offset", "20", "--execute")
    assert position() == (20, 30)
    kafka_tool("consumer-groups", "--bootstrap-server", broker.bootstrap, "--group", group, "--topic", topic,
               "--reset-offsets", "--shift-by", "-5", "--execute")
    assert position() == (15, 35)
    # --dry-run shows the plan and changes nothing.
    planned = kafka_tool("consumer-groups", "--bootstrap-server", broker.bootstrap, "--group", group, "--topic",
                         topic, "--reset-offsets", "--to-latest", "--dry-run")
    assert re.search(rf"{group}\s+{topic}\s+0\s+50", planned), planned
    assert position() == (15, 35)
    # The consumer resumes where the tool put the group.
    assert consume(5) == lines[15:20]

    kafka_tool("consumer-groups", "--bootstrap-server", broker.bootstrap, "--delete", "--group", group)
    listed = kafka_tool("consumer-groups", "--bootstrap-server", broker.bootstrap, "--list")
    assert group not in listed.split(), listed


def test_delete_records_moves_the_log_start_and_consumers_see_it(broker):
    topic = unique_topic("java-delete-records")
    create_topic(broker.bootstrap, topic, 2)
    produce_round_robin(broker.bootstrap, topic, 1_000, 100)
    latest = end_offsets(broker.bootstrap, topic)
    assert sum(latest.values()) == 1000, latest
    plan = ROOT / "target" / f"{topic}.json"
    plan.parent.mkdir(exist_ok=True)
    plan.write_text('{"partitions": [{"topic": "%s", "partition": 0, "offset": 100}], "version": 1}' % topic)
    try:
        out = kafka_tool("delete-records", "--bootstrap-server", broker.bootstrap, "--offset-json-file", str(plan))
    finally:
        plan.unlink()
    assert re.search(rf"partition: {topic}-0\s+low_watermark: 100", out), out
    starts = offsets(broker.bootstrap, topic, "-2")
    assert starts == {0: 100, 1: 0}, starts
    # The latest offsets did not move.
    assert end_offsets(broker.bootstrap, topic) == latest


def test_kafka_log_dirs_reports_each_partitions_size(broker):
    topic = unique_topic("java-log-dirs")
    create_topic(broker.bootstrap, topic, 2)
    produce_round_robin(broker.bootstrap, topic, 2_000, 200)
    out = kafka_tool("log-dirs", "--bootstrap-server", broker.bootstrap, "--describe", "--topic-list", topic)
    report = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    [entry] = report["brokers"]
    [log_dir] = entry["logDirs"]
    assert log_dir["error"] is None and log_dir["logDir"].endswith("data"), log_dir
    sizes = {p["partition"]: p["size"] for p in log_dir["partitions"]}
    # 1,000 records of 200 B each per partition, batched: at least the values' bytes.
    assert set(sizes) == {f"{topic}-0", f"{topic}-1"} and all(s >= 200_000 for s in sizes.values()), sizes
