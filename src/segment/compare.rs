//! How far a SAM 2 model's masks drift from a reference model's on the same inputs: the measure
//! for the opt-in int8 export (`onnx/export_sam2.py --quantize int8`), whose quality cannot be
//! judged on random weights. Both models segment the same clicks on one frame (image predictor)
//! and track the same two clicked objects through the same frames (video tracker); every mask of
//! the other model is held against the reference's by IoU.

use super::{
    CancelToken, Candidate, Direction, FrameKey, ImagePredictor, ObjectFrame, Point, Prompts,
    Sam2Model, SegmentError, TrackerOptions, VideoTracker,
};
use image::RgbImage;
use std::sync::Arc;
use std::time::Instant;

/// Click positions of the image comparison, as fractions of the frame: a 3 × 3 grid.
const IMAGE_CLICKS: [f32; 3] = [0.25, 0.5, 0.75];

/// The two tracked objects' clicks on frame 0, as fractions of the frame: the centres of the
/// synthetic probe's two shapes (see [`probe_frames`]).
const VIDEO_CLICKS: [(f32, f32); 2] = [(0.3, 0.5), (0.745, 0.41)];

/// The outcome of [`compare`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MaskAgreement {
    /// Single clicks segmented on frame 0 by both image predictors.
    pub clicks: usize,
    /// Smallest IoU of the chosen masks over the clicks.
    pub image_min_iou: f64,
    /// Mean IoU of the chosen masks over the clicks.
    pub image_mean_iou: f64,
    /// Clicks where the two models chose a different candidate of the three.
    pub image_choice_changes: usize,
    /// Largest |difference| of the low-res logits, over every candidate of every click.
    pub max_logit_diff: f32,
    /// Largest |logit| of the reference (the scale of the difference).
    pub max_abs_logit: f32,
    /// Frames tracked (the clicked frame 0 included).
    pub frames: usize,
    /// Objects tracked.
    pub objects: usize,
    /// Smallest IoU over every frame and object of the tracked masks.
    pub video_min_iou: f64,
    /// Mean IoU over every frame and object.
    pub video_mean_iou: f64,
    /// The frame and object of the smallest IoU.
    pub video_worst: (usize, u32),
    /// Frames and objects where one model sees the object and the other does not.
    pub visibility_changes: usize,
    /// Seconds the reference took (encoder, clicks and tracking).
    pub reference_secs: f64,
    /// Seconds the other model took.
    pub other_secs: f64,
}

/// The frames of the comparison: `image` (default: a synthetic 640 × 480 picture with an
/// ellipse and a rectangle on a textured background) and `frames - 1` copies of it shifted by
/// 3 px right and 2 px down per frame (edges repeated), so tracking has motion to follow.
pub fn probe_frames(image: Option<RgbImage>, frames: usize) -> Result<Vec<RgbImage>, SegmentError> {
    let base = match image {
        Some(i) => {
            super::image::check_frame(&i)?;
            i
        }
        None => synthetic_image(640, 480),
    };
    Ok((0..frames.max(1))
        .map(|t| {
            let t = u32::try_from(t).unwrap_or(u32::MAX);
            let (dx, dy) = (t.saturating_mul(3), t.saturating_mul(2));
            RgbImage::from_fn(base.width(), base.height(), |x, y| {
                *base.get_pixel(x.saturating_sub(dx), y.saturating_sub(dy))
            })
        })
        .collect())
}

fn synthetic_image(w: u32, h: u32) -> RgbImage {
    let (wf, hf) = (w as f32, h as f32);
    RgbImage::from_fn(w, h, |x, y| {
        let (xf, yf) = (x as f32 + 0.5, y as f32 + 0.5);
        let (dx, dy) = (
            (xf - VIDEO_CLICKS[0].0 * wf) / (0.14 * wf),
            (yf - VIDEO_CLICKS[0].1 * hf) / (0.25 * hf),
        );
        image::Rgb(if dx * dx + dy * dy <= 1.0 {
            [200, 40, 40]
        } else if (0.62 * wf..0.87 * wf).contains(&xf) && (0.2 * hf..0.62 * hf).contains(&yf) {
            [40, 60, 210]
        } else {
            let t = ((x ^ y) & 0x1f) as u8;
            [90 + t, (60 + y * 80 / h) as u8, (70 + x * 60 / w) as u8]
        })
    })
}

fn click(x: f32, y: f32) -> Prompts {
    Prompts {
        points: vec![Point {
            x,
            y,
            positive: true,
        }],
        bbox: None,
    }
}

