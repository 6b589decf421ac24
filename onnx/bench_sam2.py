#!/usr/bin/env python3
"""PyTorch side of the SAM 2 benchmarks (benches/sam2.rs and benches/sam2_long.rs start it as a
worker of the interleaved harness, benches/support/harness.rs): the official `sam2` predictors
(sam2==1.1.0; EdgeTAM's edgetam-dimos for a directory whose manifest says family "edgetam") on
the same weights as a model directory exported by onnx/export_sam2.py or export_edgetam.py (random
weights rebuilt with the manifest's seed and overrides through the exporter's builder; a real
export loads its checkpoint), on the inputs the Rust bench wrote.

  python onnx/bench_sam2.py --model-dir DIR --inputs TMP [--threads 2] [--clicks 10]
  python onnx/bench_sam2.py --model-dir DIR --track FRAMES_DIR --point X,Y [--threads 2]

Serve mode (the first form): prints `{"ready": true, ...}`, then reads one JSON request per line
on stdin and answers one JSON line: `{"warmup": true}` runs one set_image and one click;
`{"round": k}` runs set_image twice (encoder_ms), `--clicks` single clicks (decoder_ms, multimask,
best mask thresholded at full size) and a forward propagation of two objects clicked on frame 0
(propagation_ms_per_frame_per_object; the image encoder runs inside propagation, as in the Rust
engine), with the minor page faults per click and per tracked frame (`getrusage`). TMP holds
image.png and frames/NNNNN.png.

Track mode (the second form, one shot, for sam2_long): one object clicked at X,Y on frame 0 of the
JPEG/PNG folder, propagated to the end; prints `{"ms_per_frame": .., "frames": n,
"peak_rss_mib": ..}`.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common.bench import peak_rss_mib, requests, say  # noqa: E402






def build_model(model_dir: str):
    """The video predictor with the weights of `model_dir` (random ones rebuilt from the manifest)."""
    with open(os.path.join(model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    up = manifest.get("upstream") or {}
    if manifest.get("family") == "edgetam":
        # EdgeTAM's own package (edgetam-dimos), put first on sys.path before anything imports
        # `sam2`, as onnx/export_edgetam.py does; the same builders and seed as that exporter.
        from edgetam_export.package import use_edgetam_sam2

        use_edgetam_sam2()
        from edgetam_export.build import build_full_random, build_tiny_random, build_video_model
    else:
        from sam2_export.build import build_full_random, build_tiny_random, build_video_model

    if up.get("checkpoint"):
        ckpt = os.path.join(model_dir, up["checkpoint"]) if not os.path.isabs(up["checkpoint"]) else up["checkpoint"]
        return build_video_model(up.get("config") or "sam2.1_hiera_t.yaml", ckpt)
    seed = int(up.get("random_seed") or 0)
    if "tiny" in str(manifest.get("variant", "")):
        return build_tiny_random(seed)  # same builder and seed as export_sam2.py --tiny-random
    return build_full_random(seed)  # same builder and seed as export_sam2.py --full-random


def to_jpeg_folder(frames):
    """The official loader reads a folder of JPEGs: a copy of the frames (quality 95)."""
    from PIL import Image

    tmp = tempfile.mkdtemp(prefix="sam2bench_")
    for i, p in enumerate(frames):
        Image.open(p).convert("RGB").save(os.path.join(tmp, f"{i:05d}.jpg"), quality=95)
    return tmp


def list_frames(folder: str):
    return sorted(glob.glob(os.path.join(folder, "*.png")) + glob.glob(os.path.join(folder, "*.jpg")))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--inputs")
    ap.add_argument("--track")
    ap.add_argument("--point")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clicks", type=int, default=10)
    a = ap.parse_args(argv)

    import numpy as np
    import torch
    from PIL import Image

    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    model = build_model(a.model_dir)
    load_s = time.perf_counter() - t0

    if a.track:
        x, y = (float(v) for v in a.point.split(","))
        frames = list_frames(a.track)
        tmp = to_jpeg_folder(frames)
        try:
            with torch.inference_mode():
                state = model.init_state(tmp, offload_video_to_cpu=True)
                t = time.perf_counter()
                model.add_new_points_or_box(state, frame_idx=0, obj_id=1,
                                            points=np.array([[x, y]], np.float32),
                                            labels=np.array([1], np.int32))
                n = 1
                for _fi, _ids, logits in model.propagate_in_video(state):
                    _ = (logits > 0).cpu().numpy()
                    n += 1
                secs = time.perf_counter() - t
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        say({"ms_per_frame": secs * 1e3 / max(len(frames), 1), "frames": len(frames),
             "peak_rss_mib": peak_rss_mib()})
        return

    from sam2.sam2_image_predictor import SAM2ImagePredictor

    img = np.asarray(Image.open(os.path.join(a.inputs, "image.png")).convert("RGB"))
    H, W = img.shape[:2]
    pred = SAM2ImagePredictor(model)
    frames = list_frames(os.path.join(a.inputs, "frames"))
    video = to_jpeg_folder(frames)
    vw, vh = Image.open(frames[0]).size
    say({"ready": True, "load_s": load_s, "torch": torch.__version__, "threads": a.threads,
         "model_class": type(model).__name__, "num_maskmem": model.num_maskmem,
         "note": "fill_holes is skipped by the official package without its CUDA extension"})

    def click(k, n):
        x = W * (0.2 + 0.6 * (k / max(n, 1)))
        t = time.perf_counter()
        masks, iou, _low = pred.predict(point_coords=np.array([[x, H * 0.4]], np.float32),
                                        point_labels=np.array([1], np.int32), multimask_output=True)
        _best = masks[int(np.argmax(iou))]
        return (time.perf_counter() - t) * 1e3

    try:
        for req in requests():
            with torch.inference_mode():
                if req.get("warmup"):
                    pred.set_image(img)
                    click(0, 1)
                    say({"metrics": {}, "peak_rss_mib": peak_rss_mib()})
                    continue
                enc = []
                for _ in range(2):
                    t = time.perf_counter()
                    pred.set_image(img)
                    enc.append((time.perf_counter() - t) * 1e3)
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                dec = [click(k, a.clicks) for k in range(a.clicks)]
                click_faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / max(a.clicks, 1)
                state = model.init_state(video, offload_video_to_cpu=True)
                model.add_new_points_or_box(state, frame_idx=0, obj_id=1,
                                            points=np.array([[0.25 * vw, 0.35 * vh]], np.float32),
                                            labels=np.array([1], np.int32))
                model.add_new_points_or_box(state, frame_idx=0, obj_id=2,
                                            points=np.array([[0.7 * vw, 0.6 * vh]], np.float32),
                                            labels=np.array([1], np.int32))
                t = time.perf_counter()
                stamps, faults = [], []
                for _fi, _ids, logits in model.propagate_in_video(state):
                    _ = (logits > 0).cpu().numpy()
                    stamps.append(time.perf_counter() - t)
                    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
                del state
            n = max(len(frames) - 1, 1)
            prop = (stamps[-1] - stamps[0]) * 1e3 / n / 2.0
            # frames that fill the memory bank (1 .. num_maskmem - 1) and frames whose bank is
            # full (frame t >= num_maskmem), as benches/sam2.rs
            per_frame = [(stamps[t] - stamps[t - 1]) * 1e3 / 2.0 for t in range(1, len(stamps))]
            full_from = max(model.num_maskmem, 1) - 1
            filling, steady = per_frame[:full_from], per_frame[full_from:]
            say({"metrics": {"encoder_ms": enc, "decoder_ms": dec,
                             "propagation_ms_per_frame_per_object": [prop],
                             "filling_propagation_ms_per_frame_per_object": filling,
                             "steady_propagation_ms_per_frame_per_object": steady,
                             "minor_page_faults_per_click": [click_faults],
                             "minor_page_faults_per_tracked_frame": [(faults[-1] - faults[0]) / n]},
                 "peak_rss_mib": peak_rss_mib()})
    finally:
        shutil.rmtree(video, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001  (the harness reads one error line)
        say({"error": f"{type(e).__name__}: {e}"})
        raise
