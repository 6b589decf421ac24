"""Tiny random-weight SAM 2.1 checkpoints in the layout of the official Hugging Face repositories
(facebook/sam2.1-hiera-tiny: `sam2.1_hiera_tiny.pt` + `sam2.1_hiera_t.yaml`), for tests of the
`--checkpoint --config FILE` path and of a fake hub.

The checkpoint is the official format, `torch.save({"model": state_dict})`, of exactly the model that
`export_sam2.py --tiny-random DIR --seed N` exports; the yaml is the packaged sam2.1_hiera_t.yaml with
TINY_OVERRIDES applied, written out as one complete hydra config.
"""
from __future__ import annotations

import io
import os
from typing import Dict

from .build import TINY_OVERRIDES, build_tiny_random, config_path

TINY_CONFIG_NAME = "sam2.1_hiera_t.yaml"
TINY_CHECKPOINT_NAME = "sam2.1_hiera_tiny.pt"


def tiny_config_yaml() -> str:
    """The packaged sam2.1_hiera_t.yaml composed with TINY_OVERRIDES (and nothing else: the predictor
    post-processing overrides are applied at build time, as for the official file)."""
    import sam2  # noqa: F401  (initialises hydra's config module)
    from hydra import compose
    from omegaconf import OmegaConf

    cfg = compose(config_name=config_path(TINY_CONFIG_NAME), overrides=list(TINY_OVERRIDES))
    header = (
        "# @package _global_\n"
        "# sam2.1_hiera_t.yaml (sam2==1.1.0) with the tiny test overrides of\n"
        "# onnx/sam2_export/build.py TINY_OVERRIDES applied: a reduced-width, random-weight stand-in\n"
        "# written by onnx/make_hub_fixtures.py. Not the official model.\n\n"
    )
    return header + OmegaConf.to_yaml(cfg, resolve=True)


def checkpoint_bytes(seed: int) -> bytes:
    """torch.save({"model": state_dict}) of the tiny random model of `seed`, as bytes (saved through a
    buffer, so the archive's internal name and therefore the bytes do not depend on the file name)."""
    import torch

    m = build_tiny_random(seed)
    sd = {k: v.detach().clone().contiguous() for k, v in m.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"model": sd}, buf)
    return buf.getvalue()


def write_tiny_repo(repo_dir: str, seed: int) -> Dict[str, str]:
    """Writes sam2.1_hiera_tiny.pt and sam2.1_hiera_t.yaml into repo_dir; returns {file: path}."""
    os.makedirs(repo_dir, exist_ok=True)
    out = {}
    ck = os.path.join(repo_dir, TINY_CHECKPOINT_NAME)
    with open(ck, "wb") as f:
        f.write(checkpoint_bytes(seed))
    out[TINY_CHECKPOINT_NAME] = ck
    cfg = os.path.join(repo_dir, TINY_CONFIG_NAME)
    with open(cfg, "w") as f:
        f.write(tiny_config_yaml())
    out[TINY_CONFIG_NAME] = cfg
    return out
