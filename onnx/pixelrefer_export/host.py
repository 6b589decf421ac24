"""Host-side steps (what the Rust `refer` module ports), in numpy, following the official code.

Citations are relative to `PixelRefer/` in alibaba-damo-academy/PixelRefer (see onnx/PIXELREFER_NOTES.md):
image processor  -> pixelrefer/model/damovl_encoder/image_processing.py
vision RoPE      -> pixelrefer/model/damovl_encoder/modeling_damovl_encoder.py:452-479
token merge      -> pixelrefer/model/pixelrefer_arch.py:32-52 (spatial_downsampling)
video pruning    -> pixelrefer/model/pixelrefer_arch.py:272-289
SAOT geometry    -> pixelrefer/mm_utils.py:25-58 (full), pixelreferlite/mm_utils.py:45-165 (Lite)
position / pool  -> pixelrefer/model/region_encoder.py, pixelreferlite/model/region_encoder.py
prompt/template  -> pixelrefer/model/processor.py:39-90, pixelrefer/__init__.py, demo/app.py:162-172,273-282
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

PATCH = 14            # patch size (VL3-SigLIP-NaViT config.json / preprocessor_config.json)
CONTEXT_PATCHES = 2   # bbox expansion = patch_size * 2 = 28 px (mm_utils.py:37; Lite expanding_rate=2)
SCALE_AREA_PER_TOKEN = 196  # 14*14 in the scale rule (mm_utils.py:43)
LARGE_OBJECT_PATCHES = {"full": 100, "lite": 50}   # mm_utils.py:45 / pixelreferlite/mm_utils.py:124
KMEANS_ITERS = {"full": 5, "lite": 3}              # region_encoder.py:73 / pixelreferlite region_encoder.py:116
LITE_LOCAL_SIZE = 224   # pixelreferlite/mm_utils.py:154
LITE_GLOBAL_SIZE = 336  # pixelreferlite/mm_utils.py:153
VIDEO_PRUNE_THRESHOLD = 0.1  # pixelrefer_arch.py:277
VIDEO_PRUNE_MIN_TOKENS = 1   # pixelrefer_arch.py:278


# ------------------------------------------------------------------------------------------------
# Image processor
# ------------------------------------------------------------------------------------------------
def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> Tuple[int, int]:
    """image_processing.py:99-129 (Python `round` = round-half-even)."""
    if height < factor or width < factor:
        scale = factor / min(height, width)
        width = round(scale * width)
        height = round(scale * height)
    elif max(height, width) / min(height, width) > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def processor_max_pixels(cfg, downsampling: int, num_images: int) -> int:
    """image_processing.py:273-279: int(max_pixels / (merge_size / d)**2) // num_images."""
    return int(int(cfg.processor_max_pixels / (cfg.spatial_merge_size / downsampling) ** 2) // num_images)


def resize_bicubic(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """transformers resize -> PIL resize(BICUBIC) (resample=3); unchanged size = exact copy."""
    from PIL import Image
    if img.shape[0] == h and img.shape[1] == w:
        return img.copy()
    return np.asarray(Image.fromarray(img).resize((w, h), resample=Image.BICUBIC))


def normalize(img: np.ndarray, cfg) -> np.ndarray:
    """HWC uint8 -> CHW float32: rescale 1/255 then (x - mean) / std (image_processing.py:285-293)."""
    x = img.astype(np.float64) * cfg.rescale_factor
    x = x.astype(np.float32)
    mean = np.asarray(cfg.image_mean, dtype=np.float32)
    std = np.asarray(cfg.image_std, dtype=np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def patchify(chw: np.ndarray, d: int) -> np.ndarray:
    """image_processing.py:300-314: patches in d x d blocks, each patch channel-major (C*14*14)."""
    c, h, w = chw.shape
    gh, gw = h // PATCH, w // PATCH
    x = chw.reshape(c, gh // d, d, PATCH, gw // d, d, PATCH)
    x = x.transpose(1, 4, 2, 5, 0, 3, 6)
    return np.ascontiguousarray(x.reshape(gh * gw, c * PATCH * PATCH))


def preprocess(img: np.ndarray, cfg, d: int, num_images: int) -> Dict[str, np.ndarray]:
    """One image through DAMOVLImageProcessor._preprocess with image_downsampling=d."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError("expected an HxWx3 uint8 RGB image")
    h, w = img.shape[:2]
    rh, rw = smart_resize(h, w, PATCH * d, cfg.min_pixels, processor_max_pixels(cfg, d, num_images))
    resized = resize_bicubic(img, rh, rw)
    chw = normalize(resized, cfg)
    return {"resized": resized, "patches": patchify(chw, d), "grid_h": rh // PATCH, "grid_w": rw // PATCH, "d": d}


def vision_rope(grid_h: int, grid_w: int, d: int, head_dim: int, theta: float = 10000.0) -> Tuple[np.ndarray, np.ndarray]:
    """rot_pos_emb (modeling_damovl_encoder.py:452-479) + apply_rotary_pos_emb_vision (:154-163).
    Returns cos, sin of shape [N, head_dim] in the same d x d block order as `patchify`."""
    dim = head_dim // 2
    inv_freq = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float32) / dim))  # float32 like torch
    inv_freq = inv_freq.astype(np.float32)
    hpos = np.broadcast_to(np.arange(grid_h)[:, None], (grid_h, grid_w))
    wpos = np.broadcast_to(np.arange(grid_w)[None, :], (grid_h, grid_w))

    def blk(p):
        return p.reshape(grid_h // d, d, grid_w // d, d).transpose(0, 2, 1, 3).reshape(-1)

    hp, wp = blk(hpos), blk(wpos)
    fh = hp[:, None].astype(np.float32) * inv_freq[None, :]
    fw = wp[:, None].astype(np.float32) * inv_freq[None, :]
    freqs = np.concatenate([fh, fw], axis=1).astype(np.float32)  # [N, head_dim/2]
    cos = np.cos(freqs).astype(np.float32)
    sin = np.sin(freqs).astype(np.float32)
    return np.concatenate([cos, cos], 1), np.concatenate([sin, sin], 1)


def merge_tokens(feats: np.ndarray, grid_h: int, grid_w: int, d: int) -> np.ndarray:
    """spatial_downsampling (pixelrefer_arch.py:32-52): un-block to raster, then bilinear to
    (ceil(gh/d), ceil(gw/d)) with align_corners=False; with gh, gw multiples of d this is exactly d x d
    average pooling. Returns raster-ordered [gh/d * gw/d, C]."""
    c = feats.shape[1]
    if d == 1:
        return feats.copy()
    x = feats.reshape(grid_h // d, grid_w // d, d, d, c).transpose(0, 2, 1, 3, 4).reshape(grid_h, grid_w, c)
    x = x.reshape(grid_h // d, d, grid_w // d, d, c).mean(axis=(1, 3), dtype=np.float32)
    return x.reshape(-1, c).astype(np.float32)


def round_to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round float32 values to bfloat16 / float16 (round-to-nearest-even) and back to float32."""
    x = np.asarray(x, np.float32)
    if dtype in ("bfloat16", "bf16"):
        u = x.view(np.uint32).astype(np.uint64)
        u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
        return u.astype(np.uint32).view(np.float32)
    if dtype in ("float16", "fp16"):
        return x.astype(np.float16).astype(np.float32)
    return x


def video_keep_mask(frame_patches: Sequence[np.ndarray], d: int, dtype: str = "float32") -> np.ndarray:
    """Token pruning for videos (use_token_compression, pixelrefer_arch.py:272-289). frame_patches: per
    frame [gh*gw, 588] block-ordered normalised patches. Returns bool [T, tokens_per_frame].
    Upstream runs this on the pixel tensors already cast to the model dtype (config.torch_dtype, e.g.
    bfloat16; pixelrefer/__init__.py:154-156), each op rounding to that dtype: |a-b| -> mean -> *255."""
    n = len(frame_patches)
    r = lambda v: round_to_dtype(v, dtype)  # noqa: E731
    x = r(np.stack(frame_patches, 0).astype(np.float32))
    x = x.reshape(n, x.shape[1] // (d * d), -1)
    keep = np.ones((n, x.shape[1]), dtype=bool)
    if n > 1:
        diff = r(np.abs(r(x[1:] - x[:-1])))
        diff = r(r(diff.mean(axis=-1, dtype=np.float32)) * np.float32(255))
        keep[1:] = diff > VIDEO_PRUNE_THRESHOLD
    for i in range(n):
        if keep[i].sum() < VIDEO_PRUNE_MIN_TOKENS:
            keep[i, :VIDEO_PRUNE_MIN_TOKENS] = True
    return keep


# ------------------------------------------------------------------------------------------------
# Resizes used by SAOT
# ------------------------------------------------------------------------------------------------
def _aa_bilinear_rows(insz: int, outsz: int):
    """Half-pixel bilinear taps (torch's separable uint8 path, antialias=False): per output, (xmin, weights)."""
    scale = insz / outsz
    rows = []
    for o in range(outsz):
        center = scale * (o + 0.5)
        xmin = max(int(center - 1.0 + 0.5), 0)
        xsize = min(int(center + 1.0 + 0.5), insz) - xmin
        ws = [max(0.0, 1.0 - abs(j + xmin - center + 0.5)) for j in range(xsize)]
        tot = sum(ws)
        rows.append((xmin, [x / tot if tot != 0 else 0.0 for x in ws]))
    return rows


def _uint8_pass(x: np.ndarray, outsz: int, axis: int) -> np.ndarray:
    insz = x.shape[axis]
    if insz == outsz:
        return x
    rows = _aa_bilinear_rows(insz, outsz)
    maxw = max(max(ws) for _, ws in rows)
    prec = 0
    for prec in range(0, 22):
        if int(0.5 + maxw * (1 << (prec + 1))) >= (1 << 15):
            break
    x = np.moveaxis(x, axis, -1).astype(np.int64)
    y = np.zeros(x.shape[:-1] + (outsz,), dtype=np.int64)
    for o, (xmin, ws) in enumerate(rows):
        acc = np.full(x.shape[:-1], 1 << (prec - 1), dtype=np.int64)
        for j, wv in enumerate(ws):
            wi = int(math.floor(wv * (1 << prec) + 0.5)) if wv >= 0 else int(math.ceil(wv * (1 << prec) - 0.5))
            acc += x[..., xmin + j] * wi
        y[..., o] = np.clip(acc >> prec, 0, 255)
    return np.moveaxis(y, -1, axis)


def torch_uint8_bilinear(mask: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """F.interpolate(uint8[1,1,H,W], (out_h,out_w), 'bilinear', align_corners=False) on CPU, as used by
    pixelrefer/mm_utils.py:52 on the uint8 mask. Torch's uint8 kernel is separable (width pass, then
    height pass), fixed-point with per-pass rounding; this port is bit-exact on our random tests."""
    x = _uint8_pass(mask.astype(np.int64), out_w, 1)
    x = _uint8_pass(x, out_h, 0)
    return x.astype(np.uint8)


def cv2_linear_f32(mask: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """cv2.resize(float32, (out_w, out_h), INTER_LINEAR) as in pixelreferlite/mm_utils.py:140-145:
    half-pixel source coordinate in float64, fractional weight cast to float32, clamped at the borders,
    horizontal then vertical pass in float32."""
    m = mask.astype(np.float32)

    def coeffs(insz, outsz):
        scale = insz / outsz
        idx = np.zeros((outsz, 2), dtype=np.int64)
        w = np.zeros((outsz, 2), dtype=np.float32)
        for o in range(outsz):
            fx = (o + 0.5) * scale - 0.5
            sx = int(math.floor(fx))
            f = np.float32(fx - sx)
            if sx < 0:
                f, sx = np.float32(0), 0
            if sx >= insz - 1:
                f, sx = np.float32(0), insz - 1
            idx[o] = (sx, min(sx + 1, insz - 1))
            w[o] = (np.float32(1) - f, f)
        return idx, w

    ix, wx = coeffs(m.shape[1], out_w)
    t = (m[:, ix[:, 0]] * wx[:, 0] + m[:, ix[:, 1]] * wx[:, 1]).astype(np.float32)
    iy, wy = coeffs(m.shape[0], out_h)
    return (t[iy[:, 0], :] * wy[:, 0:1] + t[iy[:, 1], :] * wy[:, 1:2]).astype(np.float32)


def bilinear_features(feat: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """F.interpolate(feat, size, 'bilinear', align_corners=False) on float features [h, w, C]
    (MaskPooling when the feature grid differs from the mask grid, region_encoder.py:100-102)."""
    import torch
    t = torch.from_numpy(np.ascontiguousarray(feat.transpose(2, 0, 1)))[None].float()
    r = torch.nn.functional.interpolate(t, size=(out_h, out_w), mode="bilinear", align_corners=False)
    return r[0].permute(1, 2, 0).numpy().astype(np.float32)


def cv2_resize(img: np.ndarray, w: int, h: int, interp: str) -> np.ndarray:
    import cv2
    flag = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}[interp]
    return cv2.resize(img, (w, h), interpolation=flag)


# ------------------------------------------------------------------------------------------------
# SAOT geometry
# ------------------------------------------------------------------------------------------------
def _scale_rate(area: int, mask_num: int, large_patches: int) -> float:
    s = math.ceil(math.sqrt(SCALE_AREA_PER_TOKEN * mask_num / area))
    if s == 1 and (area / SCALE_AREA_PER_TOKEN) > large_patches:
        s = 1 / math.sqrt((area / SCALE_AREA_PER_TOKEN) / large_patches)
    return s


def saot_full(image: np.ndarray, mask: np.ndarray, mask_num: int) -> Dict:
    """pixelrefer/mm_utils.py:25-58 for one mask."""
    h, w = image.shape[:2]
    m = (mask != 0).astype(np.uint8)
    rows, cols = np.where(m == 1)
    if rows.size == 0:
        raise ValueError("empty mask: PixelRefer needs at least one mask pixel")
    pad = PATCH * CONTEXT_PATCHES
    bbox = (max(0, int(rows.min()) - pad), max(0, int(cols.min()) - pad),
            min(h - 1, int(rows.max()) + pad), min(w - 1, int(cols.max()) + pad))
    mask_h, mask_w = bbox[2] - bbox[0], bbox[3] - bbox[1]
    if mask_h == 0 or mask_w == 0:
        raise ValueError("mask box is degenerate (image too small)")
    crop = image[bbox[0]:bbox[2], bbox[1]:bbox[3], :]
    crop_mask = m[bbox[0]:bbox[2], bbox[1]:bbox[3]]
    area = int(m.sum())
    s = _scale_rate(area, mask_num, LARGE_OBJECT_PATCHES["full"])
    rh = math.ceil((mask_h * s) / PATCH) * PATCH
    rw = math.ceil((mask_w * s) / PATCH) * PATCH
    crop_r = cv2_resize(crop, rw, rh, "linear")
    grid = torch_uint8_bilinear(crop_mask, rh // PATCH, rw // PATCH)
    return {"crop": crop_r, "mask_grid": grid.astype(np.float32), "bbox": bbox, "H": h, "W": w,
            "scale": float(s), "area": area, "n_tokens_prompt": min(mask_num, int(grid.sum()))}


def saot_lite(image: np.ndarray, mask: np.ndarray, mask_num: int) -> Dict:
    """pixelreferlite/mm_utils.py:45-165 for one mask (without the per-frame cache; see pipeline)."""
    h, w = image.shape[:2]
    m = (mask != 0).astype(np.uint8)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return {"crop": np.zeros((PATCH, PATCH, 3), dtype=image.dtype), "mask_grid": np.zeros((1, 1), np.float32),
                "bbox": (0, 0, 0, 0), "H": h, "W": w, "scale": 0.0, "area": 0, "local_src": None, "empty": True}
    x, y = int(xs.min()), int(ys.min())
    bw, bh = int(xs.max()) - x + 1, int(ys.max()) - y + 1  # cv2.boundingRect
    pad = PATCH * CONTEXT_PATCHES
    top, left = max(0, y - pad), max(0, x - pad)
    bottom, right = min(h, y + bh + pad), min(w, x + bw + pad)
    bbox = (top, left, min(h - 1, bottom - 1), min(w - 1, right - 1))
    mask_h, mask_w = bottom - top, right - left
    crop = image[top:bottom, left:right, :]
    crop_mask = m[top:bottom, left:right]
    area = int(m.sum())
    s = _scale_rate(max(area, 1), mask_num, LARGE_OBJECT_PATCHES["lite"])
    rh = int(math.ceil((mask_h * s) / PATCH) * PATCH)
    rw = int(math.ceil((mask_w * s) / PATCH) * PATCH)
    interp = "linear" if (rh >= mask_h or rw >= mask_w) else "area"
    crop_r = cv2_resize(crop, rw, rh, interp)
    grid = cv2_linear_f32(crop_mask, rh // PATCH, rw // PATCH)
    return {"crop": crop_r, "mask_grid": grid, "bbox": bbox, "H": h, "W": w, "scale": float(s), "area": area,
            "local_src": crop, "empty": False}


def region_position(gh: int, gw: int, bbox: Sequence[int], raw_h: int, raw_w: int) -> np.ndarray:
    """generate_position_tensor (region_encoder.py:6-18), called with bbox=(y0,x0,y1,x1) upstream: the
    first channel is built from bbox[0], bbox[2] (rows) and divided by raw_w-1, the second from bbox[1],
    bbox[3] (cols) divided by raw_h-1 — reproduced as is. Returns [gh*gw, 2] float32, raster order."""
    bx = float(bbox[2] - bbox[0])
    by = float(bbox[3] - bbox[1])
    xt = np.arange(gw, dtype=np.float32) / np.float32(gw)
    xt = np.broadcast_to(xt[None, :], (gh, gw))
    xt = (xt * np.float32(bx) + np.float32(bbox[0])) / np.float32(raw_w - 1)
    yt = np.arange(gh, dtype=np.float32) / np.float32(gh)
    yt = np.broadcast_to(yt[:, None], (gh, gw))
    yt = (yt * np.float32(by) + np.float32(bbox[1])) / np.float32(raw_h - 1)
    return np.stack([xt, yt], axis=2).reshape(-1, 2).astype(np.float32)


def gather_tokens(feat_grid: np.ndarray, mask_grid: np.ndarray, require_nonzero_feature: bool) -> np.ndarray:
    """MaskPooling selection: cells with mask > 0, raster order. The full model also drops cells whose
    masked feature is exactly all-zero (`any(mask_emb != 0)`, region_encoder.py:112-115)."""
    sel = mask_grid > 0
    if require_nonzero_feature:
        sel = sel & np.any(feat_grid != 0, axis=-1)
    return feat_grid[sel].astype(np.float32)


def kmeans(tokens: np.ndarray, k: int, iters: int) -> np.ndarray:
    """kmeans_fast (region_encoder.py:73-92). Deterministic init [decision]: indices floor(i*n/k)
    (upstream: torch.randperm, unseeded). Squared L2, argmin first index, empty cluster keeps its centroid,
    stop when allclose(old, new, rtol=1e-5, atol=1e-6) returning the OLD centroids."""
    import torch
    t = torch.from_numpy(np.ascontiguousarray(tokens)).float()
    n = t.shape[0]
    init = torch.tensor([(i * n) // k for i in range(k)], dtype=torch.long)
    centroids = t[init]
    for _ in range(iters):
        dist = torch.sum((t.unsqueeze(1) - centroids.unsqueeze(0)) ** 2, dim=2)
        labels = torch.argmin(dist, dim=1)
        new = torch.stack([t[labels == i].mean(dim=0) if (labels == i).any() else centroids[i] for i in range(k)])
        if torch.allclose(centroids, new, rtol=1e-5, atol=1e-6):
            break
        centroids = new
    return centroids.numpy().astype(np.float32)


def kmeans_init_indices(n: int, k: int) -> List[int]:
    return [(i * n) // k for i in range(k)]


# ------------------------------------------------------------------------------------------------
# Prompt building
# ------------------------------------------------------------------------------------------------
IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
REGION_TOKEN = "<REGION>"
REGION_PLACEHOLDER = "<region>"


def py_round1(t: float) -> str:
    """Python/Jinja `round(t, 1)` rendered with str()."""
    return str(round(float(t), 1))


def region_question(query: str, n_objects: int, modal: str) -> str:
    """demo/app.py:162-172 (image) and :273-282 (video), 'QA' mode."""
    if modal == "image":
        if n_objects == 1:
            prefix = "<image>\nThere is 1 region in the image: <region0> <region>. "
        else:
            prefix = f"<image>\nThere is {n_objects} region in the image: "
            prefix += "".join(f"<region{i}><region>, " for i in range(n_objects))
            prefix = prefix[:-2] + ". "
    else:
        if n_objects == 1:
            prefix = "<video>\nThere is 1 object in the video: <object0> <region>. "
        else:
            prefix = f"<video>\nThere is {n_objects} objects in the video: "
            prefix += "".join(f"<object{i}><region>, " for i in range(n_objects))
            prefix = prefix[:-2] + ". "
    return prefix + query


def region_fill(text: str, groups: List[List[Tuple[Optional[float], int]]], lite_video: bool) -> str:
    """Replace each `<region>` in order. groups[obj] = [(timestamp or None, n_tokens), ...].
    Full model / Lite image: '[' + <REGION>*n + ']' (pixelrefer/__init__.py:83-86);
    Lite video: '[Time 0.0:<REGION>*n,Time 1.0:<REGION>*n]' (pixelreferlite/mm_utils.py:25-32)."""
    for g in groups:
        if lite_video:
            rep = "[" + ",".join(f"Time {py_round1(t)}:" + REGION_TOKEN * n for t, n in g) + "]"
        else:
            rep = "[" + REGION_TOKEN * g[0][1] + "]"
        if REGION_PLACEHOLDER not in text:
            raise ValueError("more objects than <region> placeholders in the question")
        text = text.replace(REGION_PLACEHOLDER, rep, 1)
    return text


def user_content(text: str, modal: str, n_frames: int = 0, timestamps: Optional[Sequence[float]] = None,
                 add_modal_token: bool = True) -> str:
    """mm_infer message conversion (pixelrefer/__init__.py:107-127) + chat template items
    (processor.py:39-90). Splits on the modal token, strips text chunks, renders the media items."""
    tok = IMAGE_TOKEN if modal == "image" else VIDEO_TOKEN if modal == "video" else None
    if tok is None:
        return text.strip()
    if add_modal_token and tok not in text:
        text = tok + text
    chunks = text.split(tok)
    out = []
    for i in range(1, 2 * len(chunks)):
        if i % 2 == 1:
            c = chunks[i // 2].strip()
            if c:
                out.append(c)
        else:
            if modal == "image":
                out.append(IMAGE_TOKEN + "\n")
            else:
                s = ""
                for f in range(n_frames):
                    s += f"Time {py_round1(timestamps[f])}s:" + IMAGE_TOKEN + ("," if f < n_frames - 1 else "\n")
                out.append(s)
    return "".join(out)


def chat_prompt(turns: List[Tuple[str, str]]) -> str:
    """DEFAULT_CHAT_TEMPLATE with add_generation_prompt=True; no system message for Qwen models
    (pixelrefer/__init__.py:132-141). turns: [(role, rendered content)]."""
    s = ""
    for role, content in turns:
        s += f"<|im_start|>{role}\n{content}<|im_end|>\n"
    return s + "<|im_start|>assistant\n"


def expand_image_tokens(prompt: str, counts: Sequence[int]) -> str:
    """processor.py:228-234: the i-th <image> becomes counts[i] copies."""
    parts = prompt.split(IMAGE_TOKEN)
    if len(parts) - 1 != len(counts):
        raise ValueError(f"prompt has {len(parts) - 1} <image> but {len(counts)} images")
    out = parts[0]
    for c, p in zip(counts, parts[1:]):
        out += IMAGE_TOKEN * int(c) + p
    return out
