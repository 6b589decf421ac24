#!/usr/bin/env bash
# Writes the tiny random-weight model directories (with PyTorch reference outputs) that the Rust
# parity tests read, by running the project's own exporters. Regenerates only when the exporters
# changed. Output: $PIXELREFER_FIXTURES (default .fixtures/models).
# Usage: scripts/make_fixtures.sh   (needs scripts/setup.sh to have run; ./test.sh does both)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PIXELREFER_PYTHON:-${XDG_CACHE_HOME:-$HOME/.cache}/pixelrefer-studio/venv/bin/python}"
OUT="${PIXELREFER_FIXTURES:-$ROOT/.fixtures/models}"
mkdir -p "$OUT"

# name | exporter | arguments (DIR is replaced by the output directory)
FIXTURES=(
  "pixelrefer-tiny|onnx/export_pixelrefer.py|--tiny-random DIR --variant full"
  "pixelrefer-lite-tiny|onnx/export_pixelrefer.py|--tiny-random DIR --variant lite"
  "pixelrefer-tiny-fp16|onnx/export_pixelrefer.py|--tiny-random DIR --variant full --fp16"
  "sam2-tiny|onnx/export_sam2.py|--tiny-random DIR"
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
