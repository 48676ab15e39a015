#!/usr/bin/env python3
"""Restart time of a broker holding many partitions with data, measured end to end.

Starts the real `weir` binary on a fresh data dir, creates one topic of --partitions
partitions, produces --bytes-per-partition into every one of them with confluent-kafka
(acks=all), then restarts the broker --runs times each way and reports the median time from
starting the process to the broker answering Metadata for the topic with every partition
led (that is: every log opened and recovered):

  clean    after SIGTERM: the clean-shutdown marker lets every log trust its files;
  unclean  after SIGKILL: every partition re-validates its active segment from its recovery
           checkpoint on (CRC32C of every batch past it) and rebuilds the index entries past it;
  cold     after SIGKILL and dropping the page cache (needs root; skipped otherwise), so
           recovery reads the segments from disk.

Before each restart the acknowledged count is re-checked by consuming the end offsets, so a
fast but lossy restart cannot pass.

    cargo build --release --bin weir
    .venv/bin/python scripts/measure-restart.py --partitions 1000 --bytes-per-partition 1048576
"""

import argparse
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = pathlib.Path(__file__).resolve().parent.parent
BINARY = ROOT / "target" / "release" / "weir"
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import wire  # noqa: E402  (the tests' raw-protocol helpers)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, data_dir, smp):
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.smp = smp
        self.process = None
        self.log = open(data_dir.parent / "broker.log", "ab")

    def start(self):
        self.process = subprocess.Popen(
            [str(BINARY), "--listen", self.bootstrap, "--data-dir", str(self.data_dir),
             "--smp", str(self.smp), "--metrics-listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=self.log)

    def stop(self, sig):
        self.process.send_signal(sig)
        code = self.process.wait(timeout=120)
        if sig == signal.SIGTERM and code != 0:
            sys.exit(f"clean shutdown exited {code}; see {self.log.name}")


def wait_until_led(bootstrap, topic, partitions, timeout_s=600):
    """Seconds until Metadata shows every partition of `topic` with a leader. Asked with raw
    Metadata requests every 10 ms: a client library's reconnect back-off would round the
    answer up to its own schedule."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            topics = wire.metadata(bootstrap, [topic], allow_auto_topic_creation=False, timeout_s=2)["topics"]
            error_code, parts = topics.get(topic, (-1, []))
            if error_code == 0 and len(parts) == partitions and all(p[1] == 0 and p[2] >= 0 for p in parts):
                return time.monotonic() - started
        except (OSError, ConnectionError, AssertionError):
            pass
        time.sleep(0.01)
    sys.exit(f"{topic} not led after {timeout_s} s")


def produce(bootstrap, topic, partitions, bytes_per_partition, message_bytes):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "batch.size": 1 << 20, "queue.buffering.max.kbytes": 1 << 20})
    per_partition = max(1, bytes_per_partition // message_bytes)
    value = b"x" * message_bytes
    acked = [0]
    failed = []

    def on_delivery(err, _msg):
        if err is None:
            acked[0] += 1
        else:
            failed.append(err)

    for _ in range(per_partition):
        for p in range(partitions):
            while True:
                try:
                    producer.produce(topic, value, partition=p, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    if failed or acked[0] != per_partition * partitions:
        sys.exit(f"produce: {acked[0]} acked of {per_partition * partitions}, errors {failed[:3]}")
    return per_partition


def end_offsets(bootstrap, topic, partitions):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "measure-restart"})
    try:
        total = 0
        for p in range(partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high
        return total
    finally:
        consumer.close()


def drop_page_cache():
    try:
        subprocess.run(["sync"], check=True)
        pathlib.Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--bytes-per-partition", type=int, default=1 << 20)
    parser.add_argument("--message-bytes", type=int, default=10_000)
    parser.add_argument("--smp", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    args = parser.parse_args()
    if not BINARY.exists():
        sys.exit(f"{BINARY} is missing: cargo build --release --bin weir")

    work = pathlib.Path(tempfile.mkdtemp(prefix="weir-restart-"))
    broker = Broker(work / "data", args.smp)
    topic = "restart-measure"
    try:
        broker.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                wire.api_versions(broker.bootstrap, timeout_s=2)
                break
            except (OSError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(60)
        del admin
        wait_until_led(broker.bootstrap, topic, args.partitions)
        t0 = time.monotonic()
        per_partition = produce(broker.bootstrap, topic, args.partitions, args.bytes_per_partition,
                                args.message_bytes)
        produced_s = time.monotonic() - t0
        expected = per_partition * args.partitions
        total_bytes = expected * args.message_bytes
        print(f"{args.partitions} partitions, {expected:,} messages of {args.message_bytes} B "
              f"({total_bytes / 1e6:,.0f} MB) produced with acks=all in {produced_s:.1f} s; "
              f"--smp {args.smp}")

        results = {}
        can_drop = None
        for kind in ("clean", "unclean", "cold"):
            times = []
            for _ in range(args.runs):
                broker.stop(signal.SIGTERM if kind == "clean" else signal.SIGKILL)
                if kind == "cold":
                    can_drop = drop_page_cache()
                    if not can_drop:
                        break
                started = time.monotonic()
                broker.start()
                wait_until_led(broker.bootstrap, topic, args.partitions)
                times.append(time.monotonic() - started)
                found = end_offsets(broker.bootstrap, topic, args.partitions)
                if found != expected:
                    sys.exit(f"after a {kind} restart the log ends hold {found} messages, expected {expected}")
            if times:
                results[kind] = times
        for kind, times in results.items():
            print(f"restart {kind:8} median {statistics.median(times):6.2f} s  "
                  f"(runs: {', '.join(f'{t:.2f}' for t in times)})")
        if can_drop is False:
            print("restart cold     skipped: dropping the page cache needs root")
        print(f"every restart served all {expected:,} acknowledged messages")
    finally:
        if broker.process and broker.process.poll() is None:
            broker.stop(signal.SIGTERM)
        if args.keep:
            print(f"data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
