"""Export a built SAM 2 model into a PixelRefer Studio model directory (DESIGN.md section 4)."""
from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch

from common import dedupe_large_constants, graph_io_spec, progress, write_manifest, MANIFEST_FORMAT
from .graphs import (ImageEncoderGraph, MemoryAttentionGraph, MemoryEncoderGraph, PromptDecoderGraph,
                     hiera_attention_as_mha)

OPSET = 17
# The exported graphs, in export order (progress lines count them).
GRAPH_ROLES = ("image_encoder", "prompt_decoder", "memory_encoder", "memory_attention")
NO_OBJ_SCORE = -1024.0  # sam2_base.py

GRAPH_VERSION_NOTES = (
    "graph split v1: image_encoder / prompt_decoder / memory_encoder / memory_attention. "
    "Refinements vs DESIGN.md section 4: (1) prompt_decoder returns all 4 mask tokens' masks, IoUs "
    "and object pointers (obj_ptr_proj + no_obj_ptr mixing applied to each); the host chooses "
    "multimask/single/dynamic-stability and the matching pointer. (2) memory_encoder takes the "
    "chosen 256x256 logits and upsamples to 1024 inside (as the official code does), and does not "
    "output maskmem_pos_enc: it is input-independent and lives inside memory_attention. "
    "(3) memory_attention builds all positional encodings itself (current-frame sine pos enc, "
    "maskmem_pos_enc + maskmem_tpos_enc[mem_tpos_index], get_1d_sine_pe + obj_ptr_tpos_proj for "
    "obj_ptr_pos), so the host only selects frames and computes indices/distances. "
    "(4) the image encoder's vision pos enc is input-independent: not a graph output, baked into "
    "memory_attention (like maskmem_pos_enc). (5) maskmem_features must be rounded to bfloat16 by "
    "the host before they enter the memory bank, as the official video predictor stores them in bf16. (6) host policy: "
    "add_all_frames_to_correct_as_cond=true (official default false) so corrections on tracked frames "
    "become conditioning frames. (7) memory_attention's pix_feat has its own batch dimension "
    "(image_batch: 1 for every object of the call, or B): the first layer's self-attention reads no "
    "memory, so it runs once per frame row and is shared by the objects. (8) image_encoder's "
    "high_res_feats_0/1 come from the neck's lateral convolutions with conv_s0/conv_s1 folded in "
    "(levels outside fpn_top_down_levels; the same linear map, computed in one convolution)."
)


def _export(module, args, path, input_names, output_names, dynamic_axes):
    with torch.no_grad():
        ref = module(*args)
    ref = (ref,) if isinstance(ref, torch.Tensor) else ref
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, path, dynamo=False, opset_version=OPSET, input_names=input_names,
            output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True,
            custom_opsets={"com.microsoft": 1},  # MultiHeadAttention (graphs.py)
        )
    dedupe_large_constants(path)
    _fix_output_shapes(path, output_names, ref, dynamic_axes)


def _fix_output_shapes(path, output_names, ref_outputs, dynamic_axes):
    """The TorchScript exporter leaves many output dims as generated symbols ('Reshape..._dim_1');
    write the concrete sizes of the non-dynamic dims (taken from the torch outputs) instead."""
    import onnx

    m = onnx.load(path)
    outs = {o.name: o for o in m.graph.output}
    for n, r in zip(output_names, ref_outputs):
        dyn = dynamic_axes.get(n, {})
        dims = outs[n].type.tensor_type.shape.dim
        for i, d in enumerate(dims):
            if i in dyn:
                d.dim_param = dyn[i]
            else:
                d.dim_value = int(r.shape[i])
    onnx.save(m, path)


