//! Replays a SAM 2 model directory's bundled `reference/` cases (outputs of the official
//! `SAM2ImagePredictor` / `SAM2VideoPredictor`, written by `onnx/sam2_export/reference.py`)
//! through the Rust pipeline and measures the differences (`run_reference` in
//! `onnx/sam2_host_ref.py`). Used by `pixelrefer-studio models verify` and the parity tests.

use super::{
    CancelToken, Direction, FrameKey, ImagePredictor, LowResLogits, Point, Prompts, Sam2Model,
    SegmentError, TrackerOptions, VideoTracker,
};
use crate::mask::Mask;
use image::RgbImage;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Parity targets (the tolerances).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// Minimum mask IoU of every image case's masks.
    pub image_min_iou: f64,
    /// Maximum |difference| of image low-res logits.
    pub image_logits_max_abs_diff: f64,
    /// Minimum mask IoU of every video frame, object, direction and correction.
    pub video_min_iou: f64,
    /// Maximum |difference| of the object pointers of every video frame and object.
    pub video_obj_ptr_max_abs_diff: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            image_min_iou: 0.99,
            image_logits_max_abs_diff: 1e-3,
            video_min_iou: 0.98,
            // the image logits' bound; the tiny fixtures' parity tests hold 1e-4
            video_obj_ptr_max_abs_diff: 1e-3,
        }
    }
}

/// One image case's numbers.
#[derive(Debug, Clone)]
pub struct ImageCaseReport {
    /// Case name.
    pub name: String,
    /// Max |ours - official| over the returned low-res logits.
    pub logits_max_abs_diff: f64,
    /// Max |ours - official| over the predicted IoUs.
    pub iou_pred_max_abs_diff: f64,
    /// Mask IoU of every returned mask.
    pub mask_ious: Vec<f64>,
}

/// One video step's numbers.
#[derive(Debug, Clone)]
pub struct VideoStepReport {
    /// Step index.
    pub index: usize,
    /// `add` or `propagate`.
    pub op: String,
    /// Backward propagation.
    pub reverse: bool,
    /// `(frame, object id, mask IoU)`.
    pub ious: Vec<(usize, u32, f64)>,
    /// Max |object score difference|.
    pub score_max_abs_diff: f64,
    /// Max |difference| of the 4×4 mean-pooled low-res logits.
    pub logits_pool4_max_abs_diff: f64,
    /// Max |difference| of the object pointers.
    pub obj_ptr_max_abs_diff: f64,
    /// Memory banks that used other frames than the official ones.
    pub bank_mismatches: Vec<String>,
}

/// All numbers of one run.
#[derive(Debug, Clone, Default)]
pub struct ParityReport {
    /// Image cases.
    pub image: Vec<ImageCaseReport>,
    /// Video steps.
    pub video: Vec<VideoStepReport>,
}

impl ParityReport {
    /// Worst image mask IoU.
    pub fn image_min_iou(&self) -> f64 {
        self.image
            .iter()
            .flat_map(|c| c.mask_ious.iter().copied())
            .fold(1.0, f64::min)
    }
    /// Worst image logits difference.
    pub fn image_logits_max_abs_diff(&self) -> f64 {
        self.image
            .iter()
            .map(|c| c.logits_max_abs_diff)
            .fold(0.0, f64::max)
    }
    /// Worst video mask IoU.
    pub fn video_min_iou(&self) -> f64 {
        self.video
            .iter()
            .flat_map(|s| s.ious.iter().map(|x| x.2))
            .fold(1.0, f64::min)
    }
    /// Worst video object-score difference.
    pub fn video_score_max_abs_diff(&self) -> f64 {
        self.video
            .iter()
            .map(|s| s.score_max_abs_diff)
            .fold(0.0, f64::max)
    }
    /// Worst pooled video logits difference.
    pub fn video_logits_pool4_max_abs_diff(&self) -> f64 {
        self.video
            .iter()
            .map(|s| s.logits_pool4_max_abs_diff)
            .fold(0.0, f64::max)
    }
    /// Worst video object-pointer difference.
    pub fn video_obj_ptr_max_abs_diff(&self) -> f64 {
        self.video
            .iter()
            .map(|s| s.obj_ptr_max_abs_diff)
            .fold(0.0, f64::max)
    }
    /// Memory banks that differ from the official ones.
    pub fn bank_mismatches(&self) -> usize {
        self.video.iter().map(|s| s.bank_mismatches.len()).sum()
    }
    /// Video frames × objects compared.
    pub fn video_comparisons(&self) -> usize {
        self.video.iter().map(|s| s.ious.len()).sum()
    }

