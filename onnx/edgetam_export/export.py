"""Export a built EdgeTAM model into a PixelRefer Studio model directory: SAM 2's exporter
(onnx/sam2_export/export.py) with EdgeTAM's memory graphs and manifest entries."""
from __future__ import annotations

from typing import Any, Dict, Optional

from sam2_export.export import GRAPH_VERSION_NOTES, GraphFamily
from sam2_export.export import export_model as _export_model

from .graphs import (EdgeTAMMemoryAttentionGraph, EdgeTAMMemoryEncoderGraph, EdgeTAMPromptDecoderGraph,
                     latents_pos, perceiver_sizes)

FAMILY = "edgetam"
EDGETAM_NOTES = (
    "EdgeTAM (edgetam-dimos==1.0.1) in the SAM 2 graph split; kind stays sam2 (same host logic), "
    "family=edgetam. Differences from SAM 2's split: (E1) memory_encoder ends with EdgeTAM's spatial "
    "perceiver, so memories are stored compressed, as upstream does: maskmem_features is [B,Cm,T] "
    "with T = constants.mem_tokens latents (global latents first, then the 2-D latents in row-major "
    "order), not [B,Cm,F,F]; memory_attention takes mem_features [B,S,Cm,T]. (E2) the latents' "
    "positions (zeros for the global latents, sine encoding of the 2-D latent grid) are baked into "
    "memory_attention with maskmem_tpos_enc. (E3) memory_attention cross-attention is "
    "RoPEAttentionv2: query RoPE on the FxF grid, key RoPE on the 2-D latents of each memory only. "
    "(E4) the reference/ video cases run the sam2==1.1.0 video predictor logic (per-object banks) "
    "over EdgeTAM's SAM2Base, see onnx/edgetam_export/predictor.py. (E5) image_encoder's RepViT token "
    "mixers are re-parameterised (timm RepVggDw.fuse: the kxk and 1x1 depthwise convolutions, the "
    "identity and the batch norm as one kxk depthwise convolution; the same linear map). Shared notes: "
)


def edgetam_family(m) -> GraphFamily:
    n1, n2 = perceiver_sizes(m)
    return GraphFamily(
        prompt_decoder=EdgeTAMPromptDecoderGraph,
        memory_encoder=EdgeTAMMemoryEncoderGraph,
        memory_attention=EdgeTAMMemoryAttentionGraph,
        maskmem_pos=latents_pos,
        notes=EDGETAM_NOTES + GRAPH_VERSION_NOTES,
        manifest_extra={"family": FAMILY},
        constants_extra={"family": FAMILY, "mem_tokens": n1 + n2, "mem_latents_global": n1,
                         "mem_latents_2d": n2},
    )


def export_model(m, out_dir: str, variant: str, upstream: Dict[str, Any], verify: bool = True,
                 extra_notes: Optional[str] = None) -> Dict[str, Any]:
    return _export_model(m, out_dir, variant, upstream, verify=verify, extra_notes=extra_notes,
                         family=edgetam_family(m))
