//! How far a model's answers drift from a reference model's on the same request: the measure
//! for opt-in quantized exports, whose quality cannot be judged on random weights. The
//! reference generates greedily for a fixed number of steps (stop tokens ignored); the other
//! model is fed the same tokens (teacher forcing), and at every step its greedy choice and its
//! logits are compared with the reference's.

use super::generation::argmax;
use super::{CancelToken, PixelRefer, ReferError, Request};
use std::time::Instant;

/// The outcome of [`compare`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Agreement {
    /// Steps compared (the first is the prefill's logits).
    pub steps: usize,
    /// Steps at which the other model's greedy token is the reference's.
    pub agreed: usize,
    /// Steps until the first disagreement: the length of the answer both would write greedily.
    pub identical_prefix: usize,
    /// Largest |logit difference| over every step and the whole vocabulary.
    pub max_logit_diff: f32,
    /// Largest |logit| of the reference (the scale of the difference).
    pub max_abs_logit: f32,
    /// Median over steps of the largest |logit difference| at that step.
    pub median_step_diff: f32,
    /// Median over steps of the reference's margin: its top logit minus its second. A step can
    /// only flip where the other model's error reaches the margin, so agreement is low when the
    /// margins are small next to `median_step_diff` (random weights give flat distributions).
    pub median_margin: f32,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Seconds the reference took (prompt, prefill and every step).
    pub reference_secs: f64,
    /// Seconds the other model took.
    pub other_secs: f64,
}

impl Agreement {
    /// Share of steps that agree, in [0, 1].
    pub fn rate(&self) -> f64 {
        self.agreed as f64 / self.steps.max(1) as f64
    }
}

/// Logits at each step for a fixed token sequence after the request's prompt: the prefill's,
/// then one per token fed (the last token is not fed). Returns them with the prompt's token ids.
fn forced_logits(
    model: &mut PixelRefer,
    req: &Request,
    tokens: Option<&[u32]>,
    steps: usize,
    cancel: &CancelToken,
) -> Result<(Vec<Vec<f32>>, Vec<i64>), ReferError> {
    let prepared = model.prepare(req)?;
    let prompt = model.build_prompt(req, &prepared, cancel)?;
    let ids = prompt.ids.clone();
    let (mut logits, mut cache) = model.prefill(prompt.embeds, cancel)?;
    let mut out = Vec::with_capacity(steps);
    for step in 0..steps {
        let next = match tokens {
            Some(t) => t[step],
            None => argmax(&logits),
        };
        out.push(logits);
        if step + 1 == steps || cache.len() + 1 >= model.config().max_position_embeddings {
            break;
        }
        let e = model.embed_token(next, cancel)?;
        let (l, c) = model.decode(e, cache, cancel)?;
        logits = l;
        cache = c;
    }
    Ok((out, ids))
}

