"""confluent-kafka (librdkafka): volume, ordering, codecs, acks, long poll."""

import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from helpers import consume_all, create_topic, unique_topic


def produce(bootstrap, topic, messages, **config):
    """Produces (key, value) pairs and returns the delivery reports' (partition, offset) by index."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    delivered = {}
    errors = []

    def report(err, msg, i):
        if err is not None:
            errors.append(err)
        else:
            delivered[i] = (msg.partition(), msg.offset())

    for i, (key, value) in enumerate(messages):
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=lambda e, m, i=i: report(e, m, i))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0, "messages left unsent"
    assert not errors, errors[:5]
    return delivered


def test_100k_keyed_messages_over_8_partitions_keep_count_content_and_key_order(broker):
    topic = create_topic(broker.bootstrap, unique_topic("keyed"), partitions=8)
    keys = [f"key-{k:04d}".encode() for k in range(1000)]
    messages = [(keys[i % 1000], f"{i % 1000}:{i // 1000}:".encode() + b"v" * 64) for i in range(100_000)]
    delivered = produce(broker.bootstrap, topic, messages, acks="all")
    assert len(delivered) == 100_000
    consumed = consume_all(broker.bootstrap, topic, 8, 100_000)
    assert len(consumed) == 100_000, f"consumed {len(consumed)}"
    assert sorted(v for _, _, _, v in consumed) == sorted(v for _, v in messages)
    partitions_of_key = {}
    last_seq = {}
    for partition, offset, key, value in sorted(consumed, key=lambda m: (m[0], m[1])):
        assert partitions_of_key.setdefault(key, partition) == partition, "a key stays on one partition"
        k, seq, _ = value.split(b":", 2)
        assert k == key[4:].lstrip(b"0") or int(k) == int(key[4:])
        assert int(seq) == last_seq.get(key, -1) + 1, f"per-key order broken for {key}"
        last_seq[key] = int(seq)
    assert len(set(partitions_of_key.values())) == 8, "keys spread over all partitions"
    # Offsets in the delivery reports are where the messages were read back.
    where = {(p, o): v for p, o, _, v in consumed}
    assert all(where[delivered[i]] == messages[i][1] for i in range(0, 100_000, 997))


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip(broker, codec):
    topic = create_topic(broker.bootstrap, unique_topic(f"cc-{codec}"), partitions=2)
    messages = [(f"k{i}".encode(), (f"{codec}-{i}-" * 8).encode()) for i in range(5000)]
    produce(broker.bootstrap, topic, messages, acks="all", **{"compression.codec": codec})
    consumed = consume_all(broker.bootstrap, topic, 2, 5000)
    assert sorted(v for _, _, _, v in consumed) == sorted(v for _, v in messages)


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_every_acks_setting_appends(broker, acks):
    topic = create_topic(broker.bootstrap, unique_topic(f"acks{acks}"), partitions=1)
    messages = [(None, f"m{i}".encode()) for i in range(1000)]
    produce(broker.bootstrap, topic, messages, acks=acks)
    consumed = consume_all(broker.bootstrap, topic, 1, 1000)
    assert [v for _, _, _, v in consumed] == [v for _, v in messages]
    assert [o for _, o, _, _ in consumed] == list(range(1000))


def test_long_poll_delivers_a_message_produced_later(broker):
    topic = create_topic(broker.bootstrap, unique_topic("poll"), partitions=1)
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "weir-test-assign",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 5000,
    })
    consumer.assign([TopicPartition(topic, 0, 0)])
    consumer.poll(0.5)  # connected and parked in a long-poll fetch on the empty partition

    def later():
        time.sleep(1.0)
        produce(broker.bootstrap, topic, [(None, b"late")], acks="all")

    threading.Thread(target=later).start()
    started = time.monotonic()
    message = None
    while message is None and time.monotonic() - started < 15:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            message = m
    consumer.close()
    assert message is not None and message.value() == b"late"
    assert time.monotonic() - started < 4.5, "the parked fetch was woken by the produce, not its timeout"


def test_consuming_data_evicted_from_the_page_cache(broker):
    """Old data is served from disk: the broker reads cold ranges in first, then sends them."""
    import os

    topic = create_topic(broker.bootstrap, unique_topic("cold"), partitions=2)
    messages = [(None, f"cold-{i}-".encode() + b"c" * 200) for i in range(20_000)]
    produce(broker.bootstrap, topic, messages, acks="all")
    dropped = 0
    for log in broker.data_dir.glob(f"{topic}-*/*.log"):
        fd = os.open(log, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            dropped += 1
        finally:
            os.close(fd)
    assert dropped == 2
    consumed = consume_all(broker.bootstrap, topic, 2, 20_000)
    assert sorted(v for _, _, _, v in consumed) == sorted(v for _, v in messages)


def test_batches_larger_than_the_fetch_limits_are_still_delivered(broker):
    """KIP-74: the first batch is returned even when it exceeds max_bytes, so a consumer with
    small limits makes progress instead of stalling."""
    topic = create_topic(broker.bootstrap, unique_topic("big"), partitions=2)
    messages = [(f"k{i}".encode(), bytes([65 + i % 26]) * 200_000) for i in range(20)]
    produce(broker.bootstrap, topic, messages, acks="all", **{"message.max.bytes": 1_000_000})
    consumed = consume_all(broker.bootstrap, topic, 2, 20, timeout_s=60,
                           **{"fetch.max.bytes": 1024, "max.partition.fetch.bytes": 1024, "message.max.bytes": 1000,
                              "receive.message.max.bytes": 1_000_000})
    assert sorted(v for _, _, _, v in consumed) == sorted(v for _, v in messages)


def test_fetch_min_bytes_waits_up_to_max_wait(broker):
    topic = create_topic(broker.bootstrap, unique_topic("minbytes"), partitions=1)
    produce(broker.bootstrap, topic, [(None, b"small")], acks="all")
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "weir-test-assign",
        "enable.auto.commit": False,
        "fetch.min.bytes": 1_000_000,
        "fetch.wait.max.ms": 1500,
    })
    # Start at the end: the only fetch that can return data is the one parked until max wait.
    consumer.assign([TopicPartition(topic, 0, 1)])
    consumer.poll(0.5)
    produce(broker.bootstrap, topic, [(None, b"tiny")], acks="all")
    started = time.monotonic()
    message = None
    while message is None and time.monotonic() - started < 15:
        m = consumer.poll(0.2)
        if m is not None and not m.error():
            message = m
    elapsed = time.monotonic() - started
    consumer.close()
    assert message is not None and message.value() == b"tiny" and message.offset() == 1
    assert elapsed < 5, f"a fetch short of min_bytes must still return after max_wait_ms ({elapsed:.1f} s)"


def test_64_partitions_spread_over_shards(broker):
    topic = create_topic(broker.bootstrap, unique_topic("wide"), partitions=64)
    messages = [(f"k{i}".encode(), f"wide-{i}".encode()) for i in range(6400)]
    delivered = produce(broker.bootstrap, topic, messages, acks="all")
    assert len({p for p, _ in delivered.values()}) == 64
    consumed = consume_all(broker.bootstrap, topic, 64, 6400)
    assert sorted(v for _, _, _, v in consumed) == sorted(v for _, v in messages)
    assert {(p, o) for p, o, _, _ in consumed} == set(delivered.values())


def test_a_tailing_consumer_sees_every_message_in_order_while_producing(broker):
    topic = create_topic(broker.bootstrap, unique_topic("tail"), partitions=1)
    total = 30_000
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "weir-test-assign",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
    })
    consumer.assign([TopicPartition(topic, 0, 0)])
    producer_done = threading.Event()

    def run():
        try:
            produce(broker.bootstrap, topic, [(None, f"{i}".encode()) for i in range(total)], acks="1")
        finally:
            producer_done.set()

    threading.Thread(target=run).start()
    got = []
    deadline = time.monotonic() + 90
    while len(got) < total and time.monotonic() < deadline:
        for m in consumer.consume(num_messages=5000, timeout=0.5):
            assert not m.error(), m.error()
            got.append((m.offset(), m.value()))
    consumer.close()
    assert producer_done.wait(30)
    assert got == [(i, f"{i}".encode()) for i in range(total)], "a tailing reader sees a dense, ordered log"


def test_concurrent_producers_to_one_partition_get_dense_distinct_offsets(broker):
    topic = create_topic(broker.bootstrap, unique_topic("many"), partitions=1)
    results = {}

    def run(n):
        results[n] = produce(broker.bootstrap, topic, [(None, f"p{n}-{i}".encode()) for i in range(2000)],
                             acks="all", **{"partitioner": "consistent"})

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    offsets = sorted(o for r in results.values() for _, o in r.values())
    assert offsets == list(range(16_000)), "every acknowledged produce got its own offset, no gaps"
    consumed = consume_all(broker.bootstrap, topic, 1, 16_000)
    for n in range(8):
        mine = [int(v.split(b"-")[1]) for _, _, _, v in consumed if v.startswith(f"p{n}-".encode())]
        assert mine == list(range(2000)), f"producer {n}'s messages are in its order"


def test_admin_client_over_flexible_versions(broker):
    """librdkafka's AdminClient speaks the newer (flexible) versions of the admin APIs."""
    from confluent_kafka import KafkaError, KafkaException, TopicCollection
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec, ResourceType

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    def error_of(future):
        with pytest.raises(KafkaException) as e:
            future.result(timeout=15)
        return e.value.args[0].code()

    name = unique_topic("cadmin")
    admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=1)], validate_only=True)[name].result(15)
    assert name not in admin.list_topics(timeout=10).topics, "validate_only creates nothing"
    admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=1,
                                  config={"retention.ms": "3600000"})])[name].result(15)
    assert len(admin.list_topics(timeout=10).topics[name].partitions) == 4
    assert error_of(admin.create_topics([NewTopic(name, 4, 1)])[name]) == KafkaError.TOPIC_ALREADY_EXISTS
    assert error_of(admin.create_topics([NewTopic("..", 1, 1)])[".."]) == KafkaError.TOPIC_EXCEPTION
    bad_rf = unique_topic("rf")
    assert error_of(admin.create_topics([NewTopic(bad_rf, 1, 3)])[bad_rf]) == KafkaError.INVALID_REPLICATION_FACTOR

    (description,) = admin.describe_topics(TopicCollection([name])).values()
    description = description.result(15)
    assert description.name == name and len(description.partitions) == 4
    assert str(description.topic_id) not in ("", "AAAAAAAAAAAAAAAAAAAAAA"), "a real topic id"
    assert all(p.leader.id == 0 for p in description.partitions)

    cluster = admin.describe_cluster(request_timeout=15).result(15)
    assert [n.id for n in cluster.nodes] == [0] and cluster.controller.id == 0

    (configs,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name)]).values()
    assert configs.result(15)["retention.ms"].value == "3600000"

    produce(broker.bootstrap, name, [(None, f"{i}".encode()) for i in range(10)], acks="all",
            **{"partitioner": "murmur2_random"})
    from confluent_kafka import TopicPartition as TP

    specs = {TP(name, p): OffsetSpec.latest() for p in range(4)}
    latest = {tp.partition: f.result(15).offset for tp, f in admin.list_offsets(specs).items()}
    assert sum(latest.values()) == 10
    earliest = {tp.partition: f.result(15).offset
                for tp, f in admin.list_offsets({TP(name, p): OffsetSpec.earliest() for p in range(4)}).items()}
    assert earliest == {0: 0, 1: 0, 2: 0, 3: 0}

    admin.delete_topics([name])[name].result(15)
    assert name not in admin.list_topics(timeout=10).topics
    assert error_of(admin.delete_topics([name])[name]) == KafkaError.UNKNOWN_TOPIC_OR_PART