    /// The whole comparison in one line (the parity tests print it).
    pub fn summary(&self) -> String {
        format!(
            "image: min IoU {:.4}, logits max|diff| {:.2e}; video: min IoU {:.4} over {} frame-objects, score max|diff| {:.2e}, pool4 max|diff| {:.2e}, pointer max|diff| {:.2e}, bank mismatches {}",
            self.image_min_iou(),
            self.image_logits_max_abs_diff(),
            self.video_min_iou(),
            self.video_comparisons(),
            self.video_score_max_abs_diff(),
            self.video_logits_pool4_max_abs_diff(),
            self.video_obj_ptr_max_abs_diff(),
            self.bank_mismatches()
        )
    }

    /// One sentence per target that is missed (empty when all pass).
    pub fn failures(&self, tol: &Tolerances) -> Vec<String> {
        let mut f = Vec::new();
        if self.image.is_empty() {
            f.push("no image cases were compared".into());
        }
        if self.video_comparisons() == 0 {
            f.push("no video frames were compared".into());
        }
        if self.image_min_iou() < tol.image_min_iou {
            f.push(format!(
                "image mask IoU {:.4} < {}",
                self.image_min_iou(),
                tol.image_min_iou
            ));
        }
        if self.image_logits_max_abs_diff() > tol.image_logits_max_abs_diff {
            f.push(format!(
                "image logits max|diff| {:.3e} > {:.0e}",
                self.image_logits_max_abs_diff(),
                tol.image_logits_max_abs_diff
            ));
        }
        if self.video_min_iou() < tol.video_min_iou {
            f.push(format!(
                "video mask IoU {:.4} < {}",
                self.video_min_iou(),
                tol.video_min_iou
            ));
        }
        if self.video_obj_ptr_max_abs_diff() > tol.video_obj_ptr_max_abs_diff {
            f.push(format!(
                "video object pointer max|diff| {:.3e} > {:.0e}",
                self.video_obj_ptr_max_abs_diff(),
                tol.video_obj_ptr_max_abs_diff
            ));
        }
        f
    }
}

// ---- cases.json --------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct Cases {
    image: ImageSpec,
    video: VideoSpec,
}

#[derive(Debug, Deserialize)]
struct ImageSpec {
    file: String,
    tensors: String,
    cases: Vec<ImageCase>,
}

#[derive(Debug, Deserialize)]
struct MaskFrom {
    case: String,
    index: usize,
}

#[derive(Debug, Deserialize)]
struct ImageCase {
    name: String,
    #[serde(default)]
    point_coords: Option<Vec<[f32; 2]>>,
    #[serde(default)]
    point_labels: Option<Vec<i32>>,
    #[serde(default)]
    #[serde(rename = "box")]
    bbox: Option<[f32; 4]>,
    multimask_output: bool,
    #[serde(default)]
    mask_input_from: Option<MaskFrom>,
    masks_shape: Vec<usize>,
}

#[derive(Debug, Deserialize)]
struct VideoSpec {
    frames: Vec<String>,
    width: u32,
    height: u32,
    tensors: String,
    fill_hole_area: usize,
    add_all_frames_to_correct_as_cond: bool,
    non_overlap_masks: bool,
    steps: Vec<VideoStep>,
}

