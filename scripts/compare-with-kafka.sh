#!/usr/bin/env bash
# Starts Weir and, when KAFKA_HOME points at an Apache Kafka distribution, stock Kafka in
# KRaft mode on the same host with equivalent durability, runs `weir-bench compare` against
# both (alternating rounds), and stops both. Without KAFKA_HOME it runs the workload against
# Weir alone.
#
#   KAFKA_HOME=/opt/kafka_2.13-3.7.0 bash scripts/compare-with-kafka.sh --preset omb-1p-100b-max --duration-s 10 --rounds 3
#
# Environment:
#   KAFKA_HOME      Kafka distribution (bin/kafka-server-start.sh); unset = Weir only
#   DURABLE=1       (default) Kafka fsyncs every append (log.flush.interval.messages=1), as
#                   Weir acknowledges only what is on stable storage. DURABLE=0 leaves Kafka
#                   at its defaults (page cache only) for the "stock settings" comparison.
#   WEIR_PORT, KAFKA_PORT, KAFKA_CONTROLLER_PORT  (defaults 39092, 39093, 39094)
#   WORK_DIR        data dirs and logs (default: a fresh temp dir, removed at the end)
# Every other argument goes to `weir-bench compare` (workload flags, --rounds, --out, ...).
set -euo pipefail

cd "$(dirname "$0")/.."
WEIR_PORT=${WEIR_PORT:-39092}
KAFKA_PORT=${KAFKA_PORT:-39093}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-39094}
DURABLE=${DURABLE:-1}
KEEP_WORK_DIR=${WORK_DIR:+1}
WORK_DIR=${WORK_DIR:-$(mktemp -d -t weir-compare-XXXXXX)}
mkdir -p "$WORK_DIR"

WEIR_PID=""
KAFKA_PID=""
stop_all() {
    # Stop only what this script started, by pid.
    if [[ -n "$WEIR_PID" ]] && kill -0 "$WEIR_PID" 2>/dev/null; then
        kill -TERM "$WEIR_PID" 2>/dev/null || true
        wait "$WEIR_PID" 2>/dev/null || true
    fi
    if [[ -n "$KAFKA_PID" ]] && kill -0 "$KAFKA_PID" 2>/dev/null; then
        kill -TERM "$KAFKA_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$KAFKA_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$KAFKA_PID" 2>/dev/null || true
    fi
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

if [[ -z "${KAFKA_HOME:-}" ]]; then
    echo "KAFKA_HOME is not set: running the workload against Weir only" >&2
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

KAFKA_CONFIG="$WORK_DIR/kafka.properties"
cat >"$KAFKA_CONFIG" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$WORK_DIR/kafka-data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
if [[ "$DURABLE" == 1 ]]; then
    # Weir acknowledges a produce only once it is fdatasync'ed; make Kafka do the same.
    echo "log.flush.interval.messages=1" >>"$KAFKA_CONFIG"
fi
CLUSTER_ID=$("$KAFKA_HOME/bin/kafka-storage.sh" random-uuid)
"$KAFKA_HOME/bin/kafka-storage.sh" format -t "$CLUSTER_ID" -c "$KAFKA_CONFIG" >"$WORK_DIR/kafka-format.log" 2>&1
"$KAFKA_HOME/bin/kafka-server-start.sh" "$KAFKA_CONFIG" >"$WORK_DIR/kafka.log" 2>&1 &
KAFKA_PID=$!
wait_for_port kafka "$KAFKA_PORT" "$KAFKA_PID" "$WORK_DIR/kafka.log"
echo "kafka: pid $KAFKA_PID on 127.0.0.1:$KAFKA_PORT (durable=$DURABLE)"

"$WEIR_BENCH" compare \
    --target "weir=127.0.0.1:$WEIR_PORT" \
    --target "kafka=127.0.0.1:$KAFKA_PORT" \
    --host-limits-dir "$WORK_DIR" \
    "$@"
