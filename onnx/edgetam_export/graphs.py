"""EdgeTAM's graphs where they differ from SAM 2's (onnx/sam2_export/graphs.py): the memory encoder
ends with the spatial perceiver, and memory attention reads the compressed memories with
RoPEAttentionv2. Line references are to edgetam-dimos==1.0.1.

  memory_encoder   pix_feat, mask_logits, object_score_logits, binarize
                   -> maskmem_features[B,Cm,T]   T = num_latents + num_latents_2d perceiver latents
  memory_attention pix_feat, mem_features[B,S,Cm,T], mem_tpos_index[S], obj_ptrs, obj_ptr_pos
                   -> pix_feat_with_mem[B,C,F,F]

The image encoder (RepViT + FPN neck) is SAM 2's graph unchanged; the prompt decoder too, except
that the point embedding is restated traceably (EdgeTAMPromptDecoderGraph).
"""
from __future__ import annotations

import math

import torch

from sam2_export.graphs import MemoryAttentionGraph, MemoryEncoderGraph, PromptDecoderGraph, _apply_rope


class EdgeTAMPromptDecoderGraph(PromptDecoderGraph):
    """SAM 2's prompt decoder graph. edgetam-dimos sam/prompt_encoder.py _embed_points adds the label
    embeddings by boolean-mask assignment (`point_embedding[labels == k] += ...`), which the ONNX
    tracer bakes to the example's B and N; this is the same arithmetic with torch.where (the form
    sam2==1.1.0 uses)."""

    def _embed_points(self, point_coords, point_labels):
        pe = self.m.sam_prompt_encoder
        points = point_coords + 0.5  # shift to the centre of the pixel
        pad_pt = torch.zeros((points.shape[0], 1, 2), dtype=points.dtype)
        pad_lb = -torch.ones((point_labels.shape[0], 1), dtype=point_labels.dtype)
        points = torch.cat([points, pad_pt], dim=1)
        labels = torch.cat([point_labels, pad_lb], dim=1).unsqueeze(-1)
        emb = pe.pe_layer.forward_with_coords(points, pe.input_image_size)
        emb = torch.where(labels == -1, torch.zeros_like(emb) + pe.not_a_point_embed.weight, emb)
        for k in range(4):
            emb = torch.where(labels == k, emb + pe.point_embeddings[k].weight, emb)
        return emb


def perceiver_sizes(m):
    """(global latents, 2-D latents) per memory of a built EdgeTAM model."""
    p = m.spatial_perceiver
    return max(int(p.num_latents), 0), max(int(p.num_latents_2d), 0)


@torch.no_grad()
def latents_pos(m, feat_size: int):
    """Positional encoding of one memory's latents, channel-first [Cm, T] (input independent):
    zeros for the global latents (perceiver.py PerceiverResampler.forward_1d) and the sine encoding
    of the sqrt(n)xsqrt(n) grid for the 2-D latents (forward_2d), in PerceiverResampler.forward's
    order (global first)."""
    n1, n2 = perceiver_sizes(m)
    Cm = m.mem_dim
    parts = []
    if n1 > 0:
        parts.append(torch.zeros(Cm, n1))
    if n2 > 0:
        side = int(round(n2 ** 0.5))
        parts.append(m.spatial_perceiver.position_encoding(torch.zeros(1, Cm, side, side))[0].reshape(Cm, -1))
    return torch.cat(parts, dim=1)


