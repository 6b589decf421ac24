//! The host constants of a SAM 2 model directory (`manifest.json` → `constants`), written by
//! `onnx/sam2_export/export.py::host_constants` from the official `SAM2Base` attributes.

use serde::Deserialize;

/// Every number the host logic needs, read from the manifest. Field names are those of the
/// exporter; each mirrors an attribute of `sam2/modeling/sam2_base.py` (sam2==1.1.0) unless noted.
#[derive(Debug, Clone, Deserialize)]
pub struct Sam2Config {
    /// Square encoder input side (`SAM2Base.image_size`, 1024).
    pub image_size: usize,
    /// ImageNet mean (`sam2/utils/transforms.py` SAM2Transforms).
    pub image_mean: [f32; 3],
    /// ImageNet std (`sam2/utils/transforms.py` SAM2Transforms).
    pub image_std: [f32; 3],
    /// Side of the embedding grid (image_size / backbone_stride = 64).
    pub feat_size: usize,
    /// Side of the low-resolution mask logits (4 × feat_size = 256).
    pub low_res_mask_size: usize,
    /// Transformer width C.
    pub hidden_dim: usize,
    /// Memory feature width.
    pub mem_dim: usize,
    /// Mask tokens of the decoder (4: one single-mask + three multimask outputs).
    pub num_mask_tokens: usize,
    /// Logit threshold of a mask (`SAM2ImagePredictor.mask_threshold`, 0).
    pub mask_threshold: f32,
    /// Logit written for "no object" (`NO_OBJ_SCORE` in sam2_base.py, -1024).
    pub no_obj_score: f32,
    /// Clamp of previous-mask logits (`sam2_video_predictor.py`, ±32).
    pub prev_mask_logits_clamp: f32,
    /// `multimask_output_in_sam`.
    pub multimask_output_in_sam: bool,
    /// `multimask_output_for_tracking`.
    pub multimask_output_for_tracking: bool,
    /// `multimask_min_pt_num`.
    pub multimask_min_pt_num: usize,
    /// `multimask_max_pt_num`.
    pub multimask_max_pt_num: usize,
    /// `use_multimask_token_for_obj_ptr`.
    pub use_multimask_token_for_obj_ptr: bool,
    /// `MaskDecoder.dynamic_multimask_via_stability` (sam2/modeling/sam/mask_decoder.py).
    pub dynamic_multimask_via_stability: bool,
    /// `MaskDecoder.dynamic_multimask_stability_delta`.
    pub dynamic_multimask_stability_delta: f32,
    /// `MaskDecoder.dynamic_multimask_stability_thresh`.
    pub dynamic_multimask_stability_thresh: f32,
    /// `pred_obj_scores`.
    pub pred_obj_scores: bool,
    /// `directly_add_no_mem_embed`.
    pub directly_add_no_mem_embed: bool,
    /// `num_maskmem` (7: one conditioning slot + 6 recent frames).
    pub num_maskmem: usize,
    /// `memory_temporal_stride_for_eval`.
    pub memory_temporal_stride_for_eval: i64,
    /// `max_cond_frames_in_attn` (-1: all).
    pub max_cond_frames_in_attn: i64,
    /// `use_obj_ptrs_in_encoder`.
    pub use_obj_ptrs_in_encoder: bool,
    /// `max_obj_ptrs_in_encoder` (16).
    pub max_obj_ptrs_in_encoder: usize,
    /// `use_signed_tpos_enc_to_obj_ptrs`.
    pub use_signed_tpos_enc_to_obj_ptrs: bool,
    /// `only_obj_ptrs_in_the_past_for_eval`.
    pub only_obj_ptrs_in_the_past_for_eval: bool,
    /// `binarize_mask_from_pts_for_mem_enc` (video predictor override: true).
    pub binarize_mask_from_pts_for_mem_enc: bool,
    /// `fill_hole_area` of the video predictor (8 in build_sam2_video_predictor).
    #[serde(default)]
    pub fill_hole_area: usize,
    /// `non_overlap_masks` of the video predictor.
    #[serde(default)]
    pub non_overlap_masks: bool,
    /// `add_all_frames_to_correct_as_cond` of the video predictor.
    #[serde(default)]
    pub add_all_frames_to_correct_as_cond: bool,
    /// `use_mask_input_as_output_without_sam` (true in every released config): a mask prompt in
    /// video is taken as the frame's output; the decoder only gives its object pointer.
    #[serde(default)]
    pub use_mask_input_as_output_without_sam: bool,
    /// `fixed_no_obj_ptr`; absent from manifests written before mask prompts were exported.
    #[serde(default)]
    pub fixed_no_obj_ptr: Option<bool>,
    /// SAM 2 family member (`edgetam`); absent for SAM 2 / 2.1 (`onnx/edgetam_export/export.py`).
    #[serde(default)]
    pub family: Option<String>,
    /// Tokens of one stored memory when memories are compressed: EdgeTAM's spatial perceiver
    /// latents (`num_latents + num_latents_2d`, edgetam-dimos `sam2/configs/edgetam.yaml`).
    /// Absent for SAM 2, whose memories are the `feat_size²` feature grid.
    #[serde(default)]
    pub mem_tokens: Option<usize>,
}

impl Sam2Config {
    /// Reads the config from a manifest's `constants` object.
    pub fn from_constants(constants: &serde_json::Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(constants)
    }

    /// Tokens of one stored memory: [`Self::mem_tokens`] when given, else `feat_size²`.
    pub fn memory_tokens_per_frame(&self) -> usize {
        self.mem_tokens.unwrap_or(self.feat_size * self.feat_size)
    }

    /// The family name: `edgetam`, or `sam2` when the manifest names none.
    pub fn family(&self) -> &str {
        self.family.as_deref().unwrap_or("sam2")
    }
}
