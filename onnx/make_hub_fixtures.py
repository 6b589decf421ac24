#!/usr/bin/env python3
"""Write tiny random-weight checkpoints in the layouts of the OFFICIAL Hugging Face repositories, as a
fake hub would serve them (one folder per repository), for tests of `pixelrefer-studio models fetch`
and of the exporters' --checkpoint paths. Nothing here is a real model.

  python onnx/make_hub_fixtures.py OUT [--seed N]

  OUT/facebook/sam2.1-hiera-tiny/            sam2.1_hiera_tiny.pt  ({"model": state_dict}, torch.save)
                                             sam2.1_hiera_t.yaml   (complete hydra config: the official
                                                                    one with the tiny overrides applied)
                                             README.md
  OUT/Alibaba-DAMO-Academy/PixelRefer-2B/    config.json, generation_config.json, tokenizer_config.json,
  OUT/Alibaba-DAMO-Academy/PixelRefer-Lite-2B/  tokenizer.json, model.safetensors, README.md

Seeds: without --seed, SAM 2.1 uses seed 0 (the weights of `export_sam2.py --tiny-random DIR`) and
PixelRefer seed 3 (those of `export_pixelrefer.py --tiny-random DIR`); --seed N uses N for all three.
Deterministic for a seed and idempotent: each repository is written to a temporary folder and renamed
over the previous one, so a reader never sees a half-written repository. Exports with:

  python onnx/export_sam2.py --checkpoint OUT/facebook/sam2.1-hiera-tiny/sam2.1_hiera_tiny.pt \\
      --config OUT/facebook/sam2.1-hiera-tiny/sam2.1_hiera_t.yaml --out DIR --reference
  python onnx/export_pixelrefer.py --checkpoint OUT/Alibaba-DAMO-Academy/PixelRefer-2B --out DIR --reference
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import ArgumentParser, run_main  # noqa: E402

SAM2_REPO = "facebook/sam2.1-hiera-tiny"
PIXELREFER_REPOS = {"Alibaba-DAMO-Academy/PixelRefer-2B": "full", "Alibaba-DAMO-Academy/PixelRefer-Lite-2B": "lite"}
DEFAULT_SEEDS = {"sam2": 0, "pixelrefer": 3}

_README = """---
license: apache-2.0
tags: [test-fixture, random-weights]
---
# {repo} (tiny random-weight test fixture)

NOT the official model. Written by `onnx/make_hub_fixtures.py` (PixelRefer Studio) with seed {seed}:
random weights of a reduced-size model of the same architecture, in the same file names and formats
as the official repository `{repo}`, so that a fake hub can serve it to
`pixelrefer-studio models fetch` and the exporters' `--checkpoint` paths can be tested offline.

Files: {files}
"""


def _write_sam2(repo_dir: str, seed: int) -> None:
    from sam2_export.hub import write_tiny_repo

    write_tiny_repo(repo_dir, seed)


def _write_pixelrefer(repo_dir: str, variant: str, seed: int) -> None:
    from pixelrefer_export.tiny import write_random_checkpoint

    write_random_checkpoint(repo_dir, variant, seed)


def _publish(tmp: str, final: str) -> None:
    """Replace `final` by `tmp` (old copy moved aside first, then removed)."""
    old = None
    if os.path.lexists(final):
        old = tempfile.mkdtemp(prefix="." + os.path.basename(final) + ".old-", dir=os.path.dirname(final))
        os.rmdir(old)
        os.rename(final, old)
    os.rename(tmp, final)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def write_repo(out: str, repo: str, seed: int, writer) -> str:
    final = os.path.join(out, *repo.split("/"))
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(final) + ".tmp-", dir=os.path.dirname(final))
    try:
        writer(tmp)
        files = sorted(os.listdir(tmp))
        with open(os.path.join(tmp, "README.md"), "w") as f:
            f.write(_README.format(repo=repo, seed=seed, files=", ".join(f"`{x}`" for x in files)))
        os.chmod(tmp, 0o755)
        for name in os.listdir(tmp):
            os.chmod(os.path.join(tmp, name), 0o644)
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def main(argv=None):
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", metavar="OUT", help="output folder (one sub-folder per repository: OUT/owner/name)")
    ap.add_argument("--seed", type=int, default=None,
                    help="random-weight seed for every repository (default: SAM 2.1 0, PixelRefer 3)")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from common import sha256_file

    os.makedirs(a.out, exist_ok=True)
    jobs = [(SAM2_REPO, DEFAULT_SEEDS["sam2"] if a.seed is None else a.seed, None)]
    jobs += [(r, DEFAULT_SEEDS["pixelrefer"] if a.seed is None else a.seed, v) for r, v in PIXELREFER_REPOS.items()]
    for repo, seed, variant in jobs:
        t0 = time.time()
        if variant is None:
            final = write_repo(a.out, repo, seed, lambda d, s=seed: _write_sam2(d, s))
        else:
            final = write_repo(a.out, repo, seed, lambda d, s=seed, v=variant: _write_pixelrefer(d, v, s))
        print(f"[hub] {repo} (seed {seed}{', ' + variant if variant else ''}) -> {final} "
              f"in {time.time() - t0:.1f}s", flush=True)
        for name in sorted(os.listdir(final)):
            p = os.path.join(final, name)
            print(f"  {name}  {os.path.getsize(p)} bytes  sha256 {sha256_file(p)}", flush=True)


if __name__ == "__main__":
    sys.exit(run_main(main))
