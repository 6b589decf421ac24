//! A SAM 2 model directory: its config plus four validated ONNX Runtime sessions
//! (`image_encoder`, `prompt_decoder`, `memory_encoder`, `memory_attention`; DESIGN.md §2, §4).

use super::{CancelToken, Sam2Config, SegmentError};
use crate::runtime::preflight::Quantization;
use crate::runtime::{
    self, Graph, GraphError, Input, Manifest, ModelKind, Placement, SessionOptions, Value,
};
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

/// What a video mask prompt needs beyond the graphs (`SAM2Base._use_mask_as_output`,
/// sam2/modeling/sam2_base.py): the `mask_downsample` conv and the no-object pointer, read from
/// the model's constants file.
#[derive(Debug, Clone)]
pub struct MaskPromptWeights {
    /// Side and stride of the square `mask_downsample` kernel (`image_size / low_res_mask_size`).
    /// 0 when the model has no object pointers (then the conv is not used).
    pub kernel: usize,
    /// `[kernel, kernel]` conv weights (one input and one output channel).
    pub weight: Vec<f32>,
    /// The conv's bias.
    pub bias: f32,
    /// `no_obj_ptr` `[C]` (empty without `pred_obj_scores`).
    pub no_obj_ptr: Vec<f32>,
    /// `fixed_no_obj_ptr`.
    pub fixed_no_obj_ptr: bool,
}

/// Why a model directory cannot take mask prompts, or the weights they need.
fn load_mask_prompt(
    dir: &Path,
    manifest: &Manifest,
    c: &Sam2Config,
) -> Result<MaskPromptWeights, String> {
    const OLD: &str = "this SAM 2 model directory was exported before painted masks could be \
                       tracked; export or download it again to track painted masks";
    if !c.use_mask_input_as_output_without_sam {
        return Err("this SAM 2 model does not take masks as tracking input \
             (use_mask_input_as_output_without_sam is false)"
            .into());
    }
    let fixed_no_obj_ptr = c.fixed_no_obj_ptr.ok_or(OLD)?;
    let file = manifest.constants_file.as_deref().ok_or(OLD)?;
    let tensors = runtime::safetensors::read_safetensors(&dir.join(file))
        .map_err(|e| format!("{}: {e}", dir.join(file).display()))?;
    let get = |name: &str, len: usize| -> Result<Vec<f32>, String> {
        let v = tensors.get(name).and_then(|t| t.f32s()).ok_or(OLD)?;
        if v.len() != len {
            return Err(format!(
                "{file}: `{name}` has {} values, expected {len}",
                v.len()
            ));
        }
        Ok(v)
    };
    let (kernel, weight, bias) = if c.use_obj_ptrs_in_encoder {
        let k = c.image_size / c.low_res_mask_size.max(1);
        if k == 0 || k * c.low_res_mask_size != c.image_size {
            return Err(format!(
                "mask prompts need image_size ({}) to be a multiple of low_res_mask_size ({})",
                c.image_size, c.low_res_mask_size
            ));
        }
        let bias = get("mask_downsample_bias", 1)?[0];
        (k, get("mask_downsample_weight", k * k)?, bias)
    } else {
        (0, Vec::new(), 0.0)
    };
    let no_obj_ptr = if c.pred_obj_scores {
        get("no_obj_ptr", c.hidden_dim)?
    } else {
        Vec::new()
    };
    Ok(MaskPromptWeights {
        kernel,
        weight,
        bias,
        no_obj_ptr,
        fixed_no_obj_ptr,
    })
}

