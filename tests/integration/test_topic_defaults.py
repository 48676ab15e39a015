"""Broker-wide topic config defaults (`--topic-default` / the config file's
`[topic_defaults]`): they apply to every topic without its own value, DescribeConfigs shows
them as STATIC_BROKER_CONFIG with Kafka's synonym chain, and they really act."""

import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic

from conftest import BINARY, free_port
from helpers import unique_topic


def describe(admin, topic):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return list(admin.describe_configs([resource]).values())[0].result(10)


def test_broker_defaults_apply_show_as_static_broker_config_and_act(broker_factory, tmp_path):
    config = tmp_path / "weir.toml"
    config.write_text('[topic_defaults]\n"retention.ms" = "60000"\n"segment.bytes" = "1024"\n')
    broker = broker_factory("--config", str(config), "--topic-default", "max.message.bytes=500000",
                            "--log-retention-check-interval-ms", "200")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    plain, own = unique_topic("plain"), unique_topic("own")
    for f in admin.create_topics([NewTopic(plain, 1, 1), NewTopic(own, 1, 1, config={"retention.ms": "7200000"})]).values():
        f.result(10)
    entries = describe(admin, plain)
    assert (entries["retention.ms"].value, entries["retention.ms"].source) == ("60000", ConfigSource.STATIC_BROKER_CONFIG.value)
    assert (entries["max.message.bytes"].value, entries["max.message.bytes"].source) == ("500000", ConfigSource.STATIC_BROKER_CONFIG.value)
    assert entries["cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value
    mine = describe(admin, own)["retention.ms"]
    assert (mine.value, mine.source) == ("7200000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert {name: (s.value, s.source) for name, s in mine.synonyms.items()} == {
        "retention.ms": ("7200000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value),
        "log.retention.ms": ("60000", ConfigSource.STATIC_BROKER_CONFIG.value),
    }, "Kafka's synonym chain, the broker level under the broker config's name"
    (broker_configs,) = admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "0")]).values()
    broker_configs = broker_configs.result(10)
    for name, value in (("log.retention.ms", "60000"), ("log.segment.bytes", "1024"),
                        ("message.max.bytes", "500000")):
        assert (broker_configs[name].value, broker_configs[name].source) == \
            (value, ConfigSource.STATIC_BROKER_CONFIG.value), f"the broker shows its own {name}"
    assert broker_configs["log.cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value
    # The defaults act: old records go by the broker's retention.ms, small segments roll.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    old = int(time.time() * 1000) - 3_600_000
    for i in range(30):
        for topic in (plain, own):
            producer.produce(topic, value=b"v" * 100, timestamp=old)
        producer.flush(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
    deadline = time.monotonic() + 15
    while c.get_watermark_offsets(TopicPartition(plain, 0), timeout=10)[0] < 30:
        assert time.monotonic() < deadline, "the broker default retention.ms did not delete"
        time.sleep(0.2)
    assert c.get_watermark_offsets(TopicPartition(own, 0), timeout=10) == (0, 30), "the topic's own retention wins"
    c.close()


def test_an_invalid_broker_default_stops_the_broker_with_a_clear_error(tmp_path):
    r = subprocess.run([str(BINARY), "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "d"),
                        "--topic-default", "retention.ms=soon"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "Invalid value soon for configuration retention.ms" in r.stderr
    r = subprocess.run([str(BINARY), "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(tmp_path / "d"),
                        "--topic-default", "no.such=1"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "Unknown topic config name: no.such" in r.stderr
