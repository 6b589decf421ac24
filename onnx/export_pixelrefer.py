#!/usr/bin/env python3
"""Export PixelRefer / PixelRefer-Lite to ONNX model directories for PixelRefer Studio.

  python onnx/export_pixelrefer.py --tiny-random DIR [--seed N] [--variant full|lite] [--fp16]
  python onnx/export_pixelrefer.py --full-random DIR [--variant full|lite] [--fp16]
  python onnx/export_pixelrefer.py --checkpoint HF_DIR --out DIR [--fp16] [--reference]
  any of the three with --quantize int8|int4: a weight-only quantized CPU model instead (opt-in, the
  manifest and the app label it; onnx/quantize_model.py does the same from an existing export)

--tiny-random writes a tiny random checkpoint in the official Hugging Face layout to DIR/checkpoint and
exports it through the same code path as a real checkpoint into DIR, then writes DIR/reference/ (inputs,
intermediates and greedy ids of the PyTorch reference pipeline) and checks them against onnxruntime.
--checkpoint HF_DIR is a Hugging Face checkpoint folder (e.g. the hub cache snapshot of
Alibaba-DAMO-Academy/PixelRefer-2B); the variant comes from its config.json. --reference writes the same
reference/ (fp32 only).

Progress: one `[progress] {"stage": ..., "index": i, "total": n, "name": ...}` line per step on
stdout (onnx/common/cli.py). Failure: non-zero exit and a last stderr line `error: <sentence>`.
"""
import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import ArgumentParser, ExportError, progress, run_main  # noqa: E402


def _checkpoint_files(ckpt: str):
    """sha256 of the checkpoint files the export reads (config, generation config, tokenizer, weights)."""
    from common import sha256_file

    names = sorted({os.path.basename(p) for pat in ("*.json", "*.safetensors", "*.txt", "*.model")
                    for p in glob.glob(os.path.join(ckpt, pat))})
    return {n: sha256_file(os.path.join(ckpt, n)) for n in names}


def checkpoint_name(ckpt: str) -> str:
    """A readable name for a checkpoint folder: the repository name for a hub cache snapshot
    (.../models--Owner--Name/snapshots/<revision>), else the folder name."""
    path = os.path.abspath(os.path.normpath(ckpt))
    parent = os.path.dirname(path)
    repo = os.path.basename(os.path.dirname(parent))
    if os.path.basename(parent) == "snapshots" and repo.startswith("models--"):
        return repo.split("--")[-1]
    return os.path.basename(path)


def _load(ckpt: str):
    """load_checkpoint with the failures a user can cause turned into one-sentence errors."""
    from pixelrefer_export.export import load_checkpoint

    if not os.path.isdir(ckpt):
        raise ExportError(f"checkpoint folder not found: {ckpt}")
    if not os.path.isfile(os.path.join(ckpt, "config.json")):
        raise ExportError(f"checkpoint folder {ckpt} has no config.json (not a Hugging Face checkpoint)")
    if not glob.glob(os.path.join(ckpt, "*.safetensors")):
        raise ExportError(f"checkpoint folder {ckpt} has no *.safetensors weights")
    try:
        from pixelrefer_export.config import PixelReferConfig

        PixelReferConfig.load(ckpt)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise ExportError(f"cannot read {os.path.join(ckpt, 'config.json')}: {type(e).__name__}: {e}") from e
    try:
        return load_checkpoint(ckpt)
    except ValueError as e:  # names or shapes differ from what config.json describes
        raise ExportError(f"the state dict keys of checkpoint {ckpt} do not match its config.json: {e}") from e
    except Exception as e:  # noqa: BLE001  (truncated / corrupt safetensors)
        raise ExportError(f"cannot read the weights in {ckpt}: {type(e).__name__}: {e}") from e


