"""PyTorch side of `cargo bench --bench refer`: times the reference pipeline (TorchBackend,
onnx/pixelrefer_export/pipeline.py) on the same request as benches/refer.rs and prints
`torch_ttft_secs:` and `torch_tokens_per_sec:` lines that the Rust bench turns into ratios.

usage: python onnx/bench_pixelrefer.py MODEL_DIR [--max-new-tokens N] [--runs R]
MODEL_DIR is an export made with --tiny-random / --full-random (it needs MODEL_DIR/checkpoint).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def bench_request(w: int = 640, h: int = 480):
    """The request of benches/refer.rs: same pixels, same masks, same question."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    img = np.stack([x * 255 // w, y * 255 // h, (x ^ y) & 0xFF], -1).astype(np.uint8)
    dx, dy = (x - 200.0) / 90.0, (y - 240.0) / 120.0
    a = (dx * dx + dy * dy <= 1.0).astype(np.uint8)
    b = ((x >= 400) & (x < 560) & (y >= 100) & (y < 300)).astype(np.uint8)
    # The Rust side writes <object0>; for images the engine renders it as <region0> (demo/app.py).
    q = "What is the relationship between <region0> and <region1>?"
    return img, [[(0, a)], [(0, b)]], q


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-warmup", action="store_true")
    args = ap.parse_args(argv)
    import torch
    from pixelrefer_export.export import load_checkpoint
    from pixelrefer_export.pipeline import Tok, TorchBackend, run_case

    torch.set_num_threads(os.cpu_count() or 1)
    ckpt = os.path.join(args.model_dir, "checkpoint")
    if glob.glob(os.path.join(ckpt, "*.safetensors")):
        model = load_checkpoint(ckpt)
    else:
        # --full-random exports keep no weights: speed does not depend on their values, so the
        # same architecture with PyTorch's default random init is timed.
        from pixelrefer_export.config import PixelReferConfig
        from pixelrefer_export.modeling import PixelReferForCausalLM
        print("note: no weights in checkpoint/, timing a randomly initialised model of the same config")
        model = PixelReferForCausalLM(PixelReferConfig.load(ckpt)).float().eval()
    cfg = model.cfg
    tok = Tok(os.path.join(args.model_dir, "tokenizer.json"))
    with open(os.path.join(args.model_dir, "manifest.json")) as f:
        c = json.load(f)["constants"]
    gen = {"eos_token_ids": c["eos_token_ids"], "repetition_penalty": 1.0}
    backend = TorchBackend(model)
    img, objects, q = bench_request()

    # Time to first token = from the start of the request to the end of the prefill decoder call
    # (the first `decode` with more than one position); tokens/s over the later decode calls.
    marks = {}
    inner_decode = backend.decode

    def timed_decode(embeds, attn_mask, pos_ids, past):
        out = inner_decode(embeds, attn_mask, pos_ids, past)
        if embeds.shape[1] > 1:
            marks["first"] = time.perf_counter()
        return out

    backend.decode = timed_decode

    def run(n):
        case = {"name": "bench", "modal": "image", "frames": [img], "objects": objects, "turns": [q],
                "max_new_tokens": n}
        t = time.perf_counter()
        _, meta = run_case(backend, cfg, tok, case, gen)
        end = time.perf_counter()
        n_gen = len(meta["turns"][0]["generated_ids"])
        tps = (n_gen - 1) / (end - marks["first"]) if n_gen > 1 else 0.0
        return marks["first"] - t, tps, meta["turns"][0]

    if not args.no_warmup:
        run(2)
    res = [run(args.max_new_tokens) for _ in range(args.runs)]
    ttft = sorted(r[0] for r in res)[args.runs // 2]
    tps = sorted(r[1] for r in res)[args.runs // 2]
    turn = res[-1][2]
    n_gen = len(turn["generated_ids"])
    print(f"torch_ttft_secs: {ttft:.4f}")
    print(f"torch_tokens_per_sec: {tps:.2f}")
    print(f"torch_generated_tokens: {n_gen}")
    print(f"torch_prompt_tokens: {turn['n_input']}")
    print(f"torch_peak_rss_mib: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")


if __name__ == "__main__":
    main()
