#!/usr/bin/env bash
# Installs everything the integration tests need, idempotently:
#   apt:  kcat (librdkafka's CLI), make (weir-bench builds librdkafka), python3 +
#         python3-venv, nodejs + npm; each only when missing
#   .venv/: pytest, kafka-python, confluent-kafka (wheel with librdkafka and all codecs),
#           and the codec libraries kafka-python uses (tests/integration/requirements.txt)
#   tests/node/node_modules: kafkajs, from the committed package-lock.json
#   .kafka-peer/: stock Apache Kafka's jars from Maven Central (scripts/kafka-peer.sh), the
#                 peer bench/tests/against_kafka.rs runs weir-bench against
#   .franz-go/:   franz-go's kgo test binary, built from the Go module proxy
#                 (scripts/franz-go.sh); Sarama's module for tests/go/sarama
# Safe to re-run: what is already installed (and unchanged since) is skipped. Non-interactive,
# with retries around every network step, because CI runs it on a fresh clone with no stdin.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

retry() {
    local n
    for n in 1 2 3 4; do
        "$@" && return 0
        echo "attempt $n of '$*' failed; retrying" >&2
        sleep $((n * 5))
    done
    "$@"
}

apt_updated=""
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ -z "$apt_updated" ]; then
        retry $sudo apt-get update -qq
        apt_updated=1
    fi
    retry $sudo apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
}

# kcat: from Debian (bookworm packages it as `kcat`).
command -v kcat >/dev/null || apt_install kcat

# weir-bench's rdkafka feature builds librdkafka (and its zlib and zstd) from source: a C
# compiler, which Rust's linking needs anyway, and make. No -dev packages.
command -v make >/dev/null || apt_install make

# Python 3 with venv support.
command -v python3 >/dev/null || apt_install python3 python3-venv python3-pip
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
    rm -rf .venv
    if ! python3 -m venv .venv 2>/dev/null; then
        rm -rf .venv
        apt_install python3-venv
        python3 -m venv .venv
    fi
fi
requirements=tests/integration/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    retry .venv/bin/pip install -q --disable-pip-version-check --no-input -r "$requirements"
    echo "$want" >"$stamp"
fi

# Node.js and KafkaJS (pinned by the committed lock file; node_modules is never committed).
command -v npm >/dev/null || apt_install nodejs npm
node_stamp=tests/node/node_modules/.package-lock.sha256
want=$(sha256sum tests/node/package-lock.json | cut -d' ' -f1)
if [ ! -d tests/node/node_modules/kafkajs ] || [ "$(cat "$node_stamp" 2>/dev/null)" != "$want" ]; then
    (cd tests/node && retry npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$node_stamp"
fi

# Stock Kafka (jars from Maven Central; about 55 MB, seconds when Maven's cache is cold and
# nothing when the stamp matches). Java and Maven come with the machine; apt only if absent.
command -v java >/dev/null || apt_install openjdk-17-jre-headless
command -v mvn >/dev/null || apt_install maven
bash scripts/kafka-peer.sh install

# franz-go's kgo suite: Go from the machine (apt only if absent; a Go older than franz-go's
# go.mod asks for fetches the newer toolchain through the module proxy, GOTOOLCHAIN=auto).
command -v go >/dev/null || apt_install golang-go
bash scripts/franz-go.sh install
# Sarama, pinned by tests/go/sarama/go.sum: fetched here, so the test's `go build` is offline.
(cd tests/go/sarama && retry go mod download)

echo "test dependencies installed: $(kcat -V 2>&1 | head -1); $(.venv/bin/python --version); node $(node --version); Kafka in $(bash scripts/kafka-peer.sh libs); $(go version)"
