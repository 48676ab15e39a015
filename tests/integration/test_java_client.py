"""The Java client, kafka-clients 4.x from the same Maven Central jars as Kafka's tools
(scripts/kafka-peer.sh), driven by tests/java/ClientMatrix.java: the producer's defaults
(idempotence, acks=all, 5 in flight) in every codec with keys and headers, a 1.9 MB record
and a refused 3 MB one, a two-member classic group reading everything exactly once and
committing the end offsets, and the AdminClient calls tools make."""

import json
import re
import subprocess

from conftest import ROOT
from helpers import unique_topic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 4_000
ADMIN_CALLS = ["createTopics", "describeTopics", "describeCluster", "incrementalAlterConfigs", "describeConfigs",
               "createPartitions", "deleteRecords", "listOffsets", "alterConsumerGroupOffsets",
               "deleteConsumerGroupOffsets", "deleteConsumerGroups", "describeLogDirs", "deleteTopics"]


def java_matrix(bootstrap, prefix):
    libs = subprocess.run(["bash", str(ROOT / "scripts" / "kafka-peer.sh"), "libs"], capture_output=True,
                          text=True, check=True, cwd=ROOT).stdout.strip()
    result = subprocess.run(["java", "-Xmx512m", "-cp", f"{libs}/*", str(ROOT / "tests" / "java" / "ClientMatrix.java"),
                             bootstrap, prefix], capture_output=True, text=True, timeout=240, cwd=ROOT)
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
