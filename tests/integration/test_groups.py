"""Consumer groups with real clients: librdkafka (confluent-kafka) and kafka-python groups
balance, rebalance on join/leave/crash, commit, resume after a broker restart, keep static
members without a rebalance, and rebalance cooperatively; the admin API shows it all.

The broker runs with a short initial rebalance delay and a low minimum session timeout so the
scenarios take seconds, not minutes.
"""

import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer

from helpers import GROUP_FLAGS, create_topic, unique_topic



def produce(bootstrap, topic, count, partitions):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(count):
        p.produce(topic, key=f"k{i}".encode(), value=f"m{i}".encode(), partition=i % partitions)
    assert p.flush(30) == 0


class Member(threading.Thread):
    """A confluent-kafka group member in its own thread: polls, records what it got, commits
    synchronously after every message it processed, and records (re)assignments."""

    def __init__(self, bootstrap, group, topic, name, **config):
        super().__init__(daemon=True)
        self.name = name
        self.events = []          # ("assign" | "revoke", [partitions])
        self.consumed = []        # (partition, offset)
        self.assignment = set()
        self.stop_flag = threading.Event()
        self.leave = True
        self.errors = []

        def on_assign(consumer, partitions):
            ps = [tp.partition for tp in partitions]
            self.events.append(("assign", ps))
            if config.get("partition.assignment.strategy") == "cooperative-sticky":
                self.assignment |= set(ps)
            else:
                self.assignment = set(ps)

        def on_revoke(consumer, partitions):
            ps = [tp.partition for tp in partitions]
            self.events.append(("revoke", ps))
            self.assignment -= set(ps)

        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 300,
            **config,
        })
        self.consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)

    def run(self):
        while not self.stop_flag.is_set():
            m = self.consumer.poll(0.1)
            if m is None:
                continue
            if m.error():
                self.errors.append(str(m.error()))
                continue
            self.consumed.append((m.partition(), m.offset()))
            try:
                self.consumer.commit(message=m, asynchronous=False)
            except Exception as e:  # a commit can fail across a rebalance; it is retried by the next one
                self.errors.append(str(e))
        self.consumer.close()

    def stop(self):
        self.stop_flag.set()
        self.join(30)


def wait_for(what, check, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def committed(bootstrap, group, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)}
    finally:
        c.close()


def split_evenly(members, partitions):
    assigned = [m.assignment for m in members]
    union = set().union(*assigned)
    disjoint = sum(len(a) for a in assigned) == len(union)
    sizes = sorted(len(a) for a in assigned)
    return union == set(range(partitions)) and disjoint and sizes[-1] - sizes[0] <= 1


def test_confluent_group_splits_rebalances_on_join_and_leave_and_consumes_everything_once(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("grp"), partitions=8)
    group = unique_topic("g")
    produce(broker.bootstrap, topic, 400, 8)
    a = Member(broker.bootstrap, group, topic, "a")
    b = Member(broker.bootstrap, group, topic, "b")
    a.start(), b.start()
    wait_for("two members splitting 8 partitions", lambda: split_evenly([a, b], 8))
    produce(broker.bootstrap, topic, 400, 8)
    c = Member(broker.bootstrap, group, topic, "c")
    c.start()
    wait_for("three members splitting 8 partitions", lambda: split_evenly([a, b, c], 8))
    assert any(e[0] == "revoke" for e in a.events), "the join rebalanced the first members"
    produce(broker.bootstrap, topic, 400, 8)
    b.stop()  # close() leaves the group
    wait_for("two members again after b left", lambda: split_evenly([a, c], 8))
    produce(broker.bootstrap, topic, 400, 8)
    wait_for("everything committed", lambda: committed(broker.bootstrap, group, topic, 8) == {p: 200 for p in range(8)})
    a.stop(), c.stop()
    consumed = a.consumed + b.consumed + c.consumed
    assert set(consumed) == {(p, o) for p in range(8) for o in range(200)}, "every message consumed"
    # Each member commits every message before the next: after a commit nothing is
    # consumed twice, so no duplicates at all.
    assert len(consumed) == len(set(consumed)), "no message consumed twice"


