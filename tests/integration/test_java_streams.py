"""Kafka Streams (kafka-streams 4.x, at-least-once) against the real broker, driven by
tests/java/WordCount.java: a word count re-keyed through a repartition topic into a key-value
store and a windowed store, each with a changelog topic Streams creates itself. Its output is
exact, its state comes back from the changelogs when the local state is lost, and an instance
SIGKILLed mid-stream resumes from its committed offsets losing nothing.

What each test may assert follows from what Streams guarantees under at-least-once: after a
clean close every processed record is committed with the state it produced, so counts are
exact across any number of restarts; after a SIGKILL the records past the last commit are
processed again, so each may be counted once more, and no record is ever counted zero times."""

import collections
import concurrent.futures
import json
import random
import re
import shutil
import struct
import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import ROOT
from helpers import GROUP_FLAGS, create_topic, high_watermarks, unique_topic

PARTITIONS = 3
VOCABULARY = [f"w{i:02d}" for i in range(40)]
WINDOW_MS = 10_000  # WordCount.WINDOW
LINE_SPACING_MS = 20  # event time between lines: 500 lines a window
REPARTITION = "words-by-word-repartition"
COUNTS_CHANGELOG = "counts-changelog"
WINDOWED_CHANGELOG = "windowed-counts-changelog"


class WordCountApp:
    """One instance of tests/java/WordCount.java; its output goes to files under `workdir`."""

    def __init__(self, broker, app_id, state_dir, topics, workdir):
        self.broker, self.app_id, self.state_dir, self.topics, self.workdir = broker, app_id, state_dir, topics, workdir
        self.runs = 0
        self.process = None

    def start(self):
        libs = subprocess.run(["bash", str(ROOT / "scripts" / "kafka-peer.sh"), "libs"], capture_output=True,
                              text=True, check=True, cwd=ROOT).stdout.strip()
        self.runs += 1
        self.stdout = self.workdir / f"{self.app_id}-{self.runs}.out"
        self.stderr = self.workdir / f"{self.app_id}-{self.runs}.err"
        with open(self.stdout, "w") as out, open(self.stderr, "w") as err:
            self.process = subprocess.Popen(
                ["java", "-Xmx384m", "-cp", f"{libs}/*", str(ROOT / "tests" / "java" / "WordCount.java"),
                 self.broker.bootstrap, self.app_id, str(self.state_dir), *self.topics],
                stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=ROOT)

    def check_alive(self):
        assert self.process.poll() is None, f"WordCount exited {self.process.returncode}:\n{self.output()}"

    def stop(self):
        """Closes the application cleanly (stdin EOF); its JSON summary."""
        self.process.stdin.close()
        code = self.process.wait(timeout=60)
        assert code == 0, f"WordCount exited {code}:\n{self.output()}"
        return json.loads(self.stdout.read_text().strip().splitlines()[-1])

    def kill(self):
        self.process.kill()
        self.process.wait()

    def output(self):
        return self.stdout.read_text()[-4000:] + "\n" + self.stderr.read_text()[-8000:]


class LastValues:
    """Tails every partition of a topic from its start and keeps the last value of each key,
    as Streams' counts are read: the latest update of a key is its count."""

    def __init__(self, bootstrap, topic, decode_key=bytes.decode):
        self.decode_key = decode_key
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-test-assign",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.values = {}

    def poll(self):
        for m in self.consumer.consume(num_messages=10_000, timeout=0.2):
            assert not m.error(), m.error()
            self.values[self.decode_key(m.key())] = struct.unpack(">q", m.value())[0]
        return self.values

    def close(self):
        self.consumer.close()


def windowed_changelog_key(key):
    """A window store's changelog key: the record key, the window start (8 bytes), a sequence
    number (4 bytes); as "word@start", the output topic's form."""
    return f"{key[:-12].decode()}@{struct.unpack('>q', key[-12:-4])[0]}"