/// What one model produced: per click the chosen candidate's index and every candidate; per
/// frame every object's result.
struct Run {
    clicks: Vec<(usize, Vec<Candidate>)>,
    video: Vec<Vec<ObjectFrame>>,
    secs: f64,
}

fn run(
    model: &Arc<Sam2Model>,
    frames: &[RgbImage],
    cancel: &CancelToken,
) -> Result<Run, SegmentError> {
    let t0 = Instant::now();
    let first = &frames[0];
    let (w, h) = (first.width() as f32, first.height() as f32);
    let mut pred = ImagePredictor::new(Arc::clone(model), 1);
    let emb = pred.encode(FrameKey { item: 0, frame: 0 }, first, Some(cancel))?;
    let mut clicks = Vec::new();
    for fy in IMAGE_CLICKS {
        for fx in IMAGE_CLICKS {
            cancel.check()?;
            let p = pred.predict(&emb, &click(fx * w, fy * h), None)?;
            clicks.push((p.chosen, p.candidates));
        }
    }
    drop(emb);
    let mut src = frames.to_vec();
    let n = src.len();
    let mut tracker = VideoTracker::new(
        Arc::clone(model),
        n,
        first.width(),
        first.height(),
        TrackerOptions::default(),
    )?;
    for (id, (fx, fy)) in (1..).zip(VIDEO_CLICKS) {
        tracker.add_prompts(&mut src, 0, id, &click(fx * w, fy * h), true, Some(cancel))?;
    }
    let mut video = vec![Vec::new(); n];
    tracker.propagate(
        &mut src,
        Some(0),
        Direction::Forward,
        None,
        Some(cancel),
        &mut |p, objs| video[p.frame] = objs,
    )?;
    Ok(Run {
        clicks,
        video,
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// Runs `reference` and then `other` on `frames` (from [`probe_frames`]) and compares their
/// masks. The two models must take the same frames (any SAM 2 family member does).
pub fn compare(
    reference: &Arc<Sam2Model>,
    other: &Arc<Sam2Model>,
    frames: &[RgbImage],
    cancel: &CancelToken,
) -> Result<MaskAgreement, SegmentError> {
    if frames.is_empty() {
        return Err(SegmentError::Frame("no frames to compare on".into()));
    }
    let a = run(reference, frames, cancel)?;
    let b = run(other, frames, cancel)?;
    let iou = |x: &crate::mask::Mask, y: &crate::mask::Mask| {
        x.iou(y).map_err(|e| SegmentError::Frame(e.to_string()))
    };
    let mut image_ious = Vec::new();
    let (mut choice_changes, mut max_diff, mut max_abs) = (0, 0f32, 0f32);
    for ((ca, cands_a), (cb, cands_b)) in a.clicks.iter().zip(&b.clicks) {
        choice_changes += usize::from(ca != cb);
        image_ious.push(iou(&cands_a[*ca].mask, &cands_b[*cb].mask)?);
        for (la, lb) in cands_a.iter().zip(cands_b) {
            for (x, y) in la.low_res_logits.data.iter().zip(&lb.low_res_logits.data) {
                max_diff = max_diff.max((x - y).abs());
                max_abs = max_abs.max(x.abs());
            }
        }
    }
    let mut video_ious = Vec::new();
    let mut worst: Option<(f64, (usize, u32))> = None;
    let mut visibility_changes = 0;
    for (oa, ob) in a.video.iter().zip(&b.video) {
        for fa in oa {
            let Some(fb) = ob.iter().find(|f| f.obj_id == fa.obj_id) else {
                continue;
            };
            visibility_changes += usize::from(fa.visible != fb.visible);
            let v = iou(&fa.mask, &fb.mask)?;
            if worst.is_none_or(|(m, _)| v < m) {
                worst = Some((v, (fa.frame, fa.obj_id)));
            }
            video_ious.push(v);
        }
    }
    let min = |v: &[f64]| v.iter().copied().fold(1.0, f64::min);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok(MaskAgreement {
        clicks: image_ious.len(),
        image_min_iou: min(&image_ious),
        image_mean_iou: mean(&image_ious),
        image_choice_changes: choice_changes,
        max_logit_diff: max_diff,
        max_abs_logit: max_abs,
        frames: frames.len(),
        objects: VIDEO_CLICKS.len(),
        video_min_iou: min(&video_ious),
        video_mean_iou: mean(&video_ious),
        video_worst: worst.map_or((0, 0), |(_, at)| at),
        visibility_changes,
        reference_secs: a.secs,
        other_secs: b.secs,
    })
}
