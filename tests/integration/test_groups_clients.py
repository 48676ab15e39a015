"""Consumer groups driven by real clients, scenario by scenario, with every outcome checked
against a ledger of what was consumed and what was committed.

confluent-kafka (librdkafka) and kafka-python members run each in its own thread (a client
object is used by one thread only). Every member commits synchronously, every few messages,
when idle and in its revoke callback, and reports each successful commit to a shared
`Ledger`. The ledger flags any message consumed below the group's committed offset for its
partition: after a commit, nothing may be consumed twice. A message consumed twice before
it was committed is at-least-once delivery and allowed.

The broker runs with no initial rebalance delay, a 1 s minimum session timeout and four
`__consumer_offsets` partitions, so each scenario takes seconds.
"""

import json
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition
from confluent_kafka import Consumer as CfConsumer
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient, KafkaConsumer, ConsumerRebalanceListener
from kafka import TopicPartition as KpTopicPartition
from kafka.protocol.api import Request, Response
from kafka.protocol.types import Array, Int16, Int32, Schema, String
from kafka.structs import OffsetAndMetadata

from helpers import GROUP_FLAGS, create_topic, unique_topic



# ---------------------------------------------------------------------------------------
# Shared machinery
# ---------------------------------------------------------------------------------------


def wait_for(what, check, timeout_s=30, interval_s=0.05):
    """Polls `check` until it returns something truthy; fails with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(interval_s)


class Ledger:
    """What the whole group consumed and committed, per partition, across all members."""

    def __init__(self):
        self.lock = threading.Lock()
        self.committed = {}   # partition -> committed offset (the next one to consume)
        self.consumed = []    # (member, partition, offset)
        self.violations = []  # messages consumed below the committed offset

    def consumed_one(self, member, partition, offset):
        with self.lock:
            committed = self.committed.get(partition, 0)
            if offset < committed:
                self.violations.append(
                    f"{member} consumed partition {partition} offset {offset} after offset {committed} was committed")
            self.consumed.append((member, partition, offset))

    def commit_succeeded(self, offsets):
        with self.lock:
            for partition, offset in offsets.items():
                self.committed[partition] = max(self.committed.get(partition, 0), offset)

    def committed_now(self):
        with self.lock:
            return dict(self.committed)

    def consumers(self):
        """The names of the members that consumed anything."""
        with self.lock:
            return {m for m, _, _ in self.consumed}

    def consumed_set(self):
        with self.lock:
            return {(p, o) for _, p, o in self.consumed}

    def duplicates(self):
        with self.lock:
            seen, dups = set(), []
            for _, p, o in self.consumed:
                if (p, o) in seen:
                    dups.append((p, o))
                seen.add((p, o))
            return dups


class BackgroundProducer(threading.Thread):
    """Produces one message to every partition per round, `interval_s` apart, until stopped;
    records the (partition, offset) of every delivered message."""

    def __init__(self, bootstrap, topic, partitions, interval_s=0.02):
        super().__init__(daemon=True)
        self.topic, self.partitions, self.interval_s = topic, partitions, interval_s
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2})
        self.delivered = set()
        self.errors = []
        self.stop_flag = threading.Event()
        self.rounds = 0

    def _report(self, err, msg):
        if err is not None:
            self.errors.append(str(err))
        else:
            self.delivered.add((msg.partition(), msg.offset()))

    def run(self):
        while not self.stop_flag.is_set():
            for p in range(self.partitions):
                self.producer.produce(self.topic, key=f"r{self.rounds}".encode(), value=f"{p}:{self.rounds}".encode(),
                                      partition=p, on_delivery=self._report)
            self.rounds += 1
            self.producer.poll(0)
            time.sleep(self.interval_s)
        self.producer.flush(30)

    def stop(self):
        """Stops producing; returns every delivered (partition, offset)."""
        self.stop_flag.set()
        self.join(40)
        assert not self.is_alive(), "the producer did not finish flushing"
        assert not self.errors, f"delivery failed: {self.errors[:5]}"
        assert len(self.delivered) == self.rounds * self.partitions, "every produced message was delivered"
        return set(self.delivered)


def produce(bootstrap, topic, per_partition, partitions, start=0):
    """`per_partition` messages to each partition, values "p:i", acks=all."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for i in range(start, start + per_partition):
        for part in range(partitions):
            p.produce(topic, key=f"k{i}".encode(), value=f"{part}:{i}".encode(), partition=part)
    assert p.flush(30) == 0, "messages left unsent"


def end_offsets(delivered, partitions):
    """The high watermark each partition must have, from the set of delivered offsets."""
    ends = {p: 0 for p in range(partitions)}
    for p, o in delivered:
        ends[p] = max(ends[p], o + 1)
    assert all(len([1 for q, _ in delivered if q == p]) == ends[p] for p in ends), "offsets are dense from 0"
    return ends


def broker_committed(bootstrap, group, topic, partitions):
    """The group's committed offsets as the broker reports them (OffsetFetch, no join)."""
    c = CfConsumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        c.close()
    return {tp.partition: tp.offset for tp in got}


def disjoint_cover(assignments, partitions, sizes=None):
    """True when the member assignments are disjoint, cover every partition and (optionally)
    have exactly the given multiset of sizes."""
    union = set().union(*assignments)
    if union != set(range(partitions)) or sum(len(a) for a in assignments) != partitions:
        return False
    return sizes is None or sorted(len(a) for a in assignments) == sorted(sizes)


