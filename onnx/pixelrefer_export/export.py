"""ONNX export of PixelRefer / PixelRefer-Lite from a Hugging Face checkpoint directory, verification
with onnxruntime, manifest.json, and reference cases from the PyTorch reference pipeline."""
from __future__ import annotations

import glob
import json
import os
import warnings
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn

from common import progress
from common.manifest import sha256_file

from . import host
from .config import PixelReferConfig, load_generation_config
from .modeling import PixelReferForCausalLM, load_state_dict_strict

MANIFEST_FORMAT = "pixelrefer-studio-model"
# version 1: graph split of DESIGN.md section 4, plus `region_pos` (feature + pos_linear(pos)) kept apart
# from `region_mlp` because masked gathering and k-means run on the host in between; `decoder` returns the
# logits of the last position only (a full [S, vocab] prefill output would be 0.6 GB for 1k tokens).
MANIFEST_VERSION = 1
OPSET = 17

UPSTREAM = {
    "code": "https://github.com/alibaba-damo-academy/PixelRefer (PixelRefer/, commit 2a18ec7)",
    "base": "https://github.com/DAMO-NLP-SG/VideoLLaMA3 (commit 05cee23)",
    "vision_encoder": "DAMO-NLP-SG/VL3-SigLIP-NaViT",
}


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------
def load_checkpoint(model_dir: str, dtype=torch.float32) -> PixelReferForCausalLM:
    cfg = PixelReferConfig.load(model_dir)
    from safetensors.torch import load_file
    files = sorted(glob.glob(os.path.join(model_dir, "*.safetensors")))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    sd = {}
    for f in files:
        sd.update(load_file(f))
    sd = {k: v.to(torch.float32) for k, v in sd.items()}
    # HF-format VideoLLaMA3-style names (`model.vision_encoder.<x>`) -> PixelRefer names
    # (`model.vision_encoder.vision_encoder.<x>`), the rename of scripts/convert_hf_checkpoint.py.
    if not any(k.startswith("model.vision_encoder.vision_encoder.") for k in sd):
        sd = {(k.replace("model.vision_encoder.", "model.vision_encoder.vision_encoder.", 1)
               if k.startswith("model.vision_encoder.") else k): v for k, v in sd.items()}
    model = PixelReferForCausalLM(cfg)
    load_state_dict_strict(model, sd)
    return model.to(dtype).eval()


def ensure_tokenizer_json(model_dir: str, out_path: str) -> None:
    """Copy tokenizer.json; if the checkpoint only has slow-tokenizer files, convert with transformers.
    Adds <image>/<|stream_start|>/<|stream_end|> like mm_infer does at run time (pixelrefer/__init__.py:79)."""
    src = os.path.join(model_dir, "tokenizer.json")
    if os.path.exists(src):
        from tokenizers import Tokenizer, AddedToken
        t = Tokenizer.from_file(src)
        missing = [x for x in ("<image>", "<|stream_start|>", "<|stream_end|>") if t.token_to_id(x) is None]
        if missing:
            t.add_special_tokens([AddedToken(x, special=True, normalized=False) for x in missing])
        t.save(out_path)
        return
    from transformers import AutoTokenizer
    tk = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    tk.add_tokens(["<image>", "<|stream_start|>", "<|stream_end|>"], special_tokens=True)
    tk.backend_tokenizer.save(out_path)


# ------------------------------------------------------------------------------------------------
# Graph wrappers
# ------------------------------------------------------------------------------------------------
class _Vision(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_patches, rope_cos, rope_sin):
        return self.m.vision_forward(pixel_patches, rope_cos, rope_sin)


class _Fn(nn.Module):
    def __init__(self, fn, owner):
        super().__init__()
        self.owner = owner
        self.fn = fn

    def forward(self, *a):
        return self.fn(*a)


class _Decoder(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m
        self.n = m.cfg.text.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, *past_flat):
        past = [(past_flat[2 * i], past_flat[2 * i + 1]) for i in range(self.n)]
        logits, present = self.m.decode(inputs_embeds, attention_mask, position_ids, past)
        out = [logits]
        for k, v in present:
            out += [k, v]
        return tuple(out)


def _export(module, args, path, input_names, output_names, dynamic_axes) -> Optional[str]:
    """Export one graph. Graphs over the 2 GB protobuf limit are re-saved with all weights in one
    external file `<name>.onnx.data` next to the graph (returned)."""
    import onnx
    d = os.path.dirname(path)
    before = set(os.listdir(d))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, path, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True, dynamo=False)
    extra = set(os.listdir(d)) - before - {os.path.basename(path)}
    if extra or os.path.getsize(path) > 1_800_000_000:
        data = os.path.basename(path) + ".data"
        m = onnx.load(path)  # pulls any per-tensor external files into memory
        for f in extra:
            os.remove(os.path.join(d, f))
        if os.path.exists(os.path.join(d, data)):
            os.remove(os.path.join(d, data))
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=data,
                        size_threshold=1024)
        del m
        os.chmod(os.path.join(d, data), 0o644)
        onnx.checker.check_model(path)
        return data
    onnx.checker.check_model(onnx.load(path))
    return None


