#!/usr/bin/env bash
# Writes the tiny random-weight model directories (with PyTorch reference outputs) that the Rust
# parity tests read, by running the project's own exporters, and a fake Hugging Face hub of tiny
# random-weight checkpoints in the official repository layouts (onnx/make_hub_fixtures.py) for the
# `models fetch` tests. Regenerates only when the exporters changed.
# Output: $PIXELREFER_FIXTURES (default .fixtures/models), $PIXELREFER_FIXTURES_HUB (default .fixtures/hub).
# Usage: scripts/make_fixtures.sh   (needs scripts/setup.sh to have run; ./test.sh does both)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PIXELREFER_PYTHON:-${XDG_CACHE_HOME:-$HOME/.cache}/pixelrefer-studio/venv/bin/python}"
OUT="${PIXELREFER_FIXTURES:-$ROOT/.fixtures/models}"
HUB="${PIXELREFER_FIXTURES_HUB:-$ROOT/.fixtures/hub}"
mkdir -p "$OUT"

# name | exporter | arguments (DIR is replaced by the output directory)
FIXTURES=(
  "pixelrefer-tiny|onnx/export_pixelrefer.py|--tiny-random DIR --variant full"
  "pixelrefer-lite-tiny|onnx/export_pixelrefer.py|--tiny-random DIR --variant lite"
  "pixelrefer-tiny-fp16|onnx/export_pixelrefer.py|--tiny-random DIR --variant full --fp16"
  "pixelrefer-tiny-int8|onnx/export_pixelrefer.py|--tiny-random DIR --variant full --quantize int8"
  "pixelrefer-lite-tiny-int4|onnx/export_pixelrefer.py|--tiny-random DIR --variant lite --quantize int4"
  "sam2-tiny|onnx/export_sam2.py|--tiny-random DIR"
  "sam2-tiny-int8|onnx/export_sam2.py|--tiny-random DIR --quantize int8"
  "edgetam-tiny|onnx/export_edgetam.py|--tiny-random DIR"
)

stamp_of() {
  # Hash of every exporter source and the pinned requirements: any change regenerates.
  (cd "$ROOT" && find onnx -name '*.py' -not -path '*/tests/*' -print0 | sort -z \
    | xargs -0 sha256sum; sha256sum onnx/requirements.txt; echo "$1") | sha256sum | cut -d' ' -f1
}

for entry in "${FIXTURES[@]}"; do
  IFS='|' read -r name exporter args <<<"$entry"
  [ -f "$ROOT/$exporter" ] || { echo "[fixtures] skipping $name: $exporter not present"; continue; }
  dir="$OUT/$name"
  want="$(stamp_of "$entry")"
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$want" ]; then continue; fi
  echo "[fixtures] exporting $name"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  # shellcheck disable=SC2086
  (cd "$ROOT" && "$PY" "$exporter" ${args//DIR/$dir.tmp}) > "$OUT/$name.log" 2>&1 \
    || { echo "[fixtures] $name failed; see $OUT/$name.log" >&2; tail -20 "$OUT/$name.log" >&2; exit 1; }
  echo "$want" > "$dir.tmp/.stamp"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
done

# The fake hub: one folder per repository (HUB/facebook/sam2.1-hiera-tiny, HUB/Alibaba-DAMO-Academy/
# PixelRefer-2B, .../PixelRefer-Lite-2B), written whole to HUB.tmp and renamed.
hub_entry="hub|onnx/make_hub_fixtures.py|DIR"
if [ -f "$ROOT/onnx/make_hub_fixtures.py" ]; then
  want="$(stamp_of "$hub_entry")"
  if ! { [ -f "$HUB/.stamp" ] && [ "$(cat "$HUB/.stamp")" = "$want" ]; }; then
    echo "[fixtures] writing the fake hub $HUB"
    mkdir -p "$(dirname "$HUB")"
    rm -rf "$HUB.tmp" && mkdir -p "$HUB.tmp"
    (cd "$ROOT" && "$PY" onnx/make_hub_fixtures.py "$HUB.tmp") > "$HUB.log" 2>&1 \
      || { echo "[fixtures] hub failed; see $HUB.log" >&2; tail -20 "$HUB.log" >&2; exit 1; }
    echo "$want" > "$HUB.tmp/.stamp"
    rm -rf "$HUB" && mv "$HUB.tmp" "$HUB"
  fi
else
  echo "[fixtures] skipping the hub: onnx/make_hub_fixtures.py not present"
fi