class CfMember(threading.Thread):
    """A confluent-kafka group member in its own thread.

    Records every on_assign/on_revoke as ("assign"|"revoke", sorted partitions), keeps its
    current assignment, reports consumption and successful commits to the ledger. Commits
    synchronously every `commit_every` messages, whenever a poll comes back empty, and for
    the revoked partitions in on_revoke (so the next owner starts exactly where it left).
    """

    def __init__(self, bootstrap, group, topic, name, ledger, commit_every=10, **config):
        super().__init__(daemon=True, name=f"member-{name}")
        self.bootstrap, self.group, self.topic, self.name = bootstrap, group, topic, name
        self.ledger, self.commit_every = ledger, commit_every
        self.cooperative = config.get("partition.assignment.strategy") == "cooperative-sticky"
        self.config = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 300,
            **config,
        }
        self.lock = threading.Lock()
        self.events = []
        self._assignment = set()
        self.positions = {}   # partition -> next offset to consume
        self.dirty = set()    # partitions consumed beyond their last commit
        self.errors = []
        self.commit_errors = []
        self.first_offset = {}  # partition -> first offset this member consumed there
        self.stop_flag = threading.Event()
        self.consumer = None

    # -- observed state, read by the test thread --
    @property
    def assignment(self):
        with self.lock:
            return set(self._assignment)

    def events_since(self, mark):
        with self.lock:
            return list(self.events[mark:])

    def mark(self):
        with self.lock:
            return len(self.events)

    # -- the member's own thread --
    def _on_assign(self, consumer, partitions):
        ps = sorted(tp.partition for tp in partitions)
        with self.lock:
            self.events.append(("assign", ps))
            if self.cooperative:
                self._assignment |= set(ps)
            else:
                self._assignment = set(ps)

    def _on_revoke(self, consumer, partitions):
        ps = sorted(tp.partition for tp in partitions)
        self._commit(set(ps))
        with self.lock:
            self.events.append(("revoke", ps))
            self._assignment -= set(ps)
        for p in ps:
            self.positions.pop(p, None)
            self.dirty.discard(p)

    def _commit(self, partitions):
        todo = sorted(p for p in partitions & self.dirty if p in self.positions)
        if not todo:
            return
        offsets = [TopicPartition(self.topic, p, self.positions[p]) for p in todo]
        try:
            result = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:  # e.g. REBALANCE_IN_PROGRESS: the next commit retries
            self.commit_errors.append(str(e))
            return
        ok = {tp.partition: tp.offset for tp in result if tp.error is None}
        self.commit_errors += [str(tp.error) for tp in result if tp.error is not None]
        self.ledger.commit_succeeded(ok)
        self.dirty -= set(ok)

    def run(self):
        try:
            self.consumer = CfConsumer(self.config)
            self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            since_commit = 0
            while not self.stop_flag.is_set():
                m = self.consumer.poll(0.1)
                if m is None:
                    self._commit(self.assignment)
                    continue
                if m.error():
                    self.errors.append(str(m.error()))
                    continue
                p, o = m.partition(), m.offset()
                self.ledger.consumed_one(self.name, p, o)
                self.first_offset.setdefault(p, o)
                self.positions[p] = o + 1
                self.dirty.add(p)
                since_commit += 1
                if since_commit >= self.commit_every:
                    since_commit = 0
                    self._commit(self.assignment)
            self.consumer.close()  # revokes (committing) and, unless static, leaves the group
        except Exception as e:  # surfaced by stop()
            self.errors.append(f"member thread died: {e!r}")

    def stop(self):
        self.stop_flag.set()
        self.join(30)
        assert not self.is_alive(), f"{self.name} did not close within 30 s"
        assert not [e for e in self.errors if "died" in e], self.errors


def assert_all_consumed_once_committed(ledger, delivered, partitions, bootstrap, group, topic):
    """Every delivered message was consumed, nothing after its commit, and the group's
    committed offsets (ledger and broker) are the partitions' ends."""
    ends = end_offsets(delivered, partitions)
    wait_for(f"the group to commit the end of every partition {ends}", lambda: ledger.committed_now() == ends)
    assert broker_committed(bootstrap, group, topic, partitions) == ends, "the broker has the commits"
    assert ledger.consumed_set() == delivered, (
        f"missing {sorted(delivered - ledger.consumed_set())[:10]}, unexpected {sorted(ledger.consumed_set() - delivered)[:10]}")
    assert not ledger.violations, ledger.violations[:10]


