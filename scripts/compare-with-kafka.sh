#!/usr/bin/env bash
# Starts Weir and stock Apache Kafka (4.x, KRaft, from Maven Central through
# scripts/kafka-peer.sh) on the same host, runs `weir-bench compare` against both
# (alternating rounds), and stops both. Each run reports the broker's CPU seconds per GB
# produced and its RSS (`--broker-pid`).
#
#   bash scripts/compare-with-kafka.sh --preset omb-16p-1kb-fixed --rate 50000 --duration-s 15 --rounds 3
#
# With `--levels 25,50,75` it runs the workload at max rate first, then at those shares of
# the lower max, and writes report.md (Markdown tables per load) beside the JSON results:
#
#   DURABLE=both bash scripts/compare-with-kafka.sh --preset omb-16p-1kb-max --levels 25,50,75 \
#       --warmup-s 3 --duration-s 15 --rounds 2 --out bench-results/sweep
#
# Environment:
#   KAFKA=0         Weir alone (no Kafka installed or started)
#   DURABLE=1       (default) Kafka fsyncs every append (flush.messages=1), as Weir
#                   acknowledges only what is on stable storage. DURABLE=0 leaves Kafka at its
#                   defaults (page cache only) for the "stock settings" comparison.
#                   DURABLE=both runs two Kafkas: `kafka` at its defaults and `kafka-fsync`
#                   with flush.messages=1.
#   KAFKA_HEAP      Kafka's heap (default 1g)
#   WEIR_PORT, KAFKA_PORT, KAFKA_CONTROLLER_PORT  (defaults 39092, 39093, 39094; the
#                   second Kafka of DURABLE=both takes the next two ports, 39095 and 39096)
#   WORK_DIR        data dirs and logs (default: a fresh temp dir, removed at the end)
# Every other argument goes to `weir-bench compare` (workload flags, --rounds, --out, ...).
set -euo pipefail

cd "$(dirname "$0")/.."
WEIR_PORT=${WEIR_PORT:-39092}
KAFKA_PORT=${KAFKA_PORT:-39093}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-39094}
DURABLE=${DURABLE:-1}
KAFKA=${KAFKA:-1}
KAFKA_HEAP=${KAFKA_HEAP:-1g}
KEEP_WORK_DIR=${WORK_DIR:+1}
WORK_DIR=${WORK_DIR:-$(mktemp -d -t weir-compare-XXXXXX)}
mkdir -p "$WORK_DIR"

WEIR_PID=""
KAFKA_DIRS=()
stop_all() {
    # Stop only what this script started, by pid.
    if [[ -n "$WEIR_PID" ]] && kill -0 "$WEIR_PID" 2>/dev/null; then
        kill -TERM "$WEIR_PID" 2>/dev/null || true
        wait "$WEIR_PID" 2>/dev/null || true
    fi
    for dir in "${KAFKA_DIRS[@]}"; do
        scripts/kafka-peer.sh stop --data-dir "$dir" >/dev/null 2>&1 || true
    done
    if [[ -z "$KEEP_WORK_DIR" ]]; then rm -rf "$WORK_DIR"; fi
}
trap stop_all EXIT

wait_for_port() { # name port pid log
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        if ! kill -0 "$3" 2>/dev/null; then echo "$1 exited; log:" >&2; cat "$4" >&2; return 1; fi
        sleep 0.2
    done
    echo "$1 did not listen on port $2; log:" >&2; cat "$4" >&2; return 1
}

cargo build --release -p weir --bin weir && cargo build --release -p weir-bench
WEIR_BENCH=target/release/weir-bench

target/release/weir --listen "127.0.0.1:$WEIR_PORT" --data-dir "$WORK_DIR/weir-data" \
    --metrics-listen 127.0.0.1:0 >"$WORK_DIR/weir.log" 2>&1 &
WEIR_PID=$!
wait_for_port weir "$WEIR_PORT" "$WEIR_PID" "$WORK_DIR/weir.log"
echo "weir: pid $WEIR_PID on 127.0.0.1:$WEIR_PORT"

if [[ "$KAFKA" == 0 ]]; then
    echo "KAFKA=0: running the workload against Weir only" >&2
    # compare's flags (--rounds) mean nothing to run; drop them.
    args=()
    skip=0
    for a in "$@"; do
        if [[ $skip == 1 ]]; then skip=0; continue; fi
        case "$a" in --rounds) skip=1 ;; --rounds=*) ;; *) args+=("$a") ;; esac
    done
    "$WEIR_BENCH" run --bootstrap "127.0.0.1:$WEIR_PORT" --host-limits-dir "$WORK_DIR" "${args[@]}"
    exit $?
fi

scripts/kafka-peer.sh install
targets=(--target "weir=127.0.0.1:$WEIR_PORT")
pids=(--broker-pid "weir=$WEIR_PID")
start_kafka() { # name port controller-port extra kafka-peer flags...
    local name=$1 port=$2 controller_port=$3
    shift 3
    local dir="$WORK_DIR/$name-data"
    KAFKA_DIRS+=("$dir")
    scripts/kafka-peer.sh start --data-dir "$dir" --port "$port" \
        --controller-port "$controller_port" --heap "$KAFKA_HEAP" --log "$WORK_DIR/$name.log" "$@"
    targets+=(--target "$name=127.0.0.1:$port")
    pids+=(--broker-pid "$name=$(cat "$dir/kafka.pid")")
    echo "$name: 127.0.0.1:$port $*"
}
case "$DURABLE" in
    # Weir acknowledges a produce only once it is fdatasync'ed; make Kafka do the same.
    1) start_kafka kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" --flush-messages 1 ;;
    0) start_kafka kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" ;;
    both)
        start_kafka kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"
        start_kafka kafka-fsync "$((KAFKA_CONTROLLER_PORT + 1))" "$((KAFKA_CONTROLLER_PORT + 2))" \
            --flush-messages 1
        ;;
    *) echo "DURABLE must be 0, 1 or both, not $DURABLE" >&2; exit 2 ;;
esac

"$WEIR_BENCH" compare "${targets[@]}" "${pids[@]}" --host-limits-dir "$WORK_DIR" "$@"