@pytest.mark.parametrize("linger_ms", [0, 50], ids=["batch-per-record", "one-batch"])
def test_list_offsets_max_timestamp_finds_the_newest_record(broker, linger_ms):
    """KIP-734: OffsetSpec.max_timestamp() answers the first record carrying the largest
    timestamp, whether it is a batch of its own or sits inside a batch."""
    from confluent_kafka import TopicPartition as TP
    from confluent_kafka.admin import AdminClient, OffsetSpec

    name = create_topic(broker.bootstrap, unique_topic("maxts"), partitions=2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    spec = {TP(name, p): OffsetSpec.max_timestamp() for p in range(2)}
    empty = {tp.partition: (r.offset, r.timestamp) for tp, f in admin.list_offsets(spec).items()
             for r in [f.result(15)]}
    assert empty == {0: (-1, -1), 1: (-1, -1)}, "an empty log has none"

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": linger_ms, "acks": "all"})
    for ts in [1_000, 9_000, 4_000, 9_000, 2_000]:
        producer.produce(name, value=b"v", partition=0, timestamp=ts)
    producer.flush(15)
    found = {tp.partition: (r.offset, r.timestamp) for tp, f in admin.list_offsets(spec).items()
             for r in [f.result(15)]}
    assert found == {0: (1, 9_000), 1: (-1, -1)}


def test_authorized_operations_are_reported_when_asked(broker):
    """KIP-430: with no ACLs every operation Kafka supports on a resource is allowed; a client
    that asks must get that set, not the "omitted" marker (whose sign bit kafka-python 2.3
    reads as an operation 31 and fails on)."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation, AdminClient

    name = create_topic(broker.bootstrap, unique_topic("acl"))
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    (described,) = admin.describe_topics(TopicCollection([name]), include_authorized_operations=True).values()
    topic_ops = set(described.result(15).authorized_operations)
    assert topic_ops == {AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
                         AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
                         AclOperation.ALTER_CONFIGS}
    cluster = admin.describe_cluster(include_authorized_operations=True, request_timeout=15).result(15)
    assert {AclOperation.DESCRIBE, AclOperation.ALTER, AclOperation.IDEMPOTENT_WRITE} <= set(cluster.authorized_operations)
    not_asked = admin.describe_cluster(request_timeout=15).result(15)
    assert not not_asked.authorized_operations, "not asked: none reported"
