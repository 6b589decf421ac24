#!/usr/bin/env bash
# The CUDA check, run on a machine with an NVIDIA GPU and its CUDA 13 / cuDNN 9 libraries but
# nothing of this project installed (a lent GPU machine): parity of SAM 2, EdgeTAM, PixelRefer and
# PixelRefer-Lite on the CUDA provider against the official code's reference outputs
# (`models verify --device cuda` on the tiny fixtures), then timings of the full-size random
# models on CUDA against the CPU with the interleaved benches.
#
# It takes two archives made on the build machine by scripts/gpu_bundle.sh, which keeps each
# under the 64 MiB such a machine accepts per transfer:
#   BUNDLE/ort_cuda.tar.xz  onnxruntime-gpu's libraries (the CUDA provider with its sm_90 code only)
#   BUNDLE/check.tar.xz     bin/ (examples/verify_model and the sam2/refer benches, stripped), models/
#                           (tiny fixtures with reference/), skel/ (full-size graphs without their
#                           weights, onnx/weights_skeleton.py), weights_skeleton.py
# Usage: scripts/gpu_check.sh BUNDLE OUT [ort|parity|all]   ("ort" unpacks ONNX Runtime only)
set -uo pipefail
BUNDLE=${1:?bundle folder} OUT=${2:?output folder} WHAT=${3:-all}
W=/tmp/pixelrefer-gpu
mkdir -p "$W" "$OUT"
# ARCHIVE.tar.xz -> DIR with Python's own lzma (the machine need not have xz)
unpack() { python3 -c "import lzma,tarfile,sys; tarfile.open(fileobj=lzma.open(sys.argv[1])).extractall(sys.argv[2])" "$1" "$2"; }
# the library under the version gpu_bundle.sh downloaded (libonnxruntime.so.X.Y.Z)
ort_lib() { ls "$W"/ort/libonnxruntime.so.[0-9]* 2>/dev/null | head -1; }
if [ -z "$(ort_lib)" ]; then
  mkdir -p "$W/ort" && unpack "$BUNDLE/ort_cuda.tar.xz" "$W/ort" || exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
# CUDA's libraries as the machine's Python packages ship them (nvidia-* wheels), else the system's.
LIBS=$(find /opt /usr /lib -xdev \( -name 'libcublas.so.13*' -o -name 'libcublasLt.so.13*' -o -name 'libcudart.so.13*' \
  -o -name 'libcurand.so.10*' -o -name 'libcufft.so.12*' -o -name 'libcudnn.so.9*' -o -name 'libnvrtc.so.13*' \) \
  2>/dev/null | xargs -r -n1 dirname | sort -u | paste -sd:)
export LD_LIBRARY_PATH="$W/ort:$LIBS:${LD_LIBRARY_PATH:-}"
export ORT_DYLIB_PATH="$(ort_lib)"
echo "CUDA libraries: $LIBS"
ldd "$W/ort/libonnxruntime_providers_cuda.so" | grep -i "not found"
[ "$WHAT" = ort ] && { ls -la "$W/ort"; exit 0; }

unpack "$BUNDLE/check.tar.xz" "$W" || exit 1
BIN=$W/bin

echo "== parity on CUDA: models verify (examples/verify_model) on the CUDA provider"
for m in sam2-tiny edgetam-tiny pixelrefer-tiny pixelrefer-lite-tiny; do
  start=$(date +%s.%N)
  "$BIN/verify_model" "$W/models/$m" cuda >"$OUT/verify-$m.log" 2>&1
  rc=$?
  echo "$m: exit $rc, $(python3 -c "import sys,time; print(round(time.time()-float(sys.argv[1]),1))" "$start") s"
  grep -E '^\[summary\]|on CUDA|on CPU|^warning|^error|^PASS' "$OUT/verify-$m.log" | head -8
done

[ "$WHAT" = parity ] && exit 0

echo "== full-size random models: weights drawn here"
for m in sam2 edgetam pixelrefer-lite-fp16; do
  python3 "$W/weights_skeleton.py" fill "$W/skel/$m" >/dev/null || echo "fill $m failed"
done

echo "== SAM 2.1-tiny and EdgeTAM: CUDA (A) against the CPU with $(nproc) threads (B)"
for m in sam2 edgetam; do
  SAM2_BENCH_THREADS=$(nproc) SAM2_BENCH_FRAMES=${FRAMES:-6} timeout 180 "$BIN/sam2-bench" \
    --a "rust:$W/skel/$m" --b "rust:$W/skel/$m" --a-env PIXELREFER_BENCH_DEVICE=cuda \
    --rounds "${ROUNDS:-2}" 2>&1 | tee "$OUT/bench-$m.log" | grep -vE '^\[bench\]'
done

echo "== PixelRefer-Lite-2B fp16 on CUDA, both sides (absolute times; the CPU has no fp16 kernels)"
PIXELREFER_BENCH_TOKENS=32 timeout 180 "$BIN/refer-bench" --a "rust:$W/skel/pixelrefer-lite-fp16" \
  --b "rust:$W/skel/pixelrefer-lite-fp16" --a-env PIXELREFER_BENCH_DEVICE=cuda \
  --b-env "PIXELREFER_BENCH_DEVICE=cuda SIDE=b" --rounds 2 2>&1 | tee "$OUT/bench-refer.log" | grep -vE '^\[bench\]'
