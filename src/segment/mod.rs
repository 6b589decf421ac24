//! SAM 2 image predictor and video tracker (DESIGN.md §2) over the four ONNX graphs written by
//! `onnx/export_sam2.py`. The host logic is a line-by-line port of `onnx/sam2_host_ref.py`, which
//! reproduces the official `sam2` predictors (sam2==1.1.0, `sam2/sam2_image_predictor.py`,
//! `sam2/sam2_video_predictor.py`, `sam2/modeling/sam2_base.py`).
//!
//! * [`Sam2Model`]: config plus validated sessions (CUDA when available, else CPU).
//! * [`ImagePredictor`]: `encode(frame) -> Embedding` (cached per `(item, frame)`, LRU by
//!   bytes), then `predict(&Embedding, prompts, prev_mask) -> Prediction`, as often as wanted.
//! * [`VideoTracker`]: per-object memory banks, prompts on any frame, forward and backward
//!   propagation with per-frame results, progress and cancellation.
//! * [`compare`]: how far one model's masks drift from another's (the int8 export's measure).
//! * [`reference`]: replays a model directory's bundled `reference/` cases (parity with the
//!   official predictors), used by `pixelrefer-studio models verify` and the tests.

pub mod compare;
mod config;
mod image;
mod model;
pub mod ops;
pub mod reference;
mod video;

pub use config::Sam2Config;
pub use image::{
    Candidate, Embedding, FrameKey, ImagePredictor, LowResLogits, Prediction, logits_to_mask,
};
pub use model::{DecoderOutput, EncoderOutput, GRAPH_ROLES, MaskPromptWeights, Sam2Model};
pub use video::{
    BatchGraph, Direction, FrameSource, ObjectFrame, PropagationProgress, TrackInput,
    TrackerOptions, VideoTracker,
};

use crate::runtime::RuntimeError;
use std::path::PathBuf;