def test_a_killed_consumer_loses_its_partitions_after_the_session_timeout(broker_factory, tmp_path):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("kill"), partitions=4)
    group = unique_topic("g")
    produce(broker.bootstrap, topic, 40, 4)
    survivor = Member(broker.bootstrap, group, topic, "survivor", **{"session.timeout.ms": 2000})
    survivor.start()
    wait_for("the survivor owns everything", lambda: survivor.assignment == {0, 1, 2, 3})
    script = tmp_path / "victim.py"
    script.write_text(
        "import sys, time\n"
        "from confluent_kafka import Consumer\n"
        "c = Consumer({'bootstrap.servers': sys.argv[1], 'group.id': sys.argv[2], 'session.timeout.ms': 2000,\n"
        "              'heartbeat.interval.ms': 300, 'client.id': 'victim'})\n"
        "got = []\n"
        "c.subscribe([sys.argv[3]], on_assign=lambda cons, ps: got.extend(p.partition for p in ps))\n"
        "while True:\n"
        "    c.poll(0.1)\n"
        "    if got:\n"
        "        print('assigned', flush=True)\n"
        "        got.clear()\n"
    )
    victim = subprocess.Popen([sys.executable, str(script), broker.bootstrap, group, topic], stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout.readline().strip() == "assigned"
        wait_for("the victim took partitions", lambda: len(survivor.assignment) == 2)
        killed_at = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        wait_for("the victim's partitions moved", lambda: survivor.assignment == {0, 1, 2, 3}, timeout_s=20)
        moved_after = time.monotonic() - killed_at
        assert moved_after >= 1.0, f"moved after {moved_after:.1f} s: before the 2 s session timeout ran out"
    finally:
        if victim.poll() is None:
            victim.kill()
        survivor.stop()


def test_committed_offsets_survive_a_broker_restart(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("resume"), partitions=2)
    group = unique_topic("g")
    produce(broker.bootstrap, topic, 100, 2)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = 0
    deadline = time.monotonic() + 30
    while got < 60 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got += 1
    c.commit(asynchronous=False)
    positions = {tp.partition: tp.offset for tp in c.position([TopicPartition(topic, p) for p in range(2)])}
    c.close()
    assert sum(positions.values()) == 60
    broker.restart()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    rest = []
    deadline = time.monotonic() + 30
    while len(rest) < 40 and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            rest.append((m.partition(), m.offset()))
    time.sleep(0.5)
    extra = c.poll(0.5)
    c.close()
    assert sorted(rest) == sorted((p, o) for p in range(2) for o in range(positions[p], 50)), "exactly the uncommitted rest"
    assert extra is None or extra.error() is not None


def test_kafka_python_group_splits_and_rebalances(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("kp"), partitions=4)
    group = unique_topic("g")
    produce(broker.bootstrap, topic, 200, 4)

    class KpMember(threading.Thread):
        """kafka-python joins inside poll(), so each member needs its own thread."""

        def __init__(self):
            super().__init__(daemon=True)
            self.got, self.assigned = [], set()
            self.stop_flag = threading.Event()

        def run(self):
            c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group, auto_offset_reset="earliest",
                              enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=300)
            while not self.stop_flag.is_set():
                for records in c.poll(timeout_ms=100).values():
                    self.got.extend((r.partition, r.offset) for r in records)
                    c.commit()
                self.assigned = {tp.partition for tp in c.assignment()}
            c.close()  # sends LeaveGroup

    a, b = KpMember(), KpMember()
    a.start(), b.start()
    wait_for("two kafka-python members split 4 partitions",
             lambda: len(a.assigned) == 2 and len(b.assigned) == 2 and a.assigned | b.assigned == {0, 1, 2, 3})
    b.stop_flag.set()
    b.join(30)
    wait_for("the remaining member takes all four", lambda: a.assigned == {0, 1, 2, 3})
    wait_for("everything committed", lambda: committed(broker.bootstrap, group, topic, 4) == {p: 50 for p in range(4)})
    a.stop_flag.set()
    a.join(30)
    assert set(a.got + b.got) == {(p, o) for p in range(4) for o in range(50)}


