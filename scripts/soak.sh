#!/usr/bin/env bash
# A long soak of one Weir broker at a fixed, moderate load (issue 16): the cases where
# brokers drift. Two weir-bench runs at once for SOAK_SECS (default one hour):
#   - steady: 16 partitions × 1 KiB at RATE msg/s (default 80,000: about half of stock
#     Kafka's maximum on a 2-core host), on a topic with 16 MiB segments and RETENTION_MS
#     (default 120 s), so retention deletes segments the whole time;
#   - keyed: many producers with small batches (8 producers, 100 partitions, 100 B, no
#     linger) at KEYED_RATE msg/s (default 3,000) over 1,000 keys, on a
#     `cleanup.policy=compact,delete` topic rolled every minute (`segment.ms`), so the
#     cleaner compacts it the whole time.
# Each run reports throughput and latency per 5-minute window (`--window-s`) and
# checks that every acknowledged message was consumed exactly once; the broker's RSS and
# CPU time go to `broker.tsv` once a minute.
#
#   bash scripts/soak.sh            # an hour
#   SOAK_SECS=600 bash scripts/soak.sh
#
# Output in OUT (default ./bench-results/soak-<timestamp>): the two runs' result.json and
# tables, broker.tsv and the broker's log. Exit non-zero if a run fails its delivery check
# or the broker exits.
set -euo pipefail

cd "$(dirname "$0")/.."
SOAK_SECS=${SOAK_SECS:-3600}
RATE=${RATE:-80000}
KEYED_RATE=${KEYED_RATE:-3000}
RETENTION_MS=${RETENTION_MS:-120000}
WINDOW_S=${WINDOW_S:-300}
PORT=${PORT:-39092}
OUT=${OUT:-bench-results/soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
DATA_DIR=$(mktemp -d -t weir-soak-XXXXXX)

BROKER_PID=""
SAMPLER_PID=""
cleanup() {
    [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null || true
    if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" && wait "$BROKER_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA_DIR"
}
trap cleanup EXIT

cargo build --release -p weir --bin weir --bin weirctl && cargo build --release -p weir-bench

target/release/weir --listen "127.0.0.1:$PORT" --data-dir "$DATA_DIR" \
    --metrics-listen 127.0.0.1:0 \
    --topic-default segment.bytes=16777216 \
    --topic-default "retention.ms=$RETENTION_MS" \
    --log-retention-check-interval-ms 5000 \
    --log-cleaner-backoff-ms 5000 \
    >"$OUT/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    kill -0 "$BROKER_PID" 2>/dev/null || { cat "$OUT/broker.log" >&2; exit 1; }
    sleep 0.1
done

# Compaction may remove a record only after the keyed run has consumed it (the run checks
# exactly-once delivery); its consumer keeps up within seconds.
target/release/weirctl topic create --bootstrap "127.0.0.1:$PORT" soak-keyed --partitions 100 \
    --config cleanup.policy=compact,delete --config min.compaction.lag.ms=30000 \
    --config segment.ms=60000 >/dev/null

# Once a minute: seconds since start, RSS, and the broker's user+system CPU seconds.
ticks=$(getconf CLK_TCK)
(
    echo -e "elapsed_s\trss_mib\tcpu_s"
    start=$(date +%s)
    while kill -0 "$BROKER_PID" 2>/dev/null; do
        rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$BROKER_PID/status")
        cpu=$(awk -v t="$ticks" '{printf "%.1f", ($14 + $15) / t}' "/proc/$BROKER_PID/stat")
        echo -e "$(($(date +%s) - start))\t$((rss_kib / 1024))\t$cpu"
        sleep 60
    done
) >"$OUT/broker.tsv" &
SAMPLER_PID=$!

bench() { # name, then weir-bench flags
    local name=$1
    shift
    target/release/weir-bench run --bootstrap "127.0.0.1:$PORT" --host-limits false --quiet \
        --warmup-s 10 --duration-s "$SOAK_SECS" --window-s "$WINDOW_S" \
        --out "$OUT/$name" "$@" >"$OUT/$name.txt" 2>&1
}
bench steady --topic soak-steady --partitions 16 --message-size 1k --rate "$RATE" &
steady=$!
bench keyed --topic soak-keyed --partitions 100 --producers 8 --message-size 100 --linger-ms 0 \
    --rate "$KEYED_RATE" --keys random:1000 &
keyed=$!
status=0
wait "$steady" || status=1
wait "$keyed" || status=1
kill -0 "$BROKER_PID" 2>/dev/null || { echo "the broker exited" >&2; status=1; }
if grep -q panicked "$OUT/broker.log"; then echo "the broker panicked" >&2; status=1; fi
cat "$OUT/steady.txt" "$OUT/keyed.txt" "$OUT/broker.tsv"
echo "soak: results in $OUT (exit $status)"
exit $status
