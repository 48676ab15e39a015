#!/usr/bin/env bash
# Installs everything the integration tests need, idempotently:
#   apt:  kcat (librdkafka's CLI), python3-venv
#   .venv/: pytest, kafka-python, confluent-kafka (wheel with librdkafka and all codecs),
#           and the codec libraries kafka-python uses
#   tests/node/node_modules: kafkajs, from the committed package-lock.json
# Safe to re-run: what is already installed is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

retry() {
    local n
    for n in 1 2 3; do
        "$@" && return 0
        echo "attempt $n of '$*' failed; retrying" >&2
        sleep $((n * 5))
    done
    "$@"
}

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    retry $sudo apt-get update -qq
    retry $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

apt_install kcat python3-venv

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
requirements=tests/integration/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    retry .venv/bin/pip install -q -r "$requirements"
    echo "$want" >"$stamp"
fi

if command -v npm >/dev/null; then
    if [ ! -d tests/node/node_modules/kafkajs ]; then
        (cd tests/node && retry npm ci --no-audit --no-fund --loglevel=error)
    fi
else
    echo "npm is not installed: the KafkaJS tests need Node.js 18+ and npm" >&2
    exit 1
fi
echo "test dependencies installed"
