"""The Java client, kafka-clients 4.x from the same Maven Central jars as Kafka's tools
(scripts/kafka-peer.sh), driven by tests/java/ClientMatrix.java: the producer's defaults
(idempotence, acks=all, 5 in flight) in every codec with keys and headers, a 1.9 MB record
and a refused 3 MB one, a two-member classic group reading everything exactly once and
committing the end offsets, and the AdminClient calls tools make."""

import json
import re
import subprocess
import time

from conftest import ROOT
from helpers import consume_to_end, create_topic, high_watermarks, unique_topic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 4_000
ADMIN_CALLS = ["createTopics", "describeTopics", "describeCluster", "incrementalAlterConfigs", "describeConfigs",
               "createPartitions", "deleteRecords", "listOffsets", "alterConsumerGroupOffsets",
               "deleteConsumerGroupOffsets", "deleteConsumerGroups", "describeLogDirs", "deleteTopics"]


def client_matrix(*args):
    """The command line running tests/java/ClientMatrix.java on the kafka-peer jars."""
    libs = subprocess.run(["bash", str(ROOT / "scripts" / "kafka-peer.sh"), "libs"], capture_output=True,
                          text=True, check=True, cwd=ROOT).stdout.strip()
    return ["java", "-Xmx512m", "-cp", f"{libs}/*", str(ROOT / "tests" / "java" / "ClientMatrix.java"), *args]


def java_matrix(bootstrap, prefix):
    result = subprocess.run(client_matrix(bootstrap, prefix), capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0, f"ClientMatrix failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_java_producer_consumer_group_and_admin_client(broker):
    summary = java_matrix(broker.bootstrap, unique_topic("java-matrix"))
    assert summary["produced"] == {codec: PER_CODEC for codec in CODECS}, summary
    assert summary["large"]["stored_bytes"] == 1_900_000, summary
    assert summary["large"]["refused"] == "RecordTooLargeException", summary
    # Every record once (the program checks order, keys and headers record by record).
    assert summary["consumed"] == {"records": PER_CODEC * len(CODECS) + 1, "committed_partitions": 4}, summary
    assert summary["admin"] == ADMIN_CALLS, summary
    errors = [line for line in broker.log_path.read_text(errors="replace").splitlines()
              if re.search(r"\bERROR\b", line)]
    assert not errors, errors


def test_java_idempotent_producer_retries_across_broker_crashes_without_duplicates(broker):
    """The Java producer's defaults (idempotence, 5 in flight) while the broker is SIGKILLed
    twice: batches in flight at the kill are retried against the restarted broker, whose
    producer state comes back from the log, so every record is stored once and in order."""
    topic = create_topic(broker.bootstrap, unique_topic("java-idemkill"), partitions=2)
    count = 30_000
    producer = subprocess.Popen(client_matrix(broker.bootstrap, topic, "produce-steadily", str(count), "3000"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        # The source launcher compiles first; kill once records are flowing, and again later.
        deadline = time.monotonic() + 60
        while stored_count(broker, topic) < 2_000:
            assert time.monotonic() < deadline and producer.poll() is None, producer.communicate()
            time.sleep(0.2)
        broker.kill_and_restart()
        time.sleep(2)
        broker.kill_and_restart()
        out, err = producer.communicate(timeout=180)
    finally:
        if producer.poll() is None:
            producer.kill()
    assert producer.returncode == 0, err[-4000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary == {"acked": count, "failed": 0, "first_failures": []}, summary
    stored = consume_to_end(broker.bootstrap, topic, 2)
    values = [v.decode() for _, _, _, v in stored]
    assert len(values) == len(set(values)), f"{len(values) - len(set(values))} duplicates in the log"
    assert set(values) == {f"j-{i}" for i in range(count)}
    for partition in (0, 1):
        sequence = [int(v[2:]) for p, _, _, v in sorted(stored) if p == partition]
        assert sequence == sorted(sequence), f"partition {partition} out of order"


def stored_count(broker, topic):
    try:
        return sum(high_watermarks(broker.bootstrap, topic, 2, timeout_s=5))
    except Exception:  # the topic's metadata may not have reached the client yet
        return 0
