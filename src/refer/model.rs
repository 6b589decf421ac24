//! The PixelRefer / PixelRefer-Lite engine: sessions, the host pipeline and the generation loop
//! (`onnx/pixelrefer_export/pipeline.py: run_case` is the reference this follows step by step).

use super::cache::{Cache, hash_bytes, hash_f32};
use super::config::ReferConfig;
use super::generation::{LogitsProcessor, TokenOutputStream, apply_repetition_penalty};
use super::preprocess::{Patches, merge_tokens, preprocess, video_keep_mask, vision_rope};
use super::prompt::{self, Modal, RegionGroup};
use super::resize::{bilinear_features, cv2_area_u8};
use super::saot::{self, SaotCrop, Variant};
use super::{
    Answer, CancelToken, GenerationOptions, Media, ReferError, Request, StopReason, Timings,
};
use crate::media::rgb_pixels;
use crate::runtime::preflight::Quantization;
use crate::runtime::{
    Graph, GraphError, HostTensor, Input, Manifest, ModelKind, Placement, SessionOptions,
    TensorData, Value,
};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Graph roles of a PixelRefer export (`onnx/PIXELREFER_NOTES.md` §9).
const ROLES_FULL: [&str; 6] = [
    "vision_encoder",
    "projector",
    "region_pos",
    "region_mlp",
    "embed_tokens",
    "decoder",
];

/// One mask prepared on the host: the SAOT crop, its grid and (Lite) the 224/336 images.
#[derive(Debug, Clone)]
pub struct PreparedMask {
    /// Index of the object in the request.
    pub object: usize,
    /// Frame index of the mask.
    pub frame: usize,
    /// Frame height.
    pub frame_h: usize,
    /// Frame width.
    pub frame_w: usize,
    /// Crop, geometry and mask grid.
    pub saot: SaotCrop,
    /// Lite: the 336×336 global image (`pixelreferlite/mm_utils.py:150-158`).
    pub global_image: Option<RgbImage>,
    /// Lite: the 224×224 local image (cached per frame upstream: the first mask's crop).
    pub local_image: Option<RgbImage>,
    /// Cache key: frame and mask hashes plus everything else that shapes the tokens.
    pub key: u64,
}

/// Host-side inputs of a request, before any graph runs. Tests may replace the resized images
/// and patches with reference tensors before calling [`PixelRefer::ask_prepared`].
#[derive(Debug, Clone)]
pub struct Prepared {
    /// PixelRefer: normalised patches of each image/frame (d=1 images, d=2 video frames).
    pub frames: Vec<Patches>,
    /// Every mask, objects in request order, masks in object order.
    pub masks: Vec<PreparedMask>,
}

/// Intermediate tensors of one mask (for parity tests and inspection).
#[derive(Debug, Clone, Default)]
pub struct MaskTrace {
    /// Patches of the crop.
    pub crop_patches: Vec<f32>,
    /// Vision features of the crop `[gh*gw, C_vis]`.
    pub crop_features: Vec<f32>,
    /// Feature grid `(gh, gw)`.
    pub feature_grid: (usize, usize),
    /// Features plus positions, resized to the mask grid when the grids differ.
    pub features_with_pos: Vec<f32>,
    /// Gathered (or k-means) tokens; Lite: padded to `mask_num`.
    pub selected: Vec<f32>,
    /// Lite: OCI output.
    pub oci_tokens: Vec<f32>,
    /// Object tokens `[k, C_llm]`.
    pub object_tokens: Vec<f32>,
}

/// Global vision tokens of one image/frame.
#[derive(Debug, Clone)]
pub struct FrameTrace {
    /// Vision features (block order).
    pub features: Vec<f32>,
    /// Projected tokens after the d×d merge (raster order).
    pub projected: Vec<f32>,
}

/// The token sequence and embeddings of one prompt.
#[derive(Debug, Clone)]
pub struct PromptEmbeds {
    /// The prompt text (after `<image>` expansion, before pruning).
    pub text: String,
    /// Token ids after video pruning.
    pub ids: Vec<i64>,
    /// `[ids.len(), hidden]` embeddings with vision and object tokens spliced in.
    pub embeds: Vec<f32>,
}

/// The decoder's KV cache (`present.*` of the last step), in layer order, key then value.
pub struct KvCache {
    values: Vec<Value>,
    len: usize,
}

impl KvCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before any prefill.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

struct Sessions {
    vision: Graph,
    projector: Option<Graph>,
    region_pos: Graph,
    region_mlp: Graph,
    region_oci: Option<Graph>,
    embed: Graph,
    decoder: Graph,
}

/// A loaded PixelRefer or PixelRefer-Lite model: configuration, tokenizer, validated sessions and
/// the region/frame embedding cache.
pub struct PixelRefer {
    dir: PathBuf,
    cfg: ReferConfig,
    variant: Variant,
    tokenizer: tokenizers::Tokenizer,
    sessions: Sessions,
    placement: Placement,
    warnings: Vec<String>,
    cache: Cache,
    /// The graphs take and give float16 (a `--fp16` export).
    half: bool,
    /// Weight quantization of an opt-in int8 / int4 export.
    quantization: Option<Quantization>,
}

impl std::fmt::Debug for PixelRefer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PixelRefer({:?}, {})", self.variant, self.dir.display())
    }
}