# ---------------------------------------------------------------------------------------
# 1. confluent-kafka: split, join, leave
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_confluent_members_split_8_partitions_and_rebalance_on_join_and_leave(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("split"), partitions=8)
    group = unique_topic("g")
    ledger = Ledger()
    producer = BackgroundProducer(broker.bootstrap, topic, 8)
    producer.start()
    a = CfMember(broker.bootstrap, group, topic, "a", ledger)
    b = CfMember(broker.bootstrap, group, topic, "b", ledger)
    members = [a, b]
    try:
        a.start()
        b.start()
        wait_for("a and b to split 8 partitions 4/4",
                 lambda: disjoint_cover([a.assignment, b.assignment], 8, sizes=[4, 4]))
        wait_for("both to consume", lambda: ledger.consumers() >= {"a", "b"})
        marks = {m.name: m.mark() for m in (a, b)}

        # A third member joins: every member is revoked and reassigned (eager protocol).
        c = CfMember(broker.bootstrap, group, topic, "c", ledger)
        members.append(c)
        c.start()
        wait_for("a, b and c to split 8 partitions 3/3/2",
                 lambda: disjoint_cover([a.assignment, b.assignment, c.assignment], 8, sizes=[2, 3, 3]))
        for m in (a, b):
            kinds = [k for k, _ in m.events_since(marks[m.name])]
            assert "revoke" in kinds and "assign" in kinds, f"the join rebalanced {m.name}: {kinds}"
        assert c.events and c.events[0][0] == "assign", c.events
        wait_for("c to consume", lambda: "c" in ledger.consumers())
        marks = {m.name: m.mark() for m in (a, b, c)}

        # b leaves (close sends LeaveGroup): a and c take over well before b's 10 s session
        # timeout could have expired it.
        left_at = time.monotonic()
        b.stop()
        assert b.events[-1][0] == "revoke", "close revoked b's partitions"
        wait_for("a and c to split 8 partitions 4/4 after b left",
                 lambda: disjoint_cover([a.assignment, c.assignment], 8, sizes=[4, 4]), timeout_s=20)
        took = time.monotonic() - left_at
        assert took < 6, f"the leave took {took:.1f} s to rebalance: LeaveGroup was not acted on"
        for m in (a, c):
            kinds = [k for k, _ in m.events_since(marks[m.name])]
            assert "revoke" in kinds and "assign" in kinds, f"the leave rebalanced {m.name}: {kinds}"
        time.sleep(1)  # a and c consume b's old partitions for a moment
        delivered = producer.stop()
        assert_all_consumed_once_committed(ledger, delivered, 8, broker.bootstrap, group, topic)
        assert len(delivered) >= 8 * 20, "traffic went on through the rebalances"
    finally:
        producer.stop_flag.set()
        for m in members:
            m.stop_flag.set()
        for m in members:
            m.join(30)
    for m in members:
        assert not m.errors, (m.name, m.errors[:5])


# ---------------------------------------------------------------------------------------
# 2. A member killed without leaving
# ---------------------------------------------------------------------------------------

VICTIM = r"""
import json, sys
from confluent_kafka import Consumer, TopicPartition
bootstrap, group, topic, per_partition = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "victim",
              "session.timeout.ms": 2000, "heartbeat.interval.ms": 300,
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
mine = []
def on_assign(consumer, partitions):
    mine[:] = sorted(tp.partition for tp in partitions)
    print(json.dumps({"assigned": mine}), flush=True)
c.subscribe([topic], on_assign=on_assign)
seen = {}
committed = False
while True:
    m = c.poll(0.1)
    if m is not None and m.error() is None:
        seen[m.partition()] = m.offset() + 1
    if not committed and mine and all(seen.get(p) == per_partition for p in mine):
        # Commit only part of what was read: 10 + p on partition p. The partition's next
        # owner must start exactly there.
        offsets = [TopicPartition(topic, p, 10 + p) for p in mine]
        result = c.commit(offsets=offsets, asynchronous=False)
        assert all(tp.error is None for tp in result), result
        committed = True
        print(json.dumps({"committed": {str(p): 10 + p for p in mine}}), flush=True)
"""