#[derive(Debug, Deserialize)]
struct BankRef {
    frame: usize,
    obj_id: u32,
    spatial: Vec<(serde_json::Value, usize)>,
    pointers: Vec<(serde_json::Value, i64)>,
}

#[derive(Debug, Deserialize)]
struct VideoStep {
    op: String,
    #[serde(default)]
    frame: usize,
    #[serde(default)]
    obj_id: u32,
    #[serde(default)]
    points: Option<Vec<[f32; 2]>>,
    #[serde(default)]
    labels: Option<Vec<i32>>,
    #[serde(default)]
    #[serde(rename = "box")]
    bbox: Option<[f32; 4]>,
    #[serde(default = "yes")]
    clear_old_points: bool,
    #[serde(default)]
    reverse: bool,
    #[serde(default)]
    start_frame_idx: Option<usize>,
    /// `[H, W]` of an add_mask step's painted mask.
    #[serde(default)]
    mask_shape: Option<[usize; 2]>,
    frames: Vec<usize>,
    #[serde(default)]
    memory_banks: Vec<BankRef>,
}

fn yes() -> bool {
    true
}

pub use crate::runtime::safetensors::RawTensor;

/// Reads every tensor of a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<HashMap<String, RawTensor>, SegmentError> {
    crate::runtime::safetensors::read_safetensors(path).map_err(|reason| SegmentError::Reference {
        path: path.to_path_buf(),
        reason,
    })
}

/// Loads an image file as 8-bit RGB (`PIL.Image.open(p).convert("RGB")`).
pub fn load_rgb(path: &Path) -> Result<RgbImage, SegmentError> {
    let img = image::open(path).map_err(|e| SegmentError::Reference {
        path: path.to_path_buf(),
        reason: format!("cannot decode: {e}"),
    })?;
    let rgb = img.to_rgb8();
    super::image::check_frame(&rgb)?;
    Ok(rgb)
}

/// `np.unpackbits` (MSB first) of `count` bits.
fn unpack_bits(bytes: &[u8], count: usize) -> Vec<bool> {
    (0..count)
        .map(|i| bytes.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0))
        .collect()
}

fn iou(a: &[u8], b: &[bool]) -> f64 {
    let (mut inter, mut union) = (0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        let x = x != 0;
        inter += u64::from(x && y);
        union += u64::from(x || y);
    }
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .fold(
            if a.len() == b.len() {
                0.0
            } else {
                f64::INFINITY
            },
            f64::max,
        )
}

struct RefFiles {
    dir: PathBuf,
}

impl RefFiles {
    fn tensor<'a>(
        &self,
        t: &'a HashMap<String, RawTensor>,
        file: &str,
        key: &str,
    ) -> Result<&'a RawTensor, SegmentError> {
        t.get(key).ok_or_else(|| SegmentError::Reference {
            path: self.dir.join(file),
            reason: format!("tensor `{key}` is missing"),
        })
    }
    fn f32s(
        &self,
        t: &HashMap<String, RawTensor>,
        file: &str,
        key: &str,
    ) -> Result<Vec<f32>, SegmentError> {
        self.tensor(t, file, key)?
            .f32s()
            .ok_or_else(|| SegmentError::Reference {
                path: self.dir.join(file),
                reason: format!("tensor `{key}` is not float32"),
            })
    }
}