/// A float input: f32, or f16 for `float16` exports (`half`).
fn tensor_float(shape: Vec<i64>, data: Vec<f32>, half: bool) -> Value {
    let data = if half {
        TensorData::F16(data.into_iter().map(half::f16::from_f32).collect())
    } else {
        TensorData::F32(data)
    };
    HostTensor { shape, data }.into()
}

fn tensor_i64(shape: Vec<i64>, data: Vec<i64>) -> Value {
    HostTensor {
        shape,
        data: TensorData::I64(data),
    }
    .into()
}

fn graph_err(graph: &str) -> impl Fn(GraphError) -> ReferError + '_ {
    move |e| match e {
        GraphError::Cancelled => ReferError::Cancelled,
        GraphError::Remote(r) => ReferError::Runtime(crate::runtime::RuntimeError::Remote(r)),
        GraphError::Output { name, reason } => ReferError::Output {
            graph: graph.into(),
            reason: format!("output `{name}` {reason}"),
        },
        e => ReferError::Run {
            graph: graph.into(),
            reason: e.to_string(),
        },
    }
}

/// Runs `graph` with named inputs and returns the named outputs.
fn run_graph(
    graph: &Graph,
    name: &str,
    inputs: Vec<(String, Value)>,
    outputs: &[&str],
    cancel: &CancelToken,
) -> Result<Vec<Value>, ReferError> {
    let (names, values): (Vec<String>, Vec<Value>) = inputs.into_iter().unzip();
    let feed = names
        .iter()
        .map(String::as_str)
        .zip(values.into_iter().map(Input::Value))
        .collect();
    graph
        .run(feed, outputs, Some(cancel))
        .map_err(graph_err(name))
}

/// A float output as f32 (f16 outputs of `float16` exports are widened).
fn extract(value: &Value, graph: &str) -> Result<(Vec<i64>, Vec<f32>), ReferError> {
    let data = value.to_f32().map_err(graph_err(graph))?;
    Ok((value.shape(), data))
}

