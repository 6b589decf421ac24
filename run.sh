#!/usr/bin/env bash
# Installs what is missing, builds, and opens PixelRefer Studio (on the demo video by default).
# Usage: ./run.sh [MEDIA|PROJECT] [--fps R: a folder of frames as one video]
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
exec cargo run --release --bin pixelrefer-studio -- "${@:-assets/demo.mp4}"
