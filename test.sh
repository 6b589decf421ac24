#!/usr/bin/env bash
# Installs what is missing and runs the whole test suite: Rust (unit, integration, UI snapshot
# tests, headless on Mesa's software Vulkan) and the Python exporter tests.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
# Mesa (the headless UI tests) wants a runtime dir; CI machines often have none.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"; export XDG_RUNTIME_DIR
fi
export PIXELREFER_FIXTURES="${PIXELREFER_FIXTURES:-$PWD/.fixtures/models}"
scripts/make_fixtures.sh
cargo test --locked
if compgen -G "onnx/tests/test_*.py" >/dev/null; then
  "$PIXELREFER_PYTHON" -m pytest -q onnx/tests
fi