fn bank_matches(ours: Option<&super::video::BankTrace>, r: &BankRef) -> bool {
    let Some(ours) = ours else { return false };
    // the reference frame may be a list when several stored outputs are identical
    let frame_ok = |f: usize, v: &serde_json::Value| match v {
        serde_json::Value::Array(xs) => xs.iter().any(|x| x.as_u64() == Some(f as u64)),
        x => x.as_u64() == Some(f as u64),
    };
    ours.spatial.len() == r.spatial.len()
        && ours
            .spatial
            .iter()
            .zip(&r.spatial)
            .all(|((f, tp), (rf, rtp))| frame_ok(*f, rf) && tp == rtp)
        && ours.pointers.len() == r.pointers.len()
        && ours
            .pointers
            .iter()
            .zip(&r.pointers)
            .all(|((f, d), (rf, rd))| frame_ok(*f, rf) && d == rd)
}

/// Runs every case of `MODEL_DIR/reference/cases.json` on `model`; `log` receives one line per
/// case or step.
pub fn run_reference(
    model: Arc<Sam2Model>,
    log: &mut dyn FnMut(&str),
) -> Result<ParityReport, SegmentError> {
    let dir = model.dir().join("reference");
    let files = RefFiles { dir: dir.clone() };
    let cases_path = dir.join("cases.json");
    let text = crate::runtime::read_regular_file(&cases_path, crate::runtime::MAX_CASES_BYTES)
        .map_err(|e| SegmentError::Reference {
            path: cases_path.clone(),
            reason: if cases_path.exists() {
                e
            } else {
                format!("{e}; this model directory has no bundled reference cases")
            },
        })?;
    let spec: Cases = serde_json::from_slice(&text).map_err(|e| SegmentError::Reference {
        path: cases_path.clone(),
        reason: format!("malformed: {e}"),
    })?;
    let mut report = ParityReport::default();

    // ---- image cases
    let itensors = read_safetensors(&dir.join(&spec.image.tensors))?;
    let img = load_rgb(&dir.join(&spec.image.file))?;
    let mut predictor =
        ImagePredictor::new(Arc::clone(&model), ImagePredictor::DEFAULT_CACHE_BYTES);
    let emb = predictor.encode(FrameKey { item: 0, frame: 0 }, &img, None)?;
    let mut prev_low: HashMap<String, Vec<LowResLogits>> = HashMap::new();
    let tf = spec.image.tensors.as_str();
    for case in &spec.image.cases {
        let coords = case.point_coords.clone().unwrap_or_default();
        let labels = case.point_labels.clone().unwrap_or_default();
        let prompts = Prompts {
            points: coords
                .iter()
                .zip(&labels)
                .map(|([x, y], &l)| Point {
                    x: *x,
                    y: *y,
                    positive: l == 1,
                })
                .collect(),
            bbox: case.bbox,
        };
        let mask_input = match &case.mask_input_from {
            Some(src) => Some(
                prev_low
                    .get(&src.case)
                    .and_then(|v| v.get(src.index))
                    .cloned()
                    .ok_or_else(|| SegmentError::Reference {
                        path: cases_path.clone(),
                        reason: format!("case {} refers to an unknown mask", case.name),
                    })?,
            ),
            None => None,
        };
        let pred =
            predictor.predict_with(&emb, &prompts, mask_input.as_ref(), case.multimask_output)?;
        let ref_low = files.f32s(&itensors, tf, &format!("{}.low_res_logits", case.name))?;
        let ref_iou = files.f32s(&itensors, tf, &format!("{}.iou", case.name))?;
        let packed = files.tensor(&itensors, tf, &format!("{}.masks_packed", case.name))?;
        let ours_low: Vec<f32> = pred
            .candidates
            .iter()
            .flat_map(|c| c.low_res_logits.data.iter().copied())
            .collect();
        let ours_iou: Vec<f32> = pred.candidates.iter().map(|c| c.iou).collect();
        let count: usize = case.masks_shape.iter().product();
        let ref_masks = unpack_bits(&packed.bytes, count);
        let per = (img.width() * img.height()) as usize;
        let ious: Vec<f64> = pred
            .candidates
            .iter()
            .enumerate()
            .map(|(k, c)| {
                ref_masks
                    .get(k * per..(k + 1) * per)
                    .map_or(0.0, |r| iou(c.mask.data(), r))
            })
            .collect();
        let ious = if pred.candidates.len() == case.masks_shape.first().copied().unwrap_or(0) {
            ious
        } else {
            vec![0.0] // wrong number of masks: a failure
        };
        let r = ImageCaseReport {
            name: case.name.clone(),
            logits_max_abs_diff: max_abs_diff(&ours_low, &ref_low),
            iou_pred_max_abs_diff: max_abs_diff(&ours_iou, &ref_iou),
            mask_ious: ious,
        };
        log(&format!(
            "[image] {:22} logits max|diff|={:.2e} iou_pred max|diff|={:.2e} mask IoU={}",
            r.name,
            r.logits_max_abs_diff,
            r.iou_pred_max_abs_diff,
            r.mask_ious
                .iter()
                .map(|x| format!("{x:.4}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        prev_low.insert(
            case.name.clone(),
            pred.candidates
                .iter()
                .map(|c| c.low_res_logits.clone())
                .collect(),
        );
        report.image.push(r);
    }

    // ---- video case
    let v = &spec.video;
    let vtf = v.tensors.as_str();
    let vt = read_safetensors(&dir.join(&v.tensors))?;
    let mut frames: Vec<RgbImage> = v
        .frames
        .iter()
        .map(|p| load_rgb(&dir.join(p)))
        .collect::<Result<_, _>>()?;
    let options = TrackerOptions {
        fill_hole_area: Some(v.fill_hole_area),
        add_all_frames_to_correct_as_cond: Some(v.add_all_frames_to_correct_as_cond),
        non_overlap_masks: Some(v.non_overlap_masks),
        trace_banks: true,
        ..TrackerOptions::default()
    };
    let mut tracker =
        VideoTracker::new(Arc::clone(&model), frames.len(), v.width, v.height, options)?;
    let cancel = CancelToken::new();
    let plane = (v.width * v.height) as usize;
    for (si, step) in v.steps.iter().enumerate() {
        tracker.clear_bank_traces();
        let mut results = Vec::new();
        if step.op == "add" {
            let points = step.points.clone().unwrap_or_default();
            let labels = step.labels.clone().unwrap_or_default();
            let prompts = Prompts {
                points: points
                    .iter()
                    .zip(&labels)
                    .map(|([x, y], &l)| Point {
                        x: *x,
                        y: *y,
                        positive: l == 1,
                    })
                    .collect(),
                bbox: step.bbox,
            };
            let r = tracker.add_prompts(
                &mut frames,
                step.frame,
                step.obj_id,
                &prompts,
                step.clear_old_points,
                Some(&cancel),
            )?;
            results.push((step.frame, r));
        } else if step.op == "add_mask" {
            let key = format!("s{si}.input_mask_packed");
            let bad = |reason: String| SegmentError::Reference {
                path: dir.join(&v.tensors),
                reason,
            };
            let [h, w] = step
                .mask_shape
                .ok_or_else(|| bad(format!("step {si} (add_mask) has no mask_shape")))?;
            let bits = vt
                .get(&key)
                .ok_or_else(|| bad(format!("`{key}` is missing")))?;
            let data = unpack_bits(&bits.bytes, h * w)
                .into_iter()
                .map(u8::from)
                .collect();
            let mask = Mask::from_raw(w as u32, h as u32, data)
                .map_err(|e| bad(format!("`{key}`: {e}")))?;
            let r = tracker.add_mask(&mut frames, step.frame, step.obj_id, &mask, Some(&cancel))?;
            results.push((step.frame, r));
        } else {
            let dir = if step.reverse {
                Direction::Backward
            } else {
                Direction::Forward
            };
            tracker.propagate(
                &mut frames,
                step.start_frame_idx,
                dir,
                None,
                Some(&cancel),
                &mut |p, r| results.push((p.frame, r)),
            )?;
        }
        let got: Vec<usize> = results.iter().map(|r| r.0).collect();
        let mut rep = VideoStepReport {
            index: si,
            op: step.op.clone(),
            reverse: step.reverse,
            ious: Vec::new(),
            score_max_abs_diff: 0.0,
            logits_pool4_max_abs_diff: 0.0,
            obj_ptr_max_abs_diff: 0.0,
            bank_mismatches: Vec::new(),
        };
        if got != step.frames {
            rep.bank_mismatches.push(format!(
                "visited frames {got:?}, official {:?}",
                step.frames
            ));
        }
        for (t, objs) in &results {
            for o in objs {
                let key = format!("s{si}.f{t}.o{}", o.obj_id);
                let Some(m) = vt.get(&format!("{key}.mask_packed")) else {
                    rep.ious.push((*t, o.obj_id, 0.0));
                    continue;
                };
                let refm = unpack_bits(&m.bytes, plane);
                rep.ious.push((*t, o.obj_id, iou(o.mask.data(), &refm)));
                if let Some(s) = vt.get(&format!("{key}.score")).and_then(RawTensor::f32s)
                    && let Some(&s) = s.first()
                {
                    rep.score_max_abs_diff = rep
                        .score_max_abs_diff
                        .max((f64::from(o.score) - f64::from(s)).abs());
                    let pool_ref = files.f32s(&vt, vtf, &format!("{key}.low_res_logits_pool4"))?;
                    let l = o.low_res_logits.size;
                    let q = l / 4;
                    let mut pool = vec![0f32; q * q];
                    for y in 0..q {
                        for x in 0..q {
                            let mut acc = 0f64;
                            for dy in 0..4 {
                                for dx in 0..4 {
                                    acc += f64::from(
                                        o.low_res_logits.data[(y * 4 + dy) * l + x * 4 + dx],
                                    );
                                }
                            }
                            pool[y * q + x] = (acc / 16.0) as f32;
                        }
                    }
                    rep.logits_pool4_max_abs_diff = rep
                        .logits_pool4_max_abs_diff
                        .max(max_abs_diff(&pool, &pool_ref));
                    // written by exporters since mask prompts; older references lack it
                    if let Some(ptr_ref) =
                        vt.get(&format!("{key}.obj_ptr")).and_then(RawTensor::f32s)
                    {
                        let ours = tracker.object_pointer(o.obj_id, *t).unwrap_or(&[]);
                        rep.obj_ptr_max_abs_diff =
                            rep.obj_ptr_max_abs_diff
                                .max(if ours.len() == ptr_ref.len() {
                                    max_abs_diff(ours, &ptr_ref)
                                } else {
                                    f64::INFINITY
                                });
                    }
                }
            }
        }
        for b in &step.memory_banks {
            let ours = tracker.bank_trace(b.frame, b.obj_id);
            if !bank_matches(ours, b) {
                rep.bank_mismatches.push(format!(
                    "frame {} object {}: official spatial {:?} pointers {:?}, ours {:?}",
                    b.frame, b.obj_id, b.spatial, b.pointers, ours
                ));
            }
        }
        log(&format!(
            "[video] step {si} {:9} {} IoU {} | score max|diff|={:.2e} pool4 max|diff|={:.2e} pointer max|diff|={:.2e} bank mismatches={}",
            step.op,
            if step.reverse { "rev" } else { "fwd" },
            rep.ious
                .iter()
                .map(|(t, o, x)| format!("f{t}/o{o}:{x:.4}"))
                .collect::<Vec<_>>()
                .join(" "),
            rep.score_max_abs_diff,
            rep.logits_pool4_max_abs_diff,
            rep.obj_ptr_max_abs_diff,
            rep.bank_mismatches.len()
        ));
        for m in &rep.bank_mismatches {
            log(&format!("[video]   bank mismatch: {m}"));
        }
        report.video.push(rep);
    }
    Ok(report)
}