def read_lines(stream):
    """A queue of the JSON lines a child prints (read on a thread: waits stay bounded)."""
    lines = queue.Queue()

    def pump():
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def next_json(lines, key, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the child printed no {key!r} within {timeout_s} s"
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            continue
        assert line is not None, f"the child exited before printing {key!r}"
        msg = json.loads(line)
        if key in msg:
            return msg[key]


@pytest.mark.timeout(90)
def test_a_sigkilled_member_s_partitions_move_after_its_session_timeout_from_its_commits(broker_factory, tmp_path):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("kill"), partitions=4)
    group = unique_topic("g")
    ledger = Ledger()
    survivor = CfMember(broker.bootstrap, group, topic, "survivor", ledger, **{"session.timeout.ms": 2000})
    survivor.start()
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)
    victim = None
    try:
        wait_for("the survivor to own all 4 partitions", lambda: survivor.assignment == {0, 1, 2, 3})
        victim = subprocess.Popen([sys.executable, str(script), broker.bootstrap, group, topic, "20"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = read_lines(victim.stdout)
        victims = set(next_json(lines, "assigned"))
        while not victims:  # the first generation may give it nothing while the survivor syncs
            victims = set(next_json(lines, "assigned"))
        wait_for("the survivor to keep exactly the other partitions",
                 lambda: survivor.assignment == {0, 1, 2, 3} - victims)
        assert len(victims) == 2, victims
        produce(broker.bootstrap, topic, 20, 4)
        committed = {int(p): o for p, o in next_json(lines, "committed").items()}
        assert set(committed) == victims
        mark = survivor.mark()

        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait(10)
        wait_for("the victim's partitions to move to the survivor",
                 lambda: survivor.assignment == {0, 1, 2, 3}, timeout_s=20, interval_s=0.02)
        moved_after = time.monotonic() - killed_at
        # The victim's last heartbeat was about 300 ms (its interval) before the kill; its 2 s
        # session ran out no earlier than ~1.7 s after it (1.2 s leaves room for a late beat).
        assert moved_after >= 1.2, f"the partitions moved {moved_after:.2f} s after the kill, before the session timeout"
        assert moved_after < 10, f"the partitions moved only {moved_after:.2f} s after the kill"
        assert any(k == "assign" and set(ps) >= victims for k, ps in survivor.events_since(mark))

        wait_for("the survivor to consume the victim's uncommitted rest",
                 lambda: all((p, 19) in ledger.consumed_set() for p in victims))
        for p in victims:
            assert survivor.first_offset[p] == committed[p], (
                f"partition {p}: the survivor started at {survivor.first_offset[p]}, the victim committed {committed[p]}")
        wait_for("the survivor to commit everything", lambda: ledger.committed_now() == {p: 20 for p in range(4)})
        assert broker_committed(broker.bootstrap, group, topic, 4) == {p: 20 for p in range(4)}
        assert ledger.consumed_set() == {(p, o) for p in range(4) for o in range(20)} - {
            (p, o) for p in victims for o in range(committed[p])}, "the survivor read exactly what was not committed"
        assert not ledger.violations, ledger.violations
    finally:
        if victim is not None and victim.poll() is None:
            victim.kill()
            victim.wait(10)
        survivor.stop()
    assert not survivor.errors, survivor.errors


# ---------------------------------------------------------------------------------------
# 3. Committed offsets survive a broker restart
# ---------------------------------------------------------------------------------------


def consume_exactly(bootstrap, group, topic, expected, quiet_s=1.0, timeout_s=30):
    """Subscribes a fresh member of `group`, reads until `expected` (partition, offset) pairs
    arrived, then `quiet_s` more to catch extras; returns everything it read (with repeats)."""
    c = CfConsumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                    "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 300})
    c.subscribe([topic])
    got = []
    try:
        deadline = time.monotonic() + timeout_s
        while not expected <= set(got) and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                got.append((m.partition(), m.offset()))
        quiet_until = time.monotonic() + quiet_s
        while time.monotonic() < quiet_until:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                got.append((m.partition(), m.offset()))
    finally:
        c.close()
    return got


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_committed_offsets_and_metadata_survive_a_broker_restart(broker_factory, how):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("resume"), partitions=4)
    group = unique_topic("g")
    produce(broker.bootstrap, topic, 25, 4)
    # Read everything, then commit a different point on each partition, with metadata.
    read = consume_exactly(broker.bootstrap, group, topic, {(p, o) for p in range(4) for o in range(25)}, quiet_s=0)
    assert len(read) == 100
    commits = {0: 5, 1: 9, 2: 13, 3: 25}
    committer = CfConsumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        result = committer.commit(offsets=[TopicPartition(topic, p, o, f"meta-{p}") for p, o in commits.items()],
                                  asynchronous=False)
        assert all(tp.error is None for tp in result), result
    finally:
        committer.close()
    assert broker_committed(broker.bootstrap, group, topic, 4) == commits

    if how == "sigterm":
        broker.restart()
    else:
        broker.kill_and_restart()  # a commit is durable once acknowledged

    c = CfConsumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        after = c.committed([TopicPartition(topic, p) for p in range(4)], timeout=15)
    finally:
        c.close()
    assert {tp.partition: tp.offset for tp in after} == commits
    assert {tp.partition: tp.metadata for tp in after} == {p: f"meta-{p}" for p in range(4)}
    rest = {(p, o) for p, start in commits.items() for o in range(start, 25)}
    got = consume_exactly(broker.bootstrap, group, topic, rest)
    assert sorted(got) == sorted(rest), "the new member read exactly the uncommitted rest, once"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_an_active_member_carries_on_across_a_broker_restart_without_a_rebalance(broker_factory, how):
    """The group (generation, members, assignment) is durable: after a restart the broker
    knows the member, whose heartbeats and commits go on; nothing is revoked or re-read."""
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("live"), partitions=4)
    group = unique_topic("g")
    ledger = Ledger()
    produce(broker.bootstrap, topic, 20, 4)
    m = CfMember(broker.bootstrap, group, topic, "m", ledger, **{"session.timeout.ms": 20000})
    m.start()
    admin = None
    try:
        wait_for("the member to commit the first 80", lambda: ledger.committed_now() == {p: 20 for p in range(4)})
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
        [before] = admin.describe_consumer_groups([group])
        admin.close()
        admin = None
        assert before.state == "Stable" and len(before.members) == 1
        mark = m.mark()
        if how == "sigterm":
            broker.restart()
        else:
            broker.kill_and_restart()
        produce(broker.bootstrap, topic, 20, 4, start=20)
        wait_for("the member to commit the next 80 after the restart",
                 lambda: ledger.committed_now() == {p: 40 for p in range(4)}, timeout_s=40)
        time.sleep(1)  # three more heartbeats
        assert m.events_since(mark) == [], f"the restart rebalanced the group: {m.events_since(mark)}"
        assert m.assignment == {0, 1, 2, 3}
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
        [after] = admin.describe_consumer_groups([group])
        assert after.state == "Stable"
        assert [x.member_id for x in after.members] == [x.member_id for x in before.members], "the same member"
    finally:
        if admin is not None:
            admin.close()
        m.stop()
    assert broker_committed(broker.bootstrap, group, topic, 4) == {p: 40 for p in range(4)}
    assert ledger.consumed_set() == {(p, o) for p in range(4) for o in range(40)}
    assert not ledger.violations, ledger.violations


