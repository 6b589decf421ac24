#!/usr/bin/env python3
"""Export PixelRefer / PixelRefer-Lite to ONNX model directories for PixelRefer Studio.

  python onnx/export_pixelrefer.py --tiny-random DIR [--seed N] [--variant full|lite]
  python onnx/export_pixelrefer.py --full-random DIR [--variant full|lite] [--fp16]
  python onnx/export_pixelrefer.py --checkpoint HF_DIR --out DIR [--fp16] [--reference]

--tiny-random writes a tiny random checkpoint in the official Hugging Face layout to DIR/checkpoint and
exports it through the same code path as a real checkpoint into DIR, then writes DIR/reference/ (inputs,
intermediates and greedy ids of the PyTorch reference pipeline) and checks them against onnxruntime.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--tiny-random", metavar="DIR")
    src.add_argument("--full-random", metavar="DIR")
    src.add_argument("--checkpoint", metavar="HF_DIR")
    ap.add_argument("--out", metavar="DIR", help="output model directory (with --checkpoint)")
    ap.add_argument("--variant", choices=["full", "lite"], default="full")
    ap.add_argument("--seed", type=int, default=3)  # seed 3: no case stops at once
    ap.add_argument("--fp16", action="store_true", help="export float16 graphs (for CUDA)")
    ap.add_argument("--reference", action="store_true", help="also write reference cases (--checkpoint)")
    ap.add_argument("--no-ort-reference", action="store_true", help="skip running the cases through onnxruntime")
    a = ap.parse_args(argv)

    import torch
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from pixelrefer_export.export import UPSTREAM, export_model, load_checkpoint
    from pixelrefer_export.tiny import write_random_checkpoint
    from pixelrefer_export.config import load_generation_config

    if a.tiny_random or a.full_random:
        out = a.tiny_random or a.full_random
        full = bool(a.full_random)
        ckpt = os.path.join(out, "checkpoint")
        _, model = write_random_checkpoint(ckpt, a.variant, a.seed, full_size=full)
        if model is None:  # tiny: reload through the same path as a real checkpoint
            model = load_checkpoint(ckpt)
        name = f"{'full' if full else 'tiny'}-random-{a.variant}-seed{a.seed}"
        upstream = dict(UPSTREAM, checkpoint=f"random weights ({name}); official parameter names and layout")
        export_model(model, ckpt, out, name, upstream, fp16=a.fp16)
        if not full and not a.fp16:
            from pixelrefer_export.cases import write_reference
            write_reference(model, model.cfg, out, load_generation_config(ckpt), verify_ort=not a.no_ort_reference)
    else:
        if not a.out:
            ap.error("--checkpoint needs --out DIR")
        model = load_checkpoint(a.checkpoint)
        upstream = dict(UPSTREAM, checkpoint=os.path.abspath(a.checkpoint))
        name = os.path.basename(os.path.normpath(a.checkpoint)) + ("-fp16" if a.fp16 else "-fp32")
        if a.reference and not a.fp16:
            export_model(model, a.checkpoint, a.out, name, upstream, fp16=False)
            from pixelrefer_export.cases import write_reference
            write_reference(model, model.cfg, a.out, load_generation_config(a.checkpoint),
                            verify_ort=not a.no_ort_reference)
        else:
            export_model(model, a.checkpoint, a.out, name, upstream, fp16=a.fp16)
    print("done")


if __name__ == "__main__":
    main()
