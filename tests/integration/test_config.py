"""Flags, the TOML config file, signals and the data-dir lock of the real binary."""

import signal
import subprocess
import time

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

import wire
from conftest import BINARY, free_port
from helpers import unique_topic


def partitions_of(bootstrap, topic):
    error_code, partitions = wire.metadata(bootstrap, [topic], allow_auto_topic_creation=False)["topics"][topic]
    assert error_code == 0, f"{topic}: error {error_code}"
    return partitions


def auto_create(bootstrap, topic, timeout_s=15):
    """Asks for `topic`'s metadata with auto-creation allowed until it exists (Kafka answers
    LEADER_NOT_AVAILABLE (5) while a new topic settles); returns the final answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        error_code, partitions = wire.metadata(bootstrap, [topic])["topics"][topic]
        if error_code == 0 or time.monotonic() > deadline:
            return error_code, partitions
        assert error_code == 5, f"auto-creating {topic}: error {error_code}"
        time.sleep(0.2)


def test_metadata_auto_creates_with_the_default_single_partition(broker):
    topic = unique_topic("auto")
    error_code, partitions = auto_create(broker.bootstrap, topic)
    assert error_code == 0
    assert partitions == [(0, 0, 0, [0], [0])]


def test_metadata_without_allow_auto_topic_creation_creates_nothing(broker):
    topic = unique_topic("noauto")
    error_code, partitions = wire.metadata(broker.bootstrap, [topic], allow_auto_topic_creation=False)["topics"][topic]
    assert (error_code, partitions) == (3, [])
    assert topic not in wire.metadata(broker.bootstrap)["topics"]


def test_auto_create_topics_enable_false_refuses_unknown_topics(broker_factory):
    broker = broker_factory("--auto-create-topics-enable", "false")
    topic = unique_topic("off")
    error_code, partitions = wire.metadata(broker.bootstrap, [topic])["topics"][topic]
    assert (error_code, partitions) == (3, []), "UNKNOWN_TOPIC_OR_PARTITION when auto-creation is off"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, max_block_ms=3000)
    try:
        with pytest.raises(Exception):
            producer.send(topic, value=b"x").get(timeout=10)
    finally:
        producer.close(timeout=5)
    assert topic not in wire.metadata(broker.bootstrap)["topics"]


def test_num_partitions_applies_to_auto_created_topics(broker_factory):
    broker = broker_factory("--num-partitions", "3")
    topic = unique_topic("three")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    sent = [producer.send(topic, value=f"{p}".encode(), partition=p).get(timeout=20) for p in range(3)]
    producer.close()
    assert [(m.partition, m.offset) for m in sent] == [(0, 0), (1, 0), (2, 0)]
    assert [p[0] for p in partitions_of(broker.bootstrap, topic)] == [0, 1, 2]


def test_node_id_and_advertised_listener_are_what_metadata_reports(broker_factory):
    broker = broker_factory("--node-id", "7", "--advertised-listener", "weir.invalid:19092")
    response = wire.metadata(broker.bootstrap)
    assert response["brokers"] == [(7, "weir.invalid", 19092)]
    assert response["controller_id"] == 7
    topic = unique_topic("node7")
    assert auto_create(broker.bootstrap, topic) == (0, [(0, 0, 7, [7], [7])])


def test_config_file_sets_every_key_and_flags_win_over_it(broker_factory, tmp_path):
    port = free_port()
    data_dir = tmp_path / "from-config"
    config = tmp_path / "weir.toml"
    config.write_text(
        f'listen = "127.0.0.1:{port}"\n'
        f'advertised_listener = "127.0.0.1:{port}"\n'
        f'data_dir = "{data_dir}"\n'
        "smp = 2\n"
        "node_id = 3\n"
        "auto_create_topics_enable = true\n"
        "num_partitions = 4\n"
        "socket_request_max_bytes = 1048576\n"
    )
    broker = broker_factory("--config", str(config), "--num-partitions", "2",
                            data_dir=data_dir, start=False, standard_flags=False)
    broker.port, broker.bootstrap = port, f"127.0.0.1:{port}"
    broker.start()
    response = wire.metadata(broker.bootstrap)
    assert response["brokers"] == [(3, "127.0.0.1", port)]
    topic = unique_topic("cfg")
    error_code, partitions = auto_create(broker.bootstrap, topic)
    assert error_code == 0 and [p[0] for p in partitions] == [0, 1], "--num-partitions 2 beats the file's 4"
    assert any(data_dir.iterdir()), "the data dir from the config file is used"
    with wire.Conn(broker.bootstrap) as conn:
        conn.send(b"\x00\x10\x00\x01")  # 1 MiB + 1: over the file's socket_request_max_bytes
        assert conn.closed_by_peer()
    assert broker.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_stop_cleanly_with_exit_code_0(broker, sig):
    topic = unique_topic("sig")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    producer.send(topic, value=b"before").get(timeout=20)
    producer.close()
    assert broker.stop(sig) == 0, broker.log()
    broker.start()
    assert partitions_of(broker.bootstrap, topic)[0][:3] == (0, 0, 0)


def test_second_broker_on_the_same_data_dir_refuses_to_start(broker):
    port = free_port()
    second = subprocess.run(
        [str(BINARY), "--listen", f"127.0.0.1:{port}", "--data-dir", str(broker.data_dir), "--smp", "1"],
        capture_output=True, timeout=30,
    )
    assert second.returncode != 0, "a second broker must not share a locked data dir"
    assert broker.process.poll() is None, "the first broker keeps running"
    assert wire.api_versions(broker.bootstrap)[0] == 0
    # The lock goes with its holder: after a clean stop the dir is free again.
    broker.restart()
    assert wire.api_versions(broker.bootstrap)[0] == 0


def test_lock_of_a_killed_broker_does_not_block_restart(broker):
    topic = unique_topic("stale")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    producer.send(topic, value=b"x").get(timeout=20)
    producer.close()
    broker.kill_and_restart()
    assert [p[0] for p in partitions_of(broker.bootstrap, topic)] == [0]


@pytest.mark.parametrize("smp", ["1", "3"])
def test_any_shard_count_serves_every_partition(broker_factory, smp):
    broker = broker_factory("--smp", smp)
    topic = unique_topic(f"smp{smp}")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    wire.metadata(broker.bootstrap, [topic])  # auto-create with one partition
    sent = [producer.send(topic, value=f"{i}".encode()).get(timeout=20).offset for i in range(20)]
    producer.close()
    assert sent == list(range(20))


def test_log_level_flag_sets_the_filter_and_a_bad_one_is_refused(broker_factory, tmp_path):
    quiet = broker_factory("--log-level", "warn")
    assert "INFO" not in quiet.log(), "--log-level warn keeps info lines out"
    chatty = broker_factory("--log-level", "info,weir::group=debug")
    assert "listening on" in chatty.log()
    r = subprocess.run([str(BINARY), "--data-dir", str(tmp_path / "bad"), "--log-level", "[[["],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "bad log level" in r.stderr


PROFILE = """format_version = 1
measured_at_unix_s = 1764000000
data_dir = "{data_dir}"
duration_s = 1.0

