"""Kafka Connect (the stock 4.x runtime from the kafka-peer jars) moving a file through the real
broker with Connect's own FileStream connectors: a source reads numbered lines into a
1-partition topic, a sink writes the topic back out, and the copy must equal the input. Each
mode is then stopped, the input grows, and a restarted worker must append only the new lines:
standalone keeps source offsets in a file and sink offsets in the sink's consumer group;
distributed keeps connector configs, source offsets and statuses in compacted topics it
creates on the broker itself, and runs its workers as a classic group of protocol type
"connect"."""

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from conftest import ROOT, free_port
from helpers import GROUP_FLAGS, consume_to_end, create_topic, unique_topic

LINES = 5_000
MORE_LINES = 1_000
START_TIMEOUT_S = 60
COPY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60

SOURCE_CLASS = "org.apache.kafka.connect.file.FileStreamSourceConnector"
SINK_CLASS = "org.apache.kafka.connect.file.FileStreamSinkConnector"

# connect-file 4.3.0 (the newest the Maven mirror serves, scripts/kafka-peer/pom.xml) reports its
# version through org.apache.kafka.common.utils.AppInfoParser, which kafka-clients 4.4 moved to
# ...utils.internals; without the old name the connectors fail to load with NoClassDefFoundError.
# This one-method class restores it, ahead of the jars on the classpath.
APP_INFO_SHIM = """\
package org.apache.kafka.common.utils;

public final class AppInfoParser {
    public static String getVersion() {
        return org.apache.kafka.common.utils.internals.AppInfoParser.getVersion();
    }
}
"""

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""


def properties(values):
    return "".join(f"{k}={v}\n" for k, v in values.items())


@pytest.fixture(scope="module")
def connect_classpath(tmp_path_factory):
    """The kafka-peer jars with the AppInfoParser shim compiled in front of them."""
    libs = subprocess.run(["bash", str(ROOT / "scripts" / "kafka-peer.sh"), "libs"], capture_output=True,
                          text=True, check=True, cwd=ROOT).stdout.strip()
    shim = tmp_path_factory.mktemp("connect-shim")
    source = shim / "src" / "org" / "apache" / "kafka" / "common" / "utils" / "AppInfoParser.java"
    source.parent.mkdir(parents=True)
    source.write_text(APP_INFO_SHIM)
    subprocess.run(["javac", "-cp", f"{libs}/*", "-d", str(shim / "classes"), str(source)], check=True, timeout=120)
    return f"{shim / 'classes'}:{libs}/*"