def test_a_restarted_static_member_gets_its_partitions_back_without_a_rebalance(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("static"), partitions=4)
    group = unique_topic("g")
    produce(broker.bootstrap, topic, 40, 4)
    other = Member(broker.bootstrap, group, topic, "other", **{"group.instance.id": "other-1"})
    first = Member(broker.bootstrap, group, topic, "static", **{"group.instance.id": "static-1"})
    other.start(), first.start()
    wait_for("two static members split", lambda: split_evenly([other, first], 4))
    mine = set(first.assignment)
    events_before = list(other.events)
    first.stop()  # librdkafka's close() of a static member sends no LeaveGroup
    again = Member(broker.bootstrap, group, topic, "static", **{"group.instance.id": "static-1"})
    again.start()
    wait_for("the static member rejoined", lambda: again.assignment == mine)
    time.sleep(1.5)  # several heartbeats: a rebalance would show up on the other member now
    assert other.events == events_before, "the other member saw no rebalance"
    again.stop(), other.stop()


def test_cooperative_sticky_rebalances_incrementally(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("coop"), partitions=6)
    group = unique_topic("g")
    produce(broker.bootstrap, topic, 600, 6)
    coop = {"partition.assignment.strategy": "cooperative-sticky"}
    a = Member(broker.bootstrap, group, topic, "a", **coop)
    b = Member(broker.bootstrap, group, topic, "b", **coop)
    a.start(), b.start()
    wait_for("two cooperative members split", lambda: split_evenly([a, b], 6))
    before = (set(a.assignment), set(b.assignment))
    # a may have owned all six before b joined and revoked three then: only what c's join caused counts.
    a_seen = len(a.events)
    c = Member(broker.bootstrap, group, topic, "c", **coop)
    c.start()
    wait_for("three cooperative members split", lambda: split_evenly([a, b, c], 6))
    # Incremental: a and b only gave partitions away; nothing they kept was revoked.
    assert a.assignment <= before[0] and b.assignment <= before[1]
    assert all(set(ps) <= before[0] - a.assignment for kind, ps in a.events[a_seen:] if kind == "revoke")
    wait_for("everything committed", lambda: committed(broker.bootstrap, group, topic, 6) == {p: 100 for p in range(6)})
    a.stop(), b.stop(), c.stop()
    consumed = a.consumed + b.consumed + c.consumed
    assert set(consumed) == {(p, o) for p in range(6) for o in range(100)}


def test_admin_client_lists_and_describes_groups(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("adm"), partitions=2)
    group = unique_topic("g")
    produce(broker.bootstrap, topic, 10, 2)
    m = Member(broker.bootstrap, group, topic, "described")
    m.start()
    wait_for("the member owns both partitions", lambda: m.assignment == {0, 1})
    wait_for("everything committed", lambda: committed(broker.bootstrap, group, topic, 2) == {0: 5, 1: 5})
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    assert (group, "consumer") in admin.list_consumer_groups()
    [info] = admin.describe_consumer_groups([group])
    assert (info.state, info.protocol_type, info.protocol) == ("Stable", "consumer", "range")
    [member] = info.members
    assert member.client_id == "described"
    assert sorted(member.member_assignment.assignment[0][1]) == [0, 1]
    offsets = admin.list_consumer_group_offsets(group)
    assert {tp.partition: om.offset for tp, om in offsets.items()} == {0: 5, 1: 5}
    deleted = admin.delete_consumer_groups([group])
    assert deleted[0][1].__name__ == "NonEmptyGroupError"
    m.stop()
    wait_for("the group is empty", lambda: admin.describe_consumer_groups([group])[0].state == "Empty")
    assert admin.delete_consumer_groups([group])[0][1].__name__ == "NoError"
    assert group not in [g for g, _ in admin.list_consumer_groups()]
    admin.close()