def make_lines(first, count, base_ms, seed=7):
    """Lines `first`..`first+count` as (key, text, timestamp): 1 to 8 words of VOCABULARY each,
    the same for the same arguments."""
    out = []
    for i in range(first, first + count):
        rng = random.Random(seed * 1_000_003 + i)
        out.append((f"line-{i}", " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(1, 8))),
                    base_ms + i * LINE_SPACING_MS))
    return out


def window_key(word, timestamp_ms):
    return f"{word}@{timestamp_ms - timestamp_ms % WINDOW_MS}"


def expected_counts(lines):
    """The word counts and windowed counts (keyed word@window_start) the lines make."""
    counts, windowed = collections.Counter(), collections.Counter()
    for _, text, timestamp_ms in lines:
        for word in text.split(" "):
            counts[word] += 1
            windowed[window_key(word, timestamp_ms)] += 1
    return dict(counts), dict(windowed)


def produce(bootstrap, topic, lines, rate_per_s=None):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    start = time.monotonic()
    for n, (key, text, timestamp_ms) in enumerate(lines):
        if rate_per_s is not None:
            time.sleep(max(0.0, start + n / rate_per_s - time.monotonic()))
        producer.produce(topic, key=key, value=text, timestamp=timestamp_ms)
        producer.poll(0)
    assert producer.flush(30) == 0, "input not all acknowledged"


def wait_until(condition, app, what, timeout_s=45):
    deadline = time.monotonic() + timeout_s
    while not condition():
        app.check_alive()
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{app.output()}"
        time.sleep(0.1)


def committed_offsets(bootstrap, group, topic):
    """The group's committed offset of each partition of `topic`, None where it has none."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=15)
        return [tp.offset if tp.offset >= 0 else None for tp in committed]
    finally:
        consumer.close()


def log_start_offsets(bootstrap, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-test-assign", "enable.auto.commit": False})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[0] for p in range(PARTITIONS)]
    finally:
        consumer.close()


def read_ranges(bootstrap, topic, ranges):
    """The records of `topic` at offsets [start, end) of each partition, ranges being
    {partition: (start, end)}; as (key, value, timestamp)."""
    wanted = {p: end - start for p, (start, end) in ranges.items() if end > start}
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "weir-test-assign",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in wanted])
    out, deadline = [], time.monotonic() + 30
    try:
        while any(wanted.values()):
            assert time.monotonic() < deadline, f"{topic}: {wanted} records not read"
            for m in consumer.consume(num_messages=10_000, timeout=0.5):
                assert not m.error(), m.error()
                if m.offset() < ranges[m.partition()][1]:
                    out.append((m.key(), m.value(), m.timestamp()[1]))
                    wanted[m.partition()] -= 1
    finally:
        consumer.close()
    return out


def assert_no_broker_errors(broker):
    errors = [line for line in broker.log_path.read_text(errors="replace").splitlines()
              if re.search(r"\bERROR\b", line)]
    assert not errors, errors


def word_count_app(broker_factory, tmp_path, name):
    """A broker, the application's input and output topics, and an instance not yet started."""
    broker = broker_factory(*GROUP_FLAGS)
    app_id = unique_topic(name)
    topics = [create_topic(broker.bootstrap, f"{app_id}-{suffix}", partitions=PARTITIONS)
              for suffix in ("lines", "counts", "windowed")]
    app = WordCountApp(broker, app_id, tmp_path / "state", topics, tmp_path)
    return broker, app


