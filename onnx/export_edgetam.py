#!/usr/bin/env python3
"""Export EdgeTAM (official code: PyPI edgetam-dimos==1.0.1, Apache-2.0) to a PixelRefer Studio
model directory in the SAM 2 graph split: four ONNX graphs + constants.safetensors + manifest.json
(DESIGN.md sections 2 and 4; the manifest's notes say where the split differs from SAM 2's).

  python onnx/export_edgetam.py --checkpoint edgetam.pt --config edgetam.yaml --out DIR [--reference]
  python onnx/export_edgetam.py --tiny-random DIR [--seed N]   # tiny random weights + reference/ outputs
  python onnx/export_edgetam.py --full-random DIR [--seed N] [--reference]   # full edgetam.yaml size, random weights

--config is a config packaged with edgetam-dimos (`edgetam.yaml`) or the path of a yaml file, e.g. the
one next to the checkpoint in the official Hugging Face repository facebook/EdgeTAM.
--reference writes DIR/reference/ (the tiny-random cases and format) from the official PyTorch code
on the loaded weights, for `pixelrefer-studio models verify DIR`; CPU only, slow for large models.

edgetam-dimos installs a top-level `sam2` package that clashes with the official sam2: scripts/setup.sh
installs it into <cache>/pixelrefer-studio/edgetam-pkg ($PIXELREFER_EDGETAM_PKG) and this process puts it
first on sys.path (onnx/edgetam_export/package.py); it never imports the official sam2 package.

Progress and errors: as onnx/export_sam2.py (onnx/common/cli.py).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import run_main  # noqa: E402
from common.quantize import EDGETAM_REFUSAL  # noqa: E402
from sam2_export import cli  # noqa: E402

PACKAGE_NOTE = "edgetam-dimos==1.0.1 (+ sam2==1.1.0 video predictor logic)"


def _prepare():
    from edgetam_export.package import use_edgetam_sam2

    use_edgetam_sam2()  # before anything imports `sam2`


def _builders():
    from edgetam_export.build import (CONFIG_NAME, TINY_OVERRIDES, TINY_REPVIT, build_full_random,
                                      build_tiny_random, build_video_model, config_file)
    from edgetam_export.export import export_model

    return dict(build_video_model=build_video_model, build_full_random=build_full_random,
                build_tiny_random=build_tiny_random, config_file=config_file, export_model=export_model,
                config_name=CONFIG_NAME,
                tiny_upstream={"hydra_overrides": TINY_OVERRIDES,
                               "timm_repvit_kwargs": {k: list(v) for k, v in TINY_REPVIT.items()}})


def _reference_kwargs():
    from edgetam_export.predictor import DESCRIPTION

    return {"video_predictor": DESCRIPTION}


FAMILY = cli.Family(
    checkpoint_example="edgetam.pt", full_random_name="EdgeTAM", config_help="edgetam.yaml",
    package=PACKAGE_NOTE, package_source="edgetam-dimos package", builders=_builders,
    random_variant="edgetam-random", tiny_variant="edgetam-tiny-random",
    tiny_notes="Tiny random-weight model for tests (reduced width/depth/latents, same interface).",
    prepare=_prepare, reference_kwargs=_reference_kwargs, quantize_refusal=EDGETAM_REFUSAL,
)


def main(argv=None):
    cli.main(argv, __doc__, FAMILY)


if __name__ == "__main__":
    sys.exit(run_main(main))
