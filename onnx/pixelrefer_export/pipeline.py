"""Reference pipeline: media + masks + question -> embeddings -> greedy answer.

The model pieces are called through a *backend* with the same interface as the exported graphs
(TorchBackend = PyTorch reference modules, OrtBackend = the ONNX files), so the exact sequence of host
steps below is what the Rust host must do. All arrays are numpy; see host.py for each step.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import host
from .config import PixelReferConfig, load_generation_config


# ------------------------------------------------------------------------------------------------
# Backends
# ------------------------------------------------------------------------------------------------
class TorchBackend:
    def __init__(self, model):
        import torch
        self.torch = torch
        self.m = model.eval()

    def _t(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a))

    def _run(self, fn, *args):
        with self.torch.no_grad():
            out = fn(*[self._t(a) for a in args])
        return out.float().numpy()

    def vision(self, patches, cos, sin):
        return self._run(self.m.vision_forward, patches, cos, sin)

    def project(self, x):
        return self._run(self.m.project, x)

    def region_pos(self, feats, pos):
        return self._run(self.m.model.region_encoder.add_pos, feats, pos)

    def region_mlp(self, tokens):
        return self._run(self.m.model.region_encoder.mlp, tokens)

    def region_oci(self, obj, local, glob):
        return self._run(self.m.model.region_encoder.oci, obj, local, glob)

    def embed(self, ids):
        return self._run(self.m.embed, ids)

    def decode(self, embeds, attn_mask, pos_ids, past):
        with self.torch.no_grad():
            logits, present = self.m.decode(self._t(embeds), self._t(attn_mask), self._t(pos_ids),
                                            [(self._t(k), self._t(v)) for k, v in past])
        return logits.float().numpy(), [(k.numpy(), v.numpy()) for k, v in present]

    def empty_past(self):
        t = self.m.cfg.text
        z = np.zeros((1, t.num_key_value_heads, 0, t.head_dim), np.float32)
        return [(z, z) for _ in range(t.num_hidden_layers)]


class OrtBackend:
    def __init__(self, model_dir: str, providers=("CPUExecutionProvider",)):
        import onnxruntime as ort
        with open(os.path.join(model_dir, "manifest.json")) as f:
            self.manifest = json.load(f)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        self.s = {name: ort.InferenceSession(os.path.join(model_dir, g["file"]), so, providers=list(providers))
                  for name, g in self.manifest["graphs"].items()}
        self.dtype = np.float16 if self.manifest["constants"].get("dtype") == "float16" else np.float32
        c = self.manifest["constants"]
        self.n_layers, self.n_kv, self.hd = c["num_hidden_layers"], c["num_key_value_heads"], c["head_dim"]

    def _f(self, a):
        return np.ascontiguousarray(a).astype(self.dtype)

    def vision(self, patches, cos, sin):
        return self.s["vision_encoder"].run(None, {"pixel_patches": self._f(patches), "rope_cos": self._f(cos),
                                                   "rope_sin": self._f(sin)})[0].astype(np.float32)

    def project(self, x):
        return self.s["projector"].run(None, {"vision_features": self._f(x)})[0].astype(np.float32)

    def region_pos(self, feats, pos):
        return self.s["region_pos"].run(None, {"features": self._f(feats), "positions": self._f(pos)})[0].astype(np.float32)

    def region_mlp(self, tokens):
        return self.s["region_mlp"].run(None, {"object_features": self._f(tokens)})[0].astype(np.float32)

    def region_oci(self, obj, local, glob):
        return self.s["region_oci"].run(None, {"object_tokens": self._f(obj), "local_features": self._f(local),
                                               "global_features": self._f(glob)})[0].astype(np.float32)

    def embed(self, ids):
        return self.s["embed_tokens"].run(None, {"input_ids": ids.astype(np.int64)})[0].astype(np.float32)

    def decode(self, embeds, attn_mask, pos_ids, past):
        feed = {"inputs_embeds": self._f(embeds), "attention_mask": attn_mask.astype(np.int64),
                "position_ids": pos_ids.astype(np.int64)}
        for i, (k, v) in enumerate(past):
            feed[f"past_key_values.{i}.key"] = k.astype(self.dtype)
            feed[f"past_key_values.{i}.value"] = v.astype(self.dtype)
        out = self.s["decoder"].run(None, feed)
        logits = out[0].astype(np.float32)
        present = [(out[1 + 2 * i], out[2 + 2 * i]) for i in range(self.n_layers)]
        return logits, present

    def empty_past(self):
        z = np.zeros((1, self.n_kv, 0, self.hd), self.dtype)
        return [(z, z) for _ in range(self.n_layers)]


# ------------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------------
class Tok:
    def __init__(self, path: str):
        from tokenizers import Tokenizer
        self.t = Tokenizer.from_file(path)

    def id(self, token: str) -> int:
        i = self.t.token_to_id(token)
        if i is None:
            raise ValueError(f"tokenizer has no token {token!r}")
        return i

    def encode(self, s: str) -> List[int]:
        return self.t.encode(s, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.t.decode(list(ids), skip_special_tokens=True).strip()


# ------------------------------------------------------------------------------------------------
# Pipeline
# ------------------------------------------------------------------------------------------------
def encode_image(backend, cfg: PixelReferConfig, img: np.ndarray, d: int, num_images: int) -> Dict[str, np.ndarray]:
    pre = host.preprocess(img, cfg, d, num_images)
    cos, sin = host.vision_rope(pre["grid_h"], pre["grid_w"], d, cfg.vision.head_dim, cfg.vision.rope_theta)
    feats = backend.vision(pre["patches"], cos, sin)
    pre.update(rope_cos=cos, rope_sin=sin, features=feats)
    return pre


def feature_grid_raster(enc: Dict) -> np.ndarray:
    """reshape_images_to_raw_grid (mm_utils.py:60-73): features of a d=1 image as [gh, gw, C]."""
    assert enc["d"] == 1
    return enc["features"].reshape(enc["grid_h"], enc["grid_w"], -1)


def object_tokens_full(backend, cfg, frames, masks: List[Tuple[int, np.ndarray]], rec: Dict) -> List[np.ndarray]:
    """SAOT for PixelRefer: one mask per object (pixelrefer/mm_utils.py:25-58, region_encoder.py)."""
    n = len(masks)
    out = []
    for i, (fi, mask) in enumerate(masks):
        g = host.saot_full(frames[fi], mask, cfg.mask_num)
        enc = encode_image(backend, cfg, g["crop"], 1, n)
        fg = feature_grid_raster(enc)
        gh, gw = fg.shape[:2]
        pos = host.region_position(gh, gw, g["bbox"], g["H"], g["W"])
        fpos = backend.region_pos(fg.reshape(gh * gw, -1), pos).reshape(gh, gw, -1)
        mg = g["mask_grid"]
        if (gh, gw) != mg.shape:
            fpos = host.bilinear_features(fpos, mg.shape[0], mg.shape[1])
        toks = host.gather_tokens(fpos, mg, require_nonzero_feature=True)
        n_sel = len(toks)
        if n_sel > cfg.mask_num:
            toks = host.kmeans(toks, cfg.mask_num, host.KMEANS_ITERS["full"])
        emb = backend.region_mlp(toks) if len(toks) else np.zeros((0, cfg.text.hidden_size), np.float32)
        out.append(emb)
        p = f"obj{i}."
        rec[p + "crop"] = g["crop"]
        rec[p + "mask_grid"] = mg
        rec[p + "crop_patches"] = enc["patches"]
        rec[p + "crop_rope_cos"] = enc["rope_cos"]
        rec[p + "crop_features"] = enc["features"]
        rec[p + "positions"] = pos
        rec[p + "features_with_pos"] = fpos.reshape(-1, fpos.shape[-1])
        rec[p + "selected_or_kmeans"] = toks
        rec[p + "object_tokens"] = emb
        rec.setdefault("_meta_objects", []).append(
            {"frame": int(fi), "bbox": list(map(int, g["bbox"])), "scale": g["scale"], "area": g["area"],
             "crop_hw": list(g["crop"].shape[:2]), "feature_grid": [int(gh), int(gw)],
             "mask_grid": list(map(int, mg.shape)), "n_selected": int(n_sel), "n_tokens": int(len(emb)),
             "n_tokens_prompt_upstream": int(g["n_tokens_prompt"])})
    return out


def object_tokens_lite(backend, cfg, frames, masks: List[Tuple[int, np.ndarray]], rec: Dict) -> List[np.ndarray]:
    """SAOT + OCI for PixelRefer-Lite (pixelreferlite/mm_utils.py:45-165, region_encoder.py:52-114).
    Every mask gives exactly mask_num tokens. Global 336 / local 224 images are cached per frame index:
    the local crop of the first mask on a frame is reused for later masks on that frame (upstream)."""
    n = len(masks)
    cache: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
    out = []
    for i, (fi, mask) in enumerate(masks):
        frame = frames[fi]
        g = host.saot_lite(frame, mask, cfg.mask_num)
        if fi not in cache:
            src_local = frame if g["empty"] else g["local_src"]
            cache[fi] = (host.cv2_resize(frame, host.LITE_GLOBAL_SIZE, host.LITE_GLOBAL_SIZE, "area"),
                         host.cv2_resize(src_local, host.LITE_LOCAL_SIZE, host.LITE_LOCAL_SIZE, "area"))
        img336, img224 = cache[fi]
        enc = encode_image(backend, cfg, g["crop"], 1, n)
        genc = encode_image(backend, cfg, img336, 1, n)
        lenc = encode_image(backend, cfg, img224, 1, n)
        fg = feature_grid_raster(enc)
        gh, gw = fg.shape[:2]
        pos = host.region_position(gh, gw, g["bbox"], g["H"], g["W"])
        fpos = backend.region_pos(fg.reshape(gh * gw, -1), pos).reshape(gh, gw, -1)
        mg = g["mask_grid"]
        if (gh, gw) != mg.shape:
            fpos = host.bilinear_features(fpos, mg.shape[0], mg.shape[1])
        toks = host.gather_tokens(fpos, mg, require_nonzero_feature=False)
        n_sel = len(toks)
        if n_sel > cfg.mask_num:
            toks = host.kmeans(toks, cfg.mask_num, host.KMEANS_ITERS["lite"])
        padded = np.zeros((cfg.mask_num, toks.shape[1] if len(toks) else cfg.mm_hidden_size), np.float32)
        padded[:len(toks)] = toks
        fused = backend.region_oci(padded[None], lenc["features"][None], genc["features"][None])[0]
        emb = backend.region_mlp(fused)
        out.append(emb)
        p = f"obj{i}."
        rec[p + "crop"] = g["crop"]
        rec[p + "mask_grid"] = mg
        rec[p + "crop_patches"] = enc["patches"]
        rec[p + "crop_features"] = enc["features"]
        rec[p + "positions"] = pos
        rec[p + "features_with_pos"] = fpos.reshape(-1, fpos.shape[-1])
        rec[p + "padded_tokens"] = padded
        rec[p + "global_image"] = img336
        rec[p + "local_image"] = img224
        rec[p + "global_features"] = genc["features"]
        rec[p + "local_features"] = lenc["features"]
        rec[p + "oci_tokens"] = fused
        rec[p + "object_tokens"] = emb
        rec.setdefault("_meta_objects", []).append(
            {"frame": int(fi), "bbox": list(map(int, g["bbox"])), "scale": g["scale"], "area": g["area"],
             "crop_hw": list(g["crop"].shape[:2]), "feature_grid": [int(gh), int(gw)],
             "mask_grid": list(map(int, mg.shape)), "n_selected": int(n_sel), "n_tokens": int(cfg.mask_num),
             "global_grid": [genc["grid_h"], genc["grid_w"]], "local_grid": [lenc["grid_h"], lenc["grid_w"]]})
    return out


def global_tokens_full(backend, cfg, modal, frames, rec) -> Tuple[List[np.ndarray], List[int], List[np.ndarray]]:
    """PixelRefer global vision tokens: per image -> (kept projected tokens, placeholder count, keep mask)."""
    if modal == "image":
        enc = encode_image(backend, cfg, frames[0], 1, 1)
        merged = host.merge_tokens(enc["features"], enc["grid_h"], enc["grid_w"], 1)
        proj = backend.project(merged)
        rec["image.patches"], rec["image.rope_cos"], rec["image.rope_sin"] = enc["patches"], enc["rope_cos"], enc["rope_sin"]
        rec["image.vision_features"], rec["image.projected"] = enc["features"], proj
        rec["_meta_image_grid"] = [[enc["grid_h"], enc["grid_w"]]]
        return [proj], [len(proj)], [np.ones(len(proj), bool)]
    d = cfg.spatial_merge_size
    encs = [encode_image(backend, cfg, f, d, len(frames)) for f in frames]
    keep = (host.video_keep_mask([e["patches"] for e in encs], d, cfg.torch_dtype) if cfg.use_token_compression
            else np.ones((len(encs), encs[0]["patches"].shape[0] // (d * d)), bool))
    projs, counts, keeps = [], [], []
    for t, e in enumerate(encs):
        merged = host.merge_tokens(e["features"], e["grid_h"], e["grid_w"], d)
        proj = backend.project(merged)
        rec[f"frame{t}.patches"], rec[f"frame{t}.rope_cos"] = e["patches"], e["rope_cos"]
        rec[f"frame{t}.vision_features"], rec[f"frame{t}.projected"] = e["features"], proj
        projs.append(proj[keep[t]])
        counts.append(len(proj))
        keeps.append(keep[t])
    rec["video.keep_mask"] = keep.astype(np.uint8)
    rec["_meta_image_grid"] = [[e["grid_h"], e["grid_w"]] for e in encs]
    return projs, counts, keeps


def build_ids(cfg, tok: Tok, image_counts, turn_texts: List[Tuple[str, str]]) -> Tuple[str, List[int]]:
    """Chat template -> (full model) expand each <image> to its token count -> token ids (no BOS)."""
    prompt = host.chat_prompt(turn_texts)
    if cfg.variant == "full":
        prompt = host.expand_image_tokens(prompt, image_counts)
    return prompt, tok.encode(prompt)


def greedy(backend, embeds: np.ndarray, eos_ids: Sequence[int], max_new_tokens: int,
           repetition_penalty: float = 1.0) -> Tuple[List[int], np.ndarray]:
    """HF greedy generate with inputs_embeds only (pixelrefer/__init__.py:168-186): positions 0..L-1,
    all-ones attention mask, stop on eos (included in the output). repetition_penalty (if the checkpoint's
    generation_config has one) applies to already *generated* ids only."""
    L = embeds.shape[1]
    past = backend.empty_past()
    mask = np.ones((1, L), np.int64)
    pos = np.arange(L, dtype=np.int64)[None]
    logits, past = backend.decode(embeds, mask, pos, past)
    first = logits.copy()
    out: List[int] = []
    for step in range(max_new_tokens):
        lg = logits[0].astype(np.float32).copy()
        if repetition_penalty != 1.0 and out:
            idx = np.unique(np.asarray(out))
            s = lg[idx]
            lg[idx] = np.where(s < 0, s * repetition_penalty, s / repetition_penalty)
        nxt = int(np.argmax(lg))
        out.append(nxt)
        if nxt in eos_ids or step == max_new_tokens - 1:
            break
        e = backend.embed(np.asarray([[nxt]], np.int64))
        cur = L + len(out)
        logits, past = backend.decode(e, np.ones((1, cur), np.int64), np.asarray([[cur - 1]], np.int64), past)
    return out, first


def run_case(backend, cfg: PixelReferConfig, tok: Tok, case: Dict, gen: Dict) -> Tuple[Dict[str, np.ndarray], Dict]:
    """case: modal ('image'|'video'), frames [HxWx3 uint8], timestamps (video), objects
    [[(frame_index, HxW uint8 mask), ...] per object], turns [query, ...], max_new_tokens."""
    rec: Dict[str, Any] = {}
    modal, frames = case["modal"], case["frames"]
    objs = case["objects"]
    ts = case.get("timestamps")
    for i, f in enumerate(frames):
        rec[f"input.frame{i}"] = f
    for oi, o in enumerate(objs):
        for mi, (fi, m) in enumerate(o):
            rec[f"input.obj{oi}.mask{mi}"] = m.astype(np.uint8)
    if cfg.variant == "full":
        masks = []
        for o in objs:
            if len(o) != 1:
                raise ValueError("PixelRefer (full) takes exactly one mask per object")
            masks.append(o[0])
        obj_toks = object_tokens_full(backend, cfg, frames, masks, rec)
        groups = [[(None, len(t))] for t in obj_toks]
        vis, counts, keeps = global_tokens_full(backend, cfg, modal, frames, rec)
    else:
        masks = [m for o in objs for m in o]
        flat = object_tokens_lite(backend, cfg, frames, masks, rec)
        obj_toks, groups, k = [], [], 0
        for o in objs:
            obj_toks.append(np.concatenate(flat[k:k + len(o)], 0))
            groups.append([(ts[fi] if modal == "video" else None, cfg.mask_num) for fi, _ in o])
            k += len(o)
        vis, counts, keeps = [], [], []

    eos_ids = gen["eos_token_ids"]
    img_id = tok.id(host.IMAGE_TOKEN)
    reg_id = tok.id(host.REGION_TOKEN)
    meta: Dict[str, Any] = {"turns": []}
    history: List[Tuple[str, str]] = []
    for ti, query in enumerate(case["turns"]):
        if ti == 0:
            q = host.region_question(query, len(objs), modal)
            if cfg.variant == "lite":  # Lite prompts carry no <image>/<video> (pixelreferlite/__init__.py:142-186)
                q = q.split("\n", 1)[1]
            q = host.region_fill(q, groups, lite_video=(cfg.variant == "lite" and modal == "video"))
            content = host.user_content(q, modal if cfg.variant == "full" else "text", len(frames), ts)
        else:
            content = host.user_content(query, "text")
        history.append(("user", content))
        prompt, ids = build_ids(cfg, tok, counts, history)
        ids = np.asarray(ids, np.int64)
        # video token pruning removes the dropped <image> placeholders (pixelrefer_arch.py:323-369)
        if cfg.variant == "full" and modal == "video" and cfg.use_token_compression:
            pos_img = np.nonzero(ids == img_id)[0]
            keep_flat = np.concatenate(keeps)
            assert len(pos_img) == len(keep_flat)
            drop = pos_img[~keep_flat]
            ids = np.delete(ids, drop)
        emb_ids = np.where(ids == img_id, 0, ids)  # pixelrefer_arch.py:377 (ids of <image> set to 0)
        embeds = backend.embed(emb_ids[None])
        n_img = int((ids == img_id).sum())
        if cfg.variant == "full" and n_img:
            v = np.concatenate(vis, 0)
            assert len(v) == n_img, (len(v), n_img)
            embeds[0, ids == img_id] = v
        n_reg = int((ids == reg_id).sum())
        if n_reg:
            o = np.concatenate(obj_toks, 0)
            assert len(o) == n_reg, (len(o), n_reg)
            embeds[0, ids == reg_id] = o
        out, first = greedy(backend, embeds, eos_ids, case.get("max_new_tokens", 16), gen.get("repetition_penalty", 1.0))
        answer = tok.decode(out)
        rec[f"turn{ti}.input_ids"] = ids
        rec[f"turn{ti}.inputs_embeds"] = embeds[0]
        rec[f"turn{ti}.first_logits"] = first[0]
        rec[f"turn{ti}.generated_ids"] = np.asarray(out, np.int64)
        # the raw question too, so that reference/cases.json is self-contained (the Rust verifier
        # and parity tests rebuild each request from it)
        meta["turns"].append({"question": query, "prompt": prompt, "answer": answer, "generated_ids": out, "n_input": int(len(ids)),
                              "n_image_tokens": n_img, "n_region_tokens": n_reg})
        history.append(("assistant", answer))
    meta["objects"] = rec.pop("_meta_objects", [])
    meta["image_grids"] = rec.pop("_meta_image_grid", [])
    return rec, meta