def _ort_check(path, feeds: Dict[str, np.ndarray], ref: List[np.ndarray], name: str, tol: float) -> float:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    outs = s.run(None, feeds)
    diff, scale = 0.0, 1.0
    for o, r in zip(outs, ref):
        if o.shape != r.shape:
            raise AssertionError(f"{name}: ORT output shape {o.shape} != torch {r.shape}")
        if o.size:
            diff = max(diff, float(np.max(np.abs(o.astype(np.float32) - r.astype(np.float32)))))
            scale = max(scale, float(np.max(np.abs(r))))
    print(f"  [verify] {name:15s} max |ort - torch| = {diff:.3e}  (max |torch| = {scale:.3g})")
    if diff > tol * scale:
        raise AssertionError(f"{name}: ORT vs torch max abs diff {diff} > {tol} * {scale}")
    return diff


def graph_roles(variant: str) -> List[str]:
    """The exported graphs, in export order."""
    lite = ["region_oci"] if variant == "lite" else []
    return ["vision_encoder", "projector", "region_pos", "region_mlp", *lite, "embed_tokens", "decoder"]


def export_graphs(model: PixelReferForCausalLM, out_dir: str, fp16: bool = False) -> Dict[str, Dict]:
    cfg = model.cfg
    dt = torch.float16 if fp16 else torch.float32
    npdt = np.float16 if fp16 else np.float32
    tol = 5e-2 if fp16 else 1e-3
    m = model.to(dt).eval()
    g = torch.Generator().manual_seed(0)
    cv, cl, hd = cfg.mm_hidden_size, cfg.text.hidden_size, cfg.vision.head_dim
    graphs: Dict[str, Dict] = {}
    verify: Dict[str, float] = {}

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dt)

    roles = graph_roles(cfg.variant)

    def run(name, module, args, inames, onames, dyn):
        path = os.path.join(out_dir, f"{name}.onnx")
        progress("graph", roles.index(name) + 1, len(roles), name)
        data = _export(module, args, path, inames, onames, dyn)
        with torch.no_grad():
            ref = module(*args)
        ref = list(ref) if isinstance(ref, (tuple, list)) else [ref]
        feeds = {n: a.numpy() for n, a in zip(inames, args)}
        progress("verify", roles.index(name) + 1, len(roles), name)
        verify[name] = _ort_check(path, feeds, [r.float().numpy() for r in ref], name, tol)
        graphs[name] = {"file": f"{name}.onnx"}
        if data:
            graphs[name]["external_data"] = data

    # vision encoder: a 4x6 patch grid with its real RoPE table
    patches = rnd(24, 3 * 14 * 14)
    cos, sin = host.vision_rope(4, 6, 1, hd, cfg.vision.rope_theta)
    run("vision_encoder", _Vision(m), (patches, torch.from_numpy(cos).to(dt), torch.from_numpy(sin).to(dt)),
        ["pixel_patches", "rope_cos", "rope_sin"], ["vision_features"],
        {"pixel_patches": {0: "num_patches"}, "rope_cos": {0: "num_patches"}, "rope_sin": {0: "num_patches"},
         "vision_features": {0: "num_patches"}})
    run("projector", _Fn(m.project, m), (rnd(7, cv),), ["vision_features"], ["projected"],
        {"vision_features": {0: "num_tokens"}, "projected": {0: "num_tokens"}})
    re = m.model.region_encoder
    run("region_pos", _Fn(re.add_pos, re), (rnd(9, cv), torch.rand(9, 2, generator=g).to(dt)),
        ["features", "positions"], ["features_with_pos"],
        {"features": {0: "num_cells"}, "positions": {0: "num_cells"}, "features_with_pos": {0: "num_cells"}})
    run("region_mlp", _Fn(re.mlp, re), (rnd(5, cv),), ["object_features"], ["object_tokens"],
        {"object_features": {0: "num_tokens"}, "object_tokens": {0: "num_tokens"}})
    if cfg.variant == "lite":
        run("region_oci", _Fn(re.oci, re), (rnd(2, cfg.mask_num, cv), rnd(2, 16, cv), rnd(2, 36, cv)),
            ["object_tokens", "local_features", "global_features"], ["fused_tokens"],
            {"object_tokens": {0: "num_masks", 1: "num_object_tokens"}, "local_features": {0: "num_masks", 1: "num_local"},
             "global_features": {0: "num_masks", 1: "num_global"}, "fused_tokens": {0: "num_masks", 1: "num_object_tokens"}})
    ids = torch.randint(0, cfg.text.vocab_size, (1, 5), generator=g)
    run("embed_tokens", _Fn(m.embed, m), (ids,), ["input_ids"], ["inputs_embeds"],
        {"input_ids": {0: "batch", 1: "seq"}, "inputs_embeds": {0: "batch", 1: "seq"}})
    # decoder: trace with a non-empty past (P=3, S=2); all dims dynamic
    t = cfg.text
    P, S = 3, 2
    args = [rnd(1, S, cl), torch.ones(1, P + S, dtype=torch.int64), torch.arange(P, P + S)[None]]
    inames = ["inputs_embeds", "attention_mask", "position_ids"]
    onames = ["logits"]
    dyn = {"inputs_embeds": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total_seq"},
           "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch"}}
    for i in range(t.num_hidden_layers):
        for kv in ("key", "value"):
            args.append(rnd(1, t.num_key_value_heads, P, t.head_dim))
            inames.append(f"past_key_values.{i}.{kv}")
            onames.append(f"present.{i}.{kv}")
            dyn[f"past_key_values.{i}.{kv}"] = {0: "batch", 2: "past_seq"}
            dyn[f"present.{i}.{kv}"] = {0: "batch", 2: "total_seq"}
    run("decoder", _Decoder(m), tuple(args), inames, onames, dyn)
    assert list(graphs) == roles, (list(graphs), roles)
    model.to(torch.float32)
    return graphs, verify


