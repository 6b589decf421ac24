//! Generation pieces that can be tested alone (after candle's `generation/mod.rs` and
//! `token_output_stream.rs`): a logits processor (greedy, temperature, top-p, seeded), the
//! repetition penalty of HF `RepetitionPenaltyLogitsProcessor`, and a streaming detokeniser.

use super::ReferError;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Greedy: the first index of the largest logit (`np.argmax` / `torch.argmax`).
    ArgMax,
    /// Sample from `softmax(logits / temperature)`.
    All {
        /// Temperature (> 0).
        temperature: f64,
    },
    /// Nucleus sampling: the smallest set of most likely tokens whose probability reaches `p`.
    TopP {
        /// Cumulative probability (0, 1].
        p: f64,
        /// Temperature (> 0).
        temperature: f64,
    },
}

/// A small deterministic PRNG (SplitMix64), so a seed gives the same tokens everywhere.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks tokens from logits.
#[derive(Debug, Clone)]
pub struct LogitsProcessor {
    rng: SplitMix64,
    sampling: Sampling,
}

impl LogitsProcessor {
    /// A processor; `temperature` `None` or ≤ 0 means greedy, `top_p` in (0, 1) enables nucleus
    /// sampling.
    pub fn new(seed: u64, temperature: Option<f64>, top_p: Option<f64>) -> Self {
        let sampling = match temperature {
            Some(t) if t > 0.0 => match top_p {
                Some(p) if p > 0.0 && p < 1.0 => Sampling::TopP { p, temperature: t },
                _ => Sampling::All { temperature: t },
            },
            _ => Sampling::ArgMax,
        };
        Self::from_sampling(seed, sampling)
    }

    /// A processor with an explicit strategy.
    pub fn from_sampling(seed: u64, sampling: Sampling) -> Self {
        Self {
            rng: SplitMix64(seed),
            sampling,
        }
    }

    /// The strategy.
    pub fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// Chooses the next token id.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, ReferError> {
        if logits.is_empty() {
            return Err(ReferError::Output {
                graph: "decoder".into(),
                reason: "empty logits".into(),
            });
        }
        let (temperature, top_p) = match self.sampling {
            Sampling::ArgMax => return Ok(argmax(logits)),
            Sampling::All { temperature } => (temperature, 1.0),
            Sampling::TopP { p, temperature } => (temperature, p),
        };
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<f64> = logits
            .iter()
            .map(|&l| ((f64::from(l) - f64::from(max)) / temperature).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        for p in &mut probs {
            *p /= total;
        }
        if top_p < 1.0 {
            let mut order: Vec<usize> = (0..probs.len()).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
            let mut cum = 0.0;
            let mut keep = order.len();
            for (i, &idx) in order.iter().enumerate() {
                cum += probs[idx];
                if cum >= top_p {
                    keep = i + 1;
                    break;
                }
            }
            for &idx in &order[keep..] {
                probs[idx] = 0.0;
            }
        }
        let total: f64 = probs.iter().sum();
        let mut u = self.rng.next_f64() * total;
        let mut last = 0;
        for (i, &p) in probs.iter().enumerate() {
            if p > 0.0 {
                last = i;
                if u < p {
                    return Ok(i as u32);
                }
                u -= p;
            }
        }
        Ok(last as u32)
    }
}

/// The first index of the largest value (NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// HF `RepetitionPenaltyLogitsProcessor` on the already generated ids only (what `generate`
/// with `inputs_embeds` sees): each distinct id's logit `l` becomes `l*p` if `l < 0`, else `l/p`.
pub fn apply_repetition_penalty(logits: &mut [f32], generated: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = std::collections::BTreeSet::new();
    for &id in generated {
        if seen.insert(id)
            && let Some(l) = logits.get_mut(id as usize)
        {
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
}

/// Streaming detokeniser (candle `token_output_stream.rs`): decodes the tokens since the last
/// emitted piece and emits the new text once it no longer ends in an incomplete UTF-8 sequence.
/// Special tokens are skipped, as in the final answer.
pub struct TokenOutputStream<'a> {
    tokenizer: &'a tokenizers::Tokenizer,
    tokens: Vec<u32>,
    prev_index: usize,
    current_index: usize,
}

impl<'a> TokenOutputStream<'a> {
    /// A stream over `tokenizer`.
    pub fn new(tokenizer: &'a tokenizers::Tokenizer) -> Self {
        Self {
            tokenizer,
            tokens: Vec::new(),
            prev_index: 0,
            current_index: 0,
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String, ReferError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| ReferError::Tokenize(e.to_string()))
    }

    /// Adds a token; returns the new text piece when there is one.
    pub fn next_token(&mut self, token: u32) -> Result<Option<String>, ReferError> {
        let prev_text = self.decode(&self.tokens[self.prev_index..self.current_index])?;
        self.tokens.push(token);
        let text = self.decode(&self.tokens[self.prev_index..])?;
        if text.len() > prev_text.len()
            && !text.ends_with('\u{FFFD}')
            && text.is_char_boundary(prev_text.len())
        {
            let piece = text[prev_text.len()..].to_string();
            self.prev_index = self.current_index;
            self.current_index = self.tokens.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// Whatever is left undecoded at the end.
    pub fn decode_rest(&self) -> Result<Option<String>, ReferError> {
        let prev_text = self.decode(&self.tokens[self.prev_index..self.current_index])?;
        let text = self.decode(&self.tokens[self.prev_index..])?;
        if text.len() > prev_text.len() && text.is_char_boundary(prev_text.len()) {
            Ok(Some(text[prev_text.len()..].to_string()))
        } else {
            Ok(None)
        }
    }

    /// All tokens so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
}
