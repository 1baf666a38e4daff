#!/usr/bin/env bash
# Quick start 1: set up (idempotent) and run the station on its embedded default: a simulated conveyor, the demo
# model and an in-process simulated PLC. Without arguments it judges 500 parts and prints the run summary with the
# detection figures; any arguments are passed to `station run` instead, e.g. `--quiet` runs until Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo build --release --locked --bin station
if [ $# -eq 0 ]; then set -- --max-parts 500; fi
exec ./target/release/station run "$@"
