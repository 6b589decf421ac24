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

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import run_main  # noqa: E402
from sam2_export import cli  # noqa: E402


def _builders():
    from sam2_export.build import TINY_OVERRIDES, build_full_random, build_tiny_random, build_video_model, config_file
    from sam2_export.export import export_model

    return dict(build_video_model=build_video_model, build_full_random=build_full_random,
                build_tiny_random=build_tiny_random, config_file=config_file, export_model=export_model,
                config_name="sam2.1_hiera_t.yaml", tiny_upstream={"hydra_overrides": TINY_OVERRIDES})


FAMILY = cli.Family(
    checkpoint_example="sam2.1_hiera_tiny.pt", full_random_name="sam2.1_hiera_t",
    config_help="e.g. sam2.1_hiera_t.yaml", package="sam2==1.1.0", package_source="sam2 package",
    builders=_builders, random_variant="sam2.1_hiera_t-random", tiny_variant="sam2.1-tiny-random",
    tiny_notes="Tiny random-weight model for tests (reduced width/depth, same interface).",
)


def main(argv=None):
    cli.main(argv, __doc__, FAMILY)


if __name__ == "__main__":
    sys.exit(run_main(main))
