"""Starts the real `weir` binary for each test and hands tests a handle to it.

The binary is target/release/weir, built by scripts/test.sh before pytest runs. Every broker
gets a free port on 127.0.0.1, a fresh data dir and two shards, so partitions and
connections really cross shards.
"""

import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = ROOT / "target" / "release" / "weir"
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, data_dir, extra_args=()):
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.data_dir = pathlib.Path(data_dir)
        self.log_path = self.data_dir.parent / f"broker-{self.port}.log"
        self.extra_args = list(extra_args)
        self.process = None

    def start(self):
        assert BINARY.exists(), f"{BINARY} is missing: run `cargo build --release` (scripts/test.sh does)"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(BINARY), "--listen", self.bootstrap, "--data-dir", str(self.data_dir), "--smp", "2", *self.extra_args],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"broker exited with {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"broker did not start:\n{self.log()}")
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
    if b.process is not None:
        b.process.kill()
        b.process.wait()


@pytest.fixture
def broker_factory(tmp_path):
    started = []

    def make(*extra_args):
        b = Broker(tmp_path / f"data-{len(started)}", extra_args)
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        if b.process is not None:
            b.process.kill()
            b.process.wait()


def pytest_runtest_makereport(item, call):
    """On failure, show the broker's log: most failures are explained there."""
    if call.when == "call" and call.excinfo is not None:
        b = item.funcargs.get("broker")
        if b is not None:
            item.add_report_section("call", "broker log", b.log())
