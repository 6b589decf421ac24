#!/usr/bin/env python3
"""Export SAM 2 / SAM 2.1 (official `sam2` package, PyPI sam2==1.1.0) to a PixelRefer Studio model
directory: four ONNX graphs + constants.safetensors + manifest.json (DESIGN.md sections 2 and 4).

  python onnx/export_sam2.py --checkpoint sam2.1_hiera_tiny.pt --config sam2.1_hiera_t.yaml --out models/sam2.1-tiny
  python onnx/export_sam2.py --tiny-random DIR [--seed N]   # tiny random weights + reference/ outputs
  python onnx/export_sam2.py --full-random DIR [--seed N]   # full sam2.1_hiera_tiny size, random weights
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--checkpoint", help="official checkpoint (.pt), e.g. sam2.1_hiera_tiny.pt")
    mode.add_argument("--tiny-random", metavar="DIR", help="write a tiny random-weight model + reference outputs")
    mode.add_argument("--full-random", metavar="DIR", help="write a full-size sam2.1_hiera_t model with random weights")
    ap.add_argument("--config", help="config name, e.g. sam2.1_hiera_t.yaml (with --checkpoint)")
    ap.add_argument("--out", help="output model directory (with --checkpoint)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-verify", action="store_true", help="skip the ORT-vs-torch comparison")
    ap.add_argument("--no-reference", action="store_true", help="(--tiny-random) skip reference/")
    a = ap.parse_args(argv)

    import torch

    torch.set_grad_enabled(False)
    from common import sha256_file
    from sam2_export.build import build_full_random, build_tiny_random, build_video_model
    from sam2_export.export import export_model

    t0 = time.time()
    if a.checkpoint:
        if not a.config or not a.out:
            ap.error("--checkpoint needs --config and --out")
        if not os.path.isfile(a.checkpoint):
            ap.error(f"checkpoint not found: {a.checkpoint}")
        m = build_video_model(a.config, a.checkpoint)
        variant = os.path.splitext(os.path.basename(a.config))[0]
        upstream = {"checkpoint": os.path.basename(a.checkpoint), "sha256": sha256_file(a.checkpoint),
                    "config": os.path.basename(a.config), "package": "sam2==1.1.0"}
        export_model(m, a.out, variant, upstream, verify=not a.no_verify)
        out = a.out
    elif a.full_random:
        m = build_full_random(a.seed)
        upstream = {"checkpoint": None, "sha256": None, "config": "sam2.1_hiera_t.yaml",
                    "package": "sam2==1.1.0", "random_seed": a.seed}
        export_model(m, a.full_random, "sam2.1_hiera_t-random", upstream, verify=not a.no_verify,
                     extra_notes="Random weights (benchmarks only).")
        out = a.full_random
    else:
        from sam2_export.build import TINY_OVERRIDES

        m = build_tiny_random(a.seed)
        upstream = {"checkpoint": None, "sha256": None, "config": "sam2.1_hiera_t.yaml",
                    "package": "sam2==1.1.0", "random_seed": a.seed, "hydra_overrides": TINY_OVERRIDES}
        export_model(m, a.tiny_random, "sam2.1-tiny-random", upstream, verify=not a.no_verify,
                     extra_notes="Tiny random-weight model for tests (reduced width/depth, same interface).")
        out = a.tiny_random
        if not a.no_reference:
            from sam2_export.reference import write_reference

            write_reference(m, os.path.join(out, "reference"), seed=a.seed)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
    print(f"[export] done: {out} ({total / 1e6:.1f} MB) in {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