def main(argv=None):
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--tiny-random", metavar="DIR")
    src.add_argument("--full-random", metavar="DIR")
    src.add_argument("--checkpoint", metavar="HF_DIR")
    ap.add_argument("--out", metavar="DIR", help="output model directory (with --checkpoint)")
    ap.add_argument("--variant", choices=["full", "lite"], default="full")
    ap.add_argument("--seed", type=int, default=3)  # seed 3: no case stops at once
    ap.add_argument("--fp16", action="store_true", help="export float16 graphs (for CUDA)")
    ap.add_argument("--quantize", choices=["int8", "int4"],
                    help="write a weight-only quantized CPU model instead (opt-in: outputs differ from fp32)")
    ap.add_argument("--reference", action="store_true", help="also write reference cases (--checkpoint)")
    ap.add_argument("--no-ort-reference", action="store_true", help="skip running the cases through onnxruntime")
    a = ap.parse_args(argv)
    if a.checkpoint and not a.out:
        ap.error("--checkpoint needs --out DIR")
    if a.quantize and a.fp16:
        ap.error("--quantize works on the fp32 export; leave out --fp16")
    if a.quantize:
        # Export fp32 into a staging folder, quantize from it into the asked directory, drop it.
        import shutil
        from common.quantize import quantize_dir

        final = a.tiny_random or a.full_random or a.out
        fp32 = final.rstrip("/") + ".fp32.tmp"
        shutil.rmtree(fp32, ignore_errors=True)
        # The reference cases describe fp32 outputs: none is written for the staged export.
        staged = argparse.Namespace(**vars(a), skip_reference=True)
        for key in ("tiny_random", "full_random", "out"):
            if getattr(staged, key):
                setattr(staged, key, fp32)
        try:
            export(staged)
            quantize_dir(fp32, final, a.quantize)
        finally:
            shutil.rmtree(fp32, ignore_errors=True)
        print("done", flush=True)
        progress("done", 1, 1, final)
        return
    export(a)
    print("done", flush=True)
    progress("done", 1, 1, a.tiny_random or a.full_random or a.out)


def export(a):
    """The fp32 (or --fp16) export of parsed arguments `a`."""
    import torch
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from pixelrefer_export.export import UPSTREAM, export_model, load_checkpoint
    from pixelrefer_export.tiny import write_random_checkpoint
    from pixelrefer_export.config import load_generation_config

    if a.tiny_random or a.full_random:
        out = a.tiny_random or a.full_random
        full = bool(a.full_random)
        ckpt = os.path.join(out, "checkpoint")
        name = f"{'full' if full else 'tiny'}-random-{a.variant}-seed{a.seed}"
        progress("load", 1, 1, name)
        _, model = write_random_checkpoint(ckpt, a.variant, a.seed, full_size=full)
        if model is None:  # tiny: reload through the same path as a real checkpoint
            model = load_checkpoint(ckpt)
        upstream = dict(UPSTREAM, checkpoint=f"random weights ({name}); official parameter names and layout")
        export_model(model, ckpt, out, name, upstream, fp16=a.fp16)
        if not full and not a.fp16 and not getattr(a, "skip_reference", False):
            from pixelrefer_export.cases import write_reference
            write_reference(model, model.cfg, out, load_generation_config(ckpt), verify_ort=not a.no_ort_reference)
    else:
        out = a.out
        progress("load", 1, 1, checkpoint_name(a.checkpoint))
        model = _load(a.checkpoint)
        upstream = dict(UPSTREAM, checkpoint=os.path.abspath(a.checkpoint),
                        checkpoint_files=_checkpoint_files(a.checkpoint))
        name = checkpoint_name(a.checkpoint) + ("-fp16" if a.fp16 else "-fp32")
        if a.reference and a.fp16:
            print("[export] note: --reference is written for fp32 exports only; skipped with --fp16", flush=True)
        export_model(model, a.checkpoint, out, name, upstream, fp16=a.fp16)
        if a.reference and not a.fp16 and not getattr(a, "skip_reference", False):
            from pixelrefer_export.cases import write_reference
            write_reference(model, model.cfg, out, load_generation_config(a.checkpoint),
                            verify_ort=not a.no_ort_reference)


if __name__ == "__main__":
    sys.exit(run_main(main))
