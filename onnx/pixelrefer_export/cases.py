"""Fixed reference inputs and the writer of reference/cases.json + reference/<case>.safetensors."""
from __future__ import annotations

import json
import os
from typing import Dict, List

import numpy as np

from common import progress

from .pipeline import OrtBackend, Tok, TorchBackend, run_case


def _image(h: int, w: int, seed: int) -> np.ndarray:
    """Deterministic, non-trivial RGB image: smooth gradients + a few blocks + low noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / max(w - 1, 1) * 255, y / max(h - 1, 1) * 255, (x + y) % 64 * 4], -1)
    for _ in range(4):
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        img[y0:y0 + rng.integers(6, h // 2), x0:x0 + rng.integers(6, w // 2)] = rng.integers(0, 256, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _ellipse(h, w, cy, cx, ry, rx) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2) <= 1).astype(np.uint8)


def _rect(h, w, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _video(t: int, h: int, w: int, seed: int) -> List[np.ndarray]:
    base = _image(h, w, seed)
    frames = []
    for i in range(t):
        f = np.roll(base, shift=3 * i, axis=1).copy()
        if i == 2:  # frame 2 = frame 1 except a small patch -> exercises video token pruning
            f = frames[1].copy()
            f[0:14, 0:20] = 255 - f[0:14, 0:20]
        frames.append(f)
    return frames


def cases_for(variant: str) -> List[Dict]:
    H, W = 90, 120  # not multiples of 14: exercises the bicubic resize (-> 84 x 126)
    img = _image(H, W, 1)
    vh, vw, vt = 60, 80, 4
    vid = _video(vt, vh, vw, 2)
    one = _ellipse(H, W, 45, 60, 18, 25)
    line = np.zeros((H, W), np.uint8)
    line[30:52, 95] = 1  # 1-pixel-wide mask
    whole = np.ones((H, W), np.uint8)  # whole-frame mask
    blob = _rect(H, W, 10, 34, 8, 40)
    if variant == "full":
        return [
            {"name": "image_1obj", "modal": "image", "frames": [img], "objects": [[(0, one)]],
             "turns": ["What is <region0> doing?"], "max_new_tokens": 12},
            {"name": "image_3obj", "modal": "image", "frames": [img],
             "objects": [[(0, blob)], [(0, line)], [(0, whole)]],
             "turns": ["Which one is bigger, <region0> or <region2>? Describe <region1>."], "max_new_tokens": 12},
            {"name": "video_2obj", "modal": "video", "frames": vid, "timestamps": [0.0, 1.0, 2.0, 3.0],
             "objects": [[(0, _ellipse(vh, vw, 30, 30, 12, 14))], [(2, _rect(vh, vw, 5, 25, 50, 75))]],
             "turns": ["Does <object0> touch <object1>?"], "max_new_tokens": 12},
            {"name": "two_turn", "modal": "image", "frames": [img], "objects": [[(0, one)]],
             "turns": ["What is <region0> doing?", "And what colour is it?"], "max_new_tokens": 8},
        ]
    return [
        {"name": "lite_image", "modal": "image", "frames": [img],
         "objects": [[(0, one)], [(0, line)], [(0, whole)]],
         "turns": ["Which one is bigger, <region0> or <region2>? Describe <region1>."], "max_new_tokens": 12},
        {"name": "lite_video", "modal": "video", "frames": vid, "timestamps": [i / 2.5 for i in range(vt)],
         "objects": [[(0, _ellipse(vh, vw, 30, 30, 12, 14)), (1, _ellipse(vh, vw, 30, 33, 12, 14))],
                     [(2, _rect(vh, vw, 5, 25, 50, 75)), (3, _rect(vh, vw, 5, 25, 53, 78))]],
         "turns": ["Does <object0> touch <object1>?"], "max_new_tokens": 12},
        {"name": "lite_two_turn", "modal": "image", "frames": [img], "objects": [[(0, one)]],
         "turns": ["What is <region0> doing?", "And what colour is it?"], "max_new_tokens": 8},
    ]


def write_reference(model, cfg, out_dir: str, gen: Dict, verify_ort: bool = True) -> List[Dict]:
    from safetensors.numpy import save_file
    ref_dir = os.path.join(out_dir, "reference")
    os.makedirs(ref_dir, exist_ok=True)
    tok = Tok(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "manifest.json")) as f:
        c = json.load(f)["constants"]
    g = {"eos_token_ids": c["eos_token_ids"], "repetition_penalty": c["repetition_penalty"]}
    tb = TorchBackend(model)
    ob = OrtBackend(out_dir) if verify_ort else None
    index = []
    cases = cases_for(cfg.variant)
    for ci, case in enumerate(cases):
        progress("reference", ci + 1, len(cases), case["name"])
        rec, meta = run_case(tb, cfg, tok, case, g)
        ids = [t["generated_ids"] for t in meta["turns"]]
        if all(len(i) and i[0] in g["eos_token_ids"] for i in ids):
            print(f"  warning: {case['name']}: greedy emitted the stop token first")
        line = {"name": case["name"], "variant": cfg.variant, "modal": case["modal"],
                "file": f"reference/{case['name']}.safetensors", "n_frames": len(case["frames"]),
                "timestamps": case.get("timestamps"), "turns": case["turns"],
                "objects_masks": [[fi for fi, _ in o] for o in case["objects"]],
                "max_new_tokens": case["max_new_tokens"], **meta}
        if ob is not None:
            rec_o, meta_o = run_case(ob, cfg, tok, case, g)
            same = [t["generated_ids"] for t in meta_o["turns"]] == ids
            dl = max(float(np.abs(rec_o[k] - rec[k]).max()) for k in rec if k.endswith("first_logits"))
            dt = max((float(np.abs(rec_o[k] - rec[k]).max()) for k in rec if k.endswith("object_tokens") and rec[k].size),
                     default=0.0)
            line["ort_check"] = {"same_generated_ids": same, "max_abs_diff_first_logits": dl,
                                 "max_abs_diff_object_tokens": dt}
            print(f"  [case] {case['name']:14s} ids={ids} ort_same={same} dlogits={dl:.2e} dobj={dt:.2e}")
        else:
            print(f"  [case] {case['name']:14s} ids={ids}")
        arrays = {k: np.ascontiguousarray(v) for k, v in rec.items()}
        line["arrays"] = {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in sorted(arrays.items())}
        save_file(arrays, os.path.join(out_dir, line["file"]))
        index.append(line)
    from .host_vectors import write as write_host_vectors
    write_host_vectors(cfg, out_dir)
    with open(os.path.join(ref_dir, "cases.json"), "w") as f:
        json.dump({"format": "pixelrefer-studio-reference", "version": 1,
                   "note": "inputs, intermediates and greedy ids of the PyTorch reference pipeline "
                           "(onnx/pixelrefer_export/pipeline.py); each turn keeps its raw question, rendered prompt, "
                           "answer and greedy ids; array names in each safetensors file are listed in 'arrays'", "cases": index}, f, indent=1)
    return index