def test_streams_word_count_is_exact_and_restored_from_changelogs_after_state_is_lost(broker_factory, tmp_path):
    """Counts and windowed counts are exact after a first run; the application closed cleanly,
    its local state deleted and restarted rebuilds both stores from every record of their
    changelogs, then counts new lines on top: exact again, in the output and in the changelogs.
    Streams created its internal topics with the configs it asked for, and trimmed the
    repartition topic with DeleteRecords up to what it had committed."""
    broker, app = word_count_app(broker_factory, tmp_path, "streams-exact")
    app_id, (lines_topic, counts_topic, windowed_topic) = app.app_id, app.topics
    base_ms = (int(time.time() * 1000) - 600_000) // WINDOW_MS * WINDOW_MS
    first, second = make_lines(0, 2_000, base_ms), make_lines(2_000, 1_000, base_ms)
    counts = LastValues(broker.bootstrap, counts_topic)
    windowed = LastValues(broker.bootstrap, windowed_topic)
    try:
        produce(broker.bootstrap, lines_topic, first)
        app.start()
        want_counts, want_windowed = expected_counts(first)
        wait_until(lambda: counts.poll() == want_counts and windowed.poll() == want_windowed, app, "first counts")
        summary = app.stop()
        assert summary["restored"] == {}, summary  # a fresh state dir and empty changelogs
        internal = {name: topic for name, topic in summary["internal_topics"].items()
                    if name.endswith(("-changelog", "-repartition"))}
        # The configs Streams asks for: a window store's changelog is also deleted past the
        # windows' retention plus a day; a repartition topic is never deleted by time, only
        # trimmed by DeleteRecords; a key-value store's changelog keeps the broker's retention.ms.
        assert internal == {
            COUNTS_CHANGELOG: {"partitions": PARTITIONS, "cleanup.policy": "compact", "retention.ms": "604800000"},
            WINDOWED_CHANGELOG: {"partitions": PARTITIONS, "cleanup.policy": "compact,delete",
                                 "retention.ms": str(WINDOW_MS + 2 * 86_400_000)},
            REPARTITION: {"partitions": PARTITIONS, "cleanup.policy": "delete", "retention.ms": "-1"},
        }, summary
        changelog_records = {name: sum(high_watermarks(broker.bootstrap, f"{app_id}-{name}", PARTITIONS))
                             for name in (COUNTS_CHANGELOG, WINDOWED_CHANGELOG)}

        # Nothing local is left: both stores must come back from their changelogs alone.
        shutil.rmtree(app.state_dir)
        produce(broker.bootstrap, lines_topic, second)
        app.start()
        want_counts, want_windowed = expected_counts(first + second)
        wait_until(lambda: counts.poll() == want_counts and windowed.poll() == want_windowed, app, "total counts")
        summary = app.stop()
    finally:
        counts.close()
        windowed.close()
        if app.process.poll() is None:
            app.kill()
    # Every changelog record is replayed: none was compacted away, each lives in an active segment.
    assert summary["restored"] == {"counts": changelog_records[COUNTS_CHANGELOG],
                                   "windowed-counts": changelog_records[WINDOWED_CHANGELOG]}, summary
    assert_changelogs_hold(broker, app_id, want_counts, want_windowed)

    repartition_topic = f"{app_id}-{REPARTITION}"
    assert all_committed(broker.bootstrap, app_id, (lines_topic, repartition_topic))
    purged, ends = log_start_offsets(broker.bootstrap, repartition_topic), high_watermarks(
        broker.bootstrap, repartition_topic, PARTITIONS)
    assert all(0 < start <= end for start, end in zip(purged, ends)), (purged, ends)
    assert_no_broker_errors(broker)


def assert_changelogs_hold(broker, app_id, want_counts, want_windowed):
    counts = LastValues(broker.bootstrap, f"{app_id}-{COUNTS_CHANGELOG}")
    windowed = LastValues(broker.bootstrap, f"{app_id}-{WINDOWED_CHANGELOG}", windowed_changelog_key)
    try:
        deadline = time.monotonic() + 15
        while (counts.poll(), windowed.poll()) != (want_counts, want_windowed):
            if time.monotonic() > deadline:
                differ = {key: (value, counts.values.get(key)) for key, value in want_counts.items()
                          if counts.values.get(key) != value}
                differ.update({key: (value, windowed.values.get(key)) for key, value in want_windowed.items()
                               if windowed.values.get(key) != value})
                raise AssertionError(f"(count, changelog's) of {len(differ)} keys differ: {list(differ.items())[:10]}")
    finally:
        counts.close()
        windowed.close()


