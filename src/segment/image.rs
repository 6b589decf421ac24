//! Image mode: `SAM2ImagePredictor.set_image` / `.predict` (sam2/sam2_image_predictor.py), ported
//! from `ImagePredictor` in `onnx/sam2_host_ref.py`.

use super::{
    CancelToken, EncoderOutput, Prompts, Sam2Config, Sam2Model, SegmentError, choose_mask, ops,
};
use crate::mask::Mask;
use crate::media::rgb_pixels;
use ::image::RgbImage;
use std::collections::HashMap;
use std::sync::Arc;

/// Refuses a frame the predictors cannot encode: an empty one.
pub(crate) fn check_frame(img: &RgbImage) -> Result<(), SegmentError> {
    if img.width() == 0 || img.height() == 0 {
        return Err(SegmentError::Frame(format!(
            "the frame is empty ({}x{})",
            img.width(),
            img.height()
        )));
    }
    Ok(())
}

/// Normalises a CHW float image in place: `(x - mean) / std` (`SAM2Transforms` Normalize).
fn normalize(chw: &mut [f32], c: &Sam2Config) {
    let plane = chw.len() / 3;
    for (ch, part) in chw.chunks_mut(plane).enumerate() {
        let (m, s) = (c.image_mean[ch], c.image_std[ch]);
        for v in part {
            *v = (*v - m) / s;
        }
    }
}

/// Image-mode preprocessing (`preprocess_image` in the spec; `SAM2Transforms`): ToTensor
/// (uint8 / 255 in f32) → torchvision `Resize((S, S))` bilinear antialias → normalise.
/// Matches the host reference bit for bit (same f32 operations in the same order); versus
/// torchvision itself the difference is float rounding (≤ 1e-6 after normalisation).
pub fn preprocess_image(img: &RgbImage, c: &Sam2Config) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut chw = vec![0f32; 3 * h * w];
    for (i, px) in rgb_pixels(img).chunks_exact(3).enumerate() {
        for ch in 0..3 {
            chw[ch * h * w + i] = f32::from(px[ch]) / 255f32;
        }
    }
    let s = c.image_size;
    let mut x = ops::resize_antialias_bilinear(&chw, 3, h, w, s, s);
    normalize(&mut x, c);
    x
}

/// Video-mode preprocessing (`preprocess_video_frame` in the spec; `sam2/utils/misc.py`
/// `_load_img_as_tensor`): Pillow BICUBIC resize of the 8-bit image to `S × S`, / 255 in f64
/// stored as f32, normalise in f32. Bit-exact with Pillow (integer arithmetic).
pub fn preprocess_video_frame(img: &RgbImage, c: &Sam2Config) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let s = c.image_size;
    let resized = crate::media::resample::pil_bicubic_rgb8(rgb_pixels(img), w, h, s, s);
    let mut chw = vec![0f32; 3 * s * s];
    for (i, px) in resized.chunks_exact(3).enumerate() {
        for ch in 0..3 {
            chw[ch * s * s + i] = (f64::from(px[ch]) / 255.0) as f32;
        }
    }
    normalize(&mut chw, c);
    chw
}

/// Identifies a frame of a media source for the embedding cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameKey {
    /// Media item (image index in a folder, or 0 for a single file).
    pub item: usize,
    /// Frame index inside the item.
    pub frame: usize,
}

/// One frame's image-mode embedding (encoder outputs plus the original size).
#[derive(Debug, Clone)]
pub struct Embedding {
    /// Which frame.
    pub key: FrameKey,
    /// Original frame width.
    pub width: u32,
    /// Original frame height.
    pub height: u32,
    /// The encoder outputs (`pix_feat` is not kept in image mode).
    pub features: EncoderOutput,
}

impl Embedding {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.features.bytes()
    }
}

/// Low-resolution mask logits (`L × L`, 256 × 256), as the decoder returns them.
#[derive(Debug, Clone, PartialEq)]
pub struct LowResLogits {
    /// Side length L.
    pub size: usize,
    /// `L * L` logits, row-major.
    pub data: Vec<f32>,
}

