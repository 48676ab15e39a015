"""KafkaJS: admin, producer and group consumer, with the messages also read back by another client."""

import json
import pathlib
import subprocess

from kafka import KafkaConsumer, TopicPartition

from helpers import unique_topic

NODE_DIR = pathlib.Path(__file__).resolve().parents[1] / "node"


def test_kafkajs_admin_producer_and_group_consumer(broker):
    topic = unique_topic("kafkajs")
    result = subprocess.run(["node", "smoke.js", broker.bootstrap, topic], cwd=NODE_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["created"] is True and seen["again"] is False, "second create reports the topic exists"
    assert seen["listed"] and seen["partitions"] == 3 and seen["scratchDeleted"]
    assert seen["validateOnly"] is True and seen["validatedListed"] is False, "validateOnly creates nothing"
    assert sorted((o["partition"], int(o["offset"])) for o in seen["byTime"]) == [(0, 0), (1, 0), (2, 0)]
    assert sorted((o["partition"], int(o["low"]), int(o["high"])) for o in seen["offsets"]) == [
        (0, 0, 68), (1, 0, 66), (2, 0, 66)  # two sends of 100 with partition = i % 3
    ]
    # The KafkaJS group consumer read all 200, once each, with keys, values and headers, and
    # committed the end of every partition.
    consumed = seen["consumed"]
    assert len(consumed) == 200
    assert len({(c["partition"], c["offset"]) for c in consumed}) == 200, "no message twice"
    assert sorted(c["value"] for c in consumed) == sorted(
        [f"plain-{i}" for i in range(100)] + [f"gzip-{i}" for i in range(100)]
    )
    assert {c["key"]: c["n"] for c in consumed if c["value"].startswith("plain")}["k7"] == "7"
    assert sorted((c["partition"], int(c["offset"])) for c in seen["committed"]) == [(0, 68), (1, 66), (2, 66)]
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, consumer_timeout_ms=5000)
    partitions = [TopicPartition(topic, p) for p in range(3)]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    values = [(r.key, r.value, r.headers) for r in consumer]
    consumer.close()
    assert sorted(v for _, v, _ in values) == sorted(
        [f"plain-{i}".encode() for i in range(100)] + [f"gzip-{i}".encode() for i in range(100)]
    )
    plain = {k: h for k, v, h in values if v.startswith(b"plain")}
    assert plain[b"k7"] == [("n", b"7")]
