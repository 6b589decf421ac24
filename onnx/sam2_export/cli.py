"""The command line shared by the SAM 2 family exporters (onnx/export_sam2.py, onnx/export_edgetam.py):
the same flags, the same three modes (--checkpoint, --tiny-random, --full-random), the same progress
lines; a `Family` says what differs (package, builders, variant names)."""
from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

from common import ArgumentParser, ExportError, progress


@dataclass
class Family:
    """What one SAM 2 family member's exporter plugs into `main`."""
    checkpoint_example: str  # e.g. "sam2.1_hiera_tiny.pt"
    full_random_name: str  # what --full-random builds, for its help
    config_help: str  # packaged config names, for --config's help
    package: str  # the upstream package, recorded in the manifest
    package_source: str  # where a packaged config comes from
    # Returns the builders, imported only after `prepare`: build_video_model, build_full_random,
    # build_tiny_random, config_file, export_model, config_name, tiny_upstream (extra manifest keys).
    builders: Callable[[], Dict[str, Any]]
    random_variant: str  # variant of --full-random
    tiny_variant: str  # variant of --tiny-random
    tiny_notes: str
    prepare: Callable[[], None] = lambda: None  # before anything imports torch or `sam2`
    reference_kwargs: Callable[[], Dict[str, Any]] = field(default=lambda: {})
    quantize_refusal: Optional[str] = None  # why --quantize is refused for this family (None: allowed)


def main(argv: Optional[list], description: str, fam: Family) -> None:
    ap = ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--checkpoint", help=f"official checkpoint (.pt), e.g. {fam.checkpoint_example}")
    mode.add_argument("--tiny-random", metavar="DIR", help="write a tiny random-weight model + reference outputs")
    mode.add_argument("--full-random", metavar="DIR",
                      help=f"write a full-size {fam.full_random_name} model with random weights")
    ap.add_argument("--config", help=f"(with --checkpoint) packaged config name ({fam.config_help}) or the path "
                                     "of a config yaml file")
    ap.add_argument("--out", help="output model directory (with --checkpoint)")
    ap.add_argument("--seed", type=int, default=0, help="random weights seed; reference inputs seed (default 0)")
    ap.add_argument("--no-verify", action="store_true", help="skip the ORT-vs-torch comparison")
    ap.add_argument("--reference", action="store_true",
                    help="(--checkpoint, --full-random) also write DIR/reference/ from the PyTorch predictors")
    ap.add_argument("--no-reference", action="store_true", help="(--tiny-random) skip reference/")
    ap.add_argument("--quantize", choices=["int8"],
                    help="write an int8 CPU model instead: the image encoder's matrices in int8 (opt-in: masks "
                         "differ from fp32; the manifest and the app say so)")
    a = ap.parse_args(argv)
    if a.quantize and fam.quantize_refusal:
        raise ExportError(fam.quantize_refusal)
    if a.quantize and a.reference:
        ap.error("--reference describes fp32 outputs; leave it out with --quantize")
    if a.checkpoint and (not a.config or not a.out):
        ap.error("--checkpoint needs --config and --out")
    if a.reference and a.tiny_random:
        ap.error("--reference is for --checkpoint / --full-random (--tiny-random writes reference/ unless --no-reference)")
    if a.checkpoint and not os.path.isfile(a.checkpoint):
        raise ExportError(f"checkpoint not found: {a.checkpoint}")

    fam.prepare()
    import torch

    torch.set_grad_enabled(False)
    b = fam.builders()
    t0 = time.time()
    final = a.out or a.full_random or a.tiny_random
    if a.quantize:
        # Export fp32 into a staging folder without reference/ (it describes fp32 outputs),
        # quantize from it into the asked directory, drop it.
        fp32 = final.rstrip("/") + ".fp32.tmp"
        shutil.rmtree(fp32, ignore_errors=True)
        a.out, a.full_random, a.tiny_random = (fp32 if x else None for x in (a.out, a.full_random, a.tiny_random))
        a.no_reference = True
        from common.quantize import quantize_dir

        try:
            m, out, _ = _export(a, fam, b)
            quantize_dir(out, final, a.quantize)
        finally:
            shutil.rmtree(fp32, ignore_errors=True)
        out, reference = final, False
    else:
        m, out, reference = _export(a, fam, b)
    if reference:
        from sam2_export.reference import write_reference

        t1 = time.time()
        write_reference(m, os.path.join(out, "reference"), seed=a.seed,
                        on_case=lambda i, n, name: progress("reference", i, n, name), **fam.reference_kwargs())
        print(f"[export] reference/ written in {time.time() - t1:.1f}s", flush=True)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out) for f in fs)
    print(f"[export] done: {out} ({total / 1e6:.1f} MB) in {time.time() - t0:.1f}s", flush=True)
    progress("done", 1, 1, out)


def _export(a, fam: Family, b: Dict[str, Any]):
    """The fp32 export of parsed arguments `a`: returns the PyTorch model, the directory written and
    whether reference/ is still to be written."""
    from common import sha256_file

    if a.checkpoint:
        cfg_path = b["config_file"](a.config)  # raises ExportError for a missing file / unknown name
        progress("load", 1, 1, os.path.basename(a.checkpoint))
        m = b["build_video_model"](a.config, a.checkpoint)
        variant = os.path.splitext(os.path.basename(a.config))[0]
        upstream = {"checkpoint": os.path.basename(a.checkpoint), "sha256": sha256_file(a.checkpoint),
                    "config": os.path.basename(a.config), "config_sha256": sha256_file(cfg_path),
                    "config_source": "file" if os.path.isfile(a.config) else fam.package_source,
                    "package": fam.package}
        out = a.out
        b["export_model"](m, out, variant, upstream, verify=not a.no_verify)
        reference = a.reference
    elif a.full_random:
        progress("load", 1, 1, f"full-random seed {a.seed}")
        m = b["build_full_random"](a.seed)
        upstream = {"checkpoint": None, "sha256": None, "config": b["config_name"],
                    "package": fam.package, "random_seed": a.seed}
        out = a.full_random
        b["export_model"](m, out, fam.random_variant, upstream, verify=not a.no_verify,
                          extra_notes="Random weights (benchmarks only).")
        reference = a.reference
    else:
        progress("load", 1, 1, f"tiny-random seed {a.seed}")
        m = b["build_tiny_random"](a.seed)
        upstream = {"checkpoint": None, "sha256": None, "config": b["config_name"], "package": fam.package,
                    "random_seed": a.seed, **b["tiny_upstream"]}
        out = a.tiny_random
        b["export_model"](m, out, fam.tiny_variant, upstream, verify=not a.no_verify, extra_notes=fam.tiny_notes)
        reference = not a.no_reference
    return m, out, reference
