"""Build the official EdgeTAM model (edgetam-dimos==1.0.1 `sam2` package, configs/edgetam.yaml) as a
video predictor, from a real checkpoint or with random weights (full size, or a tiny reduced-width
variant for tests). Call package.use_edgetam_sam2() before anything here imports `sam2`.

The hydra config is composed as edgetam-dimos `sam2.build_sam.build_sam2_video_predictor` does (the
same post-processing overrides as sam2==1.1.0); only the instantiated class is the sam2==1.1.0
predictor logic of predictor.py. RepViT comes from timm with `pretrained=False` (the official
TimmBackbone asks timm for ImageNet weights, which the checkpoint overwrites anyway).
"""
from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from typing import List, Optional

import torch

from common import ExportError
from sam2_export.build import TINY_OVERRIDES as SAM2_TINY_OVERRIDES
from sam2_export.build import _check_targets, _hydra_search_dir, _tiny_sensitivity_init, load_checkpoint

CONFIG_NAME = "edgetam.yaml"
# build_sam2_video_predictor post-processing (edgetam-dimos sam2/build_sam.py, same as sam2==1.1.0).
POSTPROCESSING_OVERRIDES: List[str] = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=8",
]

# --tiny-random: SAM 2's tiny widths for everything SAM 2 and EdgeTAM share (C = 64, mem_dim = 16,
# 2 memory-attention layers, ...), minus the Hiera trunk; RepViT and the perceiver shrunk below.
TINY_OVERRIDES: List[str] = [o for o in SAM2_TINY_OVERRIDES if ".trunk." not in o] + [
    "model.memory_attention.layer.self_attention.num_heads=1",
    # perceiver: width = mem_dim, 1 layer, 64 global + 64 (8x8 windows) 2-D latents (real: 256 + 256)
    "model.spatial_perceiver.dim=16",
    "model.spatial_perceiver.dim_head=16",
    "model.spatial_perceiver.depth=1",
    "model.spatial_perceiver.ff_mult=2",
    "model.spatial_perceiver.num_latents=64",
    "model.spatial_perceiver.num_latents_2d=64",
    "model.spatial_perceiver.position_encoding.num_pos_feats=16",
    "model.memory_attention.layer.cross_attention.k_sizes=[8,8]",
]
# RepViT (timm repvit_m1: embed_dim (48, 96, 192, 384), depth (2, 2, 14, 2)) for --tiny-random; the
# neck's backbone_channel_list in TINY_OVERRIDES is these widths reversed.
TINY_REPVIT = {"embed_dim": (8, 16, 32, 64), "depth": (1, 1, 1, 1)}


def config_file(config: str) -> str:
    """Path of the yaml a --config names: an existing file, or a config packaged with edgetam-dimos
    ('edgetam.yaml')."""
    if os.path.isfile(config):
        return os.path.abspath(config)
    if "/" in config.replace(os.sep, "/"):
        raise ExportError(f"config file not found: {config}")
    import sam2

    name = config if config.endswith(".yaml") else config + ".yaml"
    path = os.path.join(os.path.dirname(os.path.abspath(sam2.__file__)), "configs", name)
    if not os.path.isfile(path):
        raise ExportError(f"config {config!r} is neither a file nor a config packaged with edgetam-dimos "
                          f"(looked for configs/{name})")
    return path


@contextmanager
def _timm_without_download(model_kwargs: Optional[dict] = None):
    """Make sam2.modeling.backbones.timm.TimmBackbone build its timm model with pretrained=False
    (no download; weights come from the checkpoint or the seed) and optional extra model kwargs."""
    import sam2.modeling.backbones.timm as tb

    real = tb.create_model

    def create_model(name, *args, **kwargs):
        kwargs["pretrained"] = False
        kwargs.update(model_kwargs or {})
        return real(name, *args, **kwargs)

    tb.create_model = create_model
    try:
        yield
    finally:
        tb.create_model = real


def build_video_model(config: str, checkpoint: Optional[str] = None, extra_overrides: List[str] = (),
                      seed: Optional[int] = None, repvit_kwargs: Optional[dict] = None):
    """Returns an eval-mode EdgeTAM video predictor (predictor.EdgeTAMVideoPredictor) on CPU, fp32."""
    import sam2  # noqa: F401  (initialises hydra's config module: edgetam-dimos' `sam2`)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from .predictor import TARGET, predictor_module

    predictor_module()
    path = config_file(config)
    if seed is not None:
        torch.manual_seed(seed)
    try:
        with ExitStack() as stack:
            stack.enter_context(_hydra_search_dir(os.path.dirname(path)))
            stack.enter_context(_timm_without_download(repvit_kwargs))
            cfg = compose(config_name=os.path.basename(path),
                          overrides=list(extra_overrides) + POSTPROCESSING_OVERRIDES)
            OmegaConf.resolve(cfg)
            _check_targets(cfg.model, "model")  # only sam2.* classes from a (downloaded) yaml
            cfg.model._target_ = TARGET
            model = instantiate(cfg.model, _recursive_=True)
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001  (yaml syntax, hydra composition, instantiation)
        detail = " ".join(str(e).split())
        detail = detail[:400] + ("..." if len(detail) > 400 else "")
        raise ExportError(f"cannot build an EdgeTAM model from config {config}: {type(e).__name__}: {detail}") from e
    if getattr(model, "spatial_perceiver", None) is None:
        raise ExportError(f"config {config} has no spatial_perceiver: not an EdgeTAM config "
                          "(use onnx/export_sam2.py for SAM 2)")
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, config)
    model = model.float().eval()
    # host policy, as for SAM 2 (onnx/sam2_export/build.py): corrections become conditioning frames
    model.add_all_frames_to_correct_as_cond = True
    return model


def build_tiny_random(seed: int = 0):
    m = build_video_model(CONFIG_NAME, None, TINY_OVERRIDES, seed=seed, repvit_kwargs=TINY_REPVIT)
    _tiny_sensitivity_init(m, seed)
    with torch.no_grad():
        # With these random weights every object score is about -0.1, so every tracked frame would be
        # "no object" (an empty mask) and a video test could not tell a right bank from a wrong one:
        # shift the object-score head so the objects are visible.
        m.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.add_(1.0)
    return m


def build_full_random(seed: int = 0):
    return build_video_model(CONFIG_NAME, None, [], seed=seed)