/// Upsamples low-res logits bilinearly to `width × height` and thresholds at `threshold`
/// (`SAM2Transforms.postprocess_masks` then `> mask_threshold`).
pub fn logits_to_mask(logits: &LowResLogits, width: u32, height: u32, threshold: f32) -> Mask {
    let data = ops::upsample_threshold(
        &logits.data,
        logits.size,
        logits.size,
        height as usize,
        width as usize,
        threshold,
    );
    // from_raw only fails on a size mismatch, which upsample_threshold cannot produce.
    Mask::from_raw(width, height, data).unwrap_or_else(|_| Mask::new(width, height))
}

/// One candidate mask of a prediction.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The mask at frame size (bilinear upsampling of the unclamped logits, > 0).
    pub mask: Mask,
    /// Its low-res logits, clamped to ±32 as `SAM2ImagePredictor.predict` returns them.
    pub low_res_logits: LowResLogits,
    /// Predicted IoU.
    pub iou: f32,
}

/// The result of [`ImagePredictor::predict`].
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The chosen mask at frame size (upsampled logits > 0).
    pub mask: Mask,
    /// The chosen low-res logits (clamped to ±32): feed them back as `prev_mask` to refine.
    pub low_res_logits: LowResLogits,
    /// Predicted IoU of the chosen mask.
    pub iou: f32,
    /// Object score logit (> 0: an object is present).
    pub object_score: f32,
    /// All candidates returned (3 with multimask output, else 1), as the official predictor.
    pub candidates: Vec<Candidate>,
    /// Index of the chosen candidate in `candidates` (highest predicted IoU).
    pub chosen: usize,
}

/// SAM 2 in image mode: one encoder pass per frame, cached; any number of decoder calls.
pub struct ImagePredictor {
    model: Arc<Sam2Model>,
    cache: HashMap<FrameKey, (Arc<Embedding>, u64)>,
    cache_budget_bytes: usize,
    tick: u64,
    encoder_runs: u64,
}

impl std::fmt::Debug for ImagePredictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagePredictor")
            .field("cached", &self.cache.len())
            .field("cache_bytes", &self.cache_bytes())
            .finish()
    }
}

impl ImagePredictor {
    /// Default embedding cache budget: 512 MiB (about 25 frames of the real models).
    pub const DEFAULT_CACHE_BYTES: usize = 512 << 20;

    /// A predictor over `model` whose embedding cache holds at most `cache_budget_bytes`
    /// (the most recent embedding is always kept).
    pub fn new(model: Arc<Sam2Model>, cache_budget_bytes: usize) -> Self {
        Self {
            model,
            cache: HashMap::new(),
            cache_budget_bytes,
            tick: 0,
            encoder_runs: 0,
        }
    }

    /// The model.
    pub fn model(&self) -> &Arc<Sam2Model> {
        &self.model
    }

    /// Bytes held by cached embeddings.
    pub fn cache_bytes(&self) -> usize {
        self.cache.values().map(|(e, _)| e.bytes()).sum()
    }

    /// Number of cached embeddings.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Whether the embedding of `key` is cached.
    pub fn contains(&self, key: FrameKey) -> bool {
        self.cache.contains_key(&key)
    }

    /// How many times the encoder has run (cache misses).
    pub fn encoder_runs(&self) -> u64 {
        self.encoder_runs
    }

    /// The embedding of `key`, encoding `image` only on a cache miss.
    pub fn encode(
        &mut self,
        key: FrameKey,
        image: &RgbImage,
        cancel: Option<&CancelToken>,
    ) -> Result<Arc<Embedding>, SegmentError> {
        self.tick += 1;
        if let Some((e, t)) = self.cache.get_mut(&key)
            && e.width == image.width()
            && e.height == image.height()
        {
            *t = self.tick;
            return Ok(Arc::clone(e));
        }
        check_frame(image)?;
        let x = preprocess_image(image, self.model.config());
        let features = self.model.encode_image(&x, false, cancel)?;
        self.encoder_runs += 1;
        let emb = Arc::new(Embedding {
            key,
            width: image.width(),
            height: image.height(),
            features,
        });
        self.cache.insert(key, (Arc::clone(&emb), self.tick));
        self.evict();
        Ok(emb)
    }

