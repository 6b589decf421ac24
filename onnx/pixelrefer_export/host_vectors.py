"""Small input/output vectors for each host step (reference/host_vectors.json), so the Rust port can
unit-test smart_resize, rounding/formatting, the mask-grid resizes, RoPE tables, positions, token merge,
video pruning and k-means in isolation. All values come from host.py (the spec)."""
from __future__ import annotations

import json
import os
from typing import Dict

import numpy as np

from . import host


def _l(a: np.ndarray):
    return np.asarray(a).tolist()


def build(cfg) -> Dict:
    rng = np.random.default_rng(1234)
    out: Dict = {"format": "pixelrefer-studio-host-vectors", "version": 1}
    # smart_resize (Python banker's rounding inside)
    sr = []
    for h, w, f, mn, mx in [(90, 120, 14, 3136, 1605632), (60, 80, 28, 3136, 1605632), (21, 35, 14, 3136, 1605632),
                            (4560, 4560, 14, 3136, 535210), (7, 400, 14, 3136, 1605632), (49, 63, 14, 3136, 1605632),
                            (1080, 1920, 28, 3136, 6422528 // 180), (99, 99, 14, 3136, 1605632)]:
        sr.append({"h": h, "w": w, "factor": f, "min_pixels": mn, "max_pixels": mx,
                   "out": list(host.smart_resize(h, w, f, mn, mx))})
    out["smart_resize"] = sr
    out["processor_max_pixels"] = [{"d": d, "num_images": n, "out": host.processor_max_pixels(cfg, d, n)}
                                   for d, n in [(1, 1), (1, 3), (2, 1), (2, 16)]]
    # Python round(t, 1) as rendered in prompts
    ts = [0.0, 0.05, 0.15, 0.25, 0.35, 1.0, 1 / 3, 2.5, 2.45, 12.349999, 1.2000000000000002, 29.97 / 30 * 7, 100.05]
    out["round1"] = [{"t": t, "out": host.py_round1(t)} for t in ts]
    # mask grid resizes
    u8, cvl = [], []
    for i in range(6):
        h, w = int(rng.integers(3, 40)), int(rng.integers(3, 40))
        gh, gw = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        if i == 5:
            gh, gw = h + 3, w + 5  # upsampling
        m = (rng.random((h, w)) < 0.3).astype(np.uint8)
        u8.append({"mask": _l(m), "out_h": gh, "out_w": gw, "out": _l(host.torch_uint8_bilinear(m, gh, gw))})
        cvl.append({"mask": _l(m), "out_h": gh, "out_w": gw, "selected": _l((host.cv2_linear_f32(m, gh, gw) > 0).astype(np.uint8))})
    out["torch_uint8_bilinear"] = u8
    out["cv2_linear_f32_selected"] = cvl
    # vision RoPE
    cos, sin = host.vision_rope(2, 4, 2, 16)
    out["vision_rope"] = {"grid_h": 2, "grid_w": 4, "d": 2, "head_dim": 16, "theta": 10000.0, "cos": _l(cos), "sin": _l(sin)}
    # patch order
    chw = np.arange(3 * 28 * 56, dtype=np.float32).reshape(3, 28, 56)
    out["patchify_first_rows"] = {"chw_shape": [3, 28, 56], "chw": "arange", "d": 2,
                                  "patch_pixel0_of_each_patch": _l(host.patchify(chw, 2)[:, 0])}
    # region position
    out["region_position"] = {"gh": 3, "gw": 4, "bbox": [10, 20, 50, 90], "H": 100, "W": 120,
                              "out": _l(host.region_position(3, 4, (10, 20, 50, 90), 100, 120))}
    # token merge d=2
    f = rng.normal(size=(16, 3)).astype(np.float32)
    out["merge_tokens"] = {"grid_h": 4, "grid_w": 4, "d": 2, "features_block_order": _l(f),
                           "out_raster": _l(host.merge_tokens(f, 4, 4, 2))}
    # video pruning (bfloat16 semantics)
    fr = [rng.normal(size=(8, 12)).astype(np.float32) for _ in range(3)]
    fr[1] = fr[0].copy()
    fr[1][0:4] += 0.5
    fr[2] = fr[1] + np.float32(1e-4)
    out["video_keep_mask"] = {"d": 1, "dtype": "bfloat16", "frames": [_l(x) for x in fr],
                              "out": _l(host.video_keep_mask(fr, 1, "bfloat16").astype(np.uint8))}
    out["round_to_bfloat16"] = [{"x": float(x), "out": float(host.round_to_dtype(np.float32(x), "bfloat16"))}
                                for x in [1.0, 1.00390625, 1.005859375, -0.3333333, 3.14159, 65504.0, 1e-8]]
    # k-means (init floor(i*n/K))
    toks = rng.normal(size=(40, 4)).astype(np.float32)
    out["kmeans"] = {"k": 8, "iters": 5, "tokens": _l(toks), "init_indices": host.kmeans_init_indices(40, 8),
                     "out": _l(host.kmeans(toks, 8, 5))}
    # prompt pieces
    q = host.region_question("What is <region1> doing?", 2, "image")
    out["prompt"] = {
        "region_question_image_2": q,
        "region_question_video_1": host.region_question("Q?", 1, "video"),
        "region_fill_full": host.region_fill(q, [[(None, 3)], [(None, 2)]], lite_video=False),
        "region_fill_lite_video": host.region_fill("A <region> B", [[(0.0, 2), (0.4, 2)]], lite_video=True),
        "user_content_image": host.user_content(host.region_fill(q, [[(None, 1)], [(None, 1)]], False), "image"),
        "user_content_video": host.user_content("<video>\nQ?", "video", 3, [0.0, 1.0, 2.0]),
        "chat_prompt_two_turns": host.chat_prompt([("user", "<image>\nQ1"), ("assistant", "A1"), ("user", "Q2")]),
    }
    return out


def write(cfg, out_dir: str) -> str:
    p = os.path.join(out_dir, "reference", "host_vectors.json")
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        json.dump(build(cfg), f, indent=1)
    return p