class Worker:
    """One Connect worker JVM (ConnectStandalone or ConnectDistributed), logging to a file."""

    def __init__(self, classpath, workdir, name, main, worker_config, *connector_configs):
        self.classpath = classpath
        self.main = main
        self.rest_port = free_port()
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.log_path = workdir / f"{name}.log"
        self.stderr_path = workdir / f"{name}.stderr"
        self.log4j2 = workdir / f"{name}-log4j2.properties"
        self.log4j2.write_text(LOG4J2.format(path=self.log_path))
        self.config_files = [workdir / f"{name}-worker.properties"]
        self.config_files[0].write_text(properties({
            **worker_config,
            "listeners": self.url,
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.storage.StringConverter",
            "offset.flush.interval.ms": "1000",
            # Every plugin used here ships a ServiceLoader manifest: loading by manifest skips the
            # reflective scan of ~150 jars (seconds of start-up), and is what Connect advises.
            "plugin.discovery": "service_load",
        }))
        for i, config in enumerate(connector_configs):
            path = workdir / f"{name}-connector-{i}.properties"
            path.write_text(properties(config))
            self.config_files.append(path)
        self.process = None

    def start(self):
        # The JVM's own complaints (a bad classpath, an uncaught error before log4j) go to stderr.
        with open(self.stderr_path, "ab") as stderr:
            self.process = subprocess.Popen(
                ["java", "-Xmx512m", "-cp", self.classpath, f"-Dlog4j2.configurationFile={self.log4j2}",
                 f"org.apache.kafka.connect.cli.{self.main}", *map(str, self.config_files)],
                stdout=subprocess.DEVNULL, stderr=stderr)
        wait_until(lambda: self.rest("GET", "/") is not None, START_TIMEOUT_S, "the REST API to answer", self)

    def stop(self):
        """SIGTERM: Connect's shutdown hook stops the tasks, which flush their offsets."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.main} ignored SIGTERM for {STOP_TIMEOUT_S} s:\n{self.log()}")
        self.process = None

    def kill(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def rest(self, method, path, body=None):
        """The decoded JSON answer, or None while the worker cannot answer (starting, or
        404 for a connector it has not loaded yet)."""
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.main} exited with {self.process.returncode}:\n{self.log()}")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            # 409: the distributed herder is still rebalancing and cannot take the request yet.
            if e.code in (404, 409):
                return None
            raise AssertionError(f"{method} {path}: HTTP {e.code} {e.read()[:2000]!r}\n{self.log()}")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def log(self, lines=150):
        """The tail of the worker's log, and its stderr when there is any."""
        parts = []
        for path in (self.log_path, self.stderr_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text:
                parts.append(f"[{path.name}]\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) or "(no log)"

    def errors(self):
        return [line for line in self.log_path.read_text(errors="replace").splitlines() if " ERROR " in line]


@pytest.fixture
def workers(connect_classpath, tmp_path):
    """Makes Worker objects in tmp_path; kills whatever is left running at the end, and prints
    each worker's log tail, which pytest shows when the test failed."""
    made = []

    def make(name, main, worker_config, *connector_configs):
        worker = Worker(connect_classpath, tmp_path, name, main, worker_config, *connector_configs)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.kill()
        print(f"--- {worker.log_path.name} (tail) ---\n{worker.log()}")


def wait_until(predicate, timeout_s, what, *workers):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.log_path.name} ---\n{w.log()}" for w in workers)
            raise AssertionError(f"no {what} in {timeout_s} s\n{logs}")
        time.sleep(0.25)


def write_lines(path, first, count):
    with open(path, "a") as f:
        f.writelines(f"line {i:06d} of the connect round trip\n" for i in range(first, first + count))


def line_count(path):
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def wait_for_copy(source, sink, *workers):
    """Waits for the sink file to hold as many lines as the source, then checks it is an exact
    copy (a duplicate or a gap would show up as a longer or different file)."""
    expected = line_count(source)
    wait_until(lambda: line_count(sink) >= expected, COPY_TIMEOUT_S, f"{expected} lines in {sink.name}", *workers)
    # A little longer: a duplicate batch arriving late must get the chance to show.
    time.sleep(1.5)
    assert sink.read_text() == source.read_text(), f"{sink.name} is not a copy of {source.name}"


def assert_topic_holds_the_file_once(bootstrap, topic, source):
    """The topic holds each input line exactly once, in file order: a restarted source resumed
    at its committed position instead of re-reading the file."""
    values = [v.decode() for _, _, _, v in consume_to_end(bootstrap, topic, 1)]
    assert values == source.read_text().splitlines(), f"{topic} holds {len(values)} records"


def assert_no_errors(broker, *workers):
    broker_errors = [line for line in broker.log_path.read_text(errors="replace").splitlines()
                     if re.search(r"\bERROR\b", line)]
    assert not broker_errors, broker_errors
    for worker in workers:
        assert not worker.errors(), worker.errors()


def test_connect_standalone_round_trips_a_file_and_resumes_from_its_offsets(broker_factory, workers, tmp_path):
    """ConnectStandalone with a FileStream source and sink: 5,000 lines reach the output file in
    order; after a restart with 1,000 more lines in the input, only those are appended, the
    source resuming from its offsets file and the sink from its group's committed offsets."""
    broker = broker_factory(*GROUP_FLAGS)
    topic = create_topic(broker.bootstrap, unique_topic("connect-standalone"), partitions=1)
    source, sink, offsets_file = tmp_path / "input.txt", tmp_path / "output.txt", tmp_path / "source.offsets"
    write_lines(source, 0, LINES)
    worker = workers(
        "standalone", "ConnectStandalone",
        {"bootstrap.servers": broker.bootstrap, "offset.storage.file.filename": offsets_file},
        {"name": "file-source", "connector.class": SOURCE_CLASS, "tasks.max": 1, "file": source, "topic": topic},
        {"name": "file-sink", "connector.class": SINK_CLASS, "tasks.max": 1, "file": sink, "topics": topic},
    )
    worker.start()
    wait_for_copy(source, sink, worker)
    worker.stop()
    # The source's position is in the offsets file, keyed by the connector and file name.
    assert offsets_file.stat().st_size > 0 and str(source).encode() in offsets_file.read_bytes()

    write_lines(source, LINES, MORE_LINES)
    worker.start()
    wait_for_copy(source, sink, worker)
    worker.stop()
    assert_topic_holds_the_file_once(broker.bootstrap, topic, source)
    assert_no_errors(broker, worker)


def describe_internal_topics(bootstrap, names):
    """{topic: (partition count, cleanup.policy)} by Metadata and DescribeConfigs."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        partitions = {t["topic"]: len(t["partitions"]) for t in admin.describe_topics(names)}
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        policies = {}
        for response in described:
            for error_code, _, _, name, entries in response.resources:
                assert error_code == 0, response
                policies[name] = next(value for key, value, *_ in entries if key == "cleanup.policy")
    finally:
        admin.close()
    return {n: (partitions.get(n), policies.get(n)) for n in names}


def connector_running(worker, name):
    status = worker.rest("GET", f"/connectors/{name}/status")
    return (status is not None and status["connector"]["state"] == "RUNNING"
            and [t["state"] for t in status["tasks"]] == ["RUNNING"])


def test_connect_distributed_keeps_configs_and_offsets_in_compacted_topics_across_a_restart(
        broker_factory, workers, tmp_path):
    """ConnectDistributed creates its config, offset and status topics on the broker (compacted,
    the config topic with one partition), joins its group, and runs a FileStream source and sink
    created over REST until the output file equals the input. Restarted with 1,000 more input
    lines, the worker reloads both connectors from the config topic without being told again and
    appends only the new lines: source offsets come back from the offsets topic, the sink's from
    its group's committed offsets."""
    broker = broker_factory(*GROUP_FLAGS)
    prefix = unique_topic("connect")
    topic = create_topic(broker.bootstrap, f"{prefix}-lines", partitions=1)
    internal = {"config": f"{prefix}-configs", "offset": f"{prefix}-offsets", "status": f"{prefix}-status"}
    source, sink = tmp_path / "input.txt", tmp_path / "output.txt"
    write_lines(source, 0, LINES)
    worker = workers("distributed", "ConnectDistributed", {
        "bootstrap.servers": broker.bootstrap,
        "group.id": f"{prefix}-cluster",
        **{f"{kind}.storage.topic": name for kind, name in internal.items()},
        "config.storage.replication.factor": 1,
        # -1 asks for the broker's default replication factor (KIP-464): CreateTopics without one.
        "offset.storage.replication.factor": -1,
        "status.storage.replication.factor": -1,
        "offset.storage.partitions": 5,
        "status.storage.partitions": 2,
    })
    worker.start()
    described = describe_internal_topics(broker.bootstrap, list(internal.values()))
    assert described == {internal["config"]: (1, "compact"), internal["offset"]: (5, "compact"),
                         internal["status"]: (2, "compact")}, described

    connectors = {
        "file-source": {"connector.class": SOURCE_CLASS, "tasks.max": "1", "file": str(source), "topic": topic},
        "file-sink": {"connector.class": SINK_CLASS, "tasks.max": "1", "file": str(sink), "topics": topic},
    }
    for name, config in connectors.items():
        wait_until(lambda: worker.rest("POST", "/connectors", {"name": name, "config": config}) is not None,
                   START_TIMEOUT_S, f"acceptance of connector {name}", worker)
    for name in connectors:
        wait_until(lambda: connector_running(worker, name), START_TIMEOUT_S, f"{name} RUNNING", worker)
    wait_for_copy(source, sink, worker)
    worker.stop()

    write_lines(source, LINES, MORE_LINES)
    worker.start()
    # Nothing is posted again: the connectors come back from the config topic.
    for name in connectors:
        wait_until(lambda: connector_running(worker, name), START_TIMEOUT_S, f"{name} RUNNING again", worker)
    assert sorted(worker.rest("GET", "/connectors")) == sorted(connectors)
    wait_for_copy(source, sink, worker)
    worker.stop()
    assert_topic_holds_the_file_once(broker.bootstrap, topic, source)
    assert_no_errors(broker, worker)


def assigned_workers(worker, names):
    """The worker id running each connector and task of `names`, or None until all run."""
    ids = []
    for name in names:
        status = worker.rest("GET", f"/connectors/{name}/status")
        if status is None or not connector_running(worker, name):
            return None
        ids += [status["connector"]["worker_id"]] + [t["worker_id"] for t in status["tasks"]]
    return ids


def test_connect_distributed_spreads_work_over_two_workers_and_fails_over_when_one_leaves(
        broker_factory, workers, tmp_path):
    """Two ConnectDistributed workers in one group: rebalances of the "connect" protocol (KIP-415,
    incremental cooperative) spread the two connectors and their tasks over both workers, and
    the file round-trips. When one worker stops and leaves the group, the other takes over its
    connector and task, resuming from the offsets the leaver committed: lines appended after the
    leave reach the output once."""
    broker = broker_factory(*GROUP_FLAGS)
    prefix = unique_topic("connect-pair")
    topic = create_topic(broker.bootstrap, f"{prefix}-lines", partitions=1)
    source, sink = tmp_path / "input.txt", tmp_path / "output.txt"
    write_lines(source, 0, LINES)
    config = {
        "bootstrap.servers": broker.bootstrap,
        "group.id": f"{prefix}-cluster",
        "config.storage.topic": f"{prefix}-configs",
        "offset.storage.topic": f"{prefix}-offsets",
        "status.storage.topic": f"{prefix}-status",
        **{f"{kind}.storage.replication.factor": 1 for kind in ("config", "offset", "status")},
        # A departed worker's work is held for it this long before it is reassigned (default
        # five minutes).
        "scheduled.rebalance.max.delay.ms": 3000,
    }
    first, second = workers("first", "ConnectDistributed", config), workers("second", "ConnectDistributed", config)
    first.start()
    second.start()
    connectors = {
        "file-source": {"connector.class": SOURCE_CLASS, "tasks.max": "1", "file": str(source), "topic": topic},
        "file-sink": {"connector.class": SINK_CLASS, "tasks.max": "1", "file": str(sink), "topics": topic},
    }
    for name, connector in connectors.items():
        wait_until(lambda: first.rest("POST", "/connectors", {"name": name, "config": connector}) is not None,
                   START_TIMEOUT_S, f"acceptance of connector {name}", first, second)
    both = {f"127.0.0.1:{first.rest_port}", f"127.0.0.1:{second.rest_port}"}
    wait_until(lambda: set(assigned_workers(second, connectors) or ()) == both, START_TIMEOUT_S,
               "connectors and tasks on both workers", first, second)
    wait_for_copy(source, sink, first, second)

    first.stop()
    write_lines(source, LINES, MORE_LINES)
    survivor = {f"127.0.0.1:{second.rest_port}"}
    wait_until(lambda: set(assigned_workers(second, connectors) or ()) == survivor, START_TIMEOUT_S,
               "everything on the remaining worker", second)
    wait_for_copy(source, sink, second)
    second.stop()
    assert_topic_holds_the_file_once(broker.bootstrap, topic, source)
    assert_no_errors(broker, first, second)
