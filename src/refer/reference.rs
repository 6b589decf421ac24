//! Replays a PixelRefer / PixelRefer-Lite model directory's bundled `reference/` cases (inputs,
//! intermediates and greedy ids of the PyTorch reference pipeline, written by
//! `onnx/pixelrefer_export/cases.py` with `--tiny-random` or `--checkpoint … --reference`)
//! through the Rust pipeline and measures the differences. Used by
//! `pixelrefer-studio models verify`; `tests/refer_parity.rs` asserts the same checks.
//!
//! Every case runs twice per turn:
//! * **reference crops**: host preprocessing in Rust, then the reference's object crops (and, for
//!   Lite, its 224/336 context images) fed in, so that the graphs see the reference's pixels:
//!   prompt ids and greedy ids must be exact and the intermediates within [`Tolerances`];
//! * **raw inputs**: end to end from the reference's frames and masks, our own crops (the OpenCV
//!   uint8 resize ports are bit-exact with the pinned `opencv-python`), so prompt and greedy ids
//!   must be exact here too ([`Tolerances::require_raw_ids`], on by default; turn it off to
//!   check a reference written with another OpenCV build).

use super::{
    CancelToken, FrameMask, GenerationOptions, Media, ObjectMasks, PixelRefer, ReferError, Request,
    Turn, Variant,
};
use crate::mask::Mask;
use crate::runtime::safetensors::RawTensor;
use image::RgbImage;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Parity targets of `models verify` (the same as `tests/refer_parity.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// Max |ours − reference| of vision features (global frames, object crops, projected
    /// tokens), object tokens (and their intermediates) and `inputs_embeds`: 1e-4.
    pub features_max_abs_diff: f64,
    /// Max |ours − reference| of the first decoding step's logits: 2e-4.
    pub logits_max_abs_diff: f64,
    /// Whether the run from raw inputs must reproduce the reference's prompt and generated ids
    /// exactly (default `true`; see the module documentation).
    pub require_raw_ids: bool,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self {
            features_max_abs_diff: 1e-4,
            logits_max_abs_diff: 2e-4,
            require_raw_ids: true,
        }
    }
}

/// Whether one run of one turn reproduced the reference's ids exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdsMatch {
    /// Prompt ids (after video pruning) equal the reference's `turn{t}.input_ids`.
    pub prompt: bool,
    /// Greedy ids equal the reference's `turn{t}.generated_ids`.
    pub generated: bool,
}

impl IdsMatch {
    /// Both exact.
    pub fn all(&self) -> bool {
        self.prompt && self.generated
    }
}

/// One turn of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnReport {
    /// Turn index (0-based).
    pub turn: usize,
    /// The question asked.
    pub question: String,
    /// The run with the reference crops fed in.
    pub reference_crops: IdsMatch,
    /// The run from raw inputs end to end (informational unless
    /// [`Tolerances::require_raw_ids`]).
    pub raw_inputs: IdsMatch,
    /// Tokens the reference generated.
    pub generated_tokens: usize,
    /// Max |ours − reference| of `inputs_embeds` (reference-crops run).
    pub inputs_embeds_max_abs_diff: f64,
    /// Max |ours − reference| of the first step's logits (reference-crops run).
    pub first_logits_max_abs_diff: f64,
}

/// One reference case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseReport {
    /// Case name (`image_1obj`, `lite_video`, …).
    pub name: String,
    /// `image` or `video`.
    pub modal: String,
    /// Max |ours − reference| of vision features: global frames (features and projected tokens,
    /// PixelRefer) and object crops.
    pub vision_features_max_abs_diff: f64,
    /// Max |ours − reference| of object tokens and their intermediates (features with
    /// positions, gathered / k-means tokens, Lite's OCI output).
    pub object_tokens_max_abs_diff: f64,
    /// Host results that must be exact and are not (patches, crop sizes, mask grids, prompt
    /// text, answer text), one sentence each.
    pub exact_mismatches: Vec<String>,
    /// The turns.
    pub turns: Vec<TurnReport>,
}

/// All numbers of one `run_reference`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReferReport {
    /// The cases, in `cases.json` order.
    pub cases: Vec<CaseReport>,
}

impl ReferReport {
    fn turns(&self) -> impl Iterator<Item = &TurnReport> {
        self.cases.iter().flat_map(|c| c.turns.iter())
    }

    /// Turns compared.
    pub fn turn_count(&self) -> usize {
        self.turns().count()
    }

    /// Turns whose prompt and generated ids are exact with the reference crops.
    pub fn reference_crops_exact(&self) -> usize {
        self.turns().filter(|t| t.reference_crops.all()).count()
    }

    /// Turns whose prompt and generated ids are exact from raw inputs.
    pub fn raw_inputs_exact(&self) -> usize {
        self.turns().filter(|t| t.raw_inputs.all()).count()
    }

    /// Worst vision-feature difference.
    pub fn vision_features_max_abs_diff(&self) -> f64 {
        worst(self.cases.iter().map(|c| c.vision_features_max_abs_diff))
    }

    /// Worst object-token difference.
    pub fn object_tokens_max_abs_diff(&self) -> f64 {
        worst(self.cases.iter().map(|c| c.object_tokens_max_abs_diff))
    }

    /// Worst `inputs_embeds` difference.
    pub fn inputs_embeds_max_abs_diff(&self) -> f64 {
        worst(self.turns().map(|t| t.inputs_embeds_max_abs_diff))
    }

    /// Worst first-step logits difference.
    pub fn first_logits_max_abs_diff(&self) -> f64 {
        worst(self.turns().map(|t| t.first_logits_max_abs_diff))
    }

    /// Exact host checks that failed, over all cases.
    pub fn exact_mismatch_count(&self) -> usize {
        self.cases.iter().map(|c| c.exact_mismatches.len()).sum()
    }

    /// One sentence per target that is missed (empty when all pass).
    pub fn failures(&self, tol: &Tolerances) -> Vec<String> {
        let mut f = Vec::new();
        if self.turn_count() == 0 {
            f.push("no reference case was compared".into());
        }
        for c in &self.cases {
            for m in &c.exact_mismatches {
                f.push(format!("{}: {m}", c.name));
            }
            for t in &c.turns {
                let mut ids = |what: &str, m: IdsMatch| {
                    if !m.prompt {
                        f.push(format!(
                            "{} turn {}: prompt ids differ ({what})",
                            c.name, t.turn
                        ));
                    }
                    if !m.generated {
                        f.push(format!(
                            "{} turn {}: generated ids differ ({what})",
                            c.name, t.turn
                        ));
                    }
                };
                ids("reference crops", t.reference_crops);
                if tol.require_raw_ids {
                    ids("raw inputs", t.raw_inputs);
                }
            }
        }
        let checks = [
            (
                "vision features",
                self.vision_features_max_abs_diff(),
                tol.features_max_abs_diff,
            ),
            (
                "object tokens",
                self.object_tokens_max_abs_diff(),
                tol.features_max_abs_diff,
            ),
            (
                "inputs_embeds",
                self.inputs_embeds_max_abs_diff(),
                tol.features_max_abs_diff,
            ),
            (
                "first-step logits",
                self.first_logits_max_abs_diff(),
                tol.logits_max_abs_diff,
            ),
        ];
        for (what, got, limit) in checks {
            if got.is_nan() || got > limit {
                f.push(format!("{what} max|diff| {got:.3e} > {limit:.0e}"));
            }
        }
        f
    }

    /// Whether every target is met.
    pub fn passes(&self, tol: &Tolerances) -> bool {
        self.failures(tol).is_empty()
    }
}

/// Raises `acc` to `d` (a NaN counts as infinite).
fn grow(acc: &mut f64, d: f64) {
    *acc = if d.is_nan() {
        f64::INFINITY
    } else {
        acc.max(d)
    };
}

fn worst(xs: impl Iterator<Item = f64>) -> f64 {
    let mut acc = 0.0;
    xs.for_each(|x| grow(&mut acc, x));
    acc
}

/// Max |a − b|; infinite when the lengths differ or a value is NaN.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    worst(
        a.iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs()),
    )
}

// ---- cases.json --------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct CasesFile {
    cases: Vec<CaseSpec>,
}

#[derive(Debug, Deserialize)]
struct CaseSpec {
    name: String,
    #[serde(default)]
    variant: Option<String>,
    modal: String,
    file: String,
    n_frames: usize,
    #[serde(default)]
    timestamps: Option<Vec<f64>>,
    turns: Vec<TurnSpec>,
    objects_masks: Vec<Vec<usize>>,
    max_new_tokens: usize,
}

#[derive(Debug, Deserialize)]
struct TurnSpec {
    /// Missing in references written before the exporter stored questions.
    #[serde(default)]
    question: Option<String>,
    prompt: String,
    answer: String,
}

// ---- safetensors --------------------------------------------------------------------------------

/// The tensors of one case's `.safetensors` file.
struct CaseTensors {
    path: PathBuf,
    tensors: HashMap<String, RawTensor>,
}

impl CaseTensors {
    fn read(path: &Path) -> Result<Self, ReferError> {
        let tensors = crate::runtime::safetensors::read_safetensors(path).map_err(|reason| {
            ReferError::Reference {
                path: path.to_path_buf(),
                reason,
            }
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
        })
    }

    fn bad(&self, reason: String) -> ReferError {
        ReferError::Reference {
            path: self.path.clone(),
            reason,
        }
    }

    fn get(&self, key: &str, dtype: &str) -> Result<&RawTensor, ReferError> {
        let t = self
            .tensors
            .get(key)
            .ok_or_else(|| self.bad(format!("tensor `{key}` is missing")))?;
        if t.dtype != dtype {
            return Err(self.bad(format!("tensor `{key}` is {}, not {dtype}", t.dtype)));
        }
        Ok(t)
    }

    fn f32s(&self, key: &str) -> Result<Vec<f32>, ReferError> {
        Ok(self
            .get(key, "F32")?
            .bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn i64s(&self, key: &str) -> Result<Vec<i64>, ReferError> {
        Ok(self
            .get(key, "I64")?
            .bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect())
    }

    /// An `[h, w, 3]` uint8 tensor as an image.
    fn rgb(&self, key: &str) -> Result<RgbImage, ReferError> {
        let t = self.get(key, "U8")?;
        match t.shape[..] {
            [h, w, 3] => RgbImage::from_raw(w as u32, h as u32, t.bytes.clone()),
            _ => None,
        }
        .ok_or_else(|| self.bad(format!("tensor `{key}` is not an [h, w, 3] image")))
    }

    /// An `[h, w]` uint8 tensor as a mask.
    fn mask(&self, key: &str) -> Result<Mask, ReferError> {
        let t = self.get(key, "U8")?;
        match t.shape[..] {
            [h, w] => Mask::from_raw(w as u32, h as u32, t.bytes.clone()).ok(),
            _ => None,
        }
        .ok_or_else(|| self.bad(format!("tensor `{key}` is not an [h, w] mask")))
    }
}

// ---- the run -------------------------------------------------------------------------------------

/// The request of turn `turn` of a case; earlier turns carry the reference's answers.
fn request(
    case: &CaseSpec,
    st: &CaseTensors,
    questions: &[String],
    turn: usize,
) -> Result<Request, ReferError> {
    let frames = (0..case.n_frames)
        .map(|i| st.rgb(&format!("input.frame{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let media = if case.modal == "video" {
        Media::Video {
            frames,
            timestamps_secs: case.timestamps.clone().unwrap_or_default(),
        }
    } else {
        Media::Image(
            frames
                .into_iter()
                .next()
                .ok_or_else(|| st.bad(format!("case {} has no frame", case.name)))?,
        )
    };
    let objects = case
        .objects_masks
        .iter()
        .enumerate()
        .map(|(oi, on)| {
            let masks = on
                .iter()
                .enumerate()
                .map(|(mi, &frame)| {
                    Ok(FrameMask {
                        frame,
                        mask: st.mask(&format!("input.obj{oi}.mask{mi}"))?,
                    })
                })
                .collect::<Result<Vec<_>, ReferError>>()?;
            Ok(ObjectMasks {
                tag_id: oi as u32,
                masks,
            })
        })
        .collect::<Result<Vec<_>, ReferError>>()?;
    let history = case
        .turns
        .iter()
        .zip(questions)
        .take(turn)
        .map(|(t, q)| Turn {
            question: q.clone(),
            answer: t.answer.clone(),
        })
        .collect();
    Ok(Request {
        media,
        objects,
        history,
        question: questions[turn].clone(),
        options: GenerationOptions {
            max_new_tokens: Some(case.max_new_tokens),
            ..GenerationOptions::default()
        },
    })
}

/// Runs every case of `dir/reference/cases.json` (`dir` is the model directory) on `model`,
/// with the reference crops fed in and from raw inputs; `log` receives one line per turn and
/// per case as they finish, and one per exact mismatch.
pub fn run_reference(
    model: &mut PixelRefer,
    dir: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<ReferReport, ReferError> {
    let ref_dir = dir.join("reference");
    let cases_path = ref_dir.join("cases.json");
    let text = crate::runtime::read_regular_file(&cases_path, crate::runtime::MAX_CASES_BYTES)
        .map_err(|e| ReferError::Reference {
        path: cases_path.clone(),
        reason: if cases_path.exists() {
            e
        } else {
            format!(
                "{e}; this model directory has no reference data: export it with \
                 `onnx/export_pixelrefer.py --checkpoint … --out DIR --reference` (or --tiny-random)"
            )
        },
    })?;
    let spec: CasesFile = serde_json::from_slice(&text).map_err(|e| ReferError::Reference {
        path: cases_path.clone(),
        reason: format!("malformed: {e}"),
    })?;
    let variant = match model.variant() {
        Variant::Full => "full",
        Variant::Lite => "lite",
    };
    let mut report = ReferReport::default();
    for case in &spec.cases {
        if let Some(v) = &case.variant
            && v != variant
        {
            return Err(ReferError::Reference {
                path: cases_path.clone(),
                reason: format!(
                    "case {} is for the {v} variant but the model is PixelRefer {variant}",
                    case.name
                ),
            });
        }
        let questions = case
            .turns
            .iter()
            .map(|t| t.question.clone())
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| ReferError::Reference {
                path: cases_path.clone(),
                reason: format!(
                    "case {} does not store its questions (`turns[i].question`): re-export the \
                     reference with the current onnx/export_pixelrefer.py",
                    case.name
                ),
            })?;
        let st = CaseTensors::read(&dir.join(&case.file))?;
        let r = run_case(model, case, &st, &questions, log)?;
        log(&format!(
            "[case] {:14} {:5} vision features max|diff|={:.2e} object tokens max|diff|={:.2e} exact host checks: {}",
            r.name,
            r.modal,
            r.vision_features_max_abs_diff,
            r.object_tokens_max_abs_diff,
            if r.exact_mismatches.is_empty() {
                "all same".to_string()
            } else {
                format!("{} DIFFER", r.exact_mismatches.len())
            }
        ));
        for m in &r.exact_mismatches {
            log(&format!("[case]   mismatch: {m}"));
        }
        report.cases.push(r);
    }
    Ok(report)
}

/// How the raw-input run counts under `tol`, as printed.
pub fn raw_role(tol: &Tolerances) -> &'static str {
    if tol.require_raw_ids {
        "required"
    } else {
        "informational"
    }
}

fn same(b: bool) -> &'static str {
    if b { "same" } else { "DIFFER" }
}

fn run_case(
    model: &mut PixelRefer,
    case: &CaseSpec,
    st: &CaseTensors,
    questions: &[String],
    log: &mut dyn FnMut(&str),
) -> Result<CaseReport, ReferError> {
    let lite = model.variant() == Variant::Lite;
    let video = case.modal == "video";
    let cancel = CancelToken::new();
    let mut report = CaseReport {
        name: case.name.clone(),
        modal: case.modal.clone(),
        vision_features_max_abs_diff: 0.0,
        object_tokens_max_abs_diff: 0.0,
        exact_mismatches: Vec::new(),
        turns: Vec::new(),
    };
    let mismatches = &mut report.exact_mismatches;
    for (t, turn_spec) in case.turns.iter().enumerate() {
        let req = request(case, st, questions, t)?;
        let mut prepared = model.prepare(&req)?;
        // Image/frame patches: exact (PIL bicubic port).
        for (i, p) in prepared.frames.iter().enumerate() {
            let key = if video {
                format!("frame{i}.patches")
            } else {
                "image.patches".to_string()
            };
            if p.data != st.f32s(&key)? {
                mismatches.push(format!("turn {t}: {key} differ"));
            }
        }
        // Object crops: sizes and mask grids exact; the reference's pixels from here on.
        for (k, pm) in prepared.masks.iter_mut().enumerate() {
            let want = st.rgb(&format!("obj{k}.crop"))?;
            if pm.saot.crop.dimensions() != want.dimensions() {
                mismatches.push(format!(
                    "turn {t}: obj{k} crop is {:?}, reference {:?}",
                    pm.saot.crop.dimensions(),
                    want.dimensions()
                ));
            }
            let grid = st.f32s(&format!("obj{k}.mask_grid"))?;
            let ours = pm.saot.mask_grid.2.iter().map(|&v| v > 0.0);
            if pm.saot.mask_grid.2.len() != grid.len() || !ours.eq(grid.iter().map(|&v| v > 0.0)) {
                mismatches.push(format!("turn {t}: obj{k} mask grid differs"));
            }
            pm.saot.crop = want;
            if lite {
                pm.global_image = Some(st.rgb(&format!("obj{k}.global_image"))?);
                pm.local_image = Some(st.rgb(&format!("obj{k}.local_image"))?);
            }
        }
        if t == 0 {
            let n = prepared.masks.len();
            for (k, pm) in prepared.masks.iter().enumerate() {
                let tr = model.encode_mask(pm, n, &cancel)?;
                if tr.crop_patches != st.f32s(&format!("obj{k}.crop_patches"))? {
                    mismatches.push(format!("obj{k} crop patches differ"));
                }
                grow(
                    &mut report.vision_features_max_abs_diff,
                    max_abs_diff(
                        &tr.crop_features,
                        &st.f32s(&format!("obj{k}.crop_features"))?,
                    ),
                );
                let sel_key = if lite {
                    "padded_tokens"
                } else {
                    "selected_or_kmeans"
                };
                let mut pairs = vec![
                    (&tr.features_with_pos, "features_with_pos"),
                    (&tr.selected, sel_key),
                    (&tr.object_tokens, "object_tokens"),
                ];
                if lite {
                    pairs.push((&tr.oci_tokens, "oci_tokens"));
                }
                for (ours, key) in pairs {
                    let d = max_abs_diff(ours, &st.f32s(&format!("obj{k}.{key}"))?);
                    grow(&mut report.object_tokens_max_abs_diff, d);
                }
            }
            for (i, f) in prepared.frames.iter().enumerate() {
                let tr = model.encode_frame(f, &cancel)?;
                let pre = if video {
                    format!("frame{i}")
                } else {
                    "image".into()
                };
                for (ours, key) in [
                    (&tr.features, "vision_features"),
                    (&tr.projected, "projected"),
                ] {
                    let d = max_abs_diff(ours, &st.f32s(&format!("{pre}.{key}"))?);
                    grow(&mut report.vision_features_max_abs_diff, d);
                }
            }
        }
        // Reference crops: prompt ids exact, embeddings and first logits within tolerance,
        // greedy ids exact.
        model.clear_cache();
        let prompt = model.build_prompt(&req, &prepared, &cancel)?;
        if prompt.text != turn_spec.prompt {
            mismatches.push(format!("turn {t}: prompt text differs"));
        }
        let want_prompt = st.i64s(&format!("turn{t}.input_ids"))?;
        let want_ids = st.i64s(&format!("turn{t}.generated_ids"))?;
        let embeds_diff =
            max_abs_diff(&prompt.embeds, &st.f32s(&format!("turn{t}.inputs_embeds"))?);
        let (logits, _) = model.prefill(prompt.embeds.clone(), &cancel)?;
        let logits_diff = max_abs_diff(&logits, &st.f32s(&format!("turn{t}.first_logits"))?);
        let answer = model.ask_prepared(&req, &prepared, &mut |_| {}, &cancel)?;
        let ids_of = |a: &super::Answer| a.token_ids.iter().map(|&i| i64::from(i)).collect();
        let ours: Vec<i64> = ids_of(&answer);
        let reference_crops = IdsMatch {
            prompt: prompt.ids == want_prompt,
            generated: ours == want_ids,
        };
        if reference_crops.generated && answer.text != turn_spec.answer {
            mismatches.push(format!("turn {t}: answer text differs with the same ids"));
        }
        // Raw inputs: our own crops, end to end.
        model.clear_cache();
        let raw_prepared = model.prepare(&req)?;
        let raw_prompt = model.build_prompt(&req, &raw_prepared, &cancel)?;
        let raw_answer = model.ask_prepared(&req, &raw_prepared, &mut |_| {}, &cancel)?;
        let raw_ids: Vec<i64> = ids_of(&raw_answer);
        let raw_inputs = IdsMatch {
            prompt: raw_prompt.ids == want_prompt,
            generated: raw_ids == want_ids,
        };
        model.clear_cache();
        let tr = TurnReport {
            turn: t,
            question: questions[t].clone(),
            reference_crops,
            raw_inputs,
            generated_tokens: want_ids.len(),
            inputs_embeds_max_abs_diff: embeds_diff,
            first_logits_max_abs_diff: logits_diff,
        };
        log(&format!(
            "[turn] {:14} {t}  reference crops: prompt ids {}, generated ids {} ({} tokens) | raw inputs ({}): prompt ids {}, generated ids {} | inputs_embeds max|diff|={:.2e} first logits max|diff|={:.2e}",
            case.name,
            same(tr.reference_crops.prompt),
            same(tr.reference_crops.generated),
            tr.generated_tokens,
            raw_role(&Tolerances::default()),
            same(tr.raw_inputs.prompt),
            same(tr.raw_inputs.generated),
            tr.inputs_embeds_max_abs_diff,
            tr.first_logits_max_abs_diff,
        ));
        report.turns.push(tr);
    }
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn differences_and_failures() {
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 2.0]), 0.5);
        assert_eq!(max_abs_diff(&[1.0], &[1.0, 2.0]), f64::INFINITY);
        assert_eq!(max_abs_diff(&[f32::NAN], &[1.0]), f64::INFINITY);
        let turn = TurnReport {
            turn: 0,
            question: "Q <region0>?".into(),
            reference_crops: IdsMatch {
                prompt: true,
                generated: true,
            },
            raw_inputs: IdsMatch {
                prompt: true,
                generated: false,
            },
            generated_tokens: 3,
            inputs_embeds_max_abs_diff: 1e-6,
            first_logits_max_abs_diff: 1e-5,
        };
        let mut r = ReferReport {
            cases: vec![CaseReport {
                name: "c".into(),
                modal: "image".into(),
                vision_features_max_abs_diff: 1e-6,
                object_tokens_max_abs_diff: 1e-6,
                exact_mismatches: vec![],
                turns: vec![turn],
            }],
        };
        let strict = Tolerances::default();
        assert_eq!(
            r.failures(&strict),
            ["c turn 0: generated ids differ (raw inputs)"]
        );
        let tol = Tolerances {
            require_raw_ids: false,
            ..strict
        };
        assert!(r.passes(&tol), "{:?}", r.failures(&tol));
        r.cases[0].turns[0].first_logits_max_abs_diff = 3e-4;
        assert!(!r.passes(&tol));
        assert!(!ReferReport::default().passes(&tol));
    }

    #[test]
    fn truncated_safetensors_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.safetensors");
        std::fs::write(&p, [200u8, 0, 0, 0, 0, 0, 0, 0, b'{']).unwrap();
        let err = CaseTensors::read(&p).err().unwrap();
        assert!(err.to_string().contains("header"), "{err}");
    }
}
