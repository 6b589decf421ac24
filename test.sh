#!/usr/bin/env bash
# Installs what is missing and runs the whole test suite: Rust (unit, integration, UI snapshot
# tests, headless on Mesa's software Vulkan) and the Python exporter tests.
set -euo pipefail
cd "$(dirname "$0")"
# The test suite also needs the Triton and MLServer test servers (tests/remote_oip.rs).
export PIXELREFER_SETUP_TEST_SERVERS=1
source scripts/setup.sh
# Mesa (the headless UI tests) wants a runtime dir; CI machines often have none.
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "$XDG_RUNTIME_DIR" ]; then
  XDG_RUNTIME_DIR="$(mktemp -d)"; export XDG_RUNTIME_DIR
fi
export PIXELREFER_FIXTURES="${PIXELREFER_FIXTURES:-$PWD/.fixtures/models}"
export PIXELREFER_FIXTURES_HUB="${PIXELREFER_FIXTURES_HUB:-$PWD/.fixtures/hub}"
scripts/make_fixtures.sh
# The command line built without the app (no GTK), end to end on a tiny model; before
# `cargo test`, which puts the app's binary back in place.
scripts/headless_check.sh "$PIXELREFER_FIXTURES/sam2-tiny"
cargo test --locked
if compgen -G "onnx/tests/test_*.py" >/dev/null; then
  # `slow`: the SAM 2 export of the fake hub's checkpoint with --reference (5 minutes), which
  # tests/models_fetch.rs already runs end to end; `pytest onnx/tests` runs it too.
  "$PIXELREFER_PYTHON" -m pytest -q -m "not slow" onnx/tests
fi
