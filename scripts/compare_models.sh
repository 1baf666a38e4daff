#!/usr/bin/env bash
# Compares the vision designs on the texture set (docs/MODELS.md): for each texture photo of the shared data,
# cuts the evaluation set, trains each design on the good training crops only, evaluates it on the held-out bands,
# and prints one markdown table row per (texture, design). Release build; run after `bash scripts/setup.sh`.
#   bash scripts/compare_models.sh [SHARED_DATA_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
data="${1:-${STATION_SHARED_DATA:-../shared/data}}"
cargo build --release --locked -q
station="$PWD/target/release/station"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "| texture | design | image AUROC | pixel AUROC | F1 | train s | ms/image |"
echo "|---|---|---|---|---|---|---|"
for texture in brick grass gravel; do
  "$station" generate-texture-set --texture "$data/textures/$texture.png" --out "$work/$texture" > /dev/null
  for design in gaussian padim patchcore; do
    "$station" train vision --good "$work/$texture/train/good" --name "$texture-$design" --out "$work/models" \
      --size 128 --design "$design" > /dev/null 2>&1
    model="$work/models/$texture-$design/1"
    "$station" evaluate --model "$model" --good "$work/$texture/test/good" --defect "$work/$texture/test/defect" \
      --masks "$work/$texture/test/masks" --out "$work/eval-$texture-$design" > /dev/null 2>&1
    python3 - "$work/eval-$texture-$design/report.json" "$model/manifest.toml" "$texture" "$design" <<'PY'
import json, re, sys
r = json.load(open(sys.argv[1])); m = open(sys.argv[2]).read()
seconds = float(re.search(r"^seconds = ([0-9.]+)", m, re.M).group(1))
rep = r["report"]
print(f"| {sys.argv[3]} | {sys.argv[4]} | {rep['image_auroc']:.3f} | {rep['pixel_auroc']:.3f} | {rep['f1']:.3f} "
      f"| {seconds:.1f} | {r['ms_per_image']:.2f} |")
PY
  done
done
