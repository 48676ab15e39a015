#!/usr/bin/env bash
# Builds and runs a single-node broker on 127.0.0.1:9092 with its data in ./data.
# Extra arguments go to the broker, e.g. `bash scripts/run.sh --smp 2 --num-partitions 3`.
set -euo pipefail
cd "$(dirname "$0")/.."
defaults=(--data-dir ./data)
for arg in "$@"; do
    case "$arg" in --data-dir|--data-dir=*|--config|--config=*) defaults=() ;; esac
done
exec cargo run --release --bin weir -- "${defaults[@]}" "$@"