# ------------------------------------------------------------------------------------------------
# Manifest
# ------------------------------------------------------------------------------------------------
def _io_spec(path: str) -> Dict[str, List[Dict[str, Any]]]:
    import onnx
    names = {1: "float32", 7: "int64", 10: "float16", 6: "int32", 9: "bool", 2: "uint8"}
    mo = onnx.load(path, load_external_data=False)
    inits = {i.name for i in mo.graph.initializer}

    def spec(v):
        tt = v.type.tensor_type
        return {"name": v.name, "dtype": names.get(tt.elem_type, str(tt.elem_type)),
                "shape": [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]}
    return {"inputs": [spec(v) for v in mo.graph.input if v.name not in inits],
            "outputs": [spec(v) for v in mo.graph.output]}


def constants(cfg: PixelReferConfig, tok_path: str, gen: Dict, fp16: bool) -> Dict[str, Any]:
    from tokenizers import Tokenizer
    t = Tokenizer.from_file(tok_path)

    def tid(s):
        i = t.token_to_id(s)
        if i is None:
            raise ValueError(f"tokenizer.json has no {s!r}")
        return i
    eos = gen.get("eos_token_id", tid("<|im_end|>"))
    eos = eos if isinstance(eos, list) else [eos]
    im_end = tid("<|im_end|>")
    if im_end not in eos:
        eos = [im_end] + eos
    lite = cfg.variant == "lite"
    return {
        "dtype": "float16" if fp16 else "float32",
        # image processor (VL3-SigLIP-NaViT preprocessor_config.json; damovl_encoder/image_processing.py)
        "patch_size": host.PATCH, "num_channels": cfg.vision.num_channels,
        "image_mean": cfg.image_mean, "image_std": cfg.image_std, "rescale_factor": cfg.rescale_factor,
        "resample": "bicubic (PIL, resample=3)", "min_pixels": cfg.min_pixels,
        "max_pixels": cfg.processor_max_pixels, "mm_max_length": cfg.mm_max_length,
        "processor_merge_size": cfg.spatial_merge_size, "spatial_merge_size": cfg.spatial_merge_size,
        "image_downsampling_image": 1, "image_downsampling_video": cfg.spatial_merge_size,
        "image_downsampling_region_crops": 1,
        "max_pixels_rule": "int(max_pixels / (processor_merge_size / d)**2) // num_images",
        "smart_resize_factor_rule": "patch_size * d",
        "patch_order": "d x d blocks (block row-major, then in-block row-major); patch vector channel-major [c][y][x]",
        # vision encoder
        "vision_hidden_size": cfg.vision.hidden_size, "vision_num_heads": cfg.vision.num_attention_heads,
        "vision_head_dim": cfg.vision.head_dim, "vision_num_layers": cfg.vision.num_hidden_layers,
        "vision_rope_theta": cfg.vision.rope_theta,
        "vision_rope_layout": "freqs=[h*inv_freq(head_dim/4), w*inv_freq(head_dim/4)]; cos/sin = cat(x, x) -> head_dim; inv_freq=1/theta^(arange(0,head_dim/2,2)/(head_dim/2))",
        "token_merge": "d x d average pooling of raster-ordered features (= bilinear downsample, align_corners=False)",
        # video
        "use_token_compression": cfg.use_token_compression and not lite,
        "video_prune_threshold": host.VIDEO_PRUNE_THRESHOLD,
        "video_prune_dtype": cfg.torch_dtype, "video_prune_min_tokens": host.VIDEO_PRUNE_MIN_TOKENS,
        "video_fps": 1, "video_max_frames": 768, "time_format_full": "Time {round(t,1)}s:",
        "time_format_lite_region": "Time {round(t,1)}:",
        # SAOT
        "mask_num": cfg.mask_num, "context_px": host.PATCH * host.CONTEXT_PATCHES,
        "scale_area_per_token": host.SCALE_AREA_PER_TOKEN,
        "large_object_patches": host.LARGE_OBJECT_PATCHES["lite" if lite else "full"],
        "crop_resize": "cv2 INTER_LINEAR if (rh>=mask_h or rw>=mask_w) else INTER_AREA" if lite else "cv2 INTER_LINEAR",
        "mask_grid_resize": ("cv2 INTER_LINEAR float32, select > 0" if lite else
                             "torch uint8 bilinear (separable, fixed point, rounded), select > 0"),
        "bbox_end": "exclusive, includes mask (cv2.boundingRect)" if lite else "exclusive at max+28 (mask's last row/col may be cut at the image border)",
        "kmeans_iters": host.KMEANS_ITERS["lite" if lite else "full"], "kmeans_init": "indices floor(i*n/K)",
        "kmeans_tol": {"rtol": 1e-5, "atol": 1e-6}, "kmeans_distance": "squared L2",
        "pad_object_tokens": lite,
        "lite_local_size": host.LITE_LOCAL_SIZE if lite else None,
        "lite_global_size": host.LITE_GLOBAL_SIZE if lite else None,
        "lite_image_cache_per_frame": lite,
        "oci_num_heads": cfg.oci_num_heads if lite else None,
        # LLM / tokens
        "hidden_size": cfg.text.hidden_size, "vocab_size": cfg.text.vocab_size,
        "num_hidden_layers": cfg.text.num_hidden_layers, "num_attention_heads": cfg.text.num_attention_heads,
        "num_key_value_heads": cfg.text.num_key_value_heads, "head_dim": cfg.text.head_dim,
        "rope_theta": cfg.text.rope_theta, "position_ids": "1-D 0..L-1 (no M-RoPE)",
        "image_token_id": tid("<image>"), "region_token_id": tid("<REGION>"),
        "im_start_token_id": tid("<|im_start|>"), "im_end_token_id": im_end,
        "endoftext_token_id": tid("<|endoftext|>"), "eos_token_ids": eos,
        "image_token_embed_id": 0,
        "chat_template": "<|im_start|>{role}\\n{content}<|im_end|>\\n ... <|im_start|>assistant\\n (no system prompt)",
        "image_item": "<image>\\n", "video_item": "Time {t}s:<image>, ... ,Time {t}s:<image>\\n",
        "region_text": "[<REGION>*n]" if not lite else "image: [<REGION>*32]; video: [Time {t}:<REGION>*32,...]",
        "greedy": True, "max_new_tokens": 2048, "repetition_penalty": float(gen.get("repetition_penalty", 1.0)),
        "logits_last_position_only": True,
    }


