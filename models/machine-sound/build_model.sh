#!/usr/bin/env bash
# Rebuilds the demo acoustic model models/machine-sound/1 from the synthetic machine's normal sound (seed 101,
# 300 part slices of 5 + 40 ms at 48 kHz), then checks it on held-out sound (seed 202, 30% anomalous).
# Run from the repository root: bash models/machine-sound/build_model.sh
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
station=${STATION:-target/debug/station}
"$station" generate-sounds --out "$tmp/train" --count 300 --seed 101 --anomaly-fraction 0
"$station" generate-sounds --out "$tmp/test" --count 200 --seed 202 --anomaly-fraction 0.3
rm -rf models/machine-sound/1
"$station" train audio --normal "$tmp/train/normal" --name machine-sound --out models --version 1 \
  --window-ms 45 --hop-ms 45 \
  --description "Demo machine sound (station generate-sounds --seed 101, 300 normal part slices of 45 ms): Mahalanobis distance of log-mel and envelope-spectrum band energies"
"$station" evaluate audio --model models/machine-sound/1 --normal "$tmp/test/normal" --anomalous "$tmp/test/anomalous" --out "$tmp/eval"
