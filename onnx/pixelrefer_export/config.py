"""Checkpoint configuration for PixelRefer / PixelRefer-Lite (Hugging Face layout).

Keys and defaults follow the official sources (paths relative to `PixelRefer/` in
alibaba-damo-academy/PixelRefer; see onnx/PIXELREFER_NOTES.md):
* model_type `pixelrefer_qwen2` (pixelrefer/model/pixelrefer_qwen2.py:30) or `pixelreferlite_qwen2`
  (pixelreferlite/model/pixelreferlite_qwen2.py:30);
* spatial_merge_size / mm_max_length / use_token_compression / mask_num written by train.py:615-619 with the
  values of scripts/train/pixelrefer/stage2.sh (2 / 8192 / True / 32);
* the vision tower config is NOT in the PixelRefer config: it comes from `mm_vision_encoder`
  (DAMO-NLP-SG/VL3-SigLIP-NaViT, config.json: 1152 / 4304 / 27 layers / 16 heads / patch 14 /
  gelu_pytorch_tanh / eps 1e-6); the image processor from its preprocessor_config.json
  (mean = std = 0.5, resample 3 = bicubic, rescale 1/255, min_pixels default 56*56).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, asdict
from typing import Any, Dict, List, Optional

# DAMO-NLP-SG/VL3-SigLIP-NaViT config.json (HF commit 0e04069).
VL3_SIGLIP_NAVIT = dict(
    hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
    num_channels=3, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
)
# DAMO-NLP-SG/VL3-SigLIP-NaViT preprocessor_config.json; min_pixels: damovl_encoder/image_processing.py:177.
VL3_PREPROCESSOR = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], resample=3,
                        rescale_factor=1.0 / 255.0, patch_size=14, min_pixels=56 * 56)


@dataclass
class VisionConfig:
    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 27
    num_attention_heads: int = 16
    num_channels: int = 3
    patch_size: int = 14
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6
    rope_theta: float = 10000.0  # VisionRotaryEmbedding default (modeling_damovl_encoder.py:167)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass
class TextConfig:
    hidden_size: int = 1536
    intermediate_size: int = 8960
    num_hidden_layers: int = 28
    num_attention_heads: int = 12
    num_key_value_heads: int = 2
    vocab_size: int = 151936
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    tie_word_embeddings: bool = True
    hidden_act: str = "silu"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass
class PixelReferConfig:
    variant: str = "full"  # "full" (pixelrefer_qwen2) or "lite" (pixelreferlite_qwen2)
    model_type: str = "pixelrefer_qwen2"
    text: TextConfig = field(default_factory=TextConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    mm_hidden_size: int = 1152
    mm_projector_type: str = "mlp2x_gelu"
    spatial_merge_size: int = 2
    mm_max_length: int = 8192
    use_token_compression: bool = True
    mask_num: int = 32
    mm_vision_encoder: str = "DAMO-NLP-SG/VL3-SigLIP-NaViT"
    image_mean: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    rescale_factor: float = 1.0 / 255.0
    min_pixels: int = 56 * 56
    oci_num_heads: int = 8  # pixelreferlite/model/region_encoder.py:22
    torch_dtype: str = "bfloat16"  # dtype the upstream model runs in (affects video pruning, see host.py)
    raw: Dict[str, Any] = field(default_factory=dict)

    @property
    def processor_max_pixels(self) -> int:
        # encoder.py:315-317: max_pixels = mm_max_length * (merge**2 * patch**2)
        m = self.spatial_merge_size
        return self.mm_max_length * (m * m * self.vision.patch_size ** 2)

    # ---------------------------------------------------------------------------------------
    @staticmethod
    def from_dict(d: Dict[str, Any], vision: Optional[Dict[str, Any]] = None,
                  preprocessor: Optional[Dict[str, Any]] = None) -> "PixelReferConfig":
        mt = d.get("model_type", "pixelrefer_qwen2")
        if mt not in ("pixelrefer_qwen2", "pixelreferlite_qwen2"):
            raise ValueError(f"config.json model_type is {mt!r}; expected pixelrefer_qwen2 or pixelreferlite_qwen2")
        variant = "lite" if mt == "pixelreferlite_qwen2" else "full"
        text = TextConfig(
            hidden_size=d["hidden_size"], intermediate_size=d["intermediate_size"],
            num_hidden_layers=d["num_hidden_layers"], num_attention_heads=d["num_attention_heads"],
            num_key_value_heads=d.get("num_key_value_heads", d["num_attention_heads"]),
            vocab_size=d["vocab_size"], rms_norm_eps=d.get("rms_norm_eps", 1e-6),
            rope_theta=d.get("rope_theta", 1000000.0),
            tie_word_embeddings=d.get("tie_word_embeddings", False), hidden_act=d.get("hidden_act", "silu"),
        )
        if d.get("rope_scaling"):
            raise ValueError("config.json has rope_scaling; PixelRefer uses plain 1-D RoPE (not supported)")
        v = dict(VL3_SIGLIP_NAVIT)
        for key in ("vision_config", "vision_encoder_config"):
            if isinstance(d.get(key), dict):
                v.update({k: d[key][k] for k in d[key] if k in v})
        if vision:
            v.update({k: vision[k] for k in vision if k in v})
        vis = VisionConfig(**v)
        pre = dict(VL3_PREPROCESSOR)
        if preprocessor:
            pre.update({k: preprocessor[k] for k in preprocessor if k in pre})
        cfg = PixelReferConfig(
            variant=variant, model_type=mt, text=text, vision=vis,
            mm_hidden_size=d.get("mm_hidden_size", vis.hidden_size),
            mm_projector_type=d.get("mm_projector_type", "mlp2x_gelu"),
            spatial_merge_size=d.get("spatial_merge_size", 1),
            mm_max_length=d.get("mm_max_length", 9477 // (d.get("spatial_merge_size", 1) ** 2)),
            use_token_compression=bool(d.get("use_token_compression", False)),
            mask_num=d.get("mask_num") or 32,
            mm_vision_encoder=d.get("mm_vision_encoder", "DAMO-NLP-SG/VL3-SigLIP-NaViT"),
            image_mean=list(pre["image_mean"]), image_std=list(pre["image_std"]),
            rescale_factor=float(pre["rescale_factor"]), min_pixels=int(pre["min_pixels"]),
            torch_dtype=str(d.get("torch_dtype") or "float16"),  # __init__.py:154: fp16 if absent
            raw=d,
        )
        if cfg.mm_projector_type != "mlp2x_gelu":
            raise ValueError(f"mm_projector_type {cfg.mm_projector_type!r} not supported (expected mlp2x_gelu)")
        if vis.hidden_act != "gelu_pytorch_tanh":
            raise ValueError(f"vision hidden_act {vis.hidden_act!r} not supported")
        if vis.head_dim % 4:
            raise ValueError("vision head_dim must be divisible by 4 for the 2-D RoPE layout")
        return cfg

    @staticmethod
    def load(model_dir: str) -> "PixelReferConfig":
        with open(os.path.join(model_dir, "config.json")) as f:
            d = json.load(f)
        vision = pre = None
        vp = os.path.join(model_dir, "vision_config.json")
        if os.path.exists(vp):
            with open(vp) as f:
                vision = json.load(f)
        pp = os.path.join(model_dir, "preprocessor_config.json")
        if os.path.exists(pp):
            with open(pp) as f:
                pre = json.load(f)
        return PixelReferConfig.from_dict(d, vision, pre)

    def summary(self) -> Dict[str, Any]:
        out = asdict(self)
        out.pop("raw", None)
        return out


def load_generation_config(model_dir: str) -> Dict[str, Any]:
    p = os.path.join(model_dir, "generation_config.json")
    if os.path.exists(p):
        with open(p) as f:
            return json.load(f)
    return {}
