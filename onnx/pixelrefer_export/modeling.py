"""PyTorch reference modules for PixelRefer / PixelRefer-Lite, written for this project.

The module tree reproduces the official parameter names, so a Hugging Face checkpoint directory
(config.json + *.safetensors) loads with `load_state_dict(strict=True)` (tied lm_head allowed).
Every forward follows the official code step by step (citations relative to `PixelRefer/` in
alibaba-damo-academy/PixelRefer):

* vision encoder: pixelrefer/model/damovl_encoder/modeling_damovl_encoder.py (SigLIP-NaViT, 2-D RoPE);
  the RoPE table is an INPUT (built by the host, see host.py `vision_rope`).
* projector: pixelrefer/model/projector.py (mlp2x_gelu = Linear, GELU(erf), Linear).
* region encoder: pixelrefer/model/region_encoder.py and pixelreferlite/model/region_encoder.py
  (pos_linear, feat_linear, Lite OCI = two pre-norm residual cross-attentions).
* decoder: HF Qwen2 (1-D RoPE, GQA, RMSNorm), with an explicit per-layer KV cache.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import PixelReferConfig, TextConfig, VisionConfig


# ------------------------------------------------------------------------------------------------
# Vision encoder (modeling_damovl_encoder.py)
# ------------------------------------------------------------------------------------------------
def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class VisionEmbeddings(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Conv2d(cfg.num_channels, cfg.hidden_size, cfg.patch_size, cfg.patch_size)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        # :193-201  view(-1, C, p, p) -> conv -> (N, hidden). Done as a matmul (identical math, exports
        # without a 4-D conv over N "images").
        w = self.patch_embedding.weight.reshape(self.cfg.hidden_size, -1)
        return patches @ w.t() + self.patch_embedding.bias


class VisionAttention(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        c = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.head_dim = c // self.num_heads
        self.k_proj = nn.Linear(c, c)
        self.v_proj = nn.Linear(c, c)
        self.q_proj = nn.Linear(c, c)
        self.out_proj = nn.Linear(c, c)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        n = h.shape[0]
        q = self.q_proj(h).view(n, self.num_heads, self.head_dim)
        k = self.k_proj(h).view(n, self.num_heads, self.head_dim)
        v = self.v_proj(h).view(n, self.num_heads, self.head_dim)
        # apply_rotary_pos_emb_vision (:154-163), computed in float32; cos/sin: [N, head_dim]
        c_, s_ = cos[:, None, :].float(), sin[:, None, :].float()
        q = (q.float() * c_ + _rotate_half(q.float()) * s_).to(h.dtype)
        k = (k.float() * c_ + _rotate_half(k.float()) * s_).to(h.dtype)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [H, N, D]
        w = torch.matmul(q, k.transpose(1, 2)) / math.sqrt(self.head_dim)
        w = torch.softmax(w.float(), dim=-1).to(h.dtype)  # one image = one full (unmasked) sequence
        o = torch.matmul(w, v).transpose(0, 1).reshape(n, -1)
        return self.out_proj(o)


class VisionMLP(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.fc2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))  # gelu_pytorch_tanh


class VisionLayer(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.self_attn = VisionAttention(cfg)
        self.layer_norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.mlp = VisionMLP(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, h, cos, sin):  # :384-389 pre-LN residual
        h = h + self.self_attn(self.layer_norm1(h), cos, sin)
        return h + self.mlp(self.layer_norm2(h))


class VisionEncoderStack(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList([VisionLayer(cfg) for _ in range(cfg.num_hidden_layers)])


class DAMOVLVisionModel(nn.Module):
    """Names: embeddings.*, encoder.layers.N.*, post_layernorm.* (:510-538)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.embeddings = VisionEmbeddings(cfg)
        self.encoder = VisionEncoderStack(cfg)
        self.post_layernorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, patches, cos, sin):
        h = self.embeddings(patches)
        for layer in self.encoder.layers:
            h = layer(h, cos, sin)
        return self.post_layernorm(h)