# ---------------------------------------------------------------------------------------
# 4. kafka-python: split and leave
# ---------------------------------------------------------------------------------------


class KpMember(threading.Thread):
    """A kafka-python group member: joins inside poll(), so it needs its own thread. Commits
    synchronously after each poll's records and in on_partitions_revoked."""

    def __init__(self, bootstrap, group, topic, name, ledger):
        super().__init__(daemon=True, name=f"kp-{name}")
        self.bootstrap, self.group, self.topic, self.name, self.ledger = bootstrap, group, topic, name, ledger
        self.lock = threading.Lock()
        self.events = []
        self._assignment = set()
        self.positions = {}
        self.errors = []
        self.stop_flag = threading.Event()
        self.consumer = None

    @property
    def assignment(self):
        with self.lock:
            return set(self._assignment)

    def mark(self):
        with self.lock:
            return len(self.events)

    def events_since(self, mark):
        with self.lock:
            return list(self.events[mark:])

    def _commit(self, partitions):
        offsets = {KpTopicPartition(self.topic, p): OffsetAndMetadata(self.positions[p], "")
                   for p in partitions if p in self.positions}
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except Exception as e:  # CommitFailedError across a rebalance; the next owner re-reads
            self.errors.append(f"commit: {e!r}")
            return
        self.ledger.commit_succeeded({tp.partition: om.offset for tp, om in offsets.items()})

    def run(self):
        member = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                ps = sorted(tp.partition for tp in revoked)
                member._commit(set(ps))
                with member.lock:
                    member.events.append(("revoke", ps))
                    member._assignment -= set(ps)
                for p in ps:
                    member.positions.pop(p, None)

            def on_partitions_assigned(self, assigned):
                ps = sorted(tp.partition for tp in assigned)
                with member.lock:
                    member.events.append(("assign", ps))
                    member._assignment = set(ps)

        try:
            self.consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group, client_id=self.name,
                                          auto_offset_reset="earliest", enable_auto_commit=False,
                                          session_timeout_ms=10000, heartbeat_interval_ms=300,
                                          request_timeout_ms=15000)
            self.consumer.subscribe([self.topic], listener=Listener())
            while not self.stop_flag.is_set():
                batch = self.consumer.poll(timeout_ms=100)
                for records in batch.values():
                    for r in records:
                        self.ledger.consumed_one(self.name, r.partition, r.offset)
                        self.positions[r.partition] = r.offset + 1
                if batch:
                    self._commit(self.assignment)
            self.consumer.close()  # commits nothing more (autocommit off), revokes, leaves
        except Exception as e:
            self.errors.append(f"member thread died: {e!r}")

    def stop(self):
        self.stop_flag.set()
        self.join(30)
        assert not self.is_alive(), f"{self.name} did not close within 30 s"


@pytest.mark.timeout(90)
def test_kafka_python_members_split_8_partitions_and_rebalance_when_one_leaves(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("kp"), partitions=8)
    group = unique_topic("g")
    ledger = Ledger()
    producer = BackgroundProducer(broker.bootstrap, topic, 8, interval_s=0.05)
    producer.start()
    a = KpMember(broker.bootstrap, group, topic, "kp-a", ledger)
    b = KpMember(broker.bootstrap, group, topic, "kp-b", ledger)
    try:
        a.start()
        b.start()
        wait_for("two kafka-python members to split 8 partitions 4/4",
                 lambda: disjoint_cover([a.assignment, b.assignment], 8, sizes=[4, 4]))
        wait_for("both to consume", lambda: ledger.consumers() >= {"kp-a", "kp-b"})
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
        try:
            [info] = admin.describe_consumer_groups([group])
        finally:
            admin.close()
        assert info.state == "Stable" and info.protocol_type == "consumer"
        assert sorted(m.client_id for m in info.members) == ["kp-a", "kp-b"]
        mark = a.mark()
        left_at = time.monotonic()
        b.stop()
        wait_for("a to own all 8 partitions after b left", lambda: a.assignment == set(range(8)), timeout_s=20)
        assert time.monotonic() - left_at < 6, "the leave rebalanced before b's 10 s session could expire"
        kinds = [k for k, _ in a.events_since(mark)]
        assert "revoke" in kinds and kinds[-1] == "assign", f"a saw the rebalance: {kinds}"
        time.sleep(1)
        delivered = producer.stop()
        assert_all_consumed_once_committed(ledger, delivered, 8, broker.bootstrap, group, topic)
    finally:
        producer.stop_flag.set()
        a.stop_flag.set()
        b.stop_flag.set()
        a.join(30)
        b.join(30)
    for m in (a, b):
        assert not [e for e in m.errors if "died" in e], m.errors


