#!/usr/bin/env python3
"""PyTorch side of the SAM 2 benchmark (benches/sam2.rs runs it): the official `sam2` predictors
(sam2==1.1.0) on the same random weights as a `--full-random` model directory (rebuilt with the
manifest's seed through the same builder), on the inputs the Rust bench wrote.

  python onnx/bench_sam2.py --model-dir DIR --inputs TMP [--threads 2] [--clicks 10]

TMP holds image.png and frames/NNNNN.png. Prints one JSON line: encoder_ms (set_image, median of 3
after a warm-up), decoder_ms (predict with one click, multimask, median), propagation
ms per frame per object (two objects clicked on frame 0, propagate_in_video forward; the image
encoder runs inside propagation as in the Rust engine), peak_rss_mib (VmHWM).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clicks", type=int, default=10)
    a = ap.parse_args(argv)

    import numpy as np
    import torch
    from PIL import Image

    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    with open(os.path.join(a.model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    seed = int((manifest.get("upstream") or {}).get("random_seed") or 0)
    from sam2_export.build import build_full_random
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model = build_full_random(seed)  # same builder and seed as export_sam2.py --full-random

    img = np.asarray(Image.open(os.path.join(a.inputs, "image.png")).convert("RGB"))
    H, W = img.shape[:2]
    pred = SAM2ImagePredictor(model)
    enc = []
    with torch.inference_mode():
        for k in range(4):
            t = time.perf_counter()
            pred.set_image(img)
            if k:
                enc.append((time.perf_counter() - t) * 1e3)
        dec = []
        for k in range(a.clicks + 1):
            x = W * (0.2 + 0.6 * (k / max(a.clicks, 1)))
            t = time.perf_counter()
            masks, iou, low = pred.predict(point_coords=np.array([[x, H * 0.4]], np.float32),
                                           point_labels=np.array([1], np.int32), multimask_output=True)
            best = masks[int(np.argmax(iou))]
            if k:
                dec.append((time.perf_counter() - t) * 1e3)

    # video: the official loader reads a folder of JPEGs
    frames = sorted(glob.glob(os.path.join(a.inputs, "frames", "*.png")))
    tmp = tempfile.mkdtemp(prefix="sam2bench_")
    for p in frames:
        Image.open(p).convert("RGB").save(os.path.join(tmp, os.path.basename(p)[:-4] + ".jpg"), quality=95)
    vw, vh = Image.open(frames[0]).size
    with torch.inference_mode():
        state = model.init_state(tmp, offload_video_to_cpu=True)
        model.add_new_points_or_box(state, frame_idx=0, obj_id=1,
                                    points=np.array([[0.25 * vw, 0.35 * vh]], np.float32),
                                    labels=np.array([1], np.int32))
        model.add_new_points_or_box(state, frame_idx=0, obj_id=2,
                                    points=np.array([[0.7 * vw, 0.6 * vh]], np.float32),
                                    labels=np.array([1], np.int32))
        t = time.perf_counter()
        stamps = []
        for fi, ids, logits in model.propagate_in_video(state):
            _ = (logits > 0).cpu().numpy()
            stamps.append(time.perf_counter() - t)
    n = max(len(frames) - 1, 1)
    prop = (stamps[-1] - stamps[0]) * 1e3 / n / 2.0
    print(json.dumps({
        "encoder_ms": statistics.median(enc), "decoder_ms": statistics.median(dec),
        "propagation_ms_per_frame_per_object": prop, "peak_rss_mib": peak_rss_mib(),
        "torch": torch.__version__, "threads": a.threads,
        "note": "fill_holes is skipped by the official package without its CUDA extension",
    }), flush=True)


if __name__ == "__main__":
    main()
