#!/usr/bin/env python3
"""Rebalance time of a consumer group, measured with librdkafka (confluent-kafka).

Starts N consumers of one group at once on a topic with data in every partition and reports
the time from the first subscribe to every member having consumed a message of its own
assignment ("join to all members consuming"), then the time for the group to settle again
after one more member joins. Median of --runs runs, each with a fresh group.

    .venv/bin/python scripts/measure-rebalance.py --bootstrap 127.0.0.1:9092 --members 3
"""

import argparse
import statistics
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def consumer_loop(bootstrap, group, topic, ready, stop, strategy):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": strategy,
    })
    c.subscribe([topic])
    while not stop.is_set():
        m = c.poll(0.05)
        if m is not None and m.error() is None and not ready.is_set():
            ready.set()
    c.close()


def settle(bootstrap, group, topic, members, strategy):
    stop = threading.Event()
    readies = [threading.Event() for _ in range(members)]
    start = time.monotonic()
    threads = [threading.Thread(target=consumer_loop, args=(bootstrap, group, topic, r, stop, strategy))
               for r in readies]
    for t in threads:
        t.start()
    for r in readies:
        if not r.wait(60):
            raise SystemExit("a member never consumed: is the broker up?")
    first = time.monotonic() - start
    # One more member: the others give up and get back partitions.
    extra = threading.Event()
    start = time.monotonic()
    t = threading.Thread(target=consumer_loop, args=(bootstrap, group, topic, extra, stop, strategy))
    t.start()
    if not extra.wait(60):
        raise SystemExit("the joining member never consumed")
    second = time.monotonic() - start
    stop.set()
    for t in threads + [t]:
        t.join()
    return first, second


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--strategy", default="range", help="range, roundrobin or cooperative-sticky")
    a = p.parse_args()
    topic = f"rebalance-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    admin.create_topics([NewTopic(topic, a.partitions, 1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": a.bootstrap})
    for i in range(a.partitions * 1000):
        producer.produce(topic, value=b"x" * 100, partition=i % a.partitions)
    producer.flush(30)
    firsts, seconds = [], []
    for run in range(a.runs):
        first, second = settle(a.bootstrap, f"rebalance-{uuid.uuid4().hex[:8]}", topic, a.members, a.strategy)
        firsts.append(first)
        seconds.append(second)
        print(f"run {run + 1}: {a.members} members consuming after {first * 1000:.0f} ms; "
              f"member {a.members + 1} consuming after {second * 1000:.0f} ms")
    print(f"median: {a.members} members {statistics.median(firsts) * 1000:.0f} ms, "
          f"join of one more {statistics.median(seconds) * 1000:.0f} ms ({a.strategy})")


if __name__ == "__main__":
    main()