/// A loaded SAM 2 model: the host config and one [`Graph`] per role, local or remote. Graphs are
/// shared, so one model can serve an image predictor and a video tracker (`Arc<Sam2Model>`).
pub struct Sam2Model {
    dir: PathBuf,
    config: Sam2Config,
    variant: String,
    quantization: Option<Quantization>,
    encoder: Graph,
    decoder: Graph,
    memory_encoder: Graph,
    memory_attention: Graph,
    /// Whether memories enter memory attention as `[B, S, Cm, F, F]` grids (SAM 2) rather than
    /// `[B, S, Cm, T]` token lists (EdgeTAM's perceiver latents).
    mem_grid: bool,
    /// Whether memory attention takes one `pix_feat` row for every object (`image_batch`, its
    /// first self-attention then runs once per frame) rather than one row per object.
    shared_frame: bool,
    placement: Placement,
    warnings: Vec<String>,
    /// The mask-prompt weights, or why this directory cannot take mask prompts.
    mask_prompt: Result<MaskPromptWeights, String>,
}

impl std::fmt::Debug for Sam2Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sam2Model")
            .field("dir", &self.dir)
            .field("variant", &self.variant)
            .field("placement", &self.placement)
            .finish()
    }
}

fn run_err(graph: &'static str) -> impl Fn(GraphError) -> SegmentError {
    move |e| match e {
        GraphError::Cancelled => SegmentError::Cancelled,
        GraphError::Remote(r) => SegmentError::Runtime(runtime::RuntimeError::Remote(r)),
        e => SegmentError::Inference {
            graph,
            reason: e.to_string(),
        },
    }
}

/// Copies output `value` (`name`) as f32, checking its element count.
fn take(
    value: &Value,
    graph: &'static str,
    name: &str,
    expected: usize,
) -> Result<Vec<f32>, SegmentError> {
    let data = value.to_f32().map_err(run_err(graph))?;
    if data.len() != expected {
        return Err(SegmentError::Inference {
            graph,
            reason: format!(
                "output `{name}` has {} values, expected {expected}",
                data.len()
            ),
        });
    }
    Ok(data)
}

