//! A SAM 2 model directory: its config plus four validated ONNX Runtime sessions
//! (`image_encoder`, `prompt_decoder`, `memory_encoder`, `memory_attention`; DESIGN.md §2, §4).

use super::{CancelToken, Sam2Config, SegmentError};
use crate::runtime::{self, ExecutionProvider, Manifest, ModelKind, SessionOptions};
use ort::session::{RunOptions, Session, SessionOutputs};
use ort::value::TensorRef;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};

/// The graph roles of a SAM 2 model directory, as named in its manifest.
pub const GRAPH_ROLES: [&str; 4] = [
    "image_encoder",
    "prompt_decoder",
    "memory_encoder",
    "memory_attention",
];

/// Encoder outputs for one frame (`SAM2Base.forward_image` + `_prepare_backbone_features`).
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// `[1, C/8, 4F, 4F]` high-resolution features (level 0, conv_s0 applied).
    pub high_res_feats_0: Vec<f32>,
    /// `[1, C/4, 2F, 2F]` high-resolution features (level 1, conv_s1 applied).
    pub high_res_feats_1: Vec<f32>,
    /// `[1, C, F, F]` embedding with `no_mem_embed` added (image mode and init-cond frames).
    pub image_embed: Vec<f32>,
    /// `[1, C, F, F]` embedding without it (memory attention and memory encoder input); empty when
    /// not kept (image mode).
    pub pix_feat: Vec<f32>,
}

impl EncoderOutput {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * (self.high_res_feats_0.len()
            + self.high_res_feats_1.len()
            + self.image_embed.len()
            + self.pix_feat.len())
    }
}

/// Decoder outputs for a batch of `B` prompts (all 4 mask tokens, before any selection).
#[derive(Debug, Clone)]
pub struct DecoderOutput {
    /// `[B, 4, L, L]` low-res mask logits.
    pub low_res_masks: Vec<f32>,
    /// `[B, 4]` predicted IoUs.
    pub iou: Vec<f32>,
    /// `[B, 4, C]` object pointers, one per token (no-object mixing applied).
    pub obj_ptr: Vec<f32>,
    /// `[B]` object score logits.
    pub object_score: Vec<f32>,
}

/// A loaded SAM 2 model: the host config and one session per graph. Sessions sit behind mutexes
/// so one model can serve an image predictor and a video tracker (`Arc<Sam2Model>`).
pub struct Sam2Model {
    dir: PathBuf,
    config: Sam2Config,
    variant: String,
    encoder: Mutex<Session>,
    decoder: Mutex<Session>,
    memory_encoder: Mutex<Session>,
    memory_attention: Mutex<Session>,
    provider: ExecutionProvider,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Sam2Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sam2Model")
            .field("dir", &self.dir)
            .field("variant", &self.variant)
            .field("provider", &self.provider)
            .finish()
    }
}

fn ort_err(graph: &'static str) -> impl Fn(ort::Error) -> SegmentError {
    move |e| SegmentError::Inference {
        graph,
        reason: e.to_string(),
    }
}

/// Copies output `name` as f32, checking its element count.
fn take(
    out: &SessionOutputs<'_>,
    graph: &'static str,
    name: &str,
    expected: usize,
) -> Result<Vec<f32>, SegmentError> {
    let value = out.get(name).ok_or_else(|| SegmentError::Inference {
        graph,
        reason: format!("output `{name}` is missing"),
    })?;
    let (_, data) = value.try_extract_tensor::<f32>().map_err(ort_err(graph))?;
    if data.len() != expected {
        return Err(SegmentError::Inference {
            graph,
            reason: format!(
                "output `{name}` has {} values, expected {expected}",
                data.len()
            ),
        });
    }
    Ok(data.to_vec())
}

fn view<'a, T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static>(
    graph: &'static str,
    shape: Vec<i64>,
    data: &'a [T],
) -> Result<TensorRef<'a, T>, SegmentError> {
    TensorRef::from_array_view((shape, data)).map_err(ort_err(graph))
}