# ---------------------------------------------------------------------------------------
# 5. Static membership
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_a_restarted_static_member_gets_the_same_partitions_and_nobody_rebalances(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("static"), partitions=6)
    group = unique_topic("g")
    ledger = Ledger()
    producer = BackgroundProducer(broker.bootstrap, topic, 6, interval_s=0.05)
    producer.start()
    static = {"session.timeout.ms": 10000}
    other = CfMember(broker.bootstrap, group, topic, "other", ledger, **static, **{"group.instance.id": "other-0"})
    first = CfMember(broker.bootstrap, group, topic, "bouncer", ledger, **static, **{"group.instance.id": "bouncer-0"})
    again = None
    try:
        other.start()
        first.start()
        wait_for("two static members to split 6 partitions 3/3",
                 lambda: disjoint_cover([other.assignment, first.assignment], 6, sizes=[3, 3]))
        wait_for("both to consume", lambda: ledger.consumers() >= {"other", "bouncer"})
        mine, others = first.assignment, other.assignment
        mark = other.mark()

        first.stop()  # librdkafka's close() of a static member sends no LeaveGroup
        again = CfMember(broker.bootstrap, group, topic, "bouncer", ledger, **static, **{"group.instance.id": "bouncer-0"})
        again.start()
        wait_for("the restarted static member to be assigned", lambda: again.events)
        assert again.events[0] == ("assign", sorted(mine)), f"it got {again.events[0]}, had {sorted(mine)}"
        time.sleep(3)  # ten heartbeats of the other member: a rebalance would show by now
        assert other.events_since(mark) == [], f"the other member saw a rebalance: {other.events_since(mark)}"
        assert other.assignment == others and again.assignment == mine

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(15)
        assert desc.state == ConsumerGroupState.STABLE
        assert sorted(m.group_instance_id for m in desc.members) == ["bouncer-0", "other-0"]
        by_instance = {m.group_instance_id: {tp.partition for tp in m.assignment.topic_partitions} for m in desc.members}
        assert by_instance == {"bouncer-0": mine, "other-0": others}

        delivered = producer.stop()
        assert_all_consumed_once_committed(ledger, delivered, 6, broker.bootstrap, group, topic)
    finally:
        producer.stop_flag.set()
        for m in (other, first, again):
            if m is not None:
                m.stop_flag.set()
        for m in (other, first, again):
            if m is not None:
                m.join(30)


@pytest.mark.timeout(60)
def test_a_static_member_that_does_not_come_back_loses_its_partitions_after_its_session_timeout(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("gone"), partitions=4)
    group = unique_topic("g")
    ledger = Ledger()
    static = {"session.timeout.ms": 4000}
    stays = CfMember(broker.bootstrap, group, topic, "stays", ledger, **static, **{"group.instance.id": "stays-0"})
    goes = CfMember(broker.bootstrap, group, topic, "goes", ledger, **static, **{"group.instance.id": "goes-0"})
    try:
        stays.start()
        goes.start()
        wait_for("two static members to split 4 partitions",
                 lambda: disjoint_cover([stays.assignment, goes.assignment], 4, sizes=[2, 2]))
        mark = stays.mark()
        closing_at = time.monotonic()  # its last heartbeat is at most ~300 ms before this
        goes.stop()  # no LeaveGroup: the broker keeps the member until its session runs out
        time.sleep(max(0.0, closing_at + 2.5 - time.monotonic()))
        assert stays.events_since(mark) == [], "a static member's close() must not rebalance the group"
        wait_for("the absent static member's partitions to move", lambda: stays.assignment == {0, 1, 2, 3},
                 timeout_s=20)
        moved_after = time.monotonic() - closing_at
        assert moved_after >= 3.2, f"moved {moved_after:.1f} s after close, before the 4 s session timeout"
    finally:
        stays.stop_flag.set()
        goes.stop_flag.set()
        stays.join(30)
        goes.join(30)


# ---------------------------------------------------------------------------------------
# 6. cooperative-sticky (incremental rebalancing)
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_cooperative_sticky_assigns_and_revokes_only_what_moves(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("coop"), partitions=8)
    group = unique_topic("g")
    ledger = Ledger()
    coop = {"partition.assignment.strategy": "cooperative-sticky"}
    producer = BackgroundProducer(broker.bootstrap, topic, 8)
    producer.start()
    a = CfMember(broker.bootstrap, group, topic, "a", ledger, **coop)
    b = CfMember(broker.bootstrap, group, topic, "b", ledger, **coop)
    members = [a, b]
    try:
        a.start()
        b.start()
        wait_for("a and b to split 8 partitions 4/4",
                 lambda: disjoint_cover([a.assignment, b.assignment], 8, sizes=[4, 4]))
        before = {"a": a.assignment, "b": b.assignment}
        marks = {"a": a.mark(), "b": b.mark()}

        c = CfMember(broker.bootstrap, group, topic, "c", ledger, **coop)
        members.append(c)
        c.start()
        wait_for("a, b and c to split 8 partitions 3/3/2",
                 lambda: disjoint_cover([a.assignment, b.assignment, c.assignment], 8, sizes=[2, 3, 3]))
        # Sticky: a and b keep what they had, minus what c took; nobody else moves.
        for m in (a, b):
            kept, had = m.assignment, before[m.name]
            assert kept <= had and len(kept) >= 2, f"{m.name} had {sorted(had)}, kept {sorted(kept)}"
            for kind, ps in m.events_since(marks[m.name]):
                if kind == "assign":  # incremental: never a partition it already held
                    assert ps == [], f"{m.name} was assigned {ps} while c joined"
                else:  # and only what it gives up is revoked
                    assert set(ps) <= had - kept, f"{m.name} had {ps} revoked but kept {sorted(kept)}"
            assert sum(len(ps) for k, ps in m.events_since(marks[m.name]) if k == "revoke") == len(had - kept)
        assert set().union(*(set(ps) for k, ps in c.events if k == "assign")) == c.assignment
        assert not [ps for k, ps in c.events if k == "revoke"], c.events
        assert c.assignment == (before["a"] - a.assignment) | (before["b"] - b.assignment)

        # c leaves: its partitions are added to a and b, nothing else is revoked.
        before = {"a": a.assignment, "b": b.assignment}
        marks = {"a": a.mark(), "b": b.mark()}
        cs = c.assignment
        c.stop()
        wait_for("a and b to split 8 partitions 4/4 again",
                 lambda: disjoint_cover([a.assignment, b.assignment], 8, sizes=[4, 4]), timeout_s=20)
        for m in (a, b):
            assert m.assignment >= before[m.name], f"{m.name} lost partitions when c left"
            added = [p for k, ps in m.events_since(marks[m.name]) if k == "assign" for p in ps]
            assert sorted(added) == sorted(m.assignment - before[m.name]) and set(added) <= cs
            assert not [ps for k, ps in m.events_since(marks[m.name]) if k == "revoke" and ps], (
                f"{m.name} had partitions revoked when c left")
        time.sleep(1)
        delivered = producer.stop()
        assert_all_consumed_once_committed(ledger, delivered, 8, broker.bootstrap, group, topic)
    finally:
        producer.stop_flag.set()
        for m in members:
            m.stop_flag.set()
        for m in members:
            m.join(30)
    for m in members:
        assert not [e for e in m.errors if "died" in e], m.errors


