"""Starts the real `weir` binary for each test and hands tests a handle to it.

The binary is target/release/weir, built by scripts/test.sh before pytest runs. Every broker
gets a free port on 127.0.0.1, a fresh data dir and two shards, so partitions and
connections really cross shards.
"""

import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest

import wire

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = ROOT / "target" / "release" / "weir"
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, data_dir, extra_args=(), standard_flags=True):
        """`standard_flags` False passes only `extra_args` (e.g. a --config file that sets
        the listen address and data dir itself); the port is still chosen here."""
        self.standard_flags = standard_flags
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.data_dir = pathlib.Path(data_dir)
        self.log_path = self.data_dir.parent / f"broker-{self.port}.log"
        self.extra_args = list(extra_args)
        self.process = None

    def argv(self):
        standard = []
        if self.standard_flags:
            # A flag given in extra_args replaces the standard one (the CLI takes each once).
            # Metrics on an ephemeral port: brokers of parallel tests must not collide on 9644.
            standard_flags = (("--listen", self.bootstrap), ("--data-dir", str(self.data_dir)), ("--smp", "2"),
                              ("--metrics-listen", "127.0.0.1:0"))
            for flag, value in standard_flags:
                if flag not in self.extra_args:
                    standard += [flag, value]
        return [str(BINARY), *standard, *self.extra_args]

    def start(self):
        assert BINARY.exists(), f"{BINARY} is missing: run `cargo build --release` (scripts/test.sh does)"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.argv(),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()  # the child holds its own descriptor
        # Ready means answering Kafka requests, not merely accepting connections.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise AssertionError(f"broker exited with {code}:\n{self.log()}")
            try:
                error_code, apis = wire.api_versions(self.bootstrap, timeout_s=2)
                assert error_code == 0 and wire.API_PRODUCE in apis, (error_code, apis)
                return
            except (OSError, ConnectionError):
                if time.monotonic() > deadline:
                    self.process.kill()
                    self.process.wait()
                    self.process = None
                    raise AssertionError(f"broker did not answer ApiVersions in {START_TIMEOUT_S} s:\n{self.log()}")
                time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM):
        """Stops the broker with `sig` and returns its exit code."""
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"broker ignored {sig!r}:\n{self.log()}")
        self.process = None
        return code

    def restart(self):
        code = self.stop()
        assert code == 0, f"clean shutdown exited {code}:\n{self.log()}"
        self.start()

    def kill_and_restart(self):
        self.stop(signal.SIGKILL)
        self.start()

    def kill(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "data")
    b.start()
    yield b
    b.kill()


@pytest.fixture
def broker_factory(tmp_path):
    started = []

    def make(*extra_args, data_dir=None, start=True, standard_flags=True):
        b = Broker(data_dir or tmp_path / f"data-{len(started)}", extra_args, standard_flags)
        started.append(b)
        if start:
            b.start()
        return b

    make.started = started
    yield make
    for b in started:
        b.kill()


@pytest.fixture(scope="session", autouse=True)
def clients_installed():
    """Every client the suite drives must be there: a missing one fails, never skips."""
    missing = []
    for module in ("kafka", "confluent_kafka", "snappy", "lz4", "zstandard"):
        try:
            __import__(module)
        except ImportError as e:
            missing.append(f"python module {module} ({e})")
    for tool in ("kcat", "node"):
        if shutil.which(tool) is None:
            missing.append(f"{tool} on PATH")
    if not (ROOT / "tests" / "node" / "node_modules" / "kafkajs").is_dir():
        missing.append("tests/node/node_modules/kafkajs")
    kafka_jars = subprocess.run(["bash", str(ROOT / "scripts" / "kafka-peer.sh"), "libs"], capture_output=True, cwd=ROOT)
    if kafka_jars.returncode != 0:
        missing.append("stock Kafka's jars (scripts/kafka-peer.sh install)")
    assert not missing, "run scripts/install-test-deps.sh; missing: " + ", ".join(missing)
    assert BINARY.exists(), f"{BINARY} is missing: run `cargo build --release` (scripts/test.sh does)"


def pytest_runtest_makereport(item, call):
    """On failure, show the broker's log: most failures are explained there."""
    if call.when == "call" and call.excinfo is not None:
        b = item.funcargs.get("broker")
        if b is not None:
            item.add_report_section("call", "broker log", b.log())
        factory = item.funcargs.get("broker_factory")
        for i, b in enumerate(getattr(factory, "started", [])):
            item.add_report_section("call", f"broker log {i}", b.log())
