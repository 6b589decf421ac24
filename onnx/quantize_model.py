#!/usr/bin/env python3
"""Write a quantized CPU copy of an exported model directory (onnx/common/quantize.py).
PixelRefer / PixelRefer-Lite: int8 or int4 blocks for the LLM (decoder, lm_head, embedding table),
int8 for the vision encoder. SAM 2: int8 for the image encoder (EdgeTAM is refused). Opt-in:
outputs differ from fp32; the manifest's `quantization` entry and the `-int8` / `-int4` variant
suffix say so, and the app labels it.

  python onnx/quantize_model.py SRC_DIR --out DST_DIR --quantize int4

Progress: `[progress] {...}` lines on stdout; failure: non-zero exit and `error: <sentence>`.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import ArgumentParser, ExportError, progress, run_main  # noqa: E402


def main(argv=None):
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="an fp32 PixelRefer or SAM 2 model directory")
    ap.add_argument("--out", required=True, help="the quantized model directory to write")
    ap.add_argument("--quantize", required=True, choices=["int8", "int4"])
    a = ap.parse_args(argv)
    from common.quantize import quantize_dir

    if not os.path.isfile(os.path.join(a.src, "manifest.json")):
        raise ExportError(f"{a.src} is not a model directory (no manifest.json)")
    if os.path.abspath(a.src) == os.path.abspath(a.out):
        raise ExportError("--out must differ from the source directory")
    quantize_dir(a.src, a.out, a.quantize)
    print("done", flush=True)
    progress("done", 1, 1, a.out)


if __name__ == "__main__":
    sys.exit(run_main(main))
