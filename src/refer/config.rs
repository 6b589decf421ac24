//! The engine's configuration, read from the manifest's `constants` (written by
//! `onnx/pixelrefer_export/export.py`; values and their upstream sources are in
//! `onnx/PIXELREFER_NOTES.md`).

use super::ReferError;
use serde::Deserialize;
use std::path::Path;

/// Tolerances of the k-means stopping test (`torch.allclose`, `region_encoder.py:73-92`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct KmeansTol {
    /// Relative tolerance.
    pub rtol: f32,
    /// Absolute tolerance.
    pub atol: f32,
}

/// Host constants of a PixelRefer / PixelRefer-Lite export (manifest `constants`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReferConfig {
    /// Float type of the graphs' inputs and outputs: `float32` (CPU) or `float16` (`--fp16`
    /// exports, for CUDA); the host converts at the graph boundary.
    pub dtype: String,
    /// Vision patch size, 14 (VL3-SigLIP-NaViT `config.json`).
    pub patch_size: usize,
    /// Per-channel mean, 0.5 (VL3-SigLIP-NaViT `preprocessor_config.json`).
    pub image_mean: [f32; 3],
    /// Per-channel std, 0.5 (same file).
    pub image_std: [f32; 3],
    /// 1/255 (same file).
    pub rescale_factor: f64,
    /// `min_pixels` of `smart_resize`, 3136 (`image_processing.py:177`).
    pub min_pixels: usize,
    /// `mm_max_length * merge² * 14²` (`encoder.py:312-317`).
    pub max_pixels: usize,
    /// The processor's `merge_size` (= `spatial_merge_size`).
    pub processor_merge_size: usize,
    /// Video token merge stride (2).
    pub spatial_merge_size: usize,
    /// `image_downsampling` of still images (1).
    pub image_downsampling_image: usize,
    /// `image_downsampling` of video frames (2).
    pub image_downsampling_video: usize,
    /// Vision width.
    pub vision_hidden_size: usize,
    /// Vision head dim (RoPE table width).
    pub vision_head_dim: usize,
    /// Vision RoPE theta (10000, `modeling_damovl_encoder.py:146-175`).
    pub vision_rope_theta: f64,
    /// Video frame-difference token pruning (`pixelrefer_arch.py:272-289`).
    pub use_token_compression: bool,
    /// Keep a token when its frame difference exceeds this (0.1).
    pub video_prune_threshold: f32,
    /// Dtype the frame difference is computed in upstream (`bfloat16`, `float16`, `float32`).
    pub video_prune_dtype: String,
    /// Minimum kept tokens per frame (1).
    pub video_prune_min_tokens: usize,
    /// `n`: object tokens per mask (32).
    pub mask_num: usize,
    /// Context added around the mask box, pixels (28).
    pub context_px: usize,
    /// 14*14 in the scale rule.
    pub scale_area_per_token: f64,
    /// Patches a very large object is shrunk to (100 full, 50 Lite).
    pub large_object_patches: f64,
    /// k-means iterations (5 full, 3 Lite).
    pub kmeans_iters: usize,
    /// k-means stopping tolerances.
    pub kmeans_tol: KmeansTol,
    /// Lite: local crop size (224); `None` for the full model.
    pub lite_local_size: Option<usize>,
    /// Lite: global image size (336); `None` for the full model.
    pub lite_global_size: Option<usize>,
    /// Lite: the 224/336 images are cached per frame (upstream quirk).
    #[serde(default)]
    pub lite_image_cache_per_frame: bool,
    /// LLM width.
    pub hidden_size: usize,
    /// Vocabulary size (logits width).
    pub vocab_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// KV heads.
    pub num_key_value_heads: usize,
    /// LLM head dim.
    pub head_dim: usize,
    /// `<image>` id.
    pub image_token_id: i64,
    /// `<REGION>` id.
    pub region_token_id: i64,
    /// Ids that stop generation.
    pub eos_token_ids: Vec<i64>,
    /// The id embedded in place of `<image>` before splicing (0, `pixelrefer_arch.py:377`).
    pub image_token_embed_id: i64,
    /// Default generation budget.
    pub max_new_tokens: usize,
    /// Repetition penalty of the checkpoint's generation config (1.0 = none).
    pub repetition_penalty: f32,
    /// Context length of the LLM (`max_position_embeddings`); absent in older manifests.
    #[serde(default = "default_context")]
    pub max_position_embeddings: usize,
}

fn default_context() -> usize {
    // Qwen2.5-1.5B / VideoLLaMA3-2B `config.json` `max_position_embeddings`.
    32768
}

impl ReferConfig {
    /// Parses and validates the manifest constants of `dir`.
    pub fn from_constants(dir: &Path, constants: &serde_json::Value) -> Result<Self, ReferError> {
        let err = |reason: String| ReferError::Config {
            path: dir.to_path_buf(),
            reason,
        };
        let cfg: ReferConfig =
            serde_json::from_value(constants.clone()).map_err(|e| err(e.to_string()))?;
        if cfg.dtype != "float32" && cfg.dtype != "float16" {
            return Err(err(format!(
                "dtype is {}, but the engine runs float32 and float16 exports only",
                cfg.dtype
            )));
        }
        if cfg.patch_size == 0
            || cfg.mask_num == 0
            || cfg.spatial_merge_size == 0
            || cfg.processor_merge_size == 0
            || cfg.image_downsampling_video == 0
            || cfg.image_downsampling_image == 0
            || !cfg.vision_head_dim.is_multiple_of(4)
            || cfg.eos_token_ids.is_empty()
        {
            return Err(err(
                "patch_size, mask_num, merge sizes, downsampling must be positive, vision_head_dim a multiple of 4, eos_token_ids non-empty".into(),
            ));
        }
        Ok(cfg)
    }
}
