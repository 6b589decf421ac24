#!/usr/bin/env bash
# The command line without the desktop app (`cargo build --no-default-features`: no `gui`
# feature), for machines without GTK or a display such as GPU servers: it builds, links no GTK,
# refuses to open a window in one sentence, and verifies a model end to end.
# Usage: scripts/headless_check.sh MODEL_DIR   (a model directory with reference outputs;
# ./test.sh passes a tiny fixture). Builds in the `test` profile; ./test.sh runs it before
# `cargo test`, which links the app's binary back into place from its own build.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:?usage: scripts/headless_check.sh MODEL_DIR}"
fail() { echo "headless check: $*" >&2; exit 1; }
# the path cargo reports for the binary it built (CARGO_TARGET_DIR may be anywhere)
bin="$(cargo build --locked --profile test --no-default-features --bin pixelrefer-studio \
  --message-format=json-render-diagnostics | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
[ -x "$bin" ] || fail "cargo reported no binary"
if ldd "$bin" | grep -q 'libgtk'; then
  fail "the build without the gui feature links GTK"
fi
if out="$("$bin" 2>&1)"; then
  fail "without a command it exited 0 instead of refusing: $out"
fi
grep -q "command line only" <<<"$out" || fail "unexpected message without a command: $out"
verify="$("$bin" models verify "$model" --device cpu 2>&1)" || fail "models verify failed: $verify"
grep -q "PASS" <<<"$verify" || fail "models verify did not pass: $verify"
echo "headless check: no GTK linked; models verify on $model: PASS"
