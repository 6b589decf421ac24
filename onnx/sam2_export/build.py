"""Build an official `sam2` (PyPI sam2==1.1.0) SAM2VideoPredictor model, from a real checkpoint or
with random weights (full size, or a tiny reduced-width variant for tests).

We always build through `sam2.build_sam.build_sam2_video_predictor`, i.e. the official hydra config
plus the official predictor post-processing overrides (dynamic multimask via stability,
binarize_mask_from_pts_for_mem_enc=true, fill_hole_area=8). The same model object is wrapped by
SAM2ImagePredictor for image mode (it is a SAM2Base subclass; the extra predictor flags only affect
video mode).
"""
from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from typing import List, Optional

import torch

from common import ExportError

# Reduced width/depth for --tiny-random. Same graph interface and host constants layout as the
# real models; image size 1024 and the 64x64 embedding grid are kept.
#  - hidden_dim C = 64 (real: 256), mem_dim = 16 (real: 64) -> still C // mem_dim = 4 tokens/pointer
#  - Hiera: embed_dim 8, stages [1,1,2,1], global attention in block 3 (real tiny: 96, [1,2,7,2])
#  - memory attention: 2 layers, FFN 128 (real: 4 layers, FFN 2048)
TINY_OVERRIDES: List[str] = [
    "model.image_encoder.trunk.embed_dim=8",
    "model.image_encoder.trunk.num_heads=1",
    "model.image_encoder.trunk.stages=[1,1,2,1]",
    "model.image_encoder.trunk.global_att_blocks=[3]",
    "model.image_encoder.neck.d_model=64",
    "model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    "model.image_encoder.neck.position_encoding.num_pos_feats=64",
    "model.memory_attention.d_model=64",
    "model.memory_attention.num_layers=2",
    "model.memory_attention.layer.d_model=64",
    "model.memory_attention.layer.dim_feedforward=128",
    "model.memory_attention.layer.self_attention.embedding_dim=64",
    "model.memory_attention.layer.cross_attention.embedding_dim=64",
    "model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "model.memory_encoder.out_dim=16",
    "++model.memory_encoder.in_dim=64",
    "model.memory_encoder.position_encoding.num_pos_feats=16",
    "++model.memory_encoder.mask_downsampler.embed_dim=64",
    "model.memory_encoder.fuser.layer.dim=64",
    "model.memory_encoder.fuser.num_layers=1",
]


def config_path(config: str) -> str:
    """Map a user-facing config name ('sam2.1_hiera_t.yaml', 'sam2_hiera_l') to the name the
    sam2 package's hydra search path knows ('configs/sam2.1/sam2.1_hiera_t.yaml')."""
    name = os.path.basename(config)
    if not name.endswith(".yaml"):
        name += ".yaml"
    folder = "sam2.1" if name.startswith("sam2.1") else "sam2"
    return f"configs/{folder}/{name}"


def is_config_file(config: str) -> bool:
    """A --config that names an existing file is read from disk (e.g. the sam2.1_hiera_t.yaml of the
    official Hugging Face repository); a bare name ('sam2.1_hiera_t.yaml', 'sam2_hiera_l') or a
    package-relative one ('configs/sam2.1/sam2.1_hiera_t.yaml') is a config packaged with sam2.
    Any other path that does not exist is an error, never silently a packaged config."""
    if os.path.isfile(config):
        return True
    norm = config.replace(os.sep, "/")
    if "/" in norm and not norm.startswith("configs/"):
        raise ExportError(f"config file not found: {config}")
    return False


def config_file(config: str) -> str:
    """Path of the yaml file a --config resolves to (the file itself, or the packaged one)."""
    if is_config_file(config):
        return os.path.abspath(config)
    import sam2

    path = os.path.join(os.path.dirname(os.path.abspath(sam2.__file__)), config_path(config))
    if not os.path.isfile(path):
        raise ExportError(f"config {config!r} is neither a file nor a config packaged with sam2==1.1.0 "
                          f"(looked for {config_path(config)})")
    return path


@contextmanager
def _hydra_search_dir(directory: str):
    """Point hydra's global config search path at one directory for the duration (the sam2 package
    initialises it to its own `sam2` module on import); restored afterwards."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=os.path.abspath(directory), version_base="1.2"):
            yield
    finally:
        restore_gh_from_backup(backup)


def _check_targets(node, where="") -> None:
    """A config is instantiated through hydra, which calls whatever `_target_` names: accept only the
    sam2 package's own classes (a downloaded yaml must not run anything else)."""
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig):
        for k in node.keys():
            v = node._get_node(k)
            if k == "_target_":
                t = node[k]
                if not (isinstance(t, str) and t.startswith("sam2.")):
                    raise ExportError(f"config {where or 'model'}._target_ is {t!r}; only sam2.* classes are allowed")
            elif isinstance(v, (DictConfig, ListConfig)):
                _check_targets(v, f"{where}.{k}" if where else str(k))
    elif isinstance(node, ListConfig):
        for i, v in enumerate(node):
            _check_targets(v, f"{where}[{i}]")


