#!/usr/bin/env bash
# What produce-time validation costs per codec (issue 11): Kafka's own
# kafka-producer-perf-test sends the same records with each compression.type to one Weir
# broker, and the broker's `validate` stage (weir_produce_stage_seconds{stage="validate"}:
# CRC, header checks and the strict read of every record, decompressing if need be) is read
# from /metrics before and after each run. Prints, per codec: throughput, validate time per
# request payload, and validate CPU time per MB produced.
#
#   bash scripts/validation-cost.sh            # 300,000 records of 1 KiB per codec
#   RECORDS=100000 RECORD_SIZE=100 bash scripts/validation-cost.sh
set -euo pipefail

cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-300000}
RECORD_SIZE=${RECORD_SIZE:-1024}
PORT=${PORT:-39392}
METRICS_PORT=${METRICS_PORT:-39399}
DATA_DIR=$(mktemp -d -t weir-validation-XXXXXX)
BROKER_PID=""
cleanup() {
    [[ -n "$BROKER_PID" ]] && kill -TERM "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    rm -rf "$DATA_DIR"
}
trap cleanup EXIT

cargo build --release -p weir --bin weir --bin weirctl
scripts/kafka-peer.sh install >/dev/null
target/release/weir --listen "127.0.0.1:$PORT" --data-dir "$DATA_DIR/data" \
    --metrics-listen "127.0.0.1:$METRICS_PORT" >"$DATA_DIR/weir.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

# (sum seconds, count) of the validate stage.
validate_stage() {
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk '
        /^weir_produce_stage_seconds_sum\{stage="validate"\}/ { sum = $2 }
        /^weir_produce_stage_seconds_count\{stage="validate"\}/ { count = $2 }
        END { print sum + 0, count + 0 }'
}

printf '%-8s %12s %12s %16s %16s\n' codec "msg/s" "MB/s" "validate µs/req" "validate ms/MB"
for codec in none gzip snappy lz4 zstd; do
    topic="validation-$codec"
    target/release/weirctl topic create --bootstrap "127.0.0.1:$PORT" "$topic" --partitions 4 >/dev/null
    read -r sum0 count0 < <(validate_stage)
    out=$(scripts/kafka-peer.sh tool producer-perf-test --topic "$topic" \
        --num-records "$RECORDS" --record-size "$RECORD_SIZE" --throughput -1 \
        --producer-props "bootstrap.servers=127.0.0.1:$PORT" acks=all "compression.type=$codec" \
        linger.ms=5 batch.size=131072 2>&1 | tail -1)
    read -r sum1 count1 < <(validate_stage)
    awk -v codec="$codec" -v out="$out" -v s0="$sum0" -v s1="$sum1" -v c0="$count0" -v c1="$count1" \
        -v records="$RECORDS" -v size="$RECORD_SIZE" 'BEGIN {
            split(out, f, " ");
            # kafka-producer-perf-test: "N records sent, X records/sec (Y MB/sec), ..."
            msgs = f[4]; mb = f[6]; gsub(/\(/, "", mb);
            us_per_req = (c1 > c0) ? (s1 - s0) / (c1 - c0) * 1e6 : 0;
            ms_per_mb = (s1 - s0) * 1e3 / (records * size / 1e6);
            printf "%-8s %12.0f %12.1f %16.1f %16.3f\n", codec, msgs, mb, us_per_req, ms_per_mb
        }'
done