    fn evict(&mut self) {
        while self.cache.len() > 1 && self.cache_bytes() > self.cache_budget_bytes {
            let oldest = self
                .cache
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    self.cache.remove(&k);
                }
                None => break,
            }
        }
    }

    /// Predicts a mask with the official default choice of output: multimask (best of 3) for a
    /// single click without a box or previous mask, the single-mask output otherwise (switching
    /// to the best multimask candidate when it is unstable, `dynamic_multimask_via_stability`).
    pub fn predict(
        &self,
        emb: &Embedding,
        prompts: &Prompts,
        prev_mask: Option<&LowResLogits>,
    ) -> Result<Prediction, SegmentError> {
        let multimask = prompts.points.len() == 1 && prompts.bbox.is_none() && prev_mask.is_none();
        self.predict_with(emb, prompts, prev_mask, multimask)
    }

    /// `SAM2ImagePredictor.predict(..., multimask_output)` (the spec's `ImagePredictor.predict`).
    pub fn predict_with(
        &self,
        emb: &Embedding,
        prompts: &Prompts,
        prev_mask: Option<&LowResLogits>,
        multimask_output: bool,
    ) -> Result<Prediction, SegmentError> {
        let c = self.model.config();
        let (points, labels) = prompts.to_points(emb.width, emb.height)?;
        let l = c.low_res_mask_size;
        let s = c.image_size as f32;
        let (w, h) = (emb.width as f32, emb.height as f32);
        // per axis into 1024 space: coords / wh * S (f32, as the spec)
        let coords: Vec<f32> = points
            .iter()
            .flat_map(|[x, y]| [x / w * s, y / h * s])
            .collect();
        let (mask_input, has) = match prev_mask {
            Some(m) => {
                if m.size != l || m.data.len() != l * l {
                    return Err(SegmentError::Prompt(format!(
                        "previous mask logits are {0}x{0}, expected {l}x{l}",
                        m.size
                    )));
                }
                (m.data.clone(), 1.0f32)
            }
            None => (vec![0f32; l * l], 0.0),
        };
        let out = self.model.decode(
            &emb.features.image_embed,
            &emb.features,
            &coords,
            &labels,
            labels.len(),
            &mask_input,
            &[has],
            None,
        )?;
        let plane = l * l;
        let low4 = &out.low_res_masks[..4 * plane];
        let iou4 = &out.iou[..4];
        let picks: Vec<usize> = if multimask_output {
            vec![1, 2, 3]
        } else {
            vec![choose_mask(c, low4, iou4, false).0]
        };
        let clamp = c.prev_mask_logits_clamp;
        let candidates: Vec<Candidate> = picks
            .iter()
            .map(|&k| Candidate {
                // masks come from the unclamped logits (postprocess_masks on low_res_masks)
                mask: logits_to_mask(
                    &LowResLogits {
                        size: l,
                        data: low4[k * plane..(k + 1) * plane].to_vec(),
                    },
                    emb.width,
                    emb.height,
                    c.mask_threshold,
                ),
                low_res_logits: LowResLogits {
                    size: l,
                    data: low4[k * plane..(k + 1) * plane]
                        .iter()
                        .map(|v| v.clamp(-clamp, clamp))
                        .collect(),
                },
                iou: iou4[k],
            })
            .collect();
        let ious: Vec<f32> = candidates.iter().map(|x| x.iou).collect();
        let chosen = ops::argmax(&ious);
        let best = &candidates[chosen];
        Ok(Prediction {
            mask: best.mask.clone(),
            low_res_logits: best.low_res_logits.clone(),
            iou: best.iou,
            object_score: out.object_score[0],
            candidates,
            chosen,
        })
    }
}