def write_manifest(out_dir: str, cfg: PixelReferConfig, graphs: Dict, consts: Dict, upstream: Dict,
                   variant_name: str, extra_files: List[str], verify: Dict[str, float]) -> str:
    for name, g in graphs.items():
        g.update(_io_spec(os.path.join(out_dir, g["file"])))
    files = sorted([g["file"] for g in graphs.values()] + [g["external_data"] for g in graphs.values()
                                                           if g.get("external_data")] + extra_files)
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
        "kind": "pixelrefer-lite" if cfg.variant == "lite" else "pixelrefer",
        "variant": variant_name, "upstream": upstream, "graphs": graphs, "constants": consts,
        "verification": {"max_abs_diff_ort_vs_torch": verify},
        "files": {f: sha256_file(os.path.join(out_dir, f)) for f in files},
    }
    path = os.path.join(out_dir, "manifest.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def export_model(model: PixelReferForCausalLM, ckpt_dir: str, out_dir: str, variant_name: str,
                 upstream: Dict, fp16: bool = False) -> Dict[str, Dict]:
    os.makedirs(out_dir, exist_ok=True)
    tok_out = os.path.join(out_dir, "tokenizer.json")
    ensure_tokenizer_json(ckpt_dir, tok_out)
    gen = load_generation_config(ckpt_dir)
    print(f"exporting {model.cfg.variant} graphs to {out_dir} ({'fp16' if fp16 else 'fp32'})")
    graphs, verify = export_graphs(model, out_dir, fp16=fp16)
    consts = constants(model.cfg, tok_out, gen, fp16)
    write_manifest(out_dir, model.cfg, graphs, consts, upstream, variant_name, ["tokenizer.json"], verify)
    return graphs
