#!/usr/bin/env python3
"""Export SAM 2 / SAM 2.1 (official `sam2` package, PyPI sam2==1.1.0) to a PixelRefer Studio model
directory: four ONNX graphs + constants.safetensors + manifest.json (DESIGN.md sections 2 and 4).

  python onnx/export_sam2.py --checkpoint sam2.1_hiera_tiny.pt --config sam2.1_hiera_t.yaml --out DIR [--reference]
  python onnx/export_sam2.py --tiny-random DIR [--seed N]   # tiny random weights + reference/ outputs
  python onnx/export_sam2.py --full-random DIR [--seed N] [--reference]   # full sam2.1_hiera_t size, random weights

--config is a config packaged with sam2 (`sam2.1_hiera_t.yaml`) or the path of a yaml file, e.g. the
one the official Hugging Face repository (facebook/sam2.1-hiera-tiny) ships next to the checkpoint.
--reference writes DIR/reference/ (the tiny-random cases and format) from the official PyTorch
predictors on the loaded weights, for `pixelrefer-studio models verify DIR`; CPU only, slow for
large models.

Progress: one `[progress] {"stage": ..., "index": i, "total": n, "name": ...}` line per step on
stdout (onnx/common/cli.py). Failure: non-zero exit and a last stderr line `error: <sentence>`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import ArgumentParser, ExportError, progress, run_main  # noqa: E402


def main(argv=None):
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--checkpoint", help="official checkpoint (.pt), e.g. sam2.1_hiera_tiny.pt")
    mode.add_argument("--tiny-random", metavar="DIR", help="write a tiny random-weight model + reference outputs")
    mode.add_argument("--full-random", metavar="DIR", help="write a full-size sam2.1_hiera_t model with random weights")
    ap.add_argument("--config", help="(with --checkpoint) packaged config name, e.g. sam2.1_hiera_t.yaml, "
                                     "or the path of a config yaml file")
    ap.add_argument("--out", help="output model directory (with --checkpoint)")
    ap.add_argument("--seed", type=int, default=0, help="random weights seed; reference inputs seed (default 0)")
    ap.add_argument("--no-verify", action="store_true", help="skip the ORT-vs-torch comparison")
    ap.add_argument("--reference", action="store_true",
                    help="(--checkpoint, --full-random) also write DIR/reference/ from the PyTorch predictors")
    ap.add_argument("--no-reference", action="store_true", help="(--tiny-random) skip reference/")
    a = ap.parse_args(argv)
    if a.checkpoint and (not a.config or not a.out):
        ap.error("--checkpoint needs --config and --out")
    if a.reference and a.tiny_random:
        ap.error("--reference is for --checkpoint / --full-random (--tiny-random writes reference/ unless --no-reference)")
    if a.checkpoint and not os.path.isfile(a.checkpoint):
        raise ExportError(f"checkpoint not found: {a.checkpoint}")

    import torch

    torch.set_grad_enabled(False)
    from common import sha256_file
    from sam2_export.build import build_full_random, build_tiny_random, build_video_model, config_file
    from sam2_export.export import export_model

    t0 = time.time()
    if a.checkpoint:
        cfg_path = config_file(a.config)  # raises ExportError for a missing file / unknown name
        progress("load", 1, 1, os.path.basename(a.checkpoint))
        m = build_video_model(a.config, a.checkpoint)
        variant = os.path.splitext(os.path.basename(a.config))[0]
        upstream = {"checkpoint": os.path.basename(a.checkpoint), "sha256": sha256_file(a.checkpoint),
                    "config": os.path.basename(a.config), "config_sha256": sha256_file(cfg_path),
                    "config_source": "file" if os.path.isfile(a.config) else "sam2 package",
                    "package": "sam2==1.1.0"}
        out = a.out
        export_model(m, out, variant, upstream, verify=not a.no_verify)
        reference = a.reference
    elif a.full_random:
        progress("load", 1, 1, f"full-random seed {a.seed}")
        m = build_full_random(a.seed)
        upstream = {"checkpoint": None, "sha256": None, "config": "sam2.1_hiera_t.yaml",
                    "package": "sam2==1.1.0", "random_seed": a.seed}
        out = a.full_random
        export_model(m, out, "sam2.1_hiera_t-random", upstream, verify=not a.no_verify,
                     extra_notes="Random weights (benchmarks only).")
        reference = a.reference
    else:
        from sam2_export.build import TINY_OVERRIDES

        progress("load", 1, 1, f"tiny-random seed {a.seed}")
        m = build_tiny_random(a.seed)
        upstream = {"checkpoint": None, "sha256": None, "config": "sam2.1_hiera_t.yaml",
                    "package": "sam2==1.1.0", "random_seed": a.seed, "hydra_overrides": TINY_OVERRIDES}
        out = a.tiny_random
        export_model(m, out, "sam2.1-tiny-random", upstream, verify=not a.no_verify,
                     extra_notes="Tiny random-weight model for tests (reduced width/depth, same interface).")
        reference = not a.no_reference
    if reference:
        from sam2_export.reference import write_reference

        t1 = time.time()
        write_reference(m, os.path.join(out, "reference"), seed=a.seed,
                        on_case=lambda i, n, name: progress("reference", i, n, name))
        print(f"[export] reference/ written in {time.time() - t1:.1f}s", flush=True)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
    print(f"[export] done: {out} ({total / 1e6:.1f} MB) in {time.time() - t0:.1f}s", flush=True)
    progress("done", 1, 1, out)


if __name__ == "__main__":
    sys.exit(run_main(main))