@contextmanager
def _checked_compose():
    """Wrap the `compose` that sam2.build_sam calls, so the composed config (after the official
    predictor overrides) is checked before it is instantiated."""
    import sam2.build_sam as bs

    real = bs.compose

    def compose(*args, **kwargs):
        cfg = real(*args, **kwargs)
        _check_targets(cfg.model, "model")  # only `model` is instantiated
        return cfg

    bs.compose = compose
    try:
        yield
    finally:
        bs.compose = real


def load_checkpoint(model, checkpoint: str, config: str) -> None:
    """Load an official checkpoint ({"model": state_dict}) strictly, as sam2.build_sam._load_checkpoint
    does, but report a mismatch in one sentence (missing / unexpected / mis-shaped names)."""
    name = os.path.basename(checkpoint)
    try:
        obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (corrupt file, not a torch file, ...)
        raise ExportError(f"cannot read checkpoint {checkpoint}: {type(e).__name__} "
                          "(not a complete PyTorch checkpoint file?)") from e
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise ExportError(f"checkpoint {name} is not an official SAM 2 checkpoint "
                          "(expected a dict with a 'model' state dict)")
    sd = obj["model"]
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in sd and hasattr(sd[k], "shape") and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
        raise ExportError(f"the state dict keys of checkpoint {name} do not match config "
                          f"{os.path.basename(config)}: " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)


def build_video_model(config: str, checkpoint: Optional[str] = None, extra_overrides: List[str] = (),
                      seed: Optional[int] = None):
    """Returns an eval-mode SAM2VideoPredictor on CPU (fp32).

    `config` is a config packaged with sam2 ('sam2.1_hiera_t.yaml') or the path of a yaml file (as the
    official Hugging Face repositories ship next to the checkpoint). Either way the model is built by
    the official `build_sam2_video_predictor` (hydra compose + the official predictor post-processing
    overrides + instantiate); a file is composed from its own directory."""
    import sam2  # noqa: F401  (initialises hydra's config module)
    from sam2.build_sam import build_sam2_video_predictor

    if seed is not None:
        torch.manual_seed(seed)
    from_file = is_config_file(config)
    if not from_file:
        config_file(config)  # a clear error for an unknown packaged name
    name = os.path.basename(config) if from_file else config_path(config)
    try:
        with ExitStack() as stack:
            if from_file:
                stack.enter_context(_hydra_search_dir(os.path.dirname(os.path.abspath(config))))
            stack.enter_context(_checked_compose())
            model = build_sam2_video_predictor(
                name, ckpt_path=None, device="cpu", mode="eval",
                hydra_overrides_extra=list(extra_overrides),
            )
    except ExportError:
        raise
    except Exception as e:  # noqa: BLE001  (yaml syntax, hydra composition, instantiation: all the config's)
        detail = " ".join(str(e).split())
        detail = detail[:400] + ("..." if len(detail) > 400 else "")
        raise ExportError(f"cannot build a SAM 2 model from config {config}: {type(e).__name__}: {detail}") from e
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, config)
    model = model.float().eval()
    # Host policy recorded in the manifest (official SAM2VideoPredictor flag, default False there):
    # a correction click on an already-tracked frame makes it a conditioning frame, so the
    # correction stays in the memory bank when the video is propagated again.
    model.add_all_frames_to_correct_as_cond = True
    return model


@torch.no_grad()
def _tiny_sensitivity_init(m, seed: int):
    """Plain random init makes the memory read-out spatially uniform, so every tracked frame gets
    nearly the same mask whatever the object's memory holds, and a video test could not see a wrong
    memory bank. Deterministic re-scaling so that tracking depends on the memory:
      * memory-attention cross-attention: q_proj/k_proj weights x0.3 and a shared large bias on the
        highest RoPE frequencies -> queries attend to the same position in every memory frame;
        out_proj x20 -> the memory read-out dominates the conditioned feature;
      * mask decoder conv_s0/conv_s1 x0.1 -> the mask depends more on the (memory-conditioned)
        64x64 embedding than on the high-resolution features.
    """
    g = torch.Generator().manual_seed(seed + 7)
    for layer in m.memory_attention.layers:
        ca = layer.cross_attn_image
        d = ca.q_proj.weight.shape[0] // ca.num_heads
        b = torch.zeros(ca.q_proj.weight.shape[0])
        idx = list(range(0, 8)) + list(range(d // 2, d // 2 + 8))  # RoPE pairs 0-3 (x) and d/4.. (y)
        b[idx] = 7.0 * torch.sign(torch.randn(len(idx), generator=g))
        ca.q_proj.weight.mul_(0.3)
        ca.q_proj.bias.copy_(b)
        ca.k_proj.weight.mul_(0.3)
        ca.k_proj.bias.copy_(b)
        ca.out_proj.weight.mul_(20.0)
    dec = m.sam_mask_decoder
    for conv in (dec.conv_s0, dec.conv_s1):
        conv.weight.mul_(0.1)
        conv.bias.mul_(0.1)


def build_tiny_random(seed: int = 0):
    m = build_video_model("sam2.1_hiera_t.yaml", None, TINY_OVERRIDES, seed=seed)
    _tiny_sensitivity_init(m, seed)
    return m


def build_full_random(seed: int = 0):
    return build_video_model("sam2.1_hiera_t.yaml", None, [], seed=seed)
