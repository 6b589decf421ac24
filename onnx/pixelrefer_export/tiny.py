"""Random-weight checkpoints in the official Hugging Face layout (config.json + model.safetensors +
tokenizer.json + generation_config.json), tiny or full-size."""
from __future__ import annotations

import json
import os
from typing import Dict

import torch

from .config import PixelReferConfig
from .modeling import PixelReferForCausalLM

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]          # Qwen2.5 chat specials
ADDED_TOKENS = ["<image>", "<|stream_start|>", "<|stream_end|>", "<REGION>"]  # train.py:748-749

_CORPUS = [
    "There is 1 region in the image: <region0> <region>. What is it?",
    "There is 3 region in the image: <region0><region>, <region1><region>, <region2><region>.",
    "There is 2 objects in the video: <object0><region>, <object1><region>. Time 1.0s: frame",
    "Please describe the region in the image in detail. Do not describe anything else.",
    "What is the object doing? Which one is bigger? Does it touch the other object?",
    "A red car is parked next to a small dog on the grass, a person holds a cup.",
    "user assistant system The the a an of in on to is are was with and or but what where",
    "0 1 2 3 4 5 6 7 8 9 . , : ; ! ? ( ) [ ] < > / - _ ' \"",
]


def build_tokenizer(path: str, vocab_size: int = 480) -> int:
    """Small byte-level BPE (like Qwen's) with the Qwen chat specials and the PixelRefer added tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers, AddedToken
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ADDED_TOKENS])
    tok.save(path)
    return tok.get_vocab_size()


def tiny_config_dict(variant: str, vocab_size: int) -> Dict:
    return {
        "architectures": ["PixelreferQwen2ForCausalLM" if variant == "full" else "PixelreferliteQwen2ForCausalLM"],
        "model_type": "pixelrefer_qwen2" if variant == "full" else "pixelreferlite_qwen2",
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": vocab_size, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": True, "hidden_act": "silu", "max_position_embeddings": 32768,
        "bos_token_id": None, "eos_token_id": None, "torch_dtype": "float32",
        "mm_vision_encoder": "tiny-random-SigLIP-NaViT", "mm_hidden_size": 32, "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2, "spatial_merge_size": 2, "mm_max_length": 2048,
        "use_token_compression": True, "mask_num": 32, "image_aspect_ratio": "qwen2vl",
        # tiny vision tower (our exporter reads this dict; the real one comes from VL3-SigLIP-NaViT)
        "vision_encoder_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                  "num_attention_heads": 2, "num_channels": 3, "patch_size": 14,
                                  "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6},
    }


def full_config_dict(variant: str, vocab_size: int) -> Dict:
    """Full-size shapes of PixelRefer(-Lite)-2B (VideoLLaMA3-2B config.json + VL3-SigLIP-NaViT)."""
    d = tiny_config_dict(variant, vocab_size)
    d.update({"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
              "num_key_value_heads": 2, "mm_hidden_size": 1152, "mm_max_length": 8192,
              "mm_vision_encoder": "DAMO-NLP-SG/VL3-SigLIP-NaViT", "torch_dtype": "float32"})
    d.pop("vision_encoder_config")
    return d


def write_random_checkpoint(out_dir: str, variant: str, seed: int, full_size: bool = False) -> str:
    os.makedirs(out_dir, exist_ok=True)
    tok_path = os.path.join(out_dir, "tokenizer.json")
    vocab = build_tokenizer(tok_path)
    from tokenizers import Tokenizer
    t = Tokenizer.from_file(tok_path)
    im_end, eot = t.token_to_id("<|im_end|>"), t.token_to_id("<|endoftext|>")
    if full_size:
        d = full_config_dict(variant, 151936 if vocab < 151936 else vocab)
    else:
        d = tiny_config_dict(variant, vocab)
    d["eos_token_id"], d["bos_token_id"] = im_end, eot
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(d, f, indent=2)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [im_end, eot], "pad_token_id": eot, "do_sample": False,
                   "repetition_penalty": 1.05}, f, indent=2)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "model_max_length": 32768}, f, indent=2)
    cfg = PixelReferConfig.from_dict(d)
    model = random_model(cfg, seed)
    if full_size:
        # Full-size random weights are only for benchmarks: kept in memory (no 8 GB safetensors round trip).
        return out_dir, model
    sd = {k: v.contiguous() for k, v in model.state_dict().items()
          if not (k == "lm_head.weight" and cfg.text.tie_word_embeddings)}
    from safetensors.torch import save_file
    save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    return out_dir, None


def random_model(cfg: PixelReferConfig, seed: int) -> PixelReferForCausalLM:
    """Deterministic random weights, filled in place (norm weights around 1, linear weights ~ 1.5/sqrt(fan_in),
    embeddings 0.5): large enough that a tiny model produces varied greedy tokens."""
    g = torch.Generator().manual_seed(seed)
    model = PixelReferForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name == "lm_head.weight" and cfg.text.tie_word_embeddings:
                continue
            last = name.split(".")[-2] if "." in name else ""
            is_norm = ("norm" in name or "layer_norm" in name or last.startswith("ln_"))
            if is_norm:
                if name.endswith("weight"):
                    p.normal_(0, 0.1, generator=g).add_(1.0)
                else:
                    p.normal_(0, 0.02, generator=g)
            elif name.endswith("embed_tokens.weight"):
                p.normal_(0, 0.5, generator=g)
            elif p.dim() >= 2:
                p.normal_(0, 1.5 / max(1, p.shape[-1]) ** 0.5, generator=g)
            else:
                p.normal_(0, 0.1, generator=g)
    return model.eval()
