"""IBM/sarama, the Go client, against the real broker: tests/go/sarama is a program that
creates and describes topics with sarama's ClusterAdmin, writes 5,000 keyed messages with
headers per codec (none, gzip, snappy, lz4, zstd) through an idempotent acks=all
SyncProducer, and reads them all back with a two-member classic-protocol consumer group
(range, sticky, cooperative-sticky, roundrobin), checking every message itself. It exits
non-zero naming each mismatch, and prints a one-line JSON summary when all is well; the
test builds it (Go from the module proxy, versions pinned by its go.sum) into
target/sarama-check and asserts on that summary too."""

import json
import re
import shutil
import subprocess

from conftest import ROOT
from helpers import GROUP_FLAGS, unique_topic

SOURCE = ROOT / "tests" / "go" / "sarama"
BINARY = ROOT / "target" / "sarama-check" / "sarama-check"
MESSAGES = 5000
PARTITIONS = 4
# Codec and the group's balance strategy of each run; the runs go concurrently.
RUNS = {"none": "range", "gzip": "sticky", "snappy": "cooperative-sticky", "lz4": "roundrobin",
        "zstd": "cooperative-sticky"}
EAGER = {"range", "sticky", "roundrobin"}


def build_sarama_check():
    """`go build` is incremental: after the first build (which fetches sarama from the module
    proxy) this only relinks when tests/go/sarama changed."""
    go = shutil.which("go")
    assert go, "no Go toolchain on PATH (scripts/install-test-deps.sh installs one)"
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([go, "build", "-mod=readonly", "-buildvcs=false", "-o", str(BINARY), "."], cwd=SOURCE,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"building {SOURCE} failed:\n{result.stdout}\n{result.stderr}"
    return BINARY


def test_sarama_idempotent_producer_and_consumer_group_round_trip_every_codec(broker_factory):
    binary = build_sarama_check()
    broker = broker_factory(*GROUP_FLAGS)
    prefix = unique_topic("sarama")
    runs = ",".join(f"{codec}:{strategy}" for codec, strategy in RUNS.items())
    result = subprocess.run(
        [str(binary), "-bootstrap", broker.bootstrap, "-prefix", prefix, "-messages", str(MESSAGES),
         "-partitions", str(PARTITIONS), "-runs", runs, "-kafka-version", "4.0.0", "-timeout", "60s"],
        capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, f"sarama-check failed:\n{result.stderr[-8000:]}\n{result.stdout[-2000:]}"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["kafka_version"] == "4.0.0", summary
    assert (summary["messages_per_codec"], summary["partitions"]) == (MESSAGES, PARTITIONS), summary
    by_codec = {run["codec"]: run for run in summary["runs"]}
    assert {codec: run["strategy"] for codec, run in by_codec.items()} == RUNS, summary

    for codec, run in by_codec.items():
        assert run["topic"] == f"{prefix}-{codec}", run
        # Every message acknowledged, then consumed exactly once from where it was written.
        assert run["produced"] == run["consumed_unique"] == MESSAGES and run["duplicates"] == 0, run
        per_partition = run["per_partition"]
        assert len(per_partition) == PARTITIONS and all(n > 0 for n in per_partition), run
        assert sum(per_partition) == MESSAGES, run
        # Each partition ends where its messages end, and the group committed exactly that.
        assert run["end_offsets"] == per_partition == run["committed"], run
        # Member A read the first half alone; after B joined, both read some of the second.
        assert sum(run["member_counts"]) == MESSAGES and run["member_counts"][0] >= MESSAGES // 2, run
        assert all(n > 0 for n in run["phase2_member_count"]), run
        assert sum(run["phase2_member_count"]) == MESSAGES // 2, run
        if run["strategy"] in EAGER:
            # B's join ended A's session: eager revokes everything and starts a new one.
            assert run["member_a_sessions"] >= 2, run
        else:
            # Cooperative: A kept its session and gave up only the partitions that moved.
            assert run["member_a_sessions"] == 1, run
        assert run["log_bytes"] > 0, run

    # The batches are stored as the producer compressed them: every codec's log is much
    # smaller than the uncompressed one (the values are mostly repetitive text).
    plain = by_codec["none"]["log_bytes"]
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        assert by_codec[codec]["log_bytes"] < plain * 0.6, (codec, by_codec[codec]["log_bytes"], plain)

    errors = [line for line in broker.log_path.read_text(errors="replace").splitlines() if re.search(r"\bERROR\b", line)]
    assert not errors, errors
