#!/usr/bin/env bash
# The one test command: installs what the tests need, checks formatting and lints, runs the
# unit and integration tests (Rust), then drives the real broker binary with kcat,
# kafka-python, confluent-kafka and KafkaJS (pytest). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
bash scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings

step "cargo test (unit, fuzz smoke, raw-protocol and crash tests against the binary)"
cargo test --workspace --release

step "cargo build --release"
cargo build --release --bin weir

step "client integration tests (kcat, kafka-python, confluent-kafka, KafkaJS)"
.venv/bin/pytest -v tests/integration