# ---------------------------------------------------------------------------------------
# 7. The admin view: kafka-python and confluent-kafka admin clients, OffsetDelete
# ---------------------------------------------------------------------------------------


class OffsetDeleteResponse_v0(Response):
    API_KEY = 47
    API_VERSION = 0
    SCHEMA = Schema(
        ("error_code", Int16),
        ("throttle_time_ms", Int32),
        ("topics", Array(
            ("name", String("utf-8")),
            ("partitions", Array(
                ("partition_index", Int32),
                ("error_code", Int16))))),
    )


class OffsetDeleteRequest_v0(Request):
    """kafka-python 2.0.6 has no OffsetDelete (KIP-496); this is its v0 schema."""
    API_KEY = 47
    API_VERSION = 0
    RESPONSE_TYPE = OffsetDeleteResponse_v0
    SCHEMA = Schema(
        ("group_id", String("utf-8")),
        ("topics", Array(
            ("name", String("utf-8")),
            ("partitions", Array(Int32)))),  # partition indexes
    )


def offset_delete(admin, group, topic_partitions):
    """Sends OffsetDelete to the group's coordinator through kafka-python's admin client;
    returns (top-level error code, {(topic, partition): error code})."""
    coordinator = admin._find_coordinator_ids([group])[group]
    by_topic = {}
    for t, p in topic_partitions:
        by_topic.setdefault(t, []).append(p)
    future = admin._send_request_to_node(coordinator, OffsetDeleteRequest_v0(group, list(by_topic.items())))
    admin._wait_for_futures([future])
    response = future.value
    return response.error_code, {(t, p): e for t, ps in response.topics for p, e in ps}


