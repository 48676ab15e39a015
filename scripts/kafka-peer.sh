#!/usr/bin/env bash
# Stock Apache Kafka beside Weir: the same broker the clients were written against, as a
# peer for weir-bench and for compatibility checks. Jars come from Maven Central through
# scripts/kafka-peer/pom.xml (no tarball, nothing prebuilt committed).
#
#   scripts/kafka-peer.sh install
#       resolve the jars into .kafka-peer/<version>/libs (git-ignored); quick when there
#   scripts/kafka-peer.sh start --data-dir DIR [--port 19092] [--controller-port 19093]
#           [--flush-messages N] [--heap 1g] [--log FILE] [--config KEY=VALUE]...
#       single-node KRaft broker+controller: formats DIR on first use (kept after), starts
#       kafka.Kafka in the background, writes DIR/kafka.pid, returns once it answers
#       ApiVersions on --port (exit 1 with the log's tail if it dies or takes too long)
#   scripts/kafka-peer.sh stop --data-dir DIR
#       SIGTERM, SIGKILL after KAFKA_PEER_STOP_S (default 20) seconds
#   scripts/kafka-peer.sh tool NAME|CLASS [ARGS...]
#       one of Kafka's CLI tools on the same jars: producer-perf-test, consumer-perf-test,
#       topics, configs, consumer-groups, console-producer, console-consumer, get-offsets,
#       delete-records, log-dirs, metadata-quorum, end-to-end-latency, storage; or a fully
#       qualified main class
#   scripts/kafka-peer.sh libs
#       print the libs directory (for callers that run java themselves)
#
# Environment: KAFKA_PEER_HOME (default <repo>/.kafka-peer), JAVA (default java),
# KAFKA_PEER_START_S (default 90) bounds the wait for the port.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
pom="$repo/scripts/kafka-peer/pom.xml"
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
home="${KAFKA_PEER_HOME:-$repo/.kafka-peer}"
libs="$home/$version/libs"
java="${JAVA:-java}"

die() { echo "kafka-peer: $*" >&2; exit 1; }

retry() {
    local n
    for n in 1 2 3; do
        "$@" && return 0
        echo "kafka-peer: attempt $n of '$*' failed; retrying" >&2
        sleep $((n * 5))
    done
    "$@"
}

cmd_install() {
    local stamp="$libs/.pom.sha256" want tmp
    want=$(sha256sum "$pom" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -f "$libs/kafka_2.13-$version.jar" ]; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (Maven resolves Kafka's jars)"
    mkdir -p "$home/$version"
    tmp=$(mktemp -d "$home/$version/libs.XXXXXX")
    # Only runtime scope: what a broker and the tools load, no test jars.
    retry mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp"
    echo "$want" >"$tmp/.pom.sha256"
    rm -rf "$libs"
    mv "$tmp" "$libs"
    echo "kafka-peer: Kafka $version in $libs ($(ls "$libs" | wc -l) jars, $(du -sh "$libs" | cut -f1))"
}

need_libs() {
    [ -f "$libs/kafka_2.13-$version.jar" ] ||
        die "Kafka $version is not installed in $libs: run scripts/kafka-peer.sh install"
}

# Writes a log4j2 config sending everything at LEVEL and above to the console.
log4j_config() {
    local file=$1 level=$2 target=$3
    cat >"$file" <<EOF
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.target = $target
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = $level
rootLogger.appenderRef.console.ref = console
EOF
}

# True once the port answers an ApiVersions v0 request (api key 18, correlation id 1, null
# client id) with a response: a broker whose request processing is enabled.
api_versions_answers() {
    local port=$1 got
    got=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\xff\xff" >&3
        head -c 8 <&3 | od -An -tx1 | tr -d " \n"
    ' "$port" 2>/dev/null) || return 1
    # Any length, then correlation id 1.
    [ "${#got}" -eq 16 ] && [ "${got:8:8}" = "00000001" ]
}

cmd_start() {
    local port=19092 controller_port=19093 data_dir="" flush_messages="" heap=1g log=""
    local extra=()
    while [ $# -gt 0 ]; do
        case "$1" in
            --port) port=$2; shift 2 ;;
            --controller-port) controller_port=$2; shift 2 ;;
            --data-dir) data_dir=$2; shift 2 ;;
            --flush-messages) flush_messages=$2; shift 2 ;;
            --heap) heap=$2; shift 2 ;;
            --log) log=$2; shift 2 ;;
            --config) extra+=("$2"); shift 2 ;;
            *) die "start: unknown argument $1" ;;
        esac
    done
    [ -n "$data_dir" ] || die "start: --data-dir is required"
    need_libs
    mkdir -p "$data_dir"
    data_dir=$(cd "$data_dir" && pwd)
    log=${log:-$data_dir/kafka.log}
    local pid_file="$data_dir/kafka.pid"
    if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        die "start: a Kafka already runs from $data_dir (pid $(cat "$pid_file"))"
    fi
    local props="$data_dir/server.properties"
    {
        echo "process.roles=broker,controller"
        echo "node.id=1"
        # Static voters: one node, so the static quorum of KIP-595 is all it needs and the
        # storage format needs neither --standalone nor a voters flag.
        echo "controller.quorum.voters=1@127.0.0.1:$controller_port"
        echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port"
        echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port"
        echo "controller.listener.names=CONTROLLER"
        echo "inter.broker.listener.name=PLAINTEXT"
        echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        echo "log.dirs=$data_dir/data"
        echo "offsets.topic.replication.factor=1"
        echo "transaction.state.log.replication.factor=1"
        echo "transaction.state.log.min.isr=1"
        echo "share.coordinator.state.topic.replication.factor=1"
        echo "share.coordinator.state.topic.min.isr=1"
        echo "min.insync.replicas=1"
        echo "group.initial.rebalance.delay.ms=0"
        [ -n "$flush_messages" ] && echo "log.flush.interval.messages=$flush_messages"
        for kv in "${extra[@]}"; do echo "$kv"; done
    } >"$props"
    log4j_config "$data_dir/log4j2.properties" INFO SYSTEM_OUT
    log4j_config "$data_dir/log4j2-tools.properties" WARN SYSTEM_ERR
    local jvm=(-Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
        -Djava.awt.headless=true)
    if [ ! -f "$data_dir/data/meta.properties" ]; then
        # A cluster id is 16 random bytes in URL-safe base64 without padding, as
        # `kafka-storage random-uuid` prints (this saves a JVM start).
        local cluster_id
        cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
        "$java" -cp "$libs/*" -Dlog4j2.configurationFile="$data_dir/log4j2-tools.properties" \
            kafka.tools.StorageTool format -t "$cluster_id" -c "$props" \
            >"$data_dir/format.log" 2>&1 ||
            { cat "$data_dir/format.log" >&2; die "start: formatting $data_dir failed"; }
    fi
    local started_ns pid
    started_ns=$(date +%s%N)
    # setsid: Kafka is not in the caller's process group, so a Ctrl-C there does not reach
    # it half-way; `stop` is the way to end it.
    setsid "$java" "${jvm[@]}" -cp "$libs/*" \
        -Dlog4j2.configurationFile="$data_dir/log4j2.properties" \
        kafka.Kafka "$props" >"$log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pid_file"
    local deadline=$(( $(date +%s) + ${KAFKA_PEER_START_S:-90} ))
    until api_versions_answers "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -30 "$log" >&2
            die "start: Kafka (pid $pid) exited during start-up; log: $log"
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            tail -30 "$log" >&2
            die "start: Kafka (pid $pid) does not answer on 127.0.0.1:$port after ${KAFKA_PEER_START_S:-90} s; log: $log"
        fi
        sleep 0.2
    done
    local ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
    echo "kafka-peer: Kafka $version pid $pid on 127.0.0.1:$port (controller $controller_port), ready in ${ms} ms; log $log"
}

