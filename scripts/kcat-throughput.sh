#!/usr/bin/env bash
# First-order throughput check with kcat (librdkafka): produce N messages of SIZE bytes to a
# fresh topic, then consume them all back, and print messages/s and MB/s for each direction.
# kcat itself tops out near 2 M msg/s (see shared/BASELINE.md), so this measures the client
# as much as the broker; bench/ is the real tool. Usage:
#   scripts/kcat-throughput.sh [BOOTSTRAP] [N] [SIZE] [PARTITIONS] [ACKS]
# e.g. scripts/kcat-throughput.sh 127.0.0.1:9092 1000000 100 8 -1
# TOPIC_CONFIGS="flush.ms=1000 flush.messages=100000" sets topic configs (e.g. relaxed durability).
set -euo pipefail

bootstrap=${1:-127.0.0.1:9092}
count=${2:-1000000}
size=${3:-100}
partitions=${4:-8}
acks=${5:--1}
topic="kcat-throughput-$(date +%s)-$$"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v kcat >/dev/null || { echo "kcat is not installed (scripts/install-test-deps.sh installs it)" >&2; exit 1; }

python3 - "$count" "$size" >"$work/messages" <<'PY'
import sys
count, size = int(sys.argv[1]), int(sys.argv[2])
line = ("x" * (size - 1)) + "\n"  # SIZE bytes per message including kcat's delimiter
sys.stdout.write(line * count)
PY

# Create the topic with the wanted partition count (auto-creation would make one partition).
python3 - "$bootstrap" "$topic" "$partitions" "${TOPIC_CONFIGS:-}" <<'PY' 2>/dev/null || kcat -b "$bootstrap" -L -t "$topic" >/dev/null
import sys
from kafka.admin import KafkaAdminClient, NewTopic
admin = KafkaAdminClient(bootstrap_servers=sys.argv[1])
configs = dict(kv.split("=", 1) for kv in sys.argv[4].split())
admin.create_topics([NewTopic(sys.argv[2], int(sys.argv[3]), 1, topic_configs=configs)])
PY

now() { date +%s.%N; }
rate() { python3 -c "import sys; n,b,s=map(float,sys.argv[1:]); print(f'{n/s:,.0f} msg/s, {b/s/1e6:,.1f} MB/s payload, {s:.2f} s')" "$@"; }

start=$(now)
kcat -b "$bootstrap" -P -t "$topic" -X acks="$acks" -X linger.ms=5 -X batch.num.messages=10000 \
    -X queue.buffering.max.messages=1000000 -l "$work/messages"
end=$(now)
echo "produce: $(rate "$count" "$((count * size))" "$(python3 -c "print($end-$start)")")  (acks=$acks, $partitions partitions)"

start=$(now)
got=$(kcat -b "$bootstrap" -C -t "$topic" -o beginning -e -q -X fetch.wait.max.ms=100 | wc -l)
end=$(now)
echo "consume: $(rate "$got" "$((got * size))" "$(python3 -c "print($end-$start)")")  ($got of $count messages)"
[ "$got" -eq "$count" ] || { echo "consumed $got messages, expected $count" >&2; exit 1; }