impl Sam2Model {
    /// Loads a SAM 2 model directory: checks the manifest kind, every file's sha256, the host
    /// constants, and every graph's inputs/outputs against the manifest. CUDA is used when asked
    /// for and available, else the CPU (the fallback warning is kept, see [`Self::warnings`]).
    pub fn load(dir: &Path, options: &SessionOptions) -> Result<Self, SegmentError> {
        runtime::ensure_initialized()?;
        let manifest = Manifest::load(dir)?;
        manifest.expect_kind(dir, &[ModelKind::Sam2])?;
        let mut warnings = manifest.check_can_run(dir, options)?;
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
        let mem_grid =
            memory_layout(&manifest, &config).map_err(|reason| SegmentError::Config {
                path: dir.join(runtime::MANIFEST_FILE),
                reason,
            })?;
        let shared_frame = shares_frame_row(&manifest);
        if options.remote.is_some() {
            manifest.verify_files_except_graphs(dir)?;
        } else {
            manifest.verify_files(dir)?;
        }
        let mut open = |role: &str| -> Result<Graph, SegmentError> {
            let opened = Graph::open(dir, &manifest, role, options)?;
            // Every graph reports the same missing provider: once is enough.
            warnings.extend(opened.warning.filter(|w| !warnings.contains(w)));
            Ok(opened.graph)
        };
        let mask_prompt = load_mask_prompt(dir, &manifest, &config);
        let encoder = open(GRAPH_ROLES[0])?;
        let decoder = open(GRAPH_ROLES[1])?;
        let memory_encoder = open(GRAPH_ROLES[2])?;
        let memory_attention = open(GRAPH_ROLES[3])?;
        // The model runs where its graphs run (CPU after a CUDA fallback, or the server).
        let placement = encoder.placement().clone();
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            variant: manifest.variant.clone(),
            quantization: manifest.quantization.clone(),
            encoder,
            decoder,
            memory_encoder,
            memory_attention,
            mem_grid,
            shared_frame,
            placement,
            warnings,
            mask_prompt,
        })
    }

    /// The weights a video mask prompt needs; the error says why this model cannot take one
    /// (e.g. a directory exported before mask prompts were).
    pub fn mask_prompt(&self) -> Result<&MaskPromptWeights, SegmentError> {
        self.mask_prompt
            .as_ref()
            .map_err(|reason| SegmentError::MaskPromptUnsupported(reason.clone()))
    }

    /// Whether memory attention takes one `pix_feat` row for all objects of a call, so that its
    /// first self-attention (which reads no memory) runs once per call instead of once per object.
    pub fn shares_frame_row(&self) -> bool {
        self.shared_frame
    }

    /// The SAM 2 family member (`sam2`, `edgetam`), from the manifest's constants.
    pub fn family(&self) -> &str {
        self.config.family()
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

    /// The quantization of an opt-in int8 export (None: full precision).
    pub fn quantization(&self) -> Option<&Quantization> {
        self.quantization.as_ref()
    }

    /// Where the graphs really run (CPU, CUDA, or `server@host:port`).
    pub fn provider(&self) -> Placement {
        self.placement.clone()
    }

    /// Warnings from loading (e.g. CUDA asked for but unavailable).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
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
        let mut names = vec!["high_res_feats_0", "high_res_feats_1", "image_embed"];
        if keep_pix_feat {
            names.push("pix_feat");
        }
        let out = self
            .encoder
            .run(
                vec![("image", Input::f32(vec![1, 3, s, s], image))],
                &names,
                cancel,
            )
            .map_err(run_err(G))?;
        let f = c.feat_size;
        let ch = c.hidden_dim;
        let emb = ch * f * f;
        Ok(EncoderOutput {
            high_res_feats_0: take(&out[0], G, "high_res_feats_0", ch / 8 * 16 * f * f)?,
            high_res_feats_1: take(&out[1], G, "high_res_feats_1", ch / 4 * 4 * f * f)?,
            image_embed: take(&out[2], G, "image_embed", emb)?,
            pix_feat: if keep_pix_feat {
                take(&out[3], G, "pix_feat", emb)?
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
        let inputs = vec![
            (
                "image_embed",
                Input::f32(vec![emb_batch, ch, f, f], image_embed),
            ),
            (
                "high_res_feats_0",
                Input::f32(vec![1, ch / 8, 4 * f, 4 * f], &feats.high_res_feats_0),
            ),
            (
                "high_res_feats_1",
                Input::f32(vec![1, ch / 4, 2 * f, 2 * f], &feats.high_res_feats_1),
            ),
            ("point_coords", Input::f32(vec![bi, n as i64, 2], coords)),
            ("point_labels", Input::i32(vec![bi, n as i64], labels)),
            ("mask_input", Input::f32(vec![bi, 1, l, l], mask_input)),
            ("has_mask_input", Input::f32(vec![bi], has_mask)),
        ];
        const OUTPUTS: [&str; 4] = [
            "low_res_masks",
            "iou_predictions",
            "obj_ptr",
            "object_score_logits",
        ];
        let out = self
            .decoder
            .run(inputs, &OUTPUTS, cancel)
            .map_err(run_err(G))?;
        let l = l as usize;
        Ok(DecoderOutput {
            low_res_masks: take(&out[0], G, OUTPUTS[0], b * 4 * l * l)?,
            iou: take(&out[1], G, OUTPUTS[1], b * 4)?,
            obj_ptr: take(&out[2], G, OUTPUTS[2], b * 4 * c.hidden_dim)?,
            object_score: take(&out[3], G, OUTPUTS[3], b)?,
        })
    }

    /// Runs the memory encoder for `B` objects: `pix_feat` `[1 or B, C, F, F]`, `mask_logits`
    /// `[B, 1, L, L]`, `scores` `[B]`, `binarize` `[B]` (1.0 = threshold the mask). Returns
    /// `[B, Cm, T]` memories, `T` = [`Sam2Config::memory_tokens_per_frame`] (`F²` for SAM 2).
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
        let inputs = vec![
            ("pix_feat", Input::f32(vec![b, ch, f, f], pix)),
            ("mask_logits", Input::f32(vec![b, 1, l, l], mask_logits)),
            ("object_score_logits", Input::f32(vec![b, 1], scores)),
            ("binarize", Input::f32(vec![b], binarize)),
        ];
        let out = self
            .memory_encoder
            .run(inputs, &["maskmem_features"], cancel)
            .map_err(run_err(G))?;
        take(
            &out[0],
            G,
            "maskmem_features",
            b as usize * c.mem_dim * c.memory_tokens_per_frame(),
        )
    }

    /// Runs memory attention for `B` objects sharing one bank layout: `pix_feat` `[1 or B, C, F,
    /// F]` (without `no_mem_embed`), `mem_features` `[B, S, Cm, T]` (`[B, S, Cm, F, F]` for
    /// SAM 2's grids), `tpos_index` `[S]`,
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
        let one_row = pix_feat.len() as i64 == ch * f * f;
        let expanded;
        let (rows, pix) = if one_row && self.shared_frame {
            (1, pix_feat)
        } else if one_row && b > 1 {
            expanded = pix_feat.repeat(batch);
            (b, &expanded[..])
        } else {
            (b, pix_feat)
        };
        let inputs = vec![
            ("pix_feat", Input::f32(vec![rows, ch, f, f], pix)),
            (
                "mem_features",
                Input::f32(
                    if self.mem_grid {
                        vec![b, s, cm, f, f]
                    } else {
                        vec![b, s, cm, c.memory_tokens_per_frame() as i64]
                    },
                    mem_features,
                ),
            ),
            ("mem_tpos_index", Input::i64(vec![s], tpos_index)),
            ("obj_ptrs", Input::f32(vec![b, p, ch], obj_ptrs)),
            ("obj_ptr_pos", Input::f32(vec![p], ptr_pos)),
        ];
        let out = self
            .memory_attention
            .run(inputs, &["pix_feat_with_mem"], cancel)
            .map_err(run_err(G))?;
        take(
            &out[0],
            G,
            "pix_feat_with_mem",
            batch * c.hidden_dim * c.feat_size * c.feat_size,
        )
    }
}