/// Compares `other` with `reference` over `steps` greedy steps on `req` (its generation options
/// are not used: greedy, no repetition penalty, stop tokens ignored). Both models must share
/// the tokenizer and build the same prompt.
pub fn compare(
    reference: &mut PixelRefer,
    other: &mut PixelRefer,
    req: &Request,
    steps: usize,
    cancel: &CancelToken,
) -> Result<Agreement, ReferError> {
    let steps = steps.max(1);
    let t = Instant::now();
    let (ref_logits, ref_ids) = forced_logits(reference, req, None, steps, cancel)?;
    let reference_secs = t.elapsed().as_secs_f64();
    let tokens: Vec<u32> = ref_logits.iter().map(|l| argmax(l)).collect();
    let t = Instant::now();
    let (other_logits, other_ids) =
        forced_logits(other, req, Some(&tokens), ref_logits.len(), cancel)?;
    let other_secs = t.elapsed().as_secs_f64();
    if ref_ids != other_ids {
        return Err(ReferError::InvalidRequest(
            "the two models build different prompts for the same request (different tokenizers or variants)".into(),
        ));
    }
    let mut agreed = 0;
    let mut identical_prefix = None;
    let (mut max_diff, mut max_abs) = (0f32, 0f32);
    let (mut step_diffs, mut margins) = (Vec::new(), Vec::new());
    for (step, (r, o)) in ref_logits.iter().zip(&other_logits).enumerate() {
        if r.len() != o.len() {
            return Err(ReferError::InvalidRequest(format!(
                "vocabularies differ ({} and {} logits)",
                r.len(),
                o.len()
            )));
        }
        if argmax(o) == tokens[step] {
            agreed += 1;
        } else if identical_prefix.is_none() {
            identical_prefix = Some(step);
        }
        let mut step_diff = 0f32;
        for (a, b) in r.iter().zip(o) {
            step_diff = step_diff.max((a - b).abs());
            max_abs = max_abs.max(a.abs());
        }
        max_diff = max_diff.max(step_diff);
        step_diffs.push(step_diff);
        margins.push(top_margin(r));
    }
    let n = ref_logits.len().min(other_logits.len());
    Ok(Agreement {
        steps: n,
        agreed,
        identical_prefix: identical_prefix.unwrap_or(n),
        max_logit_diff: max_diff,
        max_abs_logit: max_abs,
        median_step_diff: median(&mut step_diffs),
        median_margin: median(&mut margins),
        prompt_tokens: ref_ids.len(),
        reference_secs,
        other_secs,
    })
}

/// Top logit minus the second (0 for fewer than two logits).
fn top_margin(logits: &[f32]) -> f32 {
    let (mut first, mut second) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &v in logits {
        if v > first {
            second = first;
            first = v;
        } else if v > second {
            second = v;
        }
    }
    if second.is_finite() {
        first - second
    } else {
        0.0
    }
}

/// Median of `v` (the upper one for an even count; 0 when empty).
fn median(v: &mut [f32]) -> f32 {
    v.sort_by(f32::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The request [`compare`] runs when no other is given: `image` (or a synthetic 640×480
/// gradient) with two objects, an ellipse left of centre and a box right of it, and a question
/// about both.
pub fn probe_request(image: Option<image::RgbImage>) -> Request {
    use super::{FrameMask, GenerationOptions, Media, ObjectMasks};
    let image = image.unwrap_or_else(|| {
        image::RgbImage::from_fn(640, 480, |x, y| {
            image::Rgb([
                (x * 255 / 640) as u8,
                (y * 255 / 480) as u8,
                ((x ^ y) & 0xff) as u8,
            ])
        })
    });
    let (w, h) = image.dimensions();
    let (wf, hf) = (f64::from(w), f64::from(h));
    let mut a = vec![0u8; (w * h) as usize];
    let mut b = vec![0u8; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (f64::from(x) + 0.5, f64::from(y) + 0.5);
            let (dx, dy) = ((xf - 0.3 * wf) / (0.14 * wf), (yf - 0.5 * hf) / (0.25 * hf));
            let i = (y * w + x) as usize;
            a[i] = u8::from(dx * dx + dy * dy <= 1.0);
            b[i] = u8::from(
                (0.62 * wf..0.87 * wf).contains(&xf) && (0.2 * hf..0.62 * hf).contains(&yf),
            );
        }
    }
    let object = |tag_id, data| ObjectMasks {
        tag_id,
        masks: vec![FrameMask {
            frame: 0,
            mask: crate::mask::Mask::from_raw(w, h, data).expect("mask of the image's size"),
        }],
    };
    Request {
        media: Media::Image(image),
        objects: vec![object(0, a), object(1, b)],
        history: vec![],
        question: "Please describe <object0> and <object1> in detail.".into(),
        options: GenerationOptions::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_and_median() {
        assert_eq!(top_margin(&[0.5, 3.0, -1.0, 2.25]), 0.75);
        assert_eq!(top_margin(&[2.0, 2.0]), 0.0);
        assert_eq!(top_margin(&[1.0]), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut []), 0.0);
    }
}
