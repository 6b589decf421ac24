//! PixelRefer / PixelRefer-Lite region question answering (DESIGN.md §1, `onnx/PIXELREFER_NOTES.md`).
//!
//! Every host step of the official pipeline runs here in Rust; the exported ONNX graphs run
//! through ONNX Runtime. Layout (after candle / usls): [`ReferConfig`] read from the manifest,
//! [`PixelRefer::load`] builds and validates the sessions, [`PixelRefer::prepare`] (host
//! preprocessing) → [`PixelRefer::build_prompt`] (encode + splice) → [`PixelRefer::prefill`] →
//! decode loop ([`PixelRefer::ask`] does all of it). Generation pieces ([`LogitsProcessor`],
//! [`TokenOutputStream`]) are testable alone.
//!
//! Multi-turn conversations re-run the whole prompt each turn (no KV reuse across turns, like
//! upstream `mm_infer`); frame and region embeddings are cached by frame and mask hash, so later
//! turns only pay for the decoder.

mod cache;
pub mod compare;
pub mod config;
mod error;
pub mod generation;
pub mod mask_file;
mod model;
pub mod preprocess;
pub mod prompt;
pub mod reference;
pub mod request;
pub mod resize;
pub mod saot;

pub use config::ReferConfig;
pub use error::ReferError;
pub use generation::{LogitsProcessor, Sampling, TokenOutputStream};
pub use model::{FrameTrace, KvCache, MaskTrace, PixelRefer, Prepared, PreparedMask, PromptEmbeds};
pub use request::{
    AnnotatedObject, DEFAULT_MAX_VIDEO_FRAMES, MAX_VIDEO_FRAMES, RequestFrames, build_request,
    check_max_frames,
};
pub use saot::Variant;

use crate::mask::Mask;
use image::RgbImage;

/// The media a question is about.
#[derive(Debug, Clone)]
pub enum Media {
    /// One RGB image.
    Image(RgbImage),
    /// Video frames (RGB, all the same size) with their timestamps in seconds (rendered as
    /// `Time 1.0s:` in the prompt; Lite writes the mask's frame time in its region text).
    Video {
        /// The sampled frames.
        frames: Vec<RgbImage>,
        /// One timestamp per frame.
        timestamps_secs: Vec<f64>,
    },
}

/// One mask of an object on one frame.
#[derive(Debug, Clone)]
pub struct FrameMask {
    /// Index into the request's frames (0 for an image).
    pub frame: usize,
    /// The mask, the frame's size.
    pub mask: Mask,
}

/// An object the question refers to as `<object{tag_id}>`.
#[derive(Debug, Clone)]
pub struct ObjectMasks {
    /// The tag number.
    pub tag_id: u32,
    /// Its masks. PixelRefer uses the first one (put the prompted frame first); Lite uses each
    /// (32 tokens per mask, labelled with the mask's frame time on video).
    pub masks: Vec<FrameMask>,
}

/// An earlier question and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// What the user asked.
    pub question: String,
    /// What the model answered ([`Answer::text`]).
    pub answer: String,
}

/// Decoding options; `None` takes the model's default. [`validate`](Self::validate) states
/// the accepted values; [`PixelRefer::ask`] refuses others.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GenerationOptions {
    /// Token budget, at least 1 (default: the manifest's `max_new_tokens`).
    pub max_new_tokens: Option<usize>,
    /// Sampling temperature, a finite number ≥ 0; `None` or 0 is greedy (the upstream default).
    pub temperature: Option<f64>,
    /// Nucleus sampling threshold in (0, 1]; 1 samples from every token.
    pub top_p: Option<f64>,
    /// Seed of the sampler.
    pub seed: u64,
    /// Repetition penalty, a finite number > 0 (default: the checkpoint's generation config).
    pub repetition_penalty: Option<f32>,
}