impl Sam2Model {
    /// Loads a SAM 2 model directory: checks the manifest kind, every file's sha256, the host
    /// constants, and every graph's inputs/outputs against the manifest. CUDA is used when asked
    /// for and available, else the CPU (the fallback warning is kept, see [`Self::warnings`]).
    pub fn load(dir: &Path, options: &SessionOptions) -> Result<Self, SegmentError> {
        runtime::ensure_initialized()?;
        let manifest = Manifest::load(dir)?;
        manifest.expect_kind(dir, &[ModelKind::Sam2])?;
        manifest.verify_files(dir)?;
        let config =
            Sam2Config::from_constants(&manifest.constants).map_err(|e| SegmentError::Config {
                path: dir.join(runtime::MANIFEST_FILE),
                reason: e.to_string(),
            })?;
        if config.num_mask_tokens != 4 || config.low_res_mask_size != 4 * config.feat_size {
            return Err(SegmentError::Config {
                path: dir.join(runtime::MANIFEST_FILE),
                reason: format!(
                    "unsupported layout: {} mask tokens, low-res {} for a {}-grid",
                    config.num_mask_tokens, config.low_res_mask_size, config.feat_size
                ),
            });
        }
        if !config.directly_add_no_mem_embed {
            // every released config sets it (sam2/configs/*); the graphs have no other path for
            // initial conditioning frames (onnx/sam2_host_ref.py asserts the same)
            return Err(SegmentError::Config {
                path: dir.join(runtime::MANIFEST_FILE),
                reason: "directly_add_no_mem_embed=false is not supported".into(),
            });
        }
        let mut sessions = Vec::with_capacity(4);
        let mut provider = options.provider;
        let mut warnings = Vec::new();
        for role in GRAPH_ROLES {
            let spec = manifest.graph(dir, role)?;
            let file = dir.join(&spec.file);
            let (session, actual, warning) = runtime::build_session(&file, options)?;
            runtime::validate_io(&session, &file, spec)?;
            if actual != options.provider {
                provider = actual;
            }
            if let Some(w) = warning {
                warnings.push(w);
            }
            sessions.push(Mutex::new(session));
        }
        let mut it = sessions.into_iter();
        let (Some(encoder), Some(decoder), Some(memory_encoder), Some(memory_attention)) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(SegmentError::Config {
                path: dir.to_path_buf(),
                reason: "four graphs expected".into(),
            });
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            variant: manifest.variant.clone(),
            encoder,
            decoder,
            memory_encoder,
            memory_attention,
            provider,
            warnings,
        })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The host constants.
    pub fn config(&self) -> &Sam2Config {
        &self.config
    }

    /// The manifest's variant name.
    pub fn variant(&self) -> &str {
        &self.variant
    }

    /// The execution provider the sessions really run on.
    pub fn provider(&self) -> ExecutionProvider {
        self.provider
    }

    /// Warnings from loading (e.g. CUDA asked for but unavailable).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn run_options(cancel: Option<&CancelToken>) -> Result<Option<&RunOptions>, SegmentError> {
        match cancel {
            Some(c) => {
                c.check()?;
                Ok(Some(c.run_options()))
            }
            None => Ok(None),
        }
    }

    fn map_run_err<'c>(
        graph: &'static str,
        cancel: Option<&'c CancelToken>,
    ) -> impl Fn(ort::Error) -> SegmentError + 'c {
        move |e| {
            if cancel.is_some_and(|c| c.is_cancelled()) {
                SegmentError::Cancelled
            } else {
                SegmentError::Inference {
                    graph,
                    reason: e.to_string(),
                }
            }
        }
    }

    /// Runs the image encoder on one normalised `[3, S, S]` image.
    pub fn encode_image(
        &self,
        image: &[f32],
        keep_pix_feat: bool,
        cancel: Option<&CancelToken>,
    ) -> Result<EncoderOutput, SegmentError> {
        const G: &str = "image_encoder";
        let c = &self.config;
        let s = c.image_size as i64;
        let input = view(G, vec![1, 3, s, s], image)?;
        let mut session = self.encoder.lock();
        let inputs = ort::inputs!["image" => input];
        let out = match Self::run_options(cancel)? {
            Some(ro) => session.run_with_options(inputs, ro),
            None => session.run(inputs),
        }
        .map_err(Self::map_run_err(G, cancel))?;
        let f = c.feat_size;
        let ch = c.hidden_dim;
        let emb = ch * f * f;
        Ok(EncoderOutput {
            high_res_feats_0: take(&out, G, "high_res_feats_0", ch / 8 * 16 * f * f)?,
            high_res_feats_1: take(&out, G, "high_res_feats_1", ch / 4 * 4 * f * f)?,
            image_embed: take(&out, G, "image_embed", emb)?,
            pix_feat: if keep_pix_feat {
                take(&out, G, "pix_feat", emb)?
            } else {
                Vec::new()
            },
        })
    }

    /// Runs the prompt decoder for `B = labels.len() / n` prompt sets of `n` points each.
    /// `image_embed` holds 1 or B embeddings; `coords` are in 1024-space; `mask_input` is
    /// `[B, 1, L, L]` with `has_mask[b]` telling which rows are real.
    #[allow(clippy::too_many_arguments)]
    pub fn decode(
        &self,
        image_embed: &[f32],
        feats: &EncoderOutput,
        coords: &[f32],
        labels: &[i32],
        points_per_prompt: usize,
        mask_input: &[f32],
        has_mask: &[f32],
        cancel: Option<&CancelToken>,
    ) -> Result<DecoderOutput, SegmentError> {
        const G: &str = "prompt_decoder";
        let c = &self.config;
        let (f, ch, l) = (
            c.feat_size as i64,
            c.hidden_dim as i64,
            c.low_res_mask_size as i64,
        );
        let n = points_per_prompt.max(1);
        let b = labels.len() / n;
        let emb_batch = image_embed.len() as i64 / (ch * f * f);
        let bi = b as i64;
        let inputs = ort::inputs![
            "image_embed" => view(G, vec![emb_batch, ch, f, f], image_embed)?,
            "high_res_feats_0" => view(G, vec![1, ch / 8, 4 * f, 4 * f], &feats.high_res_feats_0)?,
            "high_res_feats_1" => view(G, vec![1, ch / 4, 2 * f, 2 * f], &feats.high_res_feats_1)?,
            "point_coords" => view(G, vec![bi, n as i64, 2], coords)?,
            "point_labels" => view(G, vec![bi, n as i64], labels)?,
            "mask_input" => view(G, vec![bi, 1, l, l], mask_input)?,
            "has_mask_input" => view(G, vec![bi], has_mask)?,
        ];
        let mut session = self.decoder.lock();
        let out = match Self::run_options(cancel)? {
            Some(ro) => session.run_with_options(inputs, ro),
            None => session.run(inputs),
        }
        .map_err(Self::map_run_err(G, cancel))?;
        let l = l as usize;
        Ok(DecoderOutput {
            low_res_masks: take(&out, G, "low_res_masks", b * 4 * l * l)?,
            iou: take(&out, G, "iou_predictions", b * 4)?,
            obj_ptr: take(&out, G, "obj_ptr", b * 4 * c.hidden_dim)?,
            object_score: take(&out, G, "object_score_logits", b)?,
        })
    }

    /// Runs the memory encoder for `B` objects: `pix_feat` `[1 or B, C, F, F]`, `mask_logits`
    /// `[B, 1, L, L]`, `scores` `[B]`, `binarize` `[B]` (1.0 = threshold the mask).
    pub fn encode_memory(
        &self,
        pix_feat: &[f32],
        mask_logits: &[f32],
        scores: &[f32],
        binarize: &[f32],
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<f32>, SegmentError> {
        const G: &str = "memory_encoder";
        let c = &self.config;
        let (f, ch, l) = (
            c.feat_size as i64,
            c.hidden_dim as i64,
            c.low_res_mask_size as i64,
        );
        let b = scores.len() as i64;
        // The graph takes pix_feat with the objects' batch size.
        let expanded;
        let pix = if pix_feat.len() as i64 == ch * f * f && b > 1 {
            expanded = pix_feat.repeat(b as usize);
            &expanded[..]
        } else {
            pix_feat
        };
        let inputs = ort::inputs![
            "pix_feat" => view(G, vec![b, ch, f, f], pix)?,
            "mask_logits" => view(G, vec![b, 1, l, l], mask_logits)?,
            "object_score_logits" => view(G, vec![b, 1], scores)?,
            "binarize" => view(G, vec![b], binarize)?,
        ];
        let mut session = self.memory_encoder.lock();
        let out = match Self::run_options(cancel)? {
            Some(ro) => session.run_with_options(inputs, ro),
            None => session.run(inputs),
        }
        .map_err(Self::map_run_err(G, cancel))?;
        take(
            &out,
            G,
            "maskmem_features",
            b as usize * c.mem_dim * c.feat_size * c.feat_size,
        )
    }

    /// Runs memory attention for `B` objects sharing one bank layout: `pix_feat` `[1 or B, C, F,
    /// F]` (without `no_mem_embed`), `mem_features` `[B, S, Cm, F, F]`, `tpos_index` `[S]`,
    /// `obj_ptrs` `[B, P, C]`, `ptr_pos` `[P]`. Returns `[B, C, F, F]`.
    #[allow(clippy::too_many_arguments)]
    pub fn attend(
        &self,
        pix_feat: &[f32],
        batch: usize,
        mem_features: &[f32],
        tpos_index: &[i64],
        obj_ptrs: &[f32],
        ptr_pos: &[f32],
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<f32>, SegmentError> {
        const G: &str = "memory_attention";
        let c = &self.config;
        let (f, ch, cm) = (c.feat_size as i64, c.hidden_dim as i64, c.mem_dim as i64);
        let b = batch as i64;
        let s = tpos_index.len() as i64;
        let p = ptr_pos.len() as i64;
        let expanded;
        let pix = if pix_feat.len() as i64 == ch * f * f && b > 1 {
            expanded = pix_feat.repeat(batch);
            &expanded[..]
        } else {
            pix_feat
        };
        let inputs = ort::inputs![
            "pix_feat" => view(G, vec![b, ch, f, f], pix)?,
            "mem_features" => view(G, vec![b, s, cm, f, f], mem_features)?,
            "mem_tpos_index" => view(G, vec![s], tpos_index)?,
            "obj_ptrs" => view(G, vec![b, p, ch], obj_ptrs)?,
            "obj_ptr_pos" => view(G, vec![p], ptr_pos)?,
        ];
        let mut session = self.memory_attention.lock();
        let out = match Self::run_options(cancel)? {
            Some(ro) => session.run_with_options(inputs, ro),
            None => session.run(inputs),
        }
        .map_err(Self::map_run_err(G, cancel))?;
        take(
            &out,
            G,
            "pix_feat_with_mem",
            batch * c.hidden_dim * c.feat_size * c.feat_size,
        )
    }
}