/// Whether memory attention's `pix_feat` has its own batch dimension (`image_batch`, exports
/// since the first self-attention is shared by the objects) rather than the objects' `B`.
fn shares_frame_row(manifest: &Manifest) -> bool {
    manifest
        .graphs
        .get(GRAPH_ROLES[3])
        .and_then(|g| g.inputs.iter().find(|t| t.name == "pix_feat"))
        .and_then(|t| t.shape.first())
        .and_then(|d| d.as_str())
        == Some("image_batch")
}

/// Whether memories are `[Cm, F, F]` grids (SAM 2) or `[Cm, T]` token lists (EdgeTAM), from the
/// rank of memory attention's `mem_features` input, checked against the constants.
fn memory_layout(manifest: &Manifest, config: &Sam2Config) -> Result<bool, String> {
    let rank = manifest
        .graphs
        .get(GRAPH_ROLES[3])
        .and_then(|g| g.inputs.iter().find(|t| t.name == "mem_features"))
        .map(|t| t.shape.len());
    let grid_tokens = config.feat_size * config.feat_size;
    match (rank, config.mem_tokens) {
        // the graph check on load reports a missing graph or input in its own words
        (None, _) => Ok(config.mem_tokens.is_none()),
        (Some(5), None) => Ok(true),
        (Some(5), Some(t)) if t == grid_tokens => Ok(true),
        (Some(4), Some(t)) if t > 0 => Ok(false),
        (Some(r), t) => Err(format!(
            "memory_attention input `mem_features` has rank {r} but constants.mem_tokens is {} \
             (expected rank 5 for [B,S,Cm,F,F] grids, or rank 4 for [B,S,Cm,T] with mem_tokens = T)",
            t.map_or_else(|| "absent".to_string(), |t| t.to_string())
        )),
    }
}