impl PixelRefer {
    /// Loads a `pixelrefer` or `pixelrefer-lite` model directory: manifest, every file's sha256
    /// ([`Manifest::verify_files`], as SAM 2 does), constants, tokenizer, and every graph, each
    /// checked with [`validate_io`].
    pub fn load(dir: &Path, options: &SessionOptions) -> Result<Self, ReferError> {
        let manifest = Manifest::load(dir)?;
        manifest.expect_kind(dir, &[ModelKind::PixelRefer, ModelKind::PixelReferLite])?;
        let mut warnings = manifest.check_can_run(dir, options)?;
        if options.remote.is_some() {
            manifest.verify_files_except_graphs(dir)?;
        } else {
            manifest.verify_files(dir)?;
        }
        let variant = if manifest.kind == ModelKind::PixelReferLite {
            Variant::Lite
        } else {
            Variant::Full
        };
        let cfg = ReferConfig::from_constants(dir, &manifest.constants)?;
        if variant == Variant::Lite
            && (cfg.lite_local_size.is_none() || cfg.lite_global_size.is_none())
        {
            return Err(ReferError::Config {
                path: dir.to_path_buf(),
                reason: "a Lite model needs lite_local_size and lite_global_size".into(),
            });
        }
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(ReferError::Tokenizer {
                path: tok_path,
                reason: "the file is missing".into(),
            });
        }
        let tokenizer =
            tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| ReferError::Tokenizer {
                path: tok_path.clone(),
                reason: e.to_string(),
            })?;
        for (name, id) in [
            (prompt::IMAGE_TOKEN, cfg.image_token_id),
            (prompt::REGION_TOKEN, cfg.region_token_id),
        ] {
            if tokenizer.token_to_id(name).map(i64::from) != Some(id) {
                return Err(ReferError::Tokenizer {
                    path: tok_path,
                    reason: format!("{name} is not token {id} as the manifest says"),
                });
            }
        }
        let mut open = |role: &str| -> Result<Graph, ReferError> {
            let opened = Graph::open(dir, &manifest, role, options)?;
            // Every graph reports the same missing provider: once is enough.
            warnings.extend(opened.warning.filter(|w| !warnings.contains(w)));
            Ok(opened.graph)
        };
        let vision = open(ROLES_FULL[0])?;
        let projector = match variant {
            Variant::Full => Some(open("projector")?),
            Variant::Lite => None,
        };
        let region_pos = open("region_pos")?;
        let region_mlp = open("region_mlp")?;
        let region_oci = match variant {
            Variant::Lite => Some(open("region_oci")?),
            Variant::Full => None,
        };
        let embed = open("embed_tokens")?;
        let decoder = open("decoder")?;
        let half = cfg.dtype == "float16";
        let placement = decoder.placement().clone();
        Ok(Self {
            half,
            dir: dir.to_path_buf(),
            cfg,
            variant,
            tokenizer,
            sessions: Sessions {
                vision,
                projector,
                region_pos,
                region_mlp,
                region_oci,
                embed,
                decoder,
            },
            placement,
            warnings,
            cache: Cache::new(256, 64),
            quantization: manifest.quantization.clone(),
        })
    }

    /// The weight quantization of an opt-in int8 / int4 export (None: full precision).
    pub fn quantization(&self) -> Option<&Quantization> {
        self.quantization.as_ref()
    }

    /// The constants read from the manifest.
    pub fn config(&self) -> &ReferConfig {
        &self.cfg
    }

    /// `Full` (PixelRefer) or `Lite` (PixelRefer-Lite).
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Where the graphs run (CPU, CUDA, or `server@host:port`).
    pub fn provider(&self) -> Placement {
        self.placement.clone()
    }

    /// Warnings from loading (e.g. CUDA fell back to the CPU).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Forgets cached frame and region embeddings.
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// Number of `(frame, region)` embeddings currently cached.
    pub fn cache_len(&self) -> (usize, usize) {
        self.cache.len()
    }

    fn frames<'r>(&self, req: &'r Request) -> Result<(Vec<&'r RgbImage>, Vec<f64>), ReferError> {
        match &req.media {
            Media::Image(img) => Ok((vec![img], vec![])),
            Media::Video {
                frames,
                timestamps_secs,
            } => {
                if frames.is_empty() {
                    return Err(ReferError::InvalidRequest("the video has no frames".into()));
                }
                if frames.len() != timestamps_secs.len() {
                    return Err(ReferError::InvalidRequest(format!(
                        "{} frames but {} timestamps",
                        frames.len(),
                        timestamps_secs.len()
                    )));
                }
                Ok((frames.iter().collect(), timestamps_secs.clone()))
            }
        }
    }

    /// Checks a request: objects, tags, mask sizes and contents, frame sizes.
    pub fn validate(&self, req: &Request) -> Result<(), ReferError> {
        let (frames, _) = self.frames(req)?;
        for (i, f) in frames.iter().enumerate() {
            let (w, h) = (f.width() as usize, f.height() as usize);
            if w < 2 || h < 2 || w.max(h) > 200 * w.min(h) {
                return Err(ReferError::InvalidRequest(format!(
                    "frame {i} is {w}x{h}: sides must be at least 2 pixels and the aspect ratio below 200"
                )));
            }
        }
        if req.objects.is_empty() {
            return Err(ReferError::InvalidRequest(
                "a question needs at least one object with a mask".into(),
            ));
        }
        let mut tags: Vec<u32> = req.objects.iter().map(|o| o.tag_id).collect();
        tags.sort_unstable();
        if tags.windows(2).any(|w| w[0] == w[1]) {
            return Err(ReferError::InvalidRequest(
                "two objects share the same tag".into(),
            ));
        }
        for o in &req.objects {
            if o.masks.is_empty() {
                return Err(ReferError::InvalidRequest(format!(
                    "<object{}> has no mask",
                    o.tag_id
                )));
            }
            for m in &o.masks {
                let Some(f) = frames.get(m.frame) else {
                    return Err(ReferError::InvalidRequest(format!(
                        "the mask of <object{}> is on frame {} but the media has {} frames",
                        o.tag_id,
                        m.frame,
                        frames.len()
                    )));
                };
                if m.mask.width() != f.width() || m.mask.height() != f.height() {
                    return Err(ReferError::MaskSize {
                        tag_id: o.tag_id,
                        frame: m.frame,
                        mask_w: m.mask.width(),
                        mask_h: m.mask.height(),
                        frame_w: f.width(),
                        frame_h: f.height(),
                    });
                }
                if m.mask.is_empty() {
                    return Err(ReferError::EmptyMask {
                        tag_id: o.tag_id,
                        frame: m.frame,
                    });
                }
            }
        }
        let video = matches!(req.media, Media::Video { .. });
        for t in req
            .history
            .iter()
            .map(|t| t.question.as_str())
            .chain([req.question.as_str()])
        {
            prompt::normalize_question(t, &tags, video)?;
        }
        Ok(())
    }

    /// The masks the model uses, in order: PixelRefer takes one mask per object (the first one
    /// listed; `onnx/PIXELREFER_NOTES.md` §8), Lite all of them.
    fn mask_list<'r>(&self, req: &'r Request) -> Vec<(usize, &'r super::FrameMask)> {
        req.objects
            .iter()
            .enumerate()
            .flat_map(|(oi, o)| {
                let n = if self.variant == Variant::Full {
                    1
                } else {
                    o.masks.len()
                };
                o.masks.iter().take(n).map(move |m| (oi, m))
            })
            .collect()
    }

    /// Host preprocessing of a request (no graph runs): frame patches (PixelRefer) and SAOT
    /// crops, grids and Lite context images.
    pub fn prepare(&self, req: &Request) -> Result<Prepared, ReferError> {
        self.prepare_inner(req, &CancelToken::new())
    }

    fn prepare_inner(&self, req: &Request, cancel: &CancelToken) -> Result<Prepared, ReferError> {
        let check = || {
            if cancel.is_cancelled() {
                Err(ReferError::Cancelled)
            } else {
                Ok(())
            }
        };
        check()?;
        self.validate(req)?;
        let (frames, _) = self.frames(req)?;
        let cfg = &self.cfg;
        let mut out_frames = Vec::new();
        if self.variant == Variant::Full {
            let (d, n) = match req.media {
                Media::Image(_) => (cfg.image_downsampling_image, 1),
                Media::Video { .. } => (cfg.image_downsampling_video, frames.len()),
            };
            for f in &frames {
                check()?;
                out_frames.push(preprocess(f, cfg, d, n).1);
            }
        }
        let list = self.mask_list(req);
        let n_masks = list.len();
        let frame_hashes: Vec<u64> = frames
            .iter()
            .map(|f| hash_bytes(rgb_pixels(f), 0))
            .collect();
        // Lite: 336/224 images cached per frame index, the local one from the first mask on
        // that frame (pixelreferlite/mm_utils.py:150-158, reproduced).
        let mut lite_frame: std::collections::HashMap<usize, (RgbImage, RgbImage, u64)> =
            std::collections::HashMap::new();
        let mut masks = Vec::with_capacity(n_masks);
        for (oi, fm) in list {
            check()?;
            let frame = frames[fm.frame];
            let (h, w) = (frame.height() as usize, frame.width() as usize);
            let bits = fm.mask.data();
            let tag_id = req.objects[oi].tag_id;
            let g = saot::geometry(self.variant, bits, h, w, cfg).ok_or_else(|| {
                ReferError::InvalidRequest(format!(
                    "the mask of <object{tag_id}> on frame {} gives an empty crop box",
                    fm.frame
                ))
            })?;
            let crop = saot::crop(self.variant, frame, bits, &g, cfg);
            let mask_hash = hash_bytes(bits, 1);
            let (global_image, local_image, local_key) = if self.variant == Variant::Lite {
                let (gs, ls) = (
                    cfg.lite_global_size.unwrap_or(336),
                    cfg.lite_local_size.unwrap_or(224),
                );
                let entry = lite_frame.entry(fm.frame).or_insert_with(|| {
                    (
                        cv2_area_u8(frame, gs, gs),
                        cv2_area_u8(&crop.raw_crop, ls, ls),
                        mask_hash,
                    )
                });
                (Some(entry.0.clone()), Some(entry.1.clone()), entry.2)
            } else {
                (None, None, 0)
            };
            let key = hash_bytes(
                &[
                    frame_hashes[fm.frame].to_le_bytes(),
                    mask_hash.to_le_bytes(),
                    (n_masks as u64).to_le_bytes(),
                    local_key.to_le_bytes(),
                ]
                .concat(),
                2,
            );
            masks.push(PreparedMask {
                object: oi,
                frame: fm.frame,
                frame_h: h,
                frame_w: w,
                saot: crop,
                global_image,
                local_image,
                key,
            });
        }
        Ok(Prepared {
            frames: out_frames,
            masks,
        })
    }

    /// Runs the vision encoder on patches (RoPE tables built here). Returns `[N, C_vis]`.
    pub fn vision_features(
        &mut self,
        patches: &Patches,
        cancel: &CancelToken,
    ) -> Result<Vec<f32>, ReferError> {
        let n = (patches.grid_h * patches.grid_w) as i64;
        let hd = self.cfg.vision_head_dim;
        let (cos, sin) = vision_rope(
            patches.grid_h,
            patches.grid_w,
            patches.d,
            hd,
            self.cfg.vision_rope_theta,
        );
        let dim = (patches.data.len() as i64) / n.max(1);
        let out = run_graph(
            &self.sessions.vision,
            "vision_encoder",
            vec![
                (
                    "pixel_patches".into(),
                    tensor_float(vec![n, dim], patches.data.clone(), self.half),
                ),
                (
                    "rope_cos".into(),
                    tensor_float(vec![n, hd as i64], cos, self.half),
                ),
                (
                    "rope_sin".into(),
                    tensor_float(vec![n, hd as i64], sin, self.half),
                ),
            ],
            &["vision_features"],
            cancel,
        )?;
        let (_, data) = extract(&out[0], "vision_encoder")?;
        if data.len() != n as usize * self.cfg.vision_hidden_size {
            return Err(ReferError::Output {
                graph: "vision_encoder".into(),
                reason: format!("{} values for {n} patches", data.len()),
            });
        }
        Ok(data)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_simple(
        &mut self,
        which: &str,
        input: &str,
        output: &str,
        shape: Vec<i64>,
        data: Vec<f32>,
        cancel: &CancelToken,
    ) -> Result<Vec<f32>, ReferError> {
        let session = match which {
            "projector" => self.sessions.projector.as_ref(),
            "region_mlp" => Some(&self.sessions.region_mlp),
            _ => None,
        }
        .ok_or_else(|| ReferError::Output {
            graph: which.into(),
            reason: "this model has no such graph".into(),
        })?;
        let out = run_graph(
            session,
            which,
            vec![(input.into(), tensor_float(shape, data, self.half))],
            &[output],
            cancel,
        )?;
        Ok(extract(&out[0], which)?.1)
    }

    /// Global tokens of one image/frame (PixelRefer): encoder, d×d merge, projector.
    pub fn encode_frame(
        &mut self,
        patches: &Patches,
        cancel: &CancelToken,
    ) -> Result<FrameTrace, ReferError> {
        let features = self.vision_features(patches, cancel)?;
        let c = self.cfg.vision_hidden_size;
        let merged = merge_tokens(&features, c, patches.d);
        let n = (merged.len() / c) as i64;
        let projected = self.run_simple(
            "projector",
            "vision_features",
            "projected",
            vec![n, c as i64],
            merged,
            cancel,
        )?;
        Ok(FrameTrace {
            features,
            projected,
        })
    }

    /// Object tokens of one prepared mask (SAOT, and OCI for Lite), with intermediates.
    pub fn encode_mask(
        &mut self,
        pm: &PreparedMask,
        n_masks: usize,
        cancel: &CancelToken,
    ) -> Result<MaskTrace, ReferError> {
        let cfg = self.cfg.clone();
        let c = cfg.vision_hidden_size;
        let (_, patches) = preprocess(&pm.saot.crop, &cfg, 1, n_masks);
        let feats = self.vision_features(&patches, cancel)?;
        let (gh, gw) = (patches.grid_h, patches.grid_w);
        let pos = saot::region_position(gh, gw, pm.saot.geometry.bbox, pm.frame_h, pm.frame_w);
        let cells = (gh * gw) as i64;
        let out = run_graph(
            &self.sessions.region_pos,
            "region_pos",
            vec![
                (
                    "features".into(),
                    tensor_float(vec![cells, c as i64], feats.clone(), self.half),
                ),
                (
                    "positions".into(),
                    tensor_float(vec![cells, 2], pos, self.half),
                ),
            ],
            &["features_with_pos"],
            cancel,
        )?;
        let (_, mut fpos) = extract(&out[0], "region_pos")?;
        let (mh, mw, grid) = &pm.saot.mask_grid;
        if (gh, gw) != (*mh, *mw) {
            fpos = bilinear_features(&fpos, gh, gw, c, *mh, *mw);
        }
        let full = self.variant == Variant::Full;
        let mut selected = saot::gather(&fpos, c, grid, full);
        let n_sel = selected.len() / c;
        if n_sel > cfg.mask_num {
            selected = saot::kmeans(
                &selected,
                c,
                cfg.mask_num,
                cfg.kmeans_iters,
                cfg.kmeans_tol.rtol,
                cfg.kmeans_tol.atol,
            );
        }
        let mut trace = MaskTrace {
            crop_patches: patches.data,
            crop_features: feats,
            feature_grid: (gh, gw),
            features_with_pos: fpos,
            ..MaskTrace::default()
        };
        let to_mlp = if full {
            trace.selected = selected.clone();
            selected
        } else {
            selected.resize(cfg.mask_num * c, 0.0);
            trace.selected = selected.clone();
            let (Some(global), Some(local)) = (&pm.global_image, &pm.local_image) else {
                return Err(ReferError::InvalidRequest(
                    "a Lite mask needs its global and local images".into(),
                ));
            };
            let (_, gp) = preprocess(global, &cfg, 1, n_masks);
            let (_, lp) = preprocess(local, &cfg, 1, n_masks);
            let gf = self.vision_features(&gp, cancel)?;
            let lf = self.vision_features(&lp, cancel)?;
            let (ng, nl) = ((gf.len() / c) as i64, (lf.len() / c) as i64);
            let session = self
                .sessions
                .region_oci
                .as_mut()
                .ok_or_else(|| ReferError::Output {
                    graph: "region_oci".into(),
                    reason: "missing session".into(),
                })?;
            let out = run_graph(
                session,
                "region_oci",
                vec![
                    (
                        "object_tokens".into(),
                        tensor_float(vec![1, cfg.mask_num as i64, c as i64], selected, self.half),
                    ),
                    (
                        "local_features".into(),
                        tensor_float(vec![1, nl, c as i64], lf, self.half),
                    ),
                    (
                        "global_features".into(),
                        tensor_float(vec![1, ng, c as i64], gf, self.half),
                    ),
                ],
                &["fused_tokens"],
                cancel,
            )?;
            let fused = extract(&out[0], "region_oci")?.1;
            trace.oci_tokens = fused.clone();
            fused
        };
        let k = to_mlp.len() / c;
        trace.object_tokens = if k == 0 {
            Vec::new()
        } else {
            self.run_simple(
                "region_mlp",
                "object_features",
                "object_tokens",
                vec![k as i64, c as i64],
                to_mlp,
                cancel,
            )?
        };
        Ok(trace)
    }

    fn user_turn_texts(
        &self,
        req: &Request,
        groups: &[RegionGroup],
        timestamps: &[f64],
    ) -> Result<Vec<(String, String)>, ReferError> {
        let video = matches!(req.media, Media::Video { .. });
        let tags: Vec<u32> = req.objects.iter().map(|o| o.tag_id).collect();
        let mut turns = Vec::new();
        let questions: Vec<&str> = req
            .history
            .iter()
            .map(|t| t.question.as_str())
            .chain([req.question.as_str()])
            .collect();
        for (i, q) in questions.iter().enumerate() {
            let q = prompt::normalize_question(q, &tags, video)?;
            let content = if i == 0 {
                let mut text = prompt::region_question(&q, &tags, video);
                if self.variant == Variant::Lite {
                    // Lite prompts carry no <image>/<video> (pixelreferlite/__init__.py:142-186).
                    text = text
                        .split_once('\n')
                        .map_or(text.clone(), |(_, r)| r.to_string());
                }
                let text =
                    prompt::region_fill(&text, groups, self.variant == Variant::Lite && video)?;
                let modal = match (self.variant, video) {
                    (Variant::Lite, _) => Modal::Text,
                    (Variant::Full, false) => Modal::Image,
                    (Variant::Full, true) => Modal::Video,
                };
                prompt::user_content(&text, modal, timestamps)
            } else {
                prompt::user_content(&q, Modal::Text, &[])
            };
            turns.push(("user".to_string(), content));
            if let Some(t) = req.history.get(i) {
                turns.push(("assistant".to_string(), t.answer.clone()));
            }
        }
        Ok(turns)
    }

    /// Encodes the media and objects (cached) and builds the prompt: ids, and embeddings with
    /// vision and object tokens spliced in.
    pub fn build_prompt(
        &mut self,
        req: &Request,
        prepared: &Prepared,
        cancel: &CancelToken,
    ) -> Result<PromptEmbeds, ReferError> {
        let (_, timestamps) = self.frames(req)?;
        let cfg = self.cfg.clone();
        let c_llm = cfg.hidden_size;
        // Objects.
        let n_masks = prepared.masks.len();
        let mut per_mask = Vec::with_capacity(n_masks);
        for pm in &prepared.masks {
            let key = pm.key ^ hash_bytes(rgb_pixels(&pm.saot.crop), 3);
            let tokens = match self.cache.region(key) {
                Some(t) => t,
                None => {
                    let t = self.encode_mask(pm, n_masks, cancel)?.object_tokens;
                    self.cache.put_region(key, t.clone());
                    t
                }
            };
            per_mask.push(tokens);
        }
        let mut groups: Vec<RegionGroup> = vec![Vec::new(); req.objects.len()];
        let mut object_rows: Vec<f32> = Vec::new();
        // Concatenate per object in request order (masks are already object-major).
        for (pm, toks) in prepared.masks.iter().zip(&per_mask) {
            let ts = match self.variant {
                Variant::Lite => timestamps.get(pm.frame).copied(),
                Variant::Full => None,
            };
            groups[pm.object].push((ts, toks.len() / c_llm));
            object_rows.extend_from_slice(toks);
        }
        // Global tokens (PixelRefer).
        let mut vision_rows: Vec<f32> = Vec::new();
        let mut counts = Vec::new();
        let mut keeps: Vec<Vec<bool>> = Vec::new();
        if self.variant == Variant::Full {
            let mut projected = Vec::new();
            for p in &prepared.frames {
                let key = hash_f32(&p.data, p.d as u64);
                let proj = match self.cache.frame(key) {
                    Some(v) => v,
                    None => {
                        let v = self.encode_frame(p, cancel)?.projected;
                        self.cache.put_frame(key, v.clone());
                        v
                    }
                };
                counts.push(proj.len() / c_llm);
                projected.push(proj);
            }
            let video = matches!(req.media, Media::Video { .. });
            keeps = if video && cfg.use_token_compression {
                let refs: Vec<&[f32]> = prepared.frames.iter().map(|p| p.data.as_slice()).collect();
                let d = prepared.frames.first().map_or(1, |p| p.d);
                video_keep_mask(
                    &refs,
                    d,
                    3 * cfg.patch_size * cfg.patch_size,
                    &cfg.video_prune_dtype,
                    cfg.video_prune_threshold,
                    cfg.video_prune_min_tokens,
                )
            } else {
                counts.iter().map(|&n| vec![true; n]).collect()
            };
            for (proj, keep) in projected.iter().zip(&keeps) {
                for (j, &k) in keep.iter().enumerate() {
                    if k {
                        vision_rows.extend_from_slice(&proj[j * c_llm..(j + 1) * c_llm]);
                    }
                }
            }
        }
        // Prompt text and ids.
        let turns = self.user_turn_texts(req, &groups, &timestamps)?;
        let refs: Vec<(&str, &str)> = turns
            .iter()
            .map(|(r, c)| (r.as_str(), c.as_str()))
            .collect();
        let mut text = prompt::chat_prompt(&refs);
        if self.variant == Variant::Full {
            text = prompt::expand_image_tokens(&text, &counts)?;
        }
        let enc = self
            .tokenizer
            .encode(text.as_str(), false)
            .map_err(|e| ReferError::Tokenize(e.to_string()))?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
        if !keeps.is_empty() {
            // Pruned tokens also lose their <image> placeholder (pixelrefer_arch.py:323-369).
            let flat: Vec<bool> = keeps.concat();
            let mut k = 0;
            let mut ok = true;
            ids.retain(|&id| {
                if id != cfg.image_token_id {
                    return true;
                }
                let keep = flat.get(k).copied().unwrap_or_else(|| {
                    ok = false;
                    true
                });
                k += 1;
                keep
            });
            if !ok || k != flat.len() {
                return Err(ReferError::Output {
                    graph: "tokenizer".into(),
                    reason: format!("{k} <image> tokens for {} vision tokens", flat.len()),
                });
            }
        }
        let needed = ids.len() + 1;
        if needed > cfg.max_position_embeddings {
            return Err(ReferError::ContextTooLong {
                needed,
                limit: cfg.max_position_embeddings,
            });
        }
        let emb_ids: Vec<i64> = ids
            .iter()
            .map(|&i| {
                if i == cfg.image_token_id {
                    cfg.image_token_embed_id
                } else {
                    i
                }
            })
            .collect();
        let mut embeds = self.embed_ids(emb_ids, cancel)?;
        let (mut vi, mut ri) = (0usize, 0usize);
        for (row, &id) in ids.iter().enumerate() {
            let dst = &mut embeds[row * c_llm..(row + 1) * c_llm];
            if id == cfg.image_token_id && self.variant == Variant::Full {
                let src = vision_rows.get(vi * c_llm..(vi + 1) * c_llm);
                dst.copy_from_slice(
                    src.ok_or_else(|| count_err("<image>", vi, &vision_rows, c_llm))?,
                );
                vi += 1;
            } else if id == cfg.region_token_id {
                let src = object_rows.get(ri * c_llm..(ri + 1) * c_llm);
                dst.copy_from_slice(
                    src.ok_or_else(|| count_err("<REGION>", ri, &object_rows, c_llm))?,
                );
                ri += 1;
            }
        }
        if vi * c_llm != vision_rows.len() || ri * c_llm != object_rows.len() {
            return Err(ReferError::Output {
                graph: "prompt".into(),
                reason: format!(
                    "{vi} <image> and {ri} <REGION> positions for {} vision and {} object tokens",
                    vision_rows.len() / c_llm,
                    object_rows.len() / c_llm
                ),
            });
        }
        Ok(PromptEmbeds { text, ids, embeds })
    }

    /// The embedding of one token (`[1, hidden]`), as the generation loop feeds it back.
    pub fn embed_token(&mut self, id: u32, cancel: &CancelToken) -> Result<Vec<f32>, ReferError> {
        self.embed_ids(vec![i64::from(id)], cancel)
    }

    fn embed_ids(&mut self, ids: Vec<i64>, cancel: &CancelToken) -> Result<Vec<f32>, ReferError> {
        let n = ids.len();
        let out = run_graph(
            &self.sessions.embed,
            "embed_tokens",
            vec![("input_ids".into(), tensor_i64(vec![1, n as i64], ids))],
            &["inputs_embeds"],
            cancel,
        )?;
        let data = extract(&out[0], "embed_tokens")?.1;
        if data.len() != n * self.cfg.hidden_size {
            return Err(ReferError::Output {
                graph: "embed_tokens".into(),
                reason: format!("{} values for {n} ids", data.len()),
            });
        }
        Ok(data)
    }

    fn empty_cache(&self) -> KvCache {
        let cfg = &self.cfg;
        let shape = vec![1, cfg.num_key_value_heads as i64, 0, cfg.head_dim as i64];
        let values = (0..2 * cfg.num_hidden_layers)
            .map(|_| tensor_float(shape.clone(), Vec::new(), self.half))
            .collect();
        KvCache { values, len: 0 }
    }

    /// Runs the decoder on `embeds` (`[seq, hidden]`) after `past`, returning the last position's
    /// logits and the grown cache.
    pub fn decode(
        &mut self,
        embeds: Vec<f32>,
        past: KvCache,
        cancel: &CancelToken,
    ) -> Result<(Vec<f32>, KvCache), ReferError> {
        let cfg = &self.cfg;
        let seq = embeds.len() / cfg.hidden_size;
        let total = past.len + seq;
        let layers = cfg.num_hidden_layers;
        let mut inputs = vec![
            (
                "inputs_embeds".to_string(),
                tensor_float(
                    vec![1, seq as i64, cfg.hidden_size as i64],
                    embeds,
                    self.half,
                ),
            ),
            (
                "attention_mask".to_string(),
                tensor_i64(vec![1, total as i64], vec![1; total]),
            ),
            (
                "position_ids".to_string(),
                tensor_i64(
                    vec![1, seq as i64],
                    (past.len as i64..total as i64).collect(),
                ),
            ),
        ];
        let mut names = vec!["logits".to_string()];
        for (i, v) in past.values.into_iter().enumerate() {
            let kind = if i % 2 == 0 { "key" } else { "value" };
            inputs.push((format!("past_key_values.{}.{kind}", i / 2), v));
            names.push(format!("present.{}.{kind}", i / 2));
        }
        debug_assert_eq!(names.len(), 1 + 2 * layers);
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let vocab = cfg.vocab_size;
        let mut out = run_graph(
            &self.sessions.decoder,
            "decoder",
            inputs,
            &name_refs,
            cancel,
        )?;
        let logits = extract(&out[0], "decoder")?.1;
        if logits.len() != vocab {
            return Err(ReferError::Output {
                graph: "decoder".into(),
                reason: format!("{} logits, vocabulary has {vocab}", logits.len()),
            });
        }
        let values = out.split_off(1);
        Ok((logits, KvCache { values, len: total }))
    }

    /// Prefill: the whole prompt through the decoder from an empty cache.
    pub fn prefill(
        &mut self,
        embeds: Vec<f32>,
        cancel: &CancelToken,
    ) -> Result<(Vec<f32>, KvCache), ReferError> {
        let past = self.empty_cache();
        self.decode(embeds, past, cancel)
    }

    /// Answers a question (see [`Request`]); text pieces stream to `on_token` as they are
    /// decoded. Multi-turn: the whole conversation is re-encoded each turn (as upstream), but
    /// frame and region embeddings come from the cache.
    pub fn ask(
        &mut self,
        req: &Request,
        on_token: &mut dyn FnMut(&str),
        cancel: &CancelToken,
    ) -> Result<Answer, ReferError> {
        req.options.validate()?;
        let t0 = Instant::now();
        let prepared = self.prepare_inner(req, cancel)?;
        let prep_secs = t0.elapsed().as_secs_f64();
        let mut answer = self.ask_prepared(req, &prepared, on_token, cancel)?;
        // Host preprocessing counts towards encoding and the time to first token.
        answer.timings.encode_secs += prep_secs;
        answer.timings.time_to_first_token_secs += prep_secs;
        answer.timings.total_secs += prep_secs;
        Ok(answer)
    }

    /// [`ask`](Self::ask) streaming text pieces into a bounded channel (a job forwards them to
    /// the UI). If the receiver is gone the request is cancelled.
    pub fn ask_streaming(
        &mut self,
        req: &Request,
        tx: &crossbeam_channel::Sender<String>,
        cancel: &CancelToken,
    ) -> Result<Answer, ReferError> {
        let stop = cancel.clone();
        self.ask(
            req,
            &mut |piece| {
                if tx.send(piece.to_string()).is_err() {
                    stop.cancel();
                }
            },
            cancel,
        )
    }

    /// [`ask`](Self::ask) on host inputs already prepared with [`prepare`](Self::prepare).
    pub fn ask_prepared(
        &mut self,
        req: &Request,
        prepared: &Prepared,
        on_token: &mut dyn FnMut(&str),
        cancel: &CancelToken,
    ) -> Result<Answer, ReferError> {
        req.options.validate()?;
        let start = Instant::now();
        let prompt = self.build_prompt(req, prepared, cancel)?;
        let encode_secs = start.elapsed().as_secs_f64();
        let prompt_tokens = prompt.ids.len();
        let t_prefill = Instant::now();
        let (logits, cache) = self.prefill(prompt.embeds, cancel)?;
        let prefill_secs = t_prefill.elapsed().as_secs_f64();
        let out = self.generate(logits, cache, &req.options, on_token, cancel)?;
        let total_secs = start.elapsed().as_secs_f64();
        let n = out.ids.len();
        let decode_secs = out.decode_secs;
        let text = self
            .tokenizer
            .decode(&out.ids, true)
            .map_err(|e| ReferError::Tokenize(e.to_string()))?
            .trim()
            .to_string();
        Ok(Answer {
            text,
            token_ids: out.ids,
            prompt_tokens,
            generated_tokens: n,
            stop: out.stop,
            timings: Timings {
                encode_secs,
                prefill_secs,
                time_to_first_token_secs: encode_secs + prefill_secs,
                decode_secs,
                total_secs,
                tokens_per_sec: if decode_secs > 0.0 && n > 1 {
                    (n - 1) as f64 / decode_secs
                } else {
                    0.0
                },
            },
        })
    }

    /// The generation loop after prefill: logits processor, repetition penalty on generated ids,
    /// stop tokens, token budget, context limit, streaming and cancellation between tokens.
    fn generate(
        &mut self,
        first_logits: Vec<f32>,
        mut cache: KvCache,
        options: &GenerationOptions,
        on_token: &mut dyn FnMut(&str),
        cancel: &CancelToken,
    ) -> Result<Generated, ReferError> {
        let t0 = Instant::now();
        let max_new = options.max_new_tokens.unwrap_or(self.cfg.max_new_tokens);
        let penalty = options
            .repetition_penalty
            .unwrap_or(self.cfg.repetition_penalty);
        let eos: Vec<u32> = self.cfg.eos_token_ids.iter().map(|&i| i as u32).collect();
        let mut processor = LogitsProcessor::new(options.seed, options.temperature, options.top_p);
        let tokenizer = self.tokenizer.clone();
        let mut stream = TokenOutputStream::new(&tokenizer);
        let mut ids: Vec<u32> = Vec::new();
        let mut logits = first_logits;
        let mut stop = StopReason::MaxTokens;
        while ids.len() < max_new {
            if cancel.is_cancelled() {
                return Err(ReferError::Cancelled);
            }
            apply_repetition_penalty(&mut logits, &ids, penalty);
            let next = processor.sample(&logits)?;
            ids.push(next);
            if eos.contains(&next) {
                stop = StopReason::EndOfText;
                break;
            }
            if let Some(piece) = stream.next_token(next)? {
                on_token(&piece);
            }
            if ids.len() >= max_new {
                break;
            }
            if cache.len + 1 >= self.cfg.max_position_embeddings {
                stop = StopReason::ContextFull;
                break;
            }
            let e = self.embed_ids(vec![i64::from(next)], cancel)?;
            let (l, c) = self.decode(e, cache, cancel)?;
            logits = l;
            cache = c;
        }
        if let Some(rest) = stream.decode_rest()? {
            on_token(&rest);
        }
        Ok(Generated {
            ids,
            stop,
            decode_secs: t0.elapsed().as_secs_f64(),
        })
    }
}

struct Generated {
    ids: Vec<u32>,
    stop: StopReason,
    decode_secs: f64,
}

fn count_err(what: &str, i: usize, rows: &[f32], c: usize) -> ReferError {
    ReferError::Output {
        graph: "prompt".into(),
        reason: format!(
            "more {what} positions ({}) than tokens ({})",
            i + 1,
            rows.len() / c
        ),
    }
}