impl GenerationOptions {
    /// Refuses values that would silently generate garbage or nothing: a token budget of 0, a
    /// temperature that is negative or not finite, a top-p outside (0, 1], a repetition penalty
    /// that is not a finite positive number.
    pub fn validate(&self) -> Result<(), ReferError> {
        let bad = |option: &'static str, value: String, rule: &'static str| {
            Err(ReferError::Generation {
                option,
                value,
                rule,
            })
        };
        if self.max_new_tokens == Some(0) {
            return bad("max-new-tokens", "0".into(), "at least 1");
        }
        if let Some(t) = self.temperature
            && !(t.is_finite() && t >= 0.0)
        {
            return bad(
                "temperature",
                t.to_string(),
                "a number ≥ 0 (0 is greedy decoding)",
            );
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return bad("top-p", p.to_string(), "a number in (0, 1]");
        }
        if let Some(r) = self.repetition_penalty
            && !(r.is_finite() && r > 0.0)
        {
            return bad("repetition-penalty", r.to_string(), "a number > 0");
        }
        Ok(())
    }
}

/// A question about objects in media.
#[derive(Debug, Clone)]
pub struct Request {
    /// The image or video frames.
    pub media: Media,
    /// The objects, in the order they are introduced to the model.
    pub objects: Vec<ObjectMasks>,
    /// Earlier turns; the objects are introduced in the first one.
    pub history: Vec<Turn>,
    /// The question; `<objectN>` (or `<regionN>`) names the object with tag `N`.
    pub question: String,
    /// Decoding options.
    pub options: GenerationOptions,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A stop token (`<|im_end|>` / `<|endoftext|>`).
    EndOfText,
    /// The token budget ran out.
    MaxTokens,
    /// The model's context is full.
    ContextFull,
}

/// Wall-clock times of one answer, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Timings {
    /// Host preprocessing, media and object encoding, prompt building.
    pub encode_secs: f64,
    /// The prompt through the decoder.
    pub prefill_secs: f64,
    /// From the call to the first token's logits.
    pub time_to_first_token_secs: f64,
    /// The generation loop.
    pub decode_secs: f64,
    /// The whole call.
    pub total_secs: f64,
    /// Generated tokens after the first, per second of decoding.
    pub tokens_per_sec: f64,
}

/// The model's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Answer {
    /// Decoded text (special tokens skipped, trimmed).
    pub text: String,
    /// Generated ids, the stop token included when one was produced.
    pub token_ids: Vec<u32>,
    /// Tokens in the prompt (after video pruning).
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Why it stopped.
    pub stop: StopReason,
    /// Timings.
    pub timings: Timings,
}

/// Cancels a running request: a flag checked between graph runs and tokens, the running local
/// graph terminated, an in-flight remote call dropped (the runtime's token). Clone it to another
/// thread.
pub use crate::runtime::CancelToken;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::GenerationOptions;

    #[test]
    fn generation_options_outside_their_ranges_are_refused() {
        let ok = GenerationOptions {
            max_new_tokens: Some(1),
            temperature: Some(0.0),
            top_p: Some(1.0),
            seed: 0,
            repetition_penalty: Some(1.1),
        };
        assert!(ok.validate().is_ok());
        assert!(GenerationOptions::default().validate().is_ok());
        let bad = [
            GenerationOptions {
                max_new_tokens: Some(0),
                ..ok.clone()
            },
            GenerationOptions {
                temperature: Some(f64::NAN),
                ..ok.clone()
            },
            GenerationOptions {
                temperature: Some(-1.0),
                ..ok.clone()
            },
            GenerationOptions {
                top_p: Some(0.0),
                ..ok.clone()
            },
            GenerationOptions {
                top_p: Some(1.0 + 1e-9),
                ..ok.clone()
            },
            GenerationOptions {
                repetition_penalty: Some(0.0),
                ..ok.clone()
            },
            GenerationOptions {
                repetition_penalty: Some(f32::INFINITY),
                ..ok.clone()
            },
        ];
        for b in bad {
            let e = b.validate().unwrap_err().to_string();
            assert!(e.contains("is not accepted: give"), "{b:?}: {e}");
        }
    }
}