cmd_stop() {
    local data_dir=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --data-dir) data_dir=$2; shift 2 ;;
            *) die "stop: unknown argument $1" ;;
        esac
    done
    [ -n "$data_dir" ] || die "stop: --data-dir is required"
    local pid_file="$data_dir/kafka.pid" pid
    [ -f "$pid_file" ] || return 0
    pid=$(cat "$pid_file")
    if kill -TERM "$pid" 2>/dev/null; then
        local deadline=$(( $(date +%s) + ${KAFKA_PEER_STOP_S:-20} ))
        while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "kafka-peer: pid $pid still up after SIGTERM; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pid_file"
}

cmd_tool() {
    [ $# -ge 1 ] || die "tool: name or class required"
    local class
    case "$1" in
        producer-perf-test) class=org.apache.kafka.tools.ProducerPerformance ;;
        consumer-perf-test) class=org.apache.kafka.tools.ConsumerPerformance ;;
        topics) class=org.apache.kafka.tools.TopicCommand ;;
        configs) class=org.apache.kafka.tools.ConfigCommand ;;
        delete-records) class=org.apache.kafka.tools.DeleteRecordsCommand ;;
        log-dirs) class=org.apache.kafka.tools.LogDirsCommand ;;
        consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
        console-producer) class=org.apache.kafka.tools.ConsoleProducer ;;
        console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
        get-offsets) class=org.apache.kafka.tools.GetOffsetShell ;;
        metadata-quorum) class=org.apache.kafka.tools.MetadataQuorumCommand ;;
        end-to-end-latency) class=org.apache.kafka.tools.EndToEndLatency ;;
        storage) class=kafka.tools.StorageTool ;;
        *.*) class=$1 ;;
        *) die "tool: unknown tool $1 (give a main class, e.g. org.apache.kafka.tools.TopicCommand)" ;;
    esac
    shift
    need_libs
    local cfg
    cfg=$(mktemp -t kafka-peer-log4j2.XXXXXX.properties)
    log4j_config "$cfg" WARN SYSTEM_ERR
    local rc=0
    "$java" -Xmx512m -cp "$libs/*" -Dlog4j2.configurationFile="$cfg" "$class" "$@" || rc=$?
    rm -f "$cfg"
    return $rc
}

case "${1:-}" in
    install) shift; cmd_install "$@" ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    tool) shift; cmd_tool "$@" ;;
    libs) need_libs; echo "$libs" ;;
    *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
