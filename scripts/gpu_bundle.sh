#!/usr/bin/env bash
# Builds the two archives scripts/gpu_check.sh takes, each under 64 MiB, into BUNDLE (default .gpu,
# which git ignores through .git/info/exclude when you add it there).
#   BUNDLE/ort_cuda.tar.xz  onnxruntime-gpu (PyPI wheel, CUDA 13) with the CUDA provider's device
#                           code for other GPUs than sm_90 (Hopper) zeroed: 284 MB that compress
#                           to about 60 MB instead of 190 MB (scripts/fatbin_keep.py)
#   BUNDLE/check.tar.xz     examples/verify_model and the sam2/refer benches (test profile, stripped), the tiny
#                           fixtures with their reference/, full-size graphs without weights
# Needs: ./test.sh's fixtures (.fixtures/models) and full-size random exports in SAM2_FULL,
# EDGETAM_FULL and PIXELREFER_FP16_FULL (`export_*.py --full-random DIR`, PixelRefer with
# `--variant lite --fp16`).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${1:-.gpu}
ORT_VERSION=1.31.1
source scripts/setup.sh >/dev/null
PY=${PIXELREFER_PYTHON:-$HOME/.cache/pixelrefer-studio/venv/bin/python}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$BUNDLE"

if [ ! -f "$BUNDLE/ort_cuda.tar.xz" ]; then
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 -d "$T/whl" "onnxruntime-gpu==$ORT_VERSION"
  (cd "$T" && unzip -q -o whl/*.whl 'onnxruntime/capi/lib*.so*')
  mkdir -p "$T/ort"
  cp "$T/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$T/onnxruntime/capi/libonnxruntime_providers_shared.so" "$T/ort/"
  "$PY" scripts/fatbin_keep.py "$T/onnxruntime/capi/libonnxruntime_providers_cuda.so" 90 "$T/ort/libonnxruntime_providers_cuda.so"
  tar -C "$T/ort" -cf - . | xz -9e -T2 >"$BUNDLE/ort_cuda.tar.xz"
fi

# the CLI links FFmpeg's shared libraries (and GTK, with the app), which a bare GPU machine need
# not have: verify through the example, which links neither
cargo build --profile test --example verify_model
mkdir -p "$T/c/bin" "$T/c/models" "$T/c/skel"
target=${CARGO_TARGET_DIR:-target}
cp "$target/debug/examples/verify_model" "$T/c/bin/"
for b in sam2 refer; do
  exe=$(cargo bench --profile test --no-run --bench "$b" --message-format=json 2>/dev/null |
    "$PY" -c "import json,sys; print([m['executable'] for m in map(json.loads, sys.stdin) if m.get('reason')=='compiler-artifact' and m.get('executable') and m['target']['name']=='$b'][-1])")
  cp "$exe" "$T/c/bin/$b-bench"
done
strip "$T"/c/bin/*
for m in sam2-tiny edgetam-tiny pixelrefer-tiny pixelrefer-lite-tiny; do
  cp -rL ".fixtures/models/$m" "$T/c/models/$m"
done
"$PY" onnx/weights_skeleton.py strip "${SAM2_FULL:?}" "$T/c/skel/sam2"
"$PY" onnx/weights_skeleton.py strip "${EDGETAM_FULL:?}" "$T/c/skel/edgetam"
"$PY" onnx/weights_skeleton.py strip "${PIXELREFER_FP16_FULL:?}" "$T/c/skel/pixelrefer-lite-fp16"
# weights_skeleton.py with the one helper it imports (common/__init__ would pull in torch)
mkdir -p "$T/c/common" && touch "$T/c/common/__init__.py"
cp onnx/weights_skeleton.py "$T/c/" && cp onnx/common/manifest.py "$T/c/common/"
tar -C "$T/c" -cf - . | xz -9 -T2 >"$BUNDLE/check.tar.xz"
ls -la "$BUNDLE"
