#!/usr/bin/env bash
# The one test command: installs what the tests need, checks formatting and lints, runs the
# unit and integration tests (Rust), builds the release binary, then drives it with kcat,
# kafka-python, confluent-kafka and KafkaJS (pytest). Exits non-zero on any failure.
#
#   bash scripts/test.sh                 # everything (what CI runs through .ci/run)
#   bash scripts/test.sh -k kcat -x      # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s  [%s]\n' "$*" "$(date -u +%H:%M:%S)"; }

step "installing test dependencies"
bash scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

# weir-bench's rdkafka client (librdkafka, built from source) is compiled, linted and tested
# too; the flag enables the feature of that one member only.
step "cargo clippy"
cargo clippy --workspace --all-targets --release --features weir-bench/rdkafka -- -D warnings

step "cargo test (unit, fuzz smoke, raw-protocol and crash tests against the binary)"
cargo test --workspace --release --features weir-bench/rdkafka

step "cargo build --release"
cargo build --release --bin weir --bin weirctl
# The README's first command must start the broker (not fail on which binary to run).
cargo run --release -- --version | grep -q '^weir '

step "client integration tests (kcat, kafka-python, confluent-kafka, KafkaJS)"
# Each test has its own timeout (tests/integration/pytest.ini); this bounds the whole run.
timeout --kill-after=30 1500 .venv/bin/pytest -v -p no:cacheprovider tests/integration "$@"