class EdgeTAMMemoryEncoderGraph(MemoryEncoderGraph):
    """SAM2Base._encode_new_memory of EdgeTAM (sam2_base.py): SAM 2's memory encoder, then
    `maskmem_features, maskmem_pos_enc[0] = self.spatial_perceiver(maskmem_features, maskmem_pos_enc[0])`.
    The memory encoder's sine position encoding is input independent (a buffer here); the
    latents' positions (latents_pos) live in memory_attention, as maskmem_pos_enc does for SAM 2."""

    def __init__(self, model):
        super().__init__(model)
        F_ = model.image_size // model.backbone_stride
        pos = model.memory_encoder.position_encoding(torch.zeros(1, model.mem_dim, F_, F_))
        self.register_buffer("mem_pos", pos.detach().clone(), persistent=False)

    def forward(self, pix_feat, mask_logits, object_score_logits, binarize):
        feats = super().forward(pix_feat, mask_logits, object_score_logits, binarize)  # [B,Cm,F,F]
        pos = self.mem_pos.expand(feats.shape[0], -1, -1, -1)
        latents = self._perceiver(feats, pos)  # [B,T,Cm]
        return latents.transpose(1, 2)  # [B,Cm,T]: channel-first like SAM 2's [B,Cm,F,F]

    def _perceiver(self, x, pos):
        """PerceiverResampler.forward (perceiver.py) with the official layers; forward_2d is restated
        with reshape where upstream uses view (`latents_2d...expand(B, -1, -1).view(-1, 1, C)` fails
        for B > 1, which the per-object sam2==1.1.0 predictor never runs)."""
        from sam2.modeling.perceiver import window_partition

        p = self.m.spatial_perceiver
        out = []
        if p.num_latents > 0:
            out.append(p.forward_1d(x, pos)[0])
        if p.num_latents_2d > 0:
            B, C, H, W = x.shape
            n = int(math.sqrt(p.num_latents_2d))
            lat = p.latents_2d.unsqueeze(0).expand(B, -1, -1).reshape(-1, 1, C)
            xw = window_partition(x.permute(0, 2, 3, 1), H // n).flatten(1, 2)
            for layer in p.layers:
                lat = layer(lat, xw)
            out.append(p.norm(lat.reshape(B, n * n, C)))  # = view(B,n,n,C) -> NCHW -> flatten
        return torch.cat(out, dim=1)


class EdgeTAMMemoryAttentionGraph(MemoryAttentionGraph):
    """SAM 2's memory attention graph with EdgeTAM's attention tables (memory_attention.py,
    sam/transformer.py RoPEAttentionv2, position_encoding.py apply_rotary_enc_v2):
      * self-attention: RoPEAttention, table recomputed for the FxF grid (its forward does so when
        the configured feat_sizes do not match the tokens);
      * cross-attention queries: RoPEAttentionv2.freqs_cis_q (q_sizes grid);
      * cross-attention keys: per memory frame (rope_k_repeat = num_spatial_mem) the global latents
        get no RoPE and the 2-D latents get freqs_cis_k (k_sizes grid); pointer tokens none.
    `maskmem_pos` is latents_pos (channel-first [Cm, T])."""

    def _rope_tables(self, layer0):
        sa, ca = layer0.self_attn, layer0.cross_attn_image
        side = int(round(self.HW ** 0.5))
        tables = {"sa": sa.compute_cis(end_x=side, end_y=side), "ca": ca.freqs_cis_q, "ck": ca.freqs_cis_k}
        assert tables["ca"].shape[0] == self.HW, "RoPEAttentionv2 q_sizes must match the feature grid"
        n1, n2 = perceiver_sizes(self.m)
        assert tables["ck"].shape[0] == n2, "RoPEAttentionv2 k_sizes must match the 2-D latents"
        self.T, self.T2 = self.maskmem_pos.shape[0], n2
        return tables

    def _rope_memory_keys(self, kh):
        B, h, n, d = kh.shape  # n = S * T
        kh = kh.reshape(B, h, -1, self.T, d)
        n_no = self.T - self.T2  # apply_rotary_enc_v2: the first no_rope_tokens of each frame
        rot = _apply_rope(kh[..., n_no:, :], self.ck_cos, self.ck_sin)
        return torch.cat([kh[..., :n_no, :], rot], dim=3).reshape(B, h, n, d)