[sequential_write]
block_bytes = 1048576
bytes_per_sync = 8388608
bandwidth_bytes_per_s = 400000000

[fdatasync]
write_bytes = 4096
samples = 100
latency_us_p50 = 150
latency_us_p99 = 300
latency_us_p999 = 600
latency_us_max = 900

[concurrency]
write_bytes = 262144
knee_depth = {knee}

[[concurrency.steps]]
depth = 1
bandwidth_bytes_per_s = 300000000
"""


def produce_to_every_partition(bootstrap, partitions=8, per_partition=50):
    """acks=all to every partition of a new topic at once; returns the offsets acknowledged
    per partition."""
    topic = unique_topic("gate")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    futures = [producer.send(topic, value=f"{p}-{i}".encode(), partition=p)
               for i in range(per_partition) for p in range(partitions)]
    acked = {}
    for future in futures:
        meta = future.get(timeout=30)
        acked.setdefault(meta.partition, []).append(meta.offset)
    producer.close()
    return acked


@pytest.mark.parametrize("knee, flag, expected", [
    (6, None, "3"),     # the profile's knee shared by 2 shards
    (6, "1", "1"),      # the flag wins over the profile
    (None, None, "no limit"),
    (None, "0", "no limit"),
], ids=["from-profile", "flag-wins", "no-profile", "flag-zero"])
def test_flush_concurrency_is_sized_from_the_disk_profile(broker_factory, tmp_path, knee, flag, expected):
    data_dir = tmp_path / f"gate-{knee}-{flag}"
    data_dir.mkdir()
    if knee is not None:
        (data_dir / "io-profile.toml").write_text(PROFILE.format(data_dir=data_dir, knee=knee))
    extra = ("--log-flush-concurrency", flag) if flag is not None else ()
    broker = broker_factory(*extra, data_dir=data_dir)
    assert f"flushes in flight per shard: {expected}" in broker.log()
    if knee is not None:
        assert f"bandwidth knee at {knee} concurrent flushes" in broker.log()
    acked = produce_to_every_partition(broker.bootstrap)
    assert acked == {p: list(range(50)) for p in range(8)}, "every partition dense and complete"