@pytest.mark.timeout(90)
def test_admin_clients_list_describe_fetch_offsets_and_delete_groups(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("adm"), partitions=4)
    other_topic = create_topic(broker.bootstrap, unique_topic("adm-other"), partitions=1)
    group = unique_topic("g")
    ledger = Ledger()
    produce(broker.bootstrap, topic, 10, 4)
    # A commit outside group management (generation -1) while the group is empty: an
    # offset on a topic the members will not subscribe to.
    simple = CfConsumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        simple.commit(offsets=[TopicPartition(other_topic, 0, 7)], asynchronous=False)
    finally:
        simple.close()
    a = CfMember(broker.bootstrap, group, topic, "admin-a", ledger)
    b = CfMember(broker.bootstrap, group, topic, "admin-b", ledger)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    cf_admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    try:
        a.start()
        b.start()
        wait_for("two members to split 4 partitions",
                 lambda: disjoint_cover([a.assignment, b.assignment], 4, sizes=[2, 2]))
        wait_for("everything committed", lambda: ledger.committed_now() == {p: 10 for p in range(4)})

        assert (group, "consumer") in admin.list_consumer_groups()
        [info] = admin.describe_consumer_groups([group])
        assert info.group == group and info.error_code == 0
        assert (info.state, info.protocol_type, info.protocol) == ("Stable", "consumer", "range")
        assert sorted(m.client_id for m in info.members) == ["admin-a", "admin-b"]
        by_client = {}
        for m in info.members:
            assert m.member_id.startswith(m.client_id), m.member_id  # Kafka's "<client id>-<uuid>"
            assert m.client_host.lstrip("/") == "127.0.0.1", m.client_host
            assert m.member_metadata.subscription == [topic]
            [(t, ps)] = m.member_assignment.assignment
            assert t == topic
            by_client[m.client_id] = set(ps)
        assert by_client == {"admin-a": a.assignment, "admin-b": b.assignment}

        offsets = admin.list_consumer_group_offsets(group)
        assert {(tp.topic, tp.partition): om.offset for tp, om in offsets.items()} == {
            **{(topic, p): 10 for p in range(4)}, (other_topic, 0): 7}
        only = admin.list_consumer_group_offsets(group, partitions=[KpTopicPartition(topic, 1)])
        assert {tp.partition: om.offset for tp, om in only.items()} == {1: 10}

        # confluent-kafka's admin: ListGroups with a state filter, DescribeGroups.
        stable = cf_admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(15)
        assert group in [g.group_id for g in stable.valid]
        empty = cf_admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(15)
        assert group not in [g.group_id for g in empty.valid]
        desc = cf_admin.describe_consumer_groups([group])[group].result(15)
        assert desc.state == ConsumerGroupState.STABLE and desc.partition_assignor == "range"
        assert not desc.is_simple_consumer_group
        assert {m.client_id: {tp.partition for tp in m.assignment.topic_partitions} for m in desc.members} == by_client

        # An active group cannot be deleted; of its offsets, only those of topics it does not
        # consume can.
        [(g, error)] = admin.delete_consumer_groups([group])
        assert g == group and error.__name__ == "NonEmptyGroupError", error  # GROUP_NOT_EMPTY (68)
        top, per_partition = offset_delete(admin, group, [(topic, 0), (other_topic, 0)])
        assert top == 0
        assert per_partition == {(topic, 0): 86, (other_topic, 0): 0}  # GROUP_SUBSCRIBED_TO_TOPIC
        offsets = admin.list_consumer_group_offsets(group)
        assert {(tp.topic, tp.partition) for tp in offsets} == {(topic, p) for p in range(4)}

        a.stop()
        b.stop()
        wait_for("the group to be Empty", lambda: admin.describe_consumer_groups([group])[0].state == "Empty")
        [info] = admin.describe_consumer_groups([group])
        assert info.members == []
        empty = cf_admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(15)
        assert group in [g.group_id for g in empty.valid]
        # Offsets stay with an empty group (until the retention time), and can be deleted.
        assert {tp.partition: om.offset for tp, om in admin.list_consumer_group_offsets(group).items()} == {
            p: 10 for p in range(4)}
        top, per_partition = offset_delete(admin, group, [(topic, 3)])
        assert (top, per_partition) == (0, {(topic, 3): 0})
        assert {tp.partition for tp in admin.list_consumer_group_offsets(group)} == {0, 1, 2}

        [(g, error)] = admin.delete_consumer_groups([group])
        assert error.__name__ == "NoError", error
        assert group not in [g for g, _ in admin.list_consumer_groups()]
        assert admin.list_consumer_group_offsets(group) == {}
        [(g, error)] = admin.delete_consumer_groups([group])
        assert error.__name__ == "GroupIdNotFoundError", error  # GROUP_ID_NOT_FOUND (69)
        [info] = admin.describe_consumer_groups([group])
        assert info.state == "Dead" and info.members == []
    finally:
        a.stop_flag.set()
        b.stop_flag.set()
        a.join(30)
        b.join(30)
        admin.close()


# ---------------------------------------------------------------------------------------
# Lag: committed offset against the high watermark
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_consumer_lag_is_the_high_watermark_minus_the_committed_offset(broker_factory):
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("lag"), partitions=3)
    group = unique_topic("g")
    produce(broker.bootstrap, topic, 30, 3)
    c = CfConsumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                    "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 300})
    c.subscribe([topic])
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        # No commit yet: committed() reports no offset (OFFSET_INVALID, -1001).
        assert [tp.offset for tp in c.committed(tps, timeout=10)] == [-1001] * 3
        got = {p: 0 for p in range(3)}
        want = {0: 10, 1: 20, 2: 30}
        deadline = time.monotonic() + 30
        while got != want:
            assert time.monotonic() < deadline, f"read only {got}"
            m = c.poll(0.1)
            if m is None or m.error() is not None:
                continue
            p = m.partition()
            if got[p] < want[p]:
                assert m.offset() == got[p]
                got[p] += 1
                c.commit(message=m, asynchronous=False)
            else:
                c.pause([TopicPartition(topic, p)])

        def lag():
            committed = {tp.partition: tp.offset for tp in c.committed(tps, timeout=10)}
            high = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3)}
            return committed, high, {p: high[p] - committed[p] for p in range(3)}

        committed, high, lags = lag()
        assert committed == want and high == {p: 30 for p in range(3)}
        assert lags == {0: 20, 1: 10, 2: 0}
        produce(broker.bootstrap, topic, 5, 3, start=30)
        committed, high, lags = lag()
        assert high == {p: 35 for p in range(3)} and lags == {0: 25, 1: 15, 2: 5}
        # The admin view agrees (OffsetFetch through AdminClient).
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        [res] = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)]).values()
        assert {tp.partition: tp.offset for tp in res.result(15).topic_partitions} == want
        # Consume and commit the rest: lag drops to zero.
        c.resume([TopicPartition(topic, p) for p in range(3)])
        deadline = time.monotonic() + 30
        while lag()[2] != {0: 0, 1: 0, 2: 0}:
            assert time.monotonic() < deadline, f"lag stayed at {lag()[2]}"
            for m in c.consume(num_messages=100, timeout=0.2):
                if m.error() is None:
                    c.commit(message=m, asynchronous=False)
    finally:
        c.close()
