"""PyTorch side of `cargo bench --bench refer`, a worker of the interleaved harness
(benches/support/harness.rs): the reference pipeline (TorchBackend,
onnx/pixelrefer_export/pipeline.py) on the same image and video requests as benches/refer.rs.

usage: python onnx/bench_pixelrefer.py MODEL_DIR [--max-new-tokens N] [--threads T] [--video-frames F]
Prints `{"ready": true, ...}`, then answers each JSON request line on stdin with one JSON line of
metrics (`{"warmup": true}`: a 2-token image answer, not timed).
MODEL_DIR is an export made with --tiny-random / --full-random (it needs MODEL_DIR/checkpoint).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common.bench import peak_rss_mib, requests, say  # noqa: E402


def bench_frame(k: int, w: int = 640, h: int = 480):
    """Frame k of benches/refer.rs (frame 0 is the image request's image)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    xs = (x + 8 * k) % w
    return np.stack([xs * 255 // w, y * 255 // h, (xs ^ y) & 0xFF], -1).astype(np.uint8)


def bench_objects(w: int = 640, h: int = 480):
    """The two objects of benches/refer.rs on frame 0: an ellipse and a box."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    dx, dy = (x - 200.0) / 90.0, (y - 240.0) / 120.0
    a = (dx * dx + dy * dy <= 1.0).astype(np.uint8)
    b = ((x >= 400) & (x < 560) & (y >= 100) & (y < 300)).astype(np.uint8)
    return [[(0, a)], [(0, b)]]






def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--video-frames", type=int, default=8)
    args = ap.parse_args(argv)
    import torch
    from pixelrefer_export.export import load_checkpoint
    from pixelrefer_export.pipeline import Tok, TorchBackend, run_case

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ckpt = os.path.join(args.model_dir, "checkpoint")
    note = None
    if glob.glob(os.path.join(ckpt, "*.safetensors")):
        model = load_checkpoint(ckpt)
    else:
        # --full-random exports keep no weights: speed does not depend on their values, so the
        # same architecture with PyTorch's default random init is timed.
        from pixelrefer_export.config import PixelReferConfig
        from pixelrefer_export.modeling import PixelReferForCausalLM
        note = "no weights in checkpoint/: a randomly initialised model of the same config"
        model = PixelReferForCausalLM(PixelReferConfig.load(ckpt)).float().eval()
    cfg = model.cfg
    tok = Tok(os.path.join(args.model_dir, "tokenizer.json"))
    with open(os.path.join(args.model_dir, "manifest.json")) as f:
        c = json.load(f)["constants"]
    gen = {"eos_token_ids": c["eos_token_ids"], "repetition_penalty": 1.0}
    backend = TorchBackend(model)

    # Time to first token = from the start of the request to the end of the prefill decoder call
    # (the first `decode` with more than one position); prefill = that call; encode = the rest.
    # Tokens/s over the later decode calls.
    marks = {}
    inner_decode = backend.decode

    def timed_decode(embeds, attn_mask, pos_ids, past):
        t = time.perf_counter()
        out = inner_decode(embeds, attn_mask, pos_ids, past)
        if embeds.shape[1] > 1:
            marks["prefill_start"], marks["first"] = t, time.perf_counter()
        return out

    backend.decode = timed_decode
    objects = bench_objects()
    image_case = {"name": "bench", "modal": "image", "frames": [bench_frame(0)], "objects": objects,
                  # The Rust side writes <object0>; for images the engine renders it as <region0>.
                  "turns": ["What is the relationship between <region0> and <region1>?"]}
    nf = args.video_frames
    video_case = {"name": "bench_video", "modal": "video", "frames": [bench_frame(k) for k in range(nf)],
                  "timestamps": [float(k) for k in range(nf)], "objects": objects,
                  "turns": ["What are <region0> and <region1> doing in the video?"]}

    def run(case, n):
        case = dict(case, max_new_tokens=n)
        t = time.perf_counter()
        with torch.inference_mode():
            _, meta = run_case(backend, cfg, tok, case, gen)
        end = time.perf_counter()
        turn = meta["turns"][0]
        n_gen = len(turn["generated_ids"])
        tps = (n_gen - 1) / (end - marks["first"]) if n_gen > 1 else 0.0
        name = case["modal"]
        return {f"{name} ttft s": marks["first"] - t, f"{name} encode s": marks["prefill_start"] - t,
                f"{name} prefill s": marks["first"] - marks["prefill_start"], f"{name} tokens/s": tps,
                f"{name} prompt tokens": turn["n_input"], f"{name} generated tokens": n_gen}

    say({"ready": True, "load_s": time.perf_counter() - t0, "torch": torch.__version__, "note": note})
    for req in requests():
        if req.get("warmup"):
            run(image_case, 2)
            say({"metrics": {}, "peak_rss_mib": peak_rss_mib()})
            continue
        metrics = run(image_case, args.max_new_tokens)
        metrics.update(run(video_case, args.max_new_tokens))
        say({"metrics": metrics, "peak_rss_mib": peak_rss_mib()})


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001  (the harness reads one error line)
        say({"error": f"{type(e).__name__}: {e}"})
        raise
