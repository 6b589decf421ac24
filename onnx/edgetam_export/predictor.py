"""The video predictor the EdgeTAM reference runs: the official SAM 2.1 predictor logic
(`sam2/sam2_video_predictor.py` of sam2==1.1.0: independent per-object memory banks, objects added
after tracking started, corrections per object) over the official EdgeTAM model (`SAM2Base` of
edgetam-dimos==1.0.1, with its RepViT encoder and spatial perceiver).

Why: edgetam-dimos ships the older SAM 2 predictor, which tracks all objects as one batch (a
correction on one object makes that frame a conditioning frame of every object and re-encodes the
others' memories from their masks). PixelRefer Studio's tracker (src/segment/video.rs) implements
the sam2==1.1.0 per-object logic for every SAM 2 family model, and DESIGN.md section 2 gives EdgeTAM
SAM 2's per-object bank logic, so the reference must use the same predictor logic; the model
(everything under SAM2Base) is EdgeTAM's own. For objects that are all prompted on the same frames
and never corrected separately, both predictors give the same result.

The sam2==1.1.0 predictor file is executed as a module of its own (not imported as part of the
official `sam2` package): its `from sam2...` imports bind to the EdgeTAM package already on sys.path.
"""
from __future__ import annotations

import importlib.util
import os
import sys

from common import ExportError

MODULE = "pixelrefer_edgetam_video_predictor"
OFFICIAL_SAM2 = "sam2==1.1.0"


def _official_predictor_file() -> str:
    from importlib import metadata

    try:
        dist = metadata.distribution("sam2")
    except metadata.PackageNotFoundError as e:
        raise ExportError(f"the EdgeTAM reference needs the official {OFFICIAL_SAM2} predictor file "
                          "(install onnx/requirements.txt)") from e
    if dist.version != OFFICIAL_SAM2.split("==")[1]:
        raise ExportError(f"the EdgeTAM reference needs {OFFICIAL_SAM2}, found sam2=={dist.version}")
    path = str(dist.locate_file("sam2/sam2_video_predictor.py"))
    if not os.path.isfile(path):
        raise ExportError(f"{OFFICIAL_SAM2} is installed but {path} is missing")
    return path


def predictor_module():
    """The module holding `SAM2VideoPredictor` (sam2==1.1.0 logic on EdgeTAM's SAM2Base) and
    `EdgeTAMVideoPredictor`, registered in sys.modules as MODULE (hydra instantiates it by name)."""
    if MODULE in sys.modules:
        return sys.modules[MODULE]
    import sam2.modeling.sam2_base as base

    if not hasattr(base.SAM2Base, "__init__") or "spatial_perceiver" not in base.SAM2Base.__init__.__code__.co_varnames:
        raise ExportError("the imported sam2 package is not EdgeTAM's (SAM2Base has no spatial_perceiver)")
    spec = importlib.util.spec_from_file_location(MODULE, _official_predictor_file())
    mod = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = mod
    spec.loader.exec_module(mod)
    official = mod.SAM2VideoPredictor

    class EdgeTAMVideoPredictor(official):
        """sam2==1.1.0 SAM2VideoPredictor whose cached maskmem_pos_enc may be the perceiver's
        [B, T, Cm] latents positions (edgetam-dimos sam2/sam2_video_predictor.py
        _get_maskmem_pos_enc; the 1.1.0 version expands 4-D tensors only)."""

        def _get_maskmem_pos_enc(self, inference_state, current_out):
            out_pos = current_out["maskmem_pos_enc"]
            if out_pos is None or out_pos[0].ndim != 3:
                return super()._get_maskmem_pos_enc(inference_state, current_out)
            consts = inference_state["constants"]
            if "maskmem_pos_enc" not in consts:
                consts["maskmem_pos_enc"] = [x[0:1].clone() for x in out_pos]
            batch_size = out_pos[0].size(0)
            return [x.expand(batch_size, -1, -1) for x in consts["maskmem_pos_enc"]]

    EdgeTAMVideoPredictor.__module__ = MODULE
    mod.EdgeTAMVideoPredictor = EdgeTAMVideoPredictor
    return mod


TARGET = f"{MODULE}.EdgeTAMVideoPredictor"
DESCRIPTION = ("sam2==1.1.0 SAM2VideoPredictor logic (per-object memory banks) over the edgetam-dimos==1.0.1 "
               "SAM2Base, built with the build_sam2_video_predictor post-processing overrides "
               "(onnx/edgetam_export/predictor.py explains why)")