class VisionEncoderWrapper(nn.Module):
    """`model.vision_encoder.vision_encoder.*` (encoder.py:287-341 wraps the HF model in `.vision_encoder`)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.vision_encoder = DAMOVLVisionModel(cfg)

    def forward(self, patches, cos, sin):
        return self.vision_encoder(patches, cos, sin)


# ------------------------------------------------------------------------------------------------
# Projector (projector.py: MlpGeluProjector -> self.readout = build_mlp(2, ...))
# ------------------------------------------------------------------------------------------------
class MlpGeluProjector(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.readout = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, x):
        return self.readout(x)


# ------------------------------------------------------------------------------------------------
# Region encoder (region_encoder.py)
# ------------------------------------------------------------------------------------------------
class RegionEncoder(nn.Module):
    """MaskExtractor parameters: pos_linear (2->C_vis), feat_linear (C_vis->C_llm, GELU, C_llm->C_llm);
    Lite adds mask_embedding (unused), fusion_attention_{local,global} (nn.MultiheadAttention, 8 heads,
    batch_first), ln_{local,global}."""

    def __init__(self, cfg: PixelReferConfig):
        super().__init__()
        cv, cl = cfg.mm_hidden_size, cfg.text.hidden_size
        self.lite = cfg.variant == "lite"
        self.feat_linear = nn.Sequential(nn.Linear(cv, cl), nn.GELU(), nn.Linear(cl, cl))
        self.pos_linear = nn.Linear(2, cv)
        if self.lite:
            self.mask_embedding = nn.Conv2d(1, cv, kernel_size=1)
            self.fusion_attention_local = nn.MultiheadAttention(cv, cfg.oci_num_heads, batch_first=True)
            self.fusion_attention_global = nn.MultiheadAttention(cv, cfg.oci_num_heads, batch_first=True)
            self.ln_local = nn.LayerNorm(cv)
            self.ln_global = nn.LayerNorm(cv)
            self.num_heads = cfg.oci_num_heads

    # region_encoder.py:51-54 — feat = feat + pos_linear(pos)
    def add_pos(self, feats: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return feats + self.pos_linear(pos.to(feats.dtype))

    def mlp(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.feat_linear(tokens)

    def _xattn(self, mha: nn.MultiheadAttention, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """nn.MultiheadAttention(q, kv, kv) written out (same math as torch's fused path)."""
        b, nq, c = q.shape
        nk = kv.shape[1]
        h = self.num_heads
        d = c // h
        wq, wk, wv = mha.in_proj_weight.chunk(3, dim=0)
        bq, bk, bv = mha.in_proj_bias.chunk(3, dim=0)
        qq = (q @ wq.t() + bq).view(b, nq, h, d).transpose(1, 2)
        kk = (kv @ wk.t() + bk).view(b, nk, h, d).transpose(1, 2)
        vv = (kv @ wv.t() + bv).view(b, nk, h, d).transpose(1, 2)
        a = torch.softmax(torch.matmul(qq, kk.transpose(-1, -2)) / math.sqrt(d), dim=-1)
        o = torch.matmul(a, vv).transpose(1, 2).reshape(b, nq, c)
        return mha.out_proj(o)

    def oci(self, obj: torch.Tensor, local_feats: torch.Tensor, global_feats: torch.Tensor) -> torch.Tensor:
        """Object-Centric Infusion (pixelreferlite/model/region_encoder.py:38-50,106-107):
        q = q + MHA_local(LN_local(q), local, local); q = q + MHA_global(LN_global(q), global, global)."""
        x = obj + self._xattn(self.fusion_attention_local, self.ln_local(obj), local_feats)
        x = x + self._xattn(self.fusion_attention_global, self.ln_global(x), global_feats)
        return x


# ------------------------------------------------------------------------------------------------
# Qwen2 decoder with explicit KV cache
# ------------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(dt)


class Qwen2Attention(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        c, hd = cfg.hidden_size, cfg.head_dim
        self.nh, self.nkv, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, hd
        self.q_proj = nn.Linear(c, self.nh * hd, bias=True)
        self.k_proj = nn.Linear(c, self.nkv * hd, bias=True)
        self.v_proj = nn.Linear(c, self.nkv * hd, bias=True)
        self.o_proj = nn.Linear(self.nh * hd, c, bias=False)

    def forward(self, x, cos, sin, mask, past_k, past_v):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        rep = self.nh // self.nkv
        kr = k.repeat_interleave(rep, dim=1) if rep > 1 else k
        vr = v.repeat_interleave(rep, dim=1) if rep > 1 else v
        w = torch.matmul(q, kr.transpose(-1, -2)) / math.sqrt(self.hd) + mask
        w = torch.softmax(w.float(), dim=-1).to(q.dtype)
        o = torch.matmul(w, vr).transpose(1, 2).reshape(b, s, self.nh * self.hd)
        return self.o_proj(o), k, v


class Qwen2MLP(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen2Layer(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.self_attn = Qwen2Attention(cfg)
        self.mlp = Qwen2MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask, pk, pv):
        a, k, v = self.self_attn(self.input_layernorm(x), cos, sin, mask, pk, pv)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, k, v


class InnerModel(nn.Module):
    """`model.*`: Qwen2Model + PixelreferMetaModel additions (pixelrefer_arch.py:55-63)."""

    def __init__(self, cfg: PixelReferConfig):
        super().__init__()
        t = cfg.text
        self.embed_tokens = nn.Embedding(t.vocab_size, t.hidden_size)
        self.layers = nn.ModuleList([Qwen2Layer(t) for _ in range(t.num_hidden_layers)])
        self.norm = RMSNorm(t.hidden_size, t.rms_norm_eps)
        self.vision_encoder = VisionEncoderWrapper(cfg.vision)
        self.mm_projector = MlpGeluProjector(cfg.mm_hidden_size, t.hidden_size)
        self.region_encoder = RegionEncoder(cfg)


class PixelReferForCausalLM(nn.Module):
    def __init__(self, cfg: PixelReferConfig):
        super().__init__()
        self.cfg = cfg
        self.model = InnerModel(cfg)
        t = cfg.text
        self.lm_head = nn.Linear(t.hidden_size, t.vocab_size, bias=False)
        if t.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def inv_freq(self) -> torch.Tensor:
        # HF Qwen2 default RoPE: 1 / theta^(arange(0, hd, 2)/hd), always float32 (also in fp16 graphs)
        hd = self.cfg.text.head_dim
        return 1.0 / (self.cfg.text.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))

    # --- the pieces that become graphs -------------------------------------------------------
    def vision_forward(self, patches, cos, sin):
        return self.model.vision_encoder(patches, cos, sin)

    def project(self, feats):
        return self.model.mm_projector(feats)

    def embed(self, ids):
        return self.model.embed_tokens(ids)

    def decode(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
               past: List[Tuple[torch.Tensor, torch.Tensor]]):
        """One decoder call. inputs_embeds [B,S,C]; attention_mask [B,P+S] (1 = attend); position_ids [B,S];
        past: per layer (k, v) of [B, n_kv, P, head_dim]. Returns logits of the LAST position [B, V] and
        the updated per-layer caches [B, n_kv, P+S, head_dim]."""
        dt = inputs_embeds.dtype
        b, s, _ = inputs_embeds.shape
        p = past[0][0].shape[2]
        # HF Qwen2RotaryEmbedding (default rope): freqs = pos * inv_freq, emb = cat(freqs, freqs)
        freqs = position_ids[:, :, None].float() * self.inv_freq()[None, None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos().to(dt)[:, None], emb.sin().to(dt)[:, None]
        # causal + padding mask, additive
        q_pos = torch.arange(s, device=inputs_embeds.device)[:, None] + p
        k_pos = torch.arange(p + s, device=inputs_embeds.device)[None, :]
        allowed = (k_pos <= q_pos)[None, None] & (attention_mask[:, None, None, :] > 0)
        mask = torch.where(allowed, torch.zeros((), dtype=dt), torch.full((), torch.finfo(dt).min, dtype=dt))
        x = inputs_embeds
        present = []
        for layer, (pk, pv) in zip(self.model.layers, past):
            x, k, v = layer(x, cos, sin, mask, pk, pv)
            present.append((k, v))
        x = self.model.norm(x[:, -1, :])
        return self.lm_head(x), present

    def empty_cache(self, batch: int = 1, dtype=torch.float32):
        t = self.cfg.text
        z = torch.zeros(batch, t.num_key_value_heads, 0, t.head_dim, dtype=dtype)
        return [(z, z) for _ in range(t.num_hidden_layers)]


def load_state_dict_strict(model: PixelReferForCausalLM, sd: dict) -> None:
    """Load official parameter names. Tolerates a missing lm_head.weight when embeddings are tied and the
    (unused) Lite `model.mm_projector.*` being absent; anything else missing or unexpected is an error."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    allowed_missing = set()
    if model.cfg.text.tie_word_embeddings:
        allowed_missing.add("lm_head.weight")
    if model.cfg.variant == "lite":
        allowed_missing |= {k for k in own if k.startswith("model.mm_projector.")}
    bad_missing = [k for k in missing if k not in allowed_missing]
    if bad_missing or unexpected:
        raise ValueError("checkpoint does not match the PixelRefer parameter names: "
                         f"missing {bad_missing[:8]}{'...' if len(bad_missing) > 8 else ''}, "
                         f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")
    for k, v in sd.items():
        if own[k].shape != v.shape:
            raise ValueError(f"checkpoint tensor {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    model.load_state_dict(sd, strict=False)
    if model.cfg.text.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