/// Errors of the segmentation engine.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// Loading ONNX Runtime, the manifest, a graph file or a session failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The manifest's constants are missing or unusable.
    #[error("{path}: bad SAM 2 constants: {reason}")]
    Config {
        /// The manifest file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A graph failed while running.
    #[error("SAM 2 {graph} failed: {reason}")]
    Inference {
        /// The graph role.
        graph: &'static str,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// A prompt is unusable (outside the image, no points, bad label...).
    #[error("invalid prompt: {0}")]
    Prompt(String),
    /// The model directory cannot take mask prompts (the sentence says why and what to do).
    #[error("{0}")]
    MaskPromptUnsupported(String),
    /// A frame is unusable (empty, wrong size, wrong byte count).
    #[error("invalid frame: {0}")]
    Frame(String),
    /// A frame index beyond the video.
    #[error("frame {index} is outside the video ({count} frames)")]
    FrameIndex {
        /// The index asked for.
        index: usize,
        /// Frames in the video.
        count: usize,
    },
    /// Propagation was asked for before any object has a prompt.
    #[error("no object has a prompt yet: click an object on some frame first")]
    NoPrompts,
    /// The work was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A frame could not be read from the media source.
    #[error("could not read frame {index}: {reason}")]
    Media {
        /// The frame index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A reference file of a model directory is missing or malformed.
    #[error("{path}: {reason}")]
    Reference {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Cancels tracking and prediction (the runtime's token: a flag checked between frames, the
/// running local graph terminated, an in-flight remote call dropped).
pub use crate::runtime::CancelToken;

impl From<crate::runtime::Cancelled> for SegmentError {
    fn from(_: crate::runtime::Cancelled) -> Self {
        SegmentError::Cancelled
    }
}

/// A point prompt in frame pixels (continuous coordinates: `(0, 0)` is the top-left corner of the
/// top-left pixel, `(width, height)` the bottom-right corner of the image).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Column.
    pub x: f32,
    /// Row.
    pub y: f32,
    /// `true` for a positive click (label 1), `false` for a negative one (label 0).
    pub positive: bool,
}

/// The prompts for one object on one frame: clicks and an optional box `[x0, y0, x1, y1]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompts {
    /// Clicks.
    pub points: Vec<Point>,
    /// Box corners in frame pixels (XYXY).
    pub bbox: Option<[f32; 4]>,
}

impl Prompts {
    /// Whether there is nothing to prompt with.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.bbox.is_none()
    }

    /// From the document's prompts (`crate::project::Prompts`).
    pub fn from_project(p: &crate::project::Prompts) -> Self {
        Self {
            points: p
                .points
                .iter()
                .map(|q| Point {
                    x: q.x,
                    y: q.y,
                    positive: q.positive,
                })
                .collect(),
            bbox: p.bbox,
        }
    }

    /// To the document's prompts (the inverse of [`Self::from_project`]).
    pub fn to_project(&self) -> crate::project::Prompts {
        crate::project::Prompts {
            points: self
                .points
                .iter()
                .map(|q| crate::project::PointPrompt {
                    x: q.x,
                    y: q.y,
                    positive: q.positive,
                })
                .collect(),
            bbox: self.bbox,
        }
    }

    /// Checks the prompt against a `width × height` frame and returns points and labels as the
    /// official predictors build them: box corners first with labels 2 and 3, then the clicks
    /// (labels 1/0), in frame pixels.
    ///
    /// Coordinates outside `[0, width] × [0, height]` (or NaN) are an error: the official
    /// predictors neither clamp nor reject them (they would silently extrapolate the positional
    /// encoding), so the engine refuses them with a clear message instead.
    pub fn to_points(
        &self,
        width: u32,
        height: u32,
    ) -> Result<(Vec<[f32; 2]>, Vec<i32>), SegmentError> {
        let (w, h) = (width as f32, height as f32);
        let inside = |x: f32, y: f32| {
            x.is_finite() && y.is_finite() && (0.0..=w).contains(&x) && (0.0..=h).contains(&y)
        };
        let mut coords = Vec::new();
        let mut labels = Vec::new();
        if let Some([x0, y0, x1, y1]) = self.bbox {
            if !inside(x0, y0) || !inside(x1, y1) {
                return Err(SegmentError::Prompt(format!(
                    "box [{x0}, {y0}, {x1}, {y1}] is outside the {width}x{height} image"
                )));
            }
            if x1 < x0 || y1 < y0 {
                return Err(SegmentError::Prompt(format!(
                    "box [{x0}, {y0}, {x1}, {y1}] has its corners swapped (expected x0 <= x1, y0 <= y1)"
                )));
            }
            coords.push([x0, y0]);
            coords.push([x1, y1]);
            labels.extend([2, 3]);
        }
        for p in &self.points {
            if !p.x.is_finite() || !p.y.is_finite() {
                return Err(SegmentError::Prompt(format!(
                    "point ({}, {}) is not a finite position",
                    p.x, p.y
                )));
            }
            if !inside(p.x, p.y) {
                return Err(SegmentError::Prompt(format!(
                    "point ({}, {}) is outside the {width}x{height} image",
                    p.x, p.y
                )));
            }
            coords.push([p.x, p.y]);
            labels.push(i32::from(p.positive));
        }
        if labels.is_empty() {
            return Err(SegmentError::Prompt(
                "no points and no box (a mask alone is not a prompt the graphs accept)".into(),
            ));
        }
        Ok((coords, labels))
    }
}

/// Mask index into the decoder's 4 outputs and the token index of the object pointer
/// (`choose_mask` in the spec: `MaskDecoder.forward` + `SAM2Base._forward_sam_heads`).
pub(crate) fn choose_mask(
    c: &Sam2Config,
    low4: &[f32],
    iou4: &[f32],
    multimask: bool,
) -> (usize, usize) {
    if multimask {
        let k = 1 + ops::argmax(&iou4[1..4]);
        return (
            k,
            if c.use_multimask_token_for_obj_ptr {
                k
            } else {
                0
            },
        );
    }
    if c.dynamic_multimask_via_stability {
        // sam2/modeling/sam/mask_decoder.py _dynamic_multimask_via_stability on token 0
        let d = c.dynamic_multimask_stability_delta;
        let plane = &low4[..low4.len() / 4];
        let area_i = plane.iter().filter(|&&v| v > d).count() as f32;
        let area_u = plane.iter().filter(|&&v| v > -d).count() as f32;
        let stability = if area_u > 0.0 { area_i / area_u } else { 1.0 };
        if stability >= c.dynamic_multimask_stability_thresh {
            return (0, 0);
        }
        return (1 + ops::argmax(&iou4[1..4]), 0);
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::{Point, Prompts};

    #[test]
    fn prompts_round_trip_through_the_document() {
        let p = Prompts {
            points: vec![
                Point {
                    x: 1.5,
                    y: 2.0,
                    positive: true,
                },
                Point {
                    x: 7.0,
                    y: 0.25,
                    positive: false,
                },
            ],
            bbox: Some([1.0, 2.0, 30.0, 40.0]),
        };
        let doc = p.to_project();
        assert_eq!(doc.points.len(), 2);
        assert!(!doc.points[1].positive);
        assert_eq!(Prompts::from_project(&doc), p);
    }
}
