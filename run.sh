#!/usr/bin/env bash
# Installs what is missing, builds, and opens PixelRefer Studio (on the demo video by default).
PROJECT]$|PROJECT]
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
exec cargo run --release --bin pixelrefer-studio -- "${@:-assets/demo.mp4}"