def test_streams_instance_sigkilled_mid_stream_resumes_counting_every_line(broker_factory, tmp_path):
    """An instance SIGKILLed while lines stream in, restarted on its state dir, resumes from the
    group's committed offsets: every word and window is counted at least as often as it occurs,
    and at most once more for each occurrence in a record the killed instance had not committed
    (input lines and repartition records past the committed offsets at the kill), which is
    exactly at-least-once. The output and the changelogs end on the same counts."""
    broker, app = word_count_app(broker_factory, tmp_path, "streams-kill")
    app_id, (lines_topic, counts_topic, windowed_topic) = app.app_id, app.topics
    repartition_topic = f"{app_id}-{REPARTITION}"
    base_ms = (int(time.time() * 1000) - 600_000) // WINDOW_MS * WINDOW_MS
    lines = make_lines(0, 6_000, base_ms)
    app.start()
    wait_until(lambda: "-> RUNNING" in app.stderr.read_text(), app, "the application to run")
    producer = concurrent.futures.ThreadPoolExecutor(1)
    producing = producer.submit(produce, broker.bootstrap, lines_topic, lines, rate_per_s=1_000)
    try:
        wait_until(lambda: sum(filter(None, committed_offsets(broker.bootstrap, app_id, lines_topic))) >= 1_500,
                   app, "a first commit of 1,500 lines")
        app.kill()
        assert not producing.done(), "the kill came after the last line: nothing to resume"
        # What the killed instance may have processed without committing: it is processed again.
        uncommitted_lines = uncommitted(broker.bootstrap, app_id, lines_topic, [0] * PARTITIONS)
        uncommitted_words = uncommitted(broker.bootstrap, app_id, repartition_topic,
                                        log_start_offsets(broker.bootstrap, repartition_topic))
        app.start()
        producing.result(timeout=60)
        wait_until(lambda: all_committed(broker.bootstrap, app_id, (lines_topic, repartition_topic)), app,
                   "every line and word processed and committed")
        app.stop()
    finally:
        if app.process.poll() is None:
            app.kill()
        producer.shutdown()

    slack, window_slack = collections.Counter(), collections.Counter()
    for _, text, timestamp_ms in uncommitted_lines:
        for word in text.decode().split(" "):
            slack[word] += 1
            window_slack[window_key(word, timestamp_ms)] += 1
    for word, _, timestamp_ms in uncommitted_words:
        slack[word.decode()] += 1
        window_slack[window_key(word.decode(), timestamp_ms)] += 1
    want_counts, want_windowed = expected_counts(lines)
    got_counts, got_windowed = last_values(broker, counts_topic), last_values(broker, windowed_topic)
    for want, got, allowed in ((want_counts, got_counts, slack), (want_windowed, got_windowed, window_slack)):
        assert got.keys() == want.keys()
        wrong = {key: (want[key], got[key], allowed[key]) for key in want
                 if not want[key] <= got[key] <= want[key] + allowed[key]}
        assert not wrong, f"(occurrences, count, uncommitted occurrences) of {len(wrong)} keys: {wrong}"
    assert_changelogs_hold(broker, app_id, got_counts, got_windowed)
    assert_no_broker_errors(broker)


def uncommitted(bootstrap, group, topic, log_start):
    """The records of `topic` past the group's committed offsets (from `log_start` where it
    committed none), up to the end."""
    committed = committed_offsets(bootstrap, group, topic)
    ends = high_watermarks(bootstrap, topic, PARTITIONS)
    return read_ranges(bootstrap, topic, {p: (committed[p] if committed[p] is not None else log_start[p], ends[p])
                                          for p in range(PARTITIONS)})


def all_committed(bootstrap, group, topics):
    return all(committed_offsets(bootstrap, group, topic) == high_watermarks(bootstrap, topic, PARTITIONS)
               for topic in topics)


def last_values(broker, topic):
    """The last value of each key in `topic`, read to its end."""
    reader = LastValues(broker.bootstrap, topic)
    try:
        ends, values = high_watermarks(broker.bootstrap, topic, PARTITIONS), None
        deadline = time.monotonic() + 15
        while [reader.consumer.position([TopicPartition(topic, p)])[0].offset for p in range(PARTITIONS)] != ends:
            assert time.monotonic() < deadline, f"{topic} not read to {ends}"
            values = reader.poll()
        return dict(values or reader.poll())
    finally:
        reader.close()