def _check_and_compare(path, module, args, input_names, output_names, tag):
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(path))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = {n: a.detach().cpu().numpy() for n, a in zip(input_names, args)}
    t0 = time.time()
    outs = sess.run(output_names, feeds)
    t_ort = time.time() - t0
    with torch.no_grad():
        ref = module(*args)
    if isinstance(ref, torch.Tensor):
        ref = (ref,)
    diffs = {}
    for n, o, r in zip(output_names, outs, ref):
        r = r.detach().cpu().numpy()
        assert o.shape == r.shape, f"{tag}: {n} shape {o.shape} vs torch {r.shape}"
        diffs[n] = float(np.abs(o.astype(np.float64) - r.astype(np.float64)).max()) if o.size else 0.0
    print(f"[export] {tag}: onnx.checker ok; ORT vs torch max|diff| " +
          ", ".join(f"{k}={v:.2e}" for k, v in diffs.items()) + f" (ORT {t_ort:.2f}s)", flush=True)
    return diffs


def host_constants(m) -> Dict[str, Any]:
    """Every number the host logic needs (read by sam2_host_ref.py and the Rust port)."""
    dec = m.sam_mask_decoder
    return {
        "image_size": int(m.image_size),
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "feat_size": int(m.image_size // m.backbone_stride),
        "low_res_mask_size": int(4 * (m.image_size // m.backbone_stride)),
        "hidden_dim": int(m.hidden_dim),
        "mem_dim": int(m.mem_dim),
        "num_mask_tokens": int(dec.num_mask_tokens),
        "mask_threshold": 0.0,
        "no_obj_score": NO_OBJ_SCORE,
        "prev_mask_logits_clamp": 32.0,
        "multimask_output_in_sam": bool(m.multimask_output_in_sam),
        "multimask_output_for_tracking": bool(m.multimask_output_for_tracking),
        "multimask_min_pt_num": int(m.multimask_min_pt_num),
        "multimask_max_pt_num": int(m.multimask_max_pt_num),
        "use_multimask_token_for_obj_ptr": bool(m.use_multimask_token_for_obj_ptr),
        "dynamic_multimask_via_stability": bool(dec.dynamic_multimask_via_stability),
        "dynamic_multimask_stability_delta": float(dec.dynamic_multimask_stability_delta),
        "dynamic_multimask_stability_thresh": float(dec.dynamic_multimask_stability_thresh),
        "pred_obj_scores": bool(m.pred_obj_scores),
        "directly_add_no_mem_embed": bool(m.directly_add_no_mem_embed),
        "num_maskmem": int(m.num_maskmem),
        "memory_temporal_stride_for_eval": int(m.memory_temporal_stride_for_eval),
        "max_cond_frames_in_attn": int(m.max_cond_frames_in_attn),
        "use_obj_ptrs_in_encoder": bool(m.use_obj_ptrs_in_encoder),
        "max_obj_ptrs_in_encoder": int(m.max_obj_ptrs_in_encoder),
        "add_tpos_enc_to_obj_ptrs": bool(m.add_tpos_enc_to_obj_ptrs),
        "proj_tpos_enc_in_obj_ptrs": bool(m.proj_tpos_enc_in_obj_ptrs),
        "use_signed_tpos_enc_to_obj_ptrs": bool(m.use_signed_tpos_enc_to_obj_ptrs),
        "only_obj_ptrs_in_the_past_for_eval": bool(m.only_obj_ptrs_in_the_past_for_eval),
        "sigmoid_scale_for_mem_enc": float(m.sigmoid_scale_for_mem_enc),
        "sigmoid_bias_for_mem_enc": float(m.sigmoid_bias_for_mem_enc),
        "binarize_mask_from_pts_for_mem_enc": bool(m.binarize_mask_from_pts_for_mem_enc),
        "use_mask_input_as_output_without_sam": bool(m.use_mask_input_as_output_without_sam),
        "fixed_no_obj_ptr": bool(m.fixed_no_obj_ptr),
        "memory_features_dtype_in_bank": "bfloat16",
        "fill_hole_area": int(getattr(m, "fill_hole_area", 0)),
        "fill_hole_connectivity": 8,
        "fill_hole_value": 0.1,
        "non_overlap_masks": bool(getattr(m, "non_overlap_masks", False)),
        "non_overlap_masks_for_mem_enc": bool(m.non_overlap_masks_for_mem_enc),
        "add_all_frames_to_correct_as_cond": bool(getattr(m, "add_all_frames_to_correct_as_cond", False)),
        "clear_non_cond_mem_around_input": bool(getattr(m, "clear_non_cond_mem_around_input", False)),
        "image_preprocess": "torchvision: uint8/255 -> Resize((1024,1024)) bilinear antialias=True on float32 (W pass then H pass) -> (x-mean)/std",
        "video_preprocess": "PIL: RGB uint8 .resize((1024,1024)) default BICUBIC (8-bit fixed point) -> /255 (float64) -> float32 -> (x-mean)/std",
        "mask_postprocess": "bilinear align_corners=False upsample of 256x256 logits to the frame size, then > 0",
    }


def _sam2_maskmem_pos(m, feat_size: int):
    """maskmem_pos_enc of one memory, [Cm, F, F] (input independent: MemoryEncoder.position_encoding)."""
    return m.memory_encoder.position_encoding(torch.zeros(1, m.mem_dim, feat_size, feat_size))[0]


@dataclass
class GraphFamily:
    """What differs between SAM 2 family members in the exported graphs and the manifest (the
    defaults are SAM 2's; onnx/edgetam_export/export.py fills in EdgeTAM's)."""

    prompt_decoder: Callable = PromptDecoderGraph
    memory_encoder: Callable = MemoryEncoderGraph
    memory_attention: Callable = MemoryAttentionGraph
    # (model, feat_size) -> positional encoding of one memory's tokens, channel-first [Cm, ...]
    maskmem_pos: Callable = _sam2_maskmem_pos
    notes: str = GRAPH_VERSION_NOTES
    manifest_extra: Dict[str, Any] = field(default_factory=dict)
    constants_extra: Dict[str, Any] = field(default_factory=dict)


def export_model(m, out_dir: str, variant: str, upstream: Dict[str, Any], verify: bool = True,
                 extra_notes: Optional[str] = None, family: Optional[GraphFamily] = None) -> Dict[str, Any]:
    family = family or GraphFamily()
    os.makedirs(out_dir, exist_ok=True)
    m = m.float().eval()
    C, Cm = m.hidden_dim, m.mem_dim
    S = m.image_size
    F_ = S // m.backbone_stride
    L = 4 * F_
    g = torch.Generator().manual_seed(1234)
    timings = {}

    # constants that need a forward pass: vision pos enc (lowest level) and maskmem pos enc
    with torch.no_grad():
        vision_pos = m.image_encoder.neck.position_encoding(torch.zeros(1, C, F_, F_))[0]
        maskmem_pos = family.maskmem_pos(m, F_)

    graphs = {}

    def step(stage, role):
        progress(stage, GRAPH_ROLES.index(role) + 1, len(GRAPH_ROLES), role)

    # 1. image encoder
    step("graph", "image_encoder")
    t0 = time.time()
    enc = ImageEncoderGraph(m).eval()
    img = torch.randn(1, 3, S, S, generator=g)
    names_in, names_out = ["image"], ["high_res_feats_0", "high_res_feats_1", "image_embed", "pix_feat"]
    path = os.path.join(out_dir, "image_encoder.onnx")
    with torch.no_grad(), hiera_attention_as_mha():
        _export(enc, (img,), path, names_in, names_out,
                {"image": {0: "batch"}, **{n: {0: "batch"} for n in names_out}})
    timings["image_encoder"] = time.time() - t0
    diffs = {"image_encoder": None}
    if verify:
        step("verify", "image_encoder")
        diffs["image_encoder"] = _check_and_compare(path, enc, (img,), names_in, names_out, "image_encoder")
    with torch.no_grad():
        h0, h1, emb, pix = enc(img)

    # 2. prompt decoder
    step("graph", "prompt_decoder")
    t0 = time.time()
    dec = family.prompt_decoder(m).eval()
    B, N = 2, 3
    coords = torch.rand(B, N, 2, generator=g) * S
    labels = torch.tensor([[1, 0, -1], [2, 3, 1]], dtype=torch.int32)
    mask_in = torch.randn(B, 1, L, L, generator=g) * 4
    has_mask = torch.tensor([0.0, 1.0])
    args = (emb, h0, h1, coords, labels, mask_in, has_mask)
    names_in = ["image_embed", "high_res_feats_0", "high_res_feats_1", "point_coords", "point_labels",
                "mask_input", "has_mask_input"]
    names_out = ["low_res_masks", "iou_predictions", "obj_ptr", "object_score_logits"]
    dyn = {"image_embed": {0: "image_batch"}, "high_res_feats_0": {0: "image_batch"},
           "high_res_feats_1": {0: "image_batch"}, "point_coords": {0: "B", 1: "N"},
           "point_labels": {0: "B", 1: "N"}, "mask_input": {0: "B"}, "has_mask_input": {0: "B"},
           **{n: {0: "B"} for n in names_out}}
    path = os.path.join(out_dir, "prompt_decoder.onnx")
    with torch.no_grad():
        _export(dec, args, path, names_in, names_out, dyn)
    timings["prompt_decoder"] = time.time() - t0
    if verify:
        step("verify", "prompt_decoder")
        diffs["prompt_decoder"] = _check_and_compare(path, dec, args, names_in, names_out, "prompt_decoder")
        # also a different N and B=1 to exercise the dynamic axes
        args1 = (emb, h0, h1, coords[:1, :1], torch.tensor([[1]], dtype=torch.int32), mask_in[:1], has_mask[:1])
        _check_and_compare(path, dec, args1, names_in, names_out, "prompt_decoder (B=1,N=1)")

    # 3. memory encoder
    step("graph", "memory_encoder")
    t0 = time.time()
    menc = family.memory_encoder(m).eval()
    mlog = torch.randn(B, 1, L, L, generator=g) * 8
    score = torch.tensor([[3.0], [-2.0]])
    binar = torch.tensor([1.0, 0.0])
    args = (pix.expand(B, -1, -1, -1).contiguous(), mlog, score, binar)
    names_in = ["pix_feat", "mask_logits", "object_score_logits", "binarize"]
    names_out = ["maskmem_features"]
    path = os.path.join(out_dir, "memory_encoder.onnx")
    with torch.no_grad():
        _export(menc, args, path, names_in, names_out, {n: {0: "B"} for n in names_in + names_out})
    timings["memory_encoder"] = time.time() - t0
    if verify:
        step("verify", "memory_encoder")
        diffs["memory_encoder"] = _check_and_compare(path, menc, args, names_in, names_out, "memory_encoder")
    with torch.no_grad():
        mem = menc(*args)

    # 4. memory attention
    step("graph", "memory_attention")
    t0 = time.time()
    matt = family.memory_attention(m, vision_pos, maskmem_pos).eval()
    Sm, P = 2, 3
    memf = torch.stack([mem, mem.flip(0)], dim=1)  # [B,2,Cm,F,F] (SAM 2) / [B,2,Cm,T]
    tidx = torch.tensor([6, 0], dtype=torch.int64)
    ptrs = torch.randn(B, P, C, generator=g)
    ppos = torch.tensor([0.0, 1.0 / 15, 2.0 / 15])
    args = (args[0], memf, tidx, ptrs, ppos)
    names_in = ["pix_feat", "mem_features", "mem_tpos_index", "obj_ptrs", "obj_ptr_pos"]
    names_out = ["pix_feat_with_mem"]
    dyn = {"pix_feat": {0: "image_batch"}, "mem_features": {0: "B", 1: "S"}, "mem_tpos_index": {0: "S"},
           "obj_ptrs": {0: "B", 1: "P"}, "obj_ptr_pos": {0: "P"}, "pix_feat_with_mem": {0: "B"}}
    path = os.path.join(out_dir, "memory_attention.onnx")
    with torch.no_grad():
        _export(matt, args, path, names_in, names_out, dyn)
    timings["memory_attention"] = time.time() - t0
    if verify:
        step("verify", "memory_attention")
        diffs["memory_attention"] = _check_and_compare(path, matt, args, names_in, names_out, "memory_attention")
        args1 = (args[0][:1], memf[:1, :1], tidx[:1], ptrs[:1, :1], ppos[:1])
        _check_and_compare(path, matt, args1, names_in, names_out, "memory_attention (B=1,S=1,P=1)")
        # one frame row shared by both objects: the same as that row repeated per object
        shared = (args[0][:1], memf, tidx, ptrs, ppos)
        with torch.no_grad():
            per_object = matt(args[0][:1].expand(B, -1, -1, -1), memf, tidx, ptrs, ppos)
            assert torch.allclose(matt(*shared), per_object, rtol=0, atol=1e-5)
        _check_and_compare(path, matt, shared, names_in, names_out, "memory_attention (image_batch=1)")

    # constants
    from safetensors.numpy import save_file

    consts = {
        "no_mem_embed": m.no_mem_embed.detach().reshape(-1),
        "no_mem_pos_enc": m.no_mem_pos_enc.detach().reshape(-1),
        "maskmem_tpos_enc": m.maskmem_tpos_enc.detach().reshape(m.num_maskmem, Cm),
    }
    # (vision_pos_enc and maskmem_pos_enc are input-independent and baked into memory_attention;
    # the host never needs them, so they are not duplicated here.)
    if getattr(m, "no_obj_ptr", None) is not None:
        consts["no_obj_ptr"] = m.no_obj_ptr.detach().reshape(-1)
    if m.no_obj_embed_spatial is not None:
        consts["no_obj_embed_spatial"] = m.no_obj_embed_spatial.detach().reshape(-1)
    # the 4x4 stride-4 conv that turns a 1024x1024 mask prompt into the decoder's 256x256 mask
    # input (SAM2Base.mask_downsample, used by _use_mask_as_output: add_new_mask in video)
    if getattr(m, "mask_downsample", None) is not None:
        consts["mask_downsample_weight"] = m.mask_downsample.weight.detach().reshape(m.mask_downsample.kernel_size)
        consts["mask_downsample_bias"] = m.mask_downsample.bias.detach().reshape(1)
    consts = {k: np.ascontiguousarray(v.float().cpu().numpy()) for k, v in consts.items()}
    save_file(consts, os.path.join(out_dir, "constants.safetensors"))

    graph_files = list(GRAPH_ROLES)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "kind": "sam2",
        "variant": variant,
        **family.manifest_extra,
        "upstream": upstream,
        "notes": family.notes + (" " + extra_notes if extra_notes else ""),
        "opset": OPSET,
        "dtype": "float32",
        "graphs": {},
        "constants_file": "constants.safetensors",
        "constant_tensors": {k: {"dtype": "float32", "shape": list(v.shape)} for k, v in consts.items()},
        "constants": {**host_constants(m), **family.constants_extra},
    }
    for gname in graph_files:
        spec = graph_io_spec(os.path.join(out_dir, f"{gname}.onnx"))
        manifest["graphs"][gname] = {"file": f"{gname}.onnx", **spec}
    write_manifest(out_dir, manifest, [f"{g}.onnx" for g in graph_files] + ["constants.safetensors"])
    print("[export] times (s): " + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()), flush=True)
    return {"manifest": manifest, "diffs": diffs, "timings": timings}
