#!/usr/bin/env bash
# Installs whatever PixelRefer Studio needs and is missing, idempotently:
#   1. Debian packages (FFmpeg dev libraries, clang, GTK 3, Xvfb, Mesa Vulkan, ffmpeg CLI, a CJK
#      font for Chinese, Japanese and Korean text);
#   2. ONNX Runtime's shared library, taken from the PyPI `onnxruntime` wheel into ./.ort/lib;
#   3. a Python virtual environment with the exporters' packages (onnx/requirements.txt);
#   4. for test.sh, another with the OIP test servers, Triton and MLServer
#      (tests/python/requirements-serve.txt).
# Sourced by run.sh and test.sh; safe to run again (each step checks before it acts).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ORT_VERSION="1.31.1"
VENV="${PIXELREFER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pixelrefer-studio/venv}"
SERVE_VENV="${PIXELREFER_SERVE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pixelrefer-studio/serve-venv}"
# EdgeTAM's reference code (PyPI edgetam-dimos) installs a top-level `sam2` that clashes with the
# official one: it lives in a folder of its own, put on sys.path by onnx/export_edgetam.py only.
EDGETAM_PKG="${PIXELREFER_EDGETAM_PKG:-${XDG_CACHE_HOME:-$HOME/.cache}/pixelrefer-studio/edgetam-pkg}"
APT_PACKAGES=(
  pkg-config clang libclang-dev
  ffmpeg libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev
  libgtk-3-dev libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6 libx11-xcb1
  libfontconfig-dev fonts-wqy-microhei
  xvfb xauth mesa-vulkan-drivers libvulkan1 libegl1 libgl1-mesa-dri
  python3 python3-venv python3-pip unzip
  libpython3.11
)

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@";
  else die "need root (or sudo) to install: $*"; fi
}

install_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

check_rust() {
  if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null || die "cargo not found: install Rust 1.95 or newer (https://rustup.rs) and run again"
}

python_bin() {
  # The system python3 (Debian's, or one on PATH such as pyenv's).
  command -v python3 || die "python3 not found"
}

install_venv() {
  local req="$ROOT/onnx/requirements.txt" stamp="$VENV/.requirements.sha256" want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ] \
    && [ -f "$EDGETAM_PKG/sam2/modeling/perceiver.py" ]; then return; fi
  say "preparing the Python environment in $VENV (exporters and test helpers)"
  [ -x "$VENV/bin/python" ] || "$(python_bin)" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip wheel setuptools
  grep -v -e '^sam2==' -e '^edgetam-dimos==' "$req" > "$VENV/.requirements-stage1.txt"
  "$VENV/bin/python" -m pip install -q -r "$VENV/.requirements-stage1.txt"
  # sam2 builds an optional CUDA extension and imports torch in setup.py: no isolation, no CUDA.
  SAM2_BUILD_CUDA=0 "$VENV/bin/python" -m pip install -q --no-build-isolation "$(grep '^sam2==' "$req")"
  # edgetam-dimos: apart from the venv's site-packages (see EDGETAM_PKG), without dependencies
  # (torch, timm, hydra are the venv's).
  rm -rf "$EDGETAM_PKG.tmp"
  "$VENV/bin/python" -m pip install -q --no-deps --target "$EDGETAM_PKG.tmp" "$(grep '^edgetam-dimos==' "$req")"
  rm -rf "$EDGETAM_PKG" && mv "$EDGETAM_PKG.tmp" "$EDGETAM_PKG"
  echo "$want" > "$stamp"
}

install_serve_venv() {
  # Made from Debian's python3: the Triton Python-backend stub links its libpython3.11.
  local req="$ROOT/tests/python/requirements-serve.txt" stamp="$SERVE_VENV/.requirements.sha256" want py
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$SERVE_VENV/bin/python" ]; then return; fi
  say "preparing the Python environment in $SERVE_VENV (OIP test servers: Triton, MLServer)"
  py=/usr/bin/python3; [ -x "$py" ] || py="$(python_bin)"
  [ -x "$SERVE_VENV/bin/python" ] || "$py" -m venv "$SERVE_VENV"
  "$SERVE_VENV/bin/python" -m pip install -q --upgrade pip wheel setuptools
  "$SERVE_VENV/bin/python" -m pip install -q -r "$req"
  echo "$want" > "$stamp"
}

install_ort() {
  local dir="$ROOT/.ort" lib="$ROOT/.ort/lib/libonnxruntime.so.$ORT_VERSION"
  if [ -f "$lib" ]; then return; fi
  say "fetching ONNX Runtime $ORT_VERSION from the PyPI onnxruntime wheel"
  mkdir -p "$dir/wheel" "$dir/lib"
  "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: \
    -d "$dir/wheel" "onnxruntime==$ORT_VERSION"
  local whl
  whl="$(ls "$dir"/wheel/onnxruntime-"$ORT_VERSION"-*.whl | head -n1)"
  unzip -q -o -j "$whl" "onnxruntime/capi/libonnxruntime.so*" -d "$dir/lib"
  [ -f "$lib" ] || die "the onnxruntime wheel did not contain libonnxruntime.so.$ORT_VERSION"
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$dir/lib/libonnxruntime.so"
  # Also where an installed binary looks (the user data directory).
  local data="${XDG_DATA_HOME:-$HOME/.local/share}/pixelrefer-studio/onnxruntime"
  mkdir -p "$data" && cp -f "$lib" "$data/" && ln -sf "libonnxruntime.so.$ORT_VERSION" "$data/libonnxruntime.so"
}

install_apt
check_rust
install_venv
# The OIP test servers are for the test suite only (test.sh asks for them).
if [ "${PIXELREFER_SETUP_TEST_SERVERS:-0}" = 1 ]; then
  install_serve_venv
  export PIXELREFER_SERVE_PYTHON="$SERVE_VENV/bin/python"
fi
install_ort
export PIXELREFER_PYTHON="$VENV/bin/python"
say "ready (ONNX Runtime $ORT_VERSION in .ort/lib, Python in $VENV)"
