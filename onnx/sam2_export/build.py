"""Build an official `sam2` (PyPI sam2==1.1.0) SAM2VideoPredictor model, from a real checkpoint or
with random weights (full size, or a tiny reduced-width variant for tests).

We always build through `sam2.build_sam.build_sam2_video_predictor`, i.e. the official hydra config
plus the official predictor post-processing overrides (dynamic multimask via stability,
binarize_mask_from_pts_for_mem_enc=true, fill_hole_area=8). The same model object is wrapped by
SAM2ImagePredictor for image mode (it is a SAM2Base subclass; the extra predictor flags only affect
video mode).
"""
from __future__ import annotations

import os
from typing import List, Optional

import torch

# Reduced width/depth for --tiny-random. Same graph interface and host constants layout as the
# real models; image size 1024 and the 64x64 embedding grid are kept.
#  - hidden_dim C = 64 (real: 256), mem_dim = 16 (real: 64) -> still C // mem_dim = 4 tokens/pointer
#  - Hiera: embed_dim 8, stages [1,1,2,1], global attention in block 3 (real tiny: 96, [1,2,7,2])
#  - memory attention: 2 layers, FFN 128 (real: 4 layers, FFN 2048)
TINY_OVERRIDES: List[str] = [
    "model.image_encoder.trunk.embed_dim=8",
    "model.image_encoder.trunk.num_heads=1",
    "model.image_encoder.trunk.stages=[1,1,2,1]",
    "model.image_encoder.trunk.global_att_blocks=[3]",
    "model.image_encoder.neck.d_model=64",
    "model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "model.image_encoder.neck.position_encoding.num_pos_feats=64",
    "model.memory_attention.d_model=64",
    "model.memory_attention.num_layers=2",
    "model.memory_attention.layer.d_model=64",
    "model.memory_attention.layer.dim_feedforward=128",
    "model.memory_attention.layer.self_attention.embedding_dim=64",
    "model.memory_attention.layer.cross_attention.embedding_dim=64",
    "model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "model.memory_encoder.out_dim=16",
    "++model.memory_encoder.in_dim=64",
    "model.memory_encoder.position_encoding.num_pos_feats=16",
    "++model.memory_encoder.mask_downsampler.embed_dim=64",
    "model.memory_encoder.fuser.layer.dim=64",
    "model.memory_encoder.fuser.num_layers=1",
]


def config_path(config: str) -> str:
    """Map a user-facing config name ('sam2.1_hiera_t.yaml', 'sam2_hiera_l') to the name the
    sam2 package's hydra search path knows ('configs/sam2.1/sam2.1_hiera_t.yaml')."""
    name = os.path.basename(config)
    if not name.endswith(".yaml"):
        name += ".yaml"
    folder = "sam2.1" if name.startswith("sam2.1") else "sam2"
    return f"configs/{folder}/{name}"


def build_video_model(config: str, checkpoint: Optional[str] = None, extra_overrides: List[str] = (),
                      seed: Optional[int] = None):
    """Returns an eval-mode SAM2VideoPredictor on CPU (fp32)."""
    import sam2  # noqa: F401  (initialises hydra's config module)
    from sam2.build_sam import build_sam2_video_predictor

    if seed is not None:
        torch.manual_seed(seed)
    model = build_sam2_video_predictor(
        config_path(config), ckpt_path=checkpoint, device="cpu", mode="eval",
        hydra_overrides_extra=list(extra_overrides),
    )
    model = model.float().eval()
    # Host policy recorded in the manifest (official SAM2VideoPredictor flag, default False there):
    # a correction click on an already-tracked frame makes it a conditioning frame, so the
    # correction stays in the memory bank when the video is propagated again.
    model.add_all_frames_to_correct_as_cond = True
    return model


@torch.no_grad()
def _tiny_sensitivity_init(m, seed: int):
    """Plain random init makes the memory read-out spatially uniform, so every tracked frame gets
    nearly the same mask whatever the object's memory holds, and a video test could not see a wrong
    memory bank. Deterministic re-scaling so that tracking depends on the memory:
      * memory-attention cross-attention: q_proj/k_proj weights x0.3 and a shared large bias on the
        highest RoPE frequencies -> queries attend to the same position in every memory frame;
        out_proj x20 -> the memory read-out dominates the conditioned feature;
      * mask decoder conv_s0/conv_s1 x0.1 -> the mask depends more on the (memory-conditioned)
        64x64 embedding than on the high-resolution features.
    """
    g = torch.Generator().manual_seed(seed + 7)
    for layer in m.memory_attention.layers:
        ca = layer.cross_attn_image
        d = ca.q_proj.weight.shape[0] // ca.num_heads
        b = torch.zeros(ca.q_proj.weight.shape[0])
        idx = list(range(0, 8)) + list(range(d // 2, d // 2 + 8))  # RoPE pairs 0-3 (x) and d/4.. (y)
        b[idx] = 7.0 * torch.sign(torch.randn(len(idx), generator=g))
        ca.q_proj.weight.mul_(0.3)
        ca.q_proj.bias.copy_(b)
        ca.k_proj.weight.mul_(0.3)
        ca.k_proj.bias.copy_(b)
        ca.out_proj.weight.mul_(20.0)
    dec = m.sam_mask_decoder
    for conv in (dec.conv_s0, dec.conv_s1):
        conv.weight.mul_(0.1)
        conv.bias.mul_(0.1)


def build_tiny_random(seed: int = 0):
    m = build_video_model("sam2.1_hiera_t.yaml", None, TINY_OVERRIDES, seed=seed)
    _tiny_sensitivity_init(m, seed)
    return m


def build_full_random(seed: int = 0):
    return build_video_model("sam2.1_hiera_t.yaml", None, [], seed=seed)
