#!/usr/bin/env bash
# Quick start 2: set up (idempotent) and run the whole test suite: formatting, clippy with warnings denied, unit and
# integration tests (real OpenCV, ONNX Runtime, SQLite, a pymodbus PLC), and a compile check of the benches.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export CARGO_TERM_COLOR=never
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy (warnings denied)"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
# One test at a time: the integration tests run real peers (PLC simulator, PulseAudio, Chromium) with timing
# tolerances, and on a 2-core CI machine two of them at once starve each other.
# Libraries, binaries and tests only: `--test-threads` is a libtest flag that the criterion benches refuse.
cargo test --locked --lib --bins --tests -- --test-threads=1
echo "== benches compile"
cargo test --locked --benches --no-run
