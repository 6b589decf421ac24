//! Video mode: `SAM2VideoPredictor` (sam2/sam2_video_predictor.py) with the memory bank of
//! `SAM2Base._prepare_memory_conditioned_features` (sam2/modeling/sam2_base.py), ported from
//! `VideoPredictor` in `onnx/sam2_host_ref.py`.
//!
//! Differences from the spec, none of which changes a result on the reference clip:
//! * objects that are tracked on the same frame share one encoder pass and are batched in the
//!   decoder and memory encoder, and in memory attention when their memory banks have the same
//!   layout (same temporal indices and pointer distances), as many a call as fit
//!   [`TrackerOptions::batch_budget_bytes`] (memory attention exported as MatMul-Softmax-MatMul
//!   holds `F² × F²` and `F² × memory` score matrices per object: about 0.5 GiB at F = 64, so one
//!   batch of every object made the peak grow by that much per object); objects in one memory
//!   attention call share its first self-attention, which reads only the frame;
//! * only the last encoded frame's features are kept (and the next frame's, being encoded, with
//!   [`TrackerOptions::prefetch_next_frame`]); the memory features of non-conditioning
//!   frames are kept in bfloat16 (exactly the values the official code stores) within a byte
//!   budget ([`TrackerOptions::memory_budget_bytes`]); past it, the frames farthest from the
//!   current one lose their memory features and low-res logits first (object pointers and scores,
//!   a few hundred bytes a frame, are always kept). A frame that lost its memory features is
//!   skipped by later memory banks, and a click on it runs without the previous-mask input;
//! * a one-frame video divides pointer distances by 1 instead of 0 (the official code would
//!   produce NaN when correcting the only frame).

use super::image::preprocess_video_frame;
use super::{
    CancelToken, EncoderOutput, LowResLogits, Prompts, Sam2Config, Sam2Model, SegmentError,
    choose_mask, ops,
};
use crate::mask::Mask;
use image::RgbImage;
use std::collections::HashMap;
use std::sync::Arc;

/// Frames of a video, decoded on demand.
pub trait FrameSource {
    /// Number of frames.
    fn frame_count(&self) -> usize;
    /// Frame `index` as 8-bit RGB.
    fn frame(&mut self, index: usize) -> Result<RgbImage, SegmentError>;
}

impl FrameSource for Vec<RgbImage> {
    fn frame_count(&self) -> usize {
        self.len()
    }
    fn frame(&mut self, index: usize) -> Result<RgbImage, SegmentError> {
        self.get(index).cloned().ok_or(SegmentError::FrameIndex {
            index,
            count: self.len(),
        })
    }
}

/// Propagation direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Increasing frame index.
    Forward,
    /// Decreasing frame index.
    Backward,
}

/// Video predictor settings that are not properties of the model. `None` takes the manifest's
/// value (the official `build_sam2_video_predictor` defaults).
#[derive(Debug, Clone)]
pub struct TrackerOptions {
    /// `fill_hole_area` (hole filling of the low-res logits; 8 in the official builder).
    pub fill_hole_area: Option<usize>,
    /// `add_all_frames_to_correct_as_cond`: a click on an already tracked frame makes it a
    /// conditioning frame, so the correction sticks when propagating again.
    pub add_all_frames_to_correct_as_cond: Option<bool>,
    /// `non_overlap_masks`: one object per pixel in the returned masks.
    pub non_overlap_masks: Option<bool>,
    /// Byte budget of the stored per-frame memories: memory features, low-res logits and object
    /// pointers of every object (see the module docs).
    pub memory_budget_bytes: usize,
    /// Byte budget of one graph call's working memory. Objects tracked on the same frame are
    /// batched in the decoder, memory encoder and memory attention only as far as their estimated
    /// activations fit (always at least one object a call), so the peak does not grow with the
    /// number of objects; see [`VideoTracker::batch_size`].
    pub batch_budget_bytes: usize,
    /// Record which frames each memory bank used (tests, `models verify`).
    pub trace_banks: bool,
    /// While propagating, run the next frame's encoder pass on a thread of its own while the
    /// current frame's objects go through memory attention, the decoder and the memory encoder
    /// (two frames' features and both graphs' activations are alive at a time). Off by default:
    /// on 2 cores both passes already use both cores, and `benches/sam2.rs` measured no speed-up
    /// (SAM 2.1-tiny 1.03×, EdgeTAM 0.98×) for 49–106 MiB more peak memory.
    pub prefetch_next_frame: bool,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        Self {
            fill_hole_area: None,
            add_all_frames_to_correct_as_cond: None,
            non_overlap_masks: None,
            memory_budget_bytes: 1 << 30,
            // two EdgeTAM objects at a full memory bank (2 x 143 MiB by `per_object_bytes`), so
            // they share memory attention's first self-attention; one SAM 2.1 object at a full bank
            batch_budget_bytes: 320 << 20,
            trace_banks: false,
            prefetch_next_frame: false,
        }
    }
}

/// One object's result on one frame.
#[derive(Debug, Clone)]
pub struct ObjectFrame {
    /// The object id.
    pub obj_id: u32,
    /// The frame index.
    pub frame: usize,
    /// The mask at video size (empty when the object is not visible).
    pub mask: Mask,
    /// Object score logit; `> 0` means visible.
    pub score: f32,
    /// Whether the object is visible on this frame (score > 0).
    pub visible: bool,
    /// Whether this frame is one of the object's conditioning (prompted) frames.
    pub conditioning: bool,
    /// The stored low-res logits (hole-filled; `no_obj_score` everywhere when not visible).
    pub low_res_logits: Arc<LowResLogits>,
}

/// Progress of a propagation, reported once per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropagationProgress {
    /// The frame just finished.
    pub frame: usize,
    /// Frames finished in this pass.
    pub done: usize,
    /// Frames in this pass.
    pub total: usize,
    /// Direction of this pass.
    pub direction: Direction,
}

/// Which memories a memory-attention call used (for tests): spatial `(frame, t_pos)` and
/// pointers `(frame, signed temporal distance)`, in concatenation order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BankTrace {
    /// Spatial memories.
    pub spatial: Vec<(usize, usize)>,
    /// Object pointers.
    pub pointers: Vec<(usize, i64)>,
}

/// Compact per-frame, per-object state (`compact_current_out` of the official code).
#[derive(Debug, Clone)]
struct FrameOut {
    /// `[L, L]` low-res logits (hole-filled); `None` once evicted.
    pred_masks: Option<Arc<LowResLogits>>,
    /// `[C]` object pointer.
    obj_ptr: Vec<f32>,
    /// Object score logit.
    score: f32,
    /// `[Cm, T]` bfloat16 bits of the memory features (`T = F²` for SAM 2's `[Cm, F, F]` grid,
    /// EdgeTAM's perceiver latents otherwise); `None` until encoded or once evicted.
    maskmem: Option<Vec<u16>>,
}

impl FrameOut {
    /// Bytes that [`VideoTracker::enforce_budget`] can free.
    fn evictable_bytes(&self) -> usize {
        self.pred_masks.as_ref().map_or(0, |p| p.data.len() * 4)
            + self.maskmem.as_ref().map_or(0, |m| m.len() * 2)
    }

    /// All bytes held, the object pointer included.
    fn bytes(&self) -> usize {
        self.evictable_bytes() + self.obj_ptr.len() * 4 + std::mem::size_of::<Self>()
    }
}

/// A map that keeps insertion order, and keeps a key's position when its value is replaced
/// (like a Python dict: the order of conditioning frames decides the bank's concatenation order).
#[derive(Debug, Clone, Default)]
struct OrderedMap {
    items: Vec<(usize, FrameOut)>,
}

impl OrderedMap {
    fn get(&self, k: usize) -> Option<&FrameOut> {
        self.items.iter().find(|(t, _)| *t == k).map(|(_, v)| v)
    }
    fn contains(&self, k: usize) -> bool {
        self.items.iter().any(|(t, _)| *t == k)
    }
    fn insert(&mut self, k: usize, v: FrameOut) {
        match self.items.iter_mut().find(|(t, _)| *t == k) {
            Some(slot) => slot.1 = v,
            None => self.items.push((k, v)),
        }
    }
    fn keys(&self) -> impl Iterator<Item = usize> + '_ {
        self.items.iter().map(|(t, _)| *t)
    }
    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[derive(Debug, Clone)]
struct ObjState {
    id: u32,
    /// frame -> (coords in 1024-space `[N*2]`, labels `[N]`)
    points: HashMap<usize, (Vec<f32>, Vec<i32>)>,
    cond: OrderedMap,
    non_cond: HashMap<usize, FrameOut>,
    temp_cond: OrderedMap,
    temp_non_cond: OrderedMap,
    /// frame -> whether the pass that produced it was reverse
    tracked: HashMap<usize, bool>,
}

impl ObjState {
    fn new(id: u32) -> Self {
        Self {
            id,
            points: HashMap::new(),
            cond: OrderedMap::default(),
            non_cond: HashMap::new(),
            temp_cond: OrderedMap::default(),
            temp_non_cond: OrderedMap::default(),
            tracked: HashMap::new(),
        }
    }

    /// `cond.get(t) or non_cond.get(t)`
    fn stored(&self, t: usize) -> Option<&FrameOut> {
        self.cond.get(t).or_else(|| self.non_cond.get(&t))
    }
}

/// The memory bank chosen for one (frame, object): spatial `(frame, t_pos, out)` and pointers
/// `(frame, distance, out)`.
type Bank<'a> = (
    Vec<(usize, usize, &'a FrameOut)>,
    Vec<(usize, i64, &'a FrameOut)>,
);

/// One object's consolidated output on a frame: (id, (low-res logits, score) if any,
/// conditioning frame).
type Slot = (u32, Option<(Arc<LowResLogits>, f32)>, bool);

/// The graphs that run once per batch of objects (the image encoder runs once per frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchGraph {
    /// `prompt_decoder`.
    Decoder,
    /// `memory_encoder`.
    MemoryEncoder,
    /// `memory_attention`.
    MemoryAttention,
}

/// Binary masks (`v > threshold`, all zeros when not visible) of several objects' logit planes of
/// `len` pixels, given one `(plane, visible)` at a time; a plane may be `None` only when it is
/// not visible and `non_overlap` is off. With `non_overlap`, the result equals
/// [`ops::apply_non_overlapping_constraints`] followed by the threshold, but only the running
/// per-pixel maximum and its owner are kept instead of every plane: every object but the first
/// maximum gets `min(v, -10)`, which is above the threshold only where `v` is and -10 is too.
fn binary_masks(
    planes: impl Iterator<Item = (Option<Vec<f32>>, bool)>,
    len: usize,
    threshold: f32,
    non_overlap: bool,
) -> Vec<Vec<u8>> {
    let loser_keeps = -10.0 > threshold;
    let mut best_value: Vec<f32> = Vec::new();
    let mut best_owner: Vec<u32> = Vec::new();
    let mut masks = Vec::new();
    let mut visible_flags = Vec::new();
    for (k, (plane, visible)) in planes.enumerate() {
        let plane = plane.unwrap_or_default();
        if non_overlap {
            if k == 0 {
                best_value.clone_from(&plane);
                best_value.resize(len, f32::NEG_INFINITY);
                best_owner = vec![0; len];
            } else {
                let owner = u32::try_from(k).unwrap_or(u32::MAX);
                for ((bv, bo), &v) in best_value.iter_mut().zip(&mut best_owner).zip(&plane) {
                    // first maximum, as np.argmax (NaN never wins)
                    if v > *bv {
                        *bv = v;
                        *bo = owner;
                    }
                }
            }
        }
        // 2 marks NaN while it is not known whether the pixel's owner is this object (a loser's
        // `min(NaN, -10)` is -10)
        let nan = if non_overlap && loser_keeps { 2 } else { 0 };
        let data: Vec<u8> = if visible && plane.len() == len {
            plane
                .iter()
                .map(|&v| {
                    if v.is_nan() {
                        nan
                    } else {
                        u8::from(v > threshold)
                    }
                })
                .collect()
        } else {
            vec![0; len]
        };
        masks.push(data);
        visible_flags.push(visible);
    }
    if non_overlap {
        for (k, data) in masks.iter_mut().enumerate() {
            if !visible_flags[k] {
                continue;
            }
            let owner = u32::try_from(k).unwrap_or(u32::MAX);
            for (d, &bo) in data.iter_mut().zip(&best_owner) {
                let loser = bo != owner;
                *d = match (*d, loser) {
                    (2, loser) => u8::from(loser),
                    (_, true) if !loser_keeps => 0,
                    (d, _) => d,
                };
            }
        }
    }
    masks
}

/// One object's input on one frame: what SAM 2's video predictor takes.
#[derive(Debug, Clone)]
pub enum TrackInput {
    /// Clicks and/or a box (`add_new_points_or_box`).
    Clicks(Prompts),
    /// A mask of the video's size, painted or imported (`add_new_mask`); empty: not there.
    Mask(Mask),
}

/// SAM 2 video tracker: per-object memory banks over one video.
pub struct VideoTracker {
    model: Arc<Sam2Model>,
    c: Sam2Config,
    options: TrackerOptions,
    num_frames: usize,
    width: u32,
    height: u32,
    objs: Vec<ObjState>,
    features: Option<(usize, EncoderOutput)>,
    bank_log: HashMap<(usize, u32), BankTrace>,
    encoder_runs: u64,
}

impl std::fmt::Debug for VideoTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoTracker")
            .field("num_frames", &self.num_frames)
            .field("size", &(self.width, self.height))
            .field("objects", &self.object_ids())
            .finish()
    }
}

fn floor_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b)
}

impl VideoTracker {
    /// A tracker for a video of `num_frames` frames of `width × height` (`init_state`).
    pub fn new(
        model: Arc<Sam2Model>,
        num_frames: usize,
        width: u32,
        height: u32,
        options: TrackerOptions,
    ) -> Result<Self, SegmentError> {
        if num_frames == 0 {
            return Err(SegmentError::Frame("the video has no frames".into()));
        }
        if width == 0 || height == 0 {
            return Err(SegmentError::Frame(format!(
                "the video frames are empty ({width}x{height})"
            )));
        }
        let mut c = model.config().clone();
        if let Some(v) = options.fill_hole_area {
            c.fill_hole_area = v;
        }
        if let Some(v) = options.add_all_frames_to_correct_as_cond {
            c.add_all_frames_to_correct_as_cond = v;
        }
        if let Some(v) = options.non_overlap_masks {
            c.non_overlap_masks = v;
        }
        Ok(Self {
            model,
            c,
            options,
            num_frames,
            width,
            height,
            objs: Vec::new(),
            features: None,
            bank_log: HashMap::new(),
            encoder_runs: 0,
        })
    }

    /// Frames in the video.
    pub fn num_frames(&self) -> usize {
        self.num_frames
    }

    /// Object ids, in the order they were first prompted.
    pub fn object_ids(&self) -> Vec<u32> {
        self.objs.iter().map(|o| o.id).collect()
    }

    /// How many times the image encoder ran.
    pub fn encoder_runs(&self) -> u64 {
        self.encoder_runs
    }

    /// Bytes held by stored per-frame memories (memory features, low-res logits and object
    /// pointers of every object and frame).
    pub fn memory_bytes(&self) -> usize {
        self.objs
            .iter()
            .map(|o| {
                o.non_cond.values().map(FrameOut::bytes).sum::<usize>()
                    + o.cond.items.iter().map(|(_, v)| v.bytes()).sum::<usize>()
                    + o.temp_cond
                        .items
                        .iter()
                        .map(|(_, v)| v.bytes())
                        .sum::<usize>()
                    + o.temp_non_cond
                        .items
                        .iter()
                        .map(|(_, v)| v.bytes())
                        .sum::<usize>()
            })
            .sum()
    }

    /// Object `obj_id`'s pointer on frame `t`: its pending prompt output, else its stored one
    /// (the official consolidation's lookup order). For parity checks.
    pub fn object_pointer(&self, obj_id: u32, t: usize) -> Option<&[f32]> {
        let st = self.objs.iter().find(|o| o.id == obj_id)?;
        st.temp_cond
            .get(t)
            .or_else(|| st.temp_non_cond.get(t))
            .or_else(|| st.stored(t))
            .map(|o| o.obj_ptr.as_slice())
    }

    /// The memory bank used by the last memory-attention call on `(frame, obj_id)` (only with
    /// [`TrackerOptions::trace_banks`]).
    pub fn bank_trace(&self, frame: usize, obj_id: u32) -> Option<&BankTrace> {
        self.bank_log.get(&(frame, obj_id))
    }

    /// Forgets the recorded bank traces.
    pub fn clear_bank_traces(&mut self) {
        self.bank_log.clear();
    }

    /// Conditioning (prompted) frames of an object, in the order they were added.
    pub fn conditioning_frames(&self, obj_id: u32) -> Vec<usize> {
        self.objs
            .iter()
            .find(|o| o.id == obj_id)
            .map(|o| o.cond.keys().chain(o.temp_cond.keys()).collect())
            .unwrap_or_default()
    }

    fn check_index(&self, t: usize) -> Result<(), SegmentError> {
        if t >= self.num_frames {
            return Err(SegmentError::FrameIndex {
                index: t,
                count: self.num_frames,
            });
        }
        Ok(())
    }

    /// Encoder outputs of frame `t`; only the last encoded frame is kept (the official code
    /// does the same).
    fn ensure_features(
        &mut self,
        frames: &mut dyn FrameSource,
        t: usize,
        cancel: Option<&CancelToken>,
    ) -> Result<(), SegmentError> {
        if self.features_of(t) {
            return Ok(());
        }
        self.features = None;
        let img = self.load_frame(frames, t)?;
        let out = encode_frame(&self.model, &self.c, &img, cancel)?;
        self.set_features(t, out);
        Ok(())
    }

    fn set_features(&mut self, t: usize, out: EncoderOutput) {
        self.encoder_runs += 1;
        self.features = Some((t, out));
    }

    /// Frame `t` of `frames`, checked against the video's size.
    fn load_frame(&self, frames: &mut dyn FrameSource, t: usize) -> Result<RgbImage, SegmentError> {
        let img = frames.frame(t)?;
        if img.dimensions() != (self.width, self.height) {
            return Err(SegmentError::Frame(format!(
                "frame {t} is {}x{}, the video is {}x{}",
                img.width(),
                img.height(),
                self.width,
                self.height
            )));
        }
        Ok(img)
    }

    /// Starts frame `t`'s encoder pass on a thread of `scope` (the frame is read here, on the
    /// caller's thread, since a frame source is not shared). `None` when `t` needs no features,
    /// has them already or prefetching is off.
    fn prefetch<'scope>(
        &self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        frames: &mut dyn FrameSource,
        t: Option<usize>,
        cancel: Option<&CancelToken>,
    ) -> Result<Option<Prefetched<'scope>>, SegmentError> {
        let Some(t) = t else { return Ok(None) };
        if !self.options.prefetch_next_frame
            || self.objects_to_track(t).is_empty()
            || self.features_of(t)
        {
            return Ok(None);
        }
        let img = self.load_frame(frames, t)?;
        let (model, c, cancel) = (Arc::clone(&self.model), self.c.clone(), cancel.cloned());
        let spawned = std::thread::Builder::new()
            .name("sam2-next-frame".into())
            .spawn_scoped(scope, move || {
                encode_frame(&model, &c, &img, cancel.as_ref())
            });
        match spawned {
            Ok(handle) => Ok(Some((t, handle))),
            Err(e) => {
                // the frame is encoded in turn instead
                log::warn!("could not start the encoder thread of frame {t}: {e}");
                Ok(None)
            }
        }
    }

    /// The objects that propagation runs on frame `t`: those without a conditioning output there.
    fn objects_to_track(&self, t: usize) -> Vec<usize> {
        (0..self.objs.len())
            .filter(|&i| !self.objs[i].cond.contains(t))
            .collect()
    }

    fn features_of(&self, t: usize) -> bool {
        self.features.as_ref().is_some_and(|(ft, _)| *ft == t)
    }

    fn feats(&self) -> Result<&EncoderOutput, SegmentError> {
        self.features
            .as_ref()
            .map(|(_, f)| f)
            .ok_or_else(|| SegmentError::Frame("no frame features".into()))
    }

    /// Estimated working memory (bytes) of one object in one call of `graph`: the activations
    /// ONNX Runtime allocates for it, which grow linearly with the batch. `memory_tokens` is the
    /// memory bank's length for memory attention (spatial frames × tokens per memory, F² for
    /// SAM 2, plus pointer tokens).
    ///
    /// Memory attention dominates in graphs that compute attention as MatMul-Softmax-MatMul: each
    /// layer's self-attention holds an `F² × F²` score matrix and its cross-attention an
    /// `F² × memory_tokens` one, each alive as logits and as softmax (4096 × 4096 × 4 bytes =
    /// 64 MiB per matrix at F = 64). Exports whose memory attention shares the frame row
    /// ([`Sam2Model::shares_frame_row`]) use ONNX Runtime's MultiHeadAttention, which never holds
    /// them: there the estimate is `32 F² C + 4 memory_tokens C` floats, at or above the peak
    /// growth per object measured with ONNX Runtime's arena off (7 memories: EdgeTAM 141 MiB
    /// against 149 estimated, SAM 2.1-tiny 119 MiB against 252; the feed-forward layer's
    /// `F² × 2048` hidden activations are most of it). Older exports may hold score matrices and
    /// keep the first estimate. The memory encoder works on the mask at encoder resolution (`S²`,
    /// a few planes), the decoder on 4 low-res masks and upscaled features. The factors are
    /// conservative: the mask downsampler keeps about four `S²`-sized activations alive, each as a
    /// conv output and its normalised copy.
    fn per_object_bytes(&self, graph: BatchGraph, memory_tokens: usize) -> usize {
        let c = &self.c;
        let q = c.feat_size * c.feat_size;
        let f32s = match graph {
            BatchGraph::MemoryAttention if self.model.shares_frame_row() => {
                32 * q * c.hidden_dim + 4 * memory_tokens * c.hidden_dim
            }
            BatchGraph::MemoryAttention => {
                2 * q * (q + memory_tokens) + 8 * q * c.hidden_dim + memory_tokens * c.mem_dim
            }
            BatchGraph::MemoryEncoder => {
                16 * c.image_size * c.image_size + 4 * q * c.hidden_dim + q * c.mem_dim
            }
            BatchGraph::Decoder => {
                16 * c.low_res_mask_size * c.low_res_mask_size + 8 * q * c.hidden_dim
            }
        };
        f32s.saturating_mul(4)
    }

    /// How many objects one call of `graph` may take: as many as fit
    /// [`TrackerOptions::batch_budget_bytes`] by a conservative per-object estimate of the
    /// graph's activations (for memory attention, given the bank's `memory_tokens`), at least one.
    pub fn batch_size(&self, graph: BatchGraph, memory_tokens: usize) -> usize {
        (self.options.batch_budget_bytes / self.per_object_bytes(graph, memory_tokens).max(1))
            .max(1)
    }

    /// Memory-attention tokens of a bank with `spatial` frames and `pointers` object pointers
    /// (each pointer is split into `C / Cm` tokens of the memory width).
    fn memory_tokens(&self, spatial: usize, pointers: usize) -> usize {
        let c = &self.c;
        let per_ptr = (c.hidden_dim / c.mem_dim.max(1)).max(1);
        spatial * c.memory_tokens_per_frame() + pointers * per_ptr
    }

    // -- memory bank: SAM2Base._prepare_memory_conditioned_features -----------------------------

    /// `select_closest_cond_frames`: (selected, unselected) conditioning frames, in order.
    fn select_closest_cond_frames(&self, t: usize, cond: &OrderedMap) -> (Vec<usize>, Vec<usize>) {
        let mx = self.c.max_cond_frames_in_attn;
        let all: Vec<usize> = cond.keys().collect();
        if mx == -1 || all.len() as i64 <= mx {
            return (all, Vec::new());
        }
        let mut sel = Vec::new();
        if let Some(b) = all.iter().copied().filter(|&s| s < t).max() {
            sel.push(b);
        }
        if let Some(a) = all.iter().copied().filter(|&s| s >= t).min() {
            sel.push(a);
        }
        let mut rest: Vec<usize> = all.iter().copied().filter(|s| !sel.contains(s)).collect();
        rest.sort_by_key(|&s| s.abs_diff(t)); // stable, as Python's sorted
        let room = (mx.max(0) as usize).saturating_sub(sel.len());
        sel.extend(rest.into_iter().take(room));
        let unsel = all.into_iter().filter(|s| !sel.contains(s)).collect();
        (sel, unsel)
    }

    fn memory_bank<'a>(&self, st: &'a ObjState, t: usize, reverse: bool) -> Bank<'a> {
        let c = &self.c;
        let n_mem = c.num_maskmem;
        let (selected, unselected) = self.select_closest_cond_frames(t, &st.cond);
        let unsel_get = |s: usize| {
            if unselected.contains(&s) {
                st.cond.get(s)
            } else {
                None
            }
        };
        let mut spatial: Vec<(usize, usize, &FrameOut)> = selected
            .iter()
            .filter_map(|&s| st.cond.get(s).map(|o| (s, 0usize, o)))
            .filter(|(_, _, o)| o.maskmem.is_some())
            .collect();
        let r = c.memory_temporal_stride_for_eval.max(1);
        let ti = t as i64;
        for t_pos in 1..n_mem {
            let t_rel = (n_mem - t_pos) as i64;
            let prev = if t_rel == 1 {
                if reverse { ti + 1 } else { ti - 1 }
            } else if !reverse {
                floor_div(ti - 2, r) * r - (t_rel - 2) * r
            } else {
                -floor_div(-(ti + 2), r) * r + (t_rel - 2) * r
            };
            let Ok(prev) = usize::try_from(prev) else {
                continue;
            };
            let out = st.non_cond.get(&prev).or_else(|| unsel_get(prev));
            if let Some(o) = out
                && o.maskmem.is_some()
            {
                spatial.push((prev, t_pos, o));
            }
        }
        let mut pointers = Vec::new();
        if c.use_obj_ptrs_in_encoder {
            let max_ptrs = self.num_frames.min(c.max_obj_ptrs_in_encoder);
            for &s in &selected {
                let keep =
                    !c.only_obj_ptrs_in_the_past_for_eval || if reverse { s >= t } else { s <= t };
                if !keep {
                    continue;
                }
                let Some(o) = st.cond.get(s) else { continue };
                let d = if c.use_signed_tpos_enc_to_obj_ptrs {
                    (ti - s as i64) * if reverse { -1 } else { 1 }
                } else {
                    (ti - s as i64).abs()
                };
                pointers.push((s, d, o));
            }
            for t_diff in 1..max_ptrs {
                let s = if reverse {
                    ti + t_diff as i64
                } else {
                    ti - t_diff as i64
                };
                if s < 0 || s >= self.num_frames as i64 {
                    break;
                }
                let s = s as usize;
                if let Some(o) = st.non_cond.get(&s).or_else(|| unsel_get(s)) {
                    pointers.push((s, t_diff as i64, o));
                }
            }
        }
        (spatial, pointers)
    }

    /// Layout of one object's memory bank: (tpos_index, ptr_pos, trace). Objects with equal
    /// layouts can share one memory-attention call.
    fn bank_layout(
        &self,
        st: &ObjState,
        t: usize,
        reverse: bool,
    ) -> (Vec<i64>, Vec<f32>, BankTrace) {
        let (spatial, pointers) = self.memory_bank(st, t, reverse);
        let n_mem = self.c.num_maskmem;
        let tpos: Vec<i64> = spatial
            .iter()
            .map(|(_, tp, _)| (n_mem - tp - 1) as i64)
            .collect();
        // t_diff_max = min(num_frames, max_obj_ptrs_in_encoder) - 1 (1 for a one-frame video)
        let t_diff_max = (self.num_frames.min(self.c.max_obj_ptrs_in_encoder) as i64 - 1).max(1);
        let pos: Vec<f32> = pointers
            .iter()
            .map(|(_, d, _)| *d as f32 / t_diff_max as f32)
            .collect();
        let trace = BankTrace {
            spatial: spatial.iter().map(|(f, tp, _)| (*f, *tp)).collect(),
            pointers: pointers.iter().map(|(f, d, _)| (*f, *d)).collect(),
        };
        (tpos, pos, trace)
    }

    /// Appends one object's memory-attention tensors to `mem` (`[S*Cm*T]`, widened from
    /// bfloat16) and `ptrs` (`[P*C]`), in the order of [`Self::bank_layout`].
    fn bank_tensors(
        &self,
        st: &ObjState,
        t: usize,
        reverse: bool,
        mem: &mut Vec<f32>,
        ptrs: &mut Vec<f32>,
    ) {
        let (spatial, pointers) = self.memory_bank(st, t, reverse);
        for (_, _, o) in &spatial {
            if let Some(m) = &o.maskmem {
                mem.extend(m.iter().map(|&b| f32::from_bits(u32::from(b) << 16)));
            }
        }
        for (_, _, o) in &pointers {
            ptrs.extend_from_slice(&o.obj_ptr);
        }
    }

    /// Memory-conditioned features for the objects `idx` on frame `t`, batched by bank layout
    /// and at most [`Self::batch_size`] objects a call; each call's memory tensors are built
    /// just before it runs. Returns `[len(idx) * C * F * F]` in the order of `idx`.
    fn memory_conditioned(
        &mut self,
        idx: &[usize],
        t: usize,
        reverse: bool,
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<f32>, SegmentError> {
        let c = &self.c;
        let emb = c.hidden_dim * c.feat_size * c.feat_size;
        let mut layouts = Vec::with_capacity(idx.len());
        for &i in idx {
            let (tpos, pos, trace) = self.bank_layout(&self.objs[i], t, reverse);
            if self.options.trace_banks {
                self.bank_log.insert((t, self.objs[i].id), trace);
            }
            layouts.push((tpos, pos));
        }
        let mut out = vec![0f32; idx.len() * emb];
        let mut done = vec![false; idx.len()];
        for a in 0..idx.len() {
            if done[a] {
                continue;
            }
            let (tpos, pos) = &layouts[a];
            let tokens = self.memory_tokens(tpos.len(), pos.len());
            let cap = self.batch_size(BatchGraph::MemoryAttention, tokens);
            let group: Vec<usize> = (a..idx.len())
                .filter(|&b| {
                    !done[b]
                        && layouts[b].0 == *tpos
                        && layouts[b].1.len() == pos.len()
                        && layouts[b]
                            .1
                            .iter()
                            .zip(pos)
                            .all(|(x, y)| x.to_bits() == y.to_bits())
                })
                .take(cap)
                .collect();
            let mut mem = Vec::new();
            let mut ptrs = Vec::new();
            for &g in &group {
                self.bank_tensors(&self.objs[idx[g]], t, reverse, &mut mem, &mut ptrs);
                done[g] = true;
            }
            let pix = &self.feats()?.pix_feat;
            let res = self
                .model
                .attend(pix, group.len(), &mem, tpos, &ptrs, pos, cancel)?;
            for (k, &g) in group.iter().enumerate() {
                out[g * emb..(g + 1) * emb].copy_from_slice(&res[k * emb..(k + 1) * emb]);
            }
        }
        Ok(out)
    }

    /// [`Self::run_batch`] over `idx` in batches that fit the decoder's and memory encoder's
    /// [`Self::batch_size`], so the working memory does not grow with the number of objects.
    #[allow(clippy::too_many_arguments)]
    fn run_single_frame(
        &mut self,
        idx: &[usize],
        t: usize,
        is_init_cond: bool,
        points: Option<(&[f32], &[i32])>,
        reverse: bool,
        run_mem_encoder: bool,
        prev_logits: Option<&[f32]>,
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<FrameOut>, SegmentError> {
        let cap = self
            .batch_size(BatchGraph::Decoder, 0)
            .min(self.batch_size(BatchGraph::MemoryEncoder, 0));
        let mut outs = Vec::with_capacity(idx.len());
        for chunk in idx.chunks(cap) {
            outs.extend(self.run_batch(
                chunk,
                t,
                is_init_cond,
                points,
                reverse,
                run_mem_encoder,
                prev_logits,
                cancel,
            )?);
        }
        Ok(outs)
    }

    /// `track_step` + `_run_single_frame_inference` for the objects `idx` on frame `t` (features
    /// of `t` already computed). `points[k]` are 1024-space prompts of object `idx[k]`.
    #[allow(clippy::too_many_arguments)]
    fn run_batch(
        &mut self,
        idx: &[usize],
        t: usize,
        is_init_cond: bool,
        points: Option<(&[f32], &[i32])>,
        reverse: bool,
        run_mem_encoder: bool,
        prev_logits: Option<&[f32]>,
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<FrameOut>, SegmentError> {
        let b = idx.len();
        let c = self.c.clone();
        let l = c.low_res_mask_size;
        let plane = l * l;
        let pix = if is_init_cond && c.directly_add_no_mem_embed {
            self.feats()?.image_embed.clone()
        } else {
            self.memory_conditioned(idx, t, reverse, cancel)?
        };
        // no prompt: one padding point (the graph appends a second one)
        let (coords, labels, n, num_pts) = match points {
            Some((p, lab)) => {
                let mut cs = Vec::with_capacity(b * p.len());
                let mut ls = Vec::with_capacity(b * lab.len());
                for _ in 0..b {
                    cs.extend_from_slice(p);
                    ls.extend_from_slice(lab);
                }
                (cs, ls, lab.len(), lab.len())
            }
            None => (vec![0f32; 2 * b], vec![-1i32; b], 1, 0),
        };
        let multimask = c.multimask_output_in_sam
            && (is_init_cond || c.multimask_output_for_tracking)
            && (c.multimask_min_pt_num..=c.multimask_max_pt_num).contains(&num_pts);
        let (mask_in, has) = match prev_logits {
            Some(p) => (p.repeat(b), vec![1f32; b]),
            None => (vec![0f32; b * plane], vec![0f32; b]),
        };
        let feats = self.feats()?;
        let dec = self
            .model
            .decode(&pix, feats, &coords, &labels, n, &mask_in, &has, cancel)?;
        let ch = c.hidden_dim;
        let mut outs = Vec::with_capacity(b);
        let mut lows = Vec::with_capacity(b * plane);
        for k in 0..b {
            let low4 = &dec.low_res_masks[k * 4 * plane..(k + 1) * 4 * plane];
            let iou4 = &dec.iou[k * 4..(k + 1) * 4];
            let (m, tok) = choose_mask(&c, low4, iou4, multimask);
            let sc = dec.object_score[k];
            let low: Vec<f32> = if c.pred_obj_scores && (sc <= 0.0 || sc.is_nan()) {
                vec![c.no_obj_score; plane]
            } else {
                low4[m * plane..(m + 1) * plane].to_vec()
            };
            lows.extend_from_slice(&low);
            let ptr = dec.obj_ptr[(k * 4 + tok) * ch..(k * 4 + tok + 1) * ch].to_vec();
            outs.push((low, ptr, sc));
        }
        let mut maskmems: Vec<Option<Vec<u16>>> = vec![None; b];
        if run_mem_encoder {
            let binarize = if c.binarize_mask_from_pts_for_mem_enc && points.is_some() {
                1f32
            } else {
                0f32
            };
            let scores: Vec<f32> = outs.iter().map(|o| o.2).collect();
            let mm = self.model.encode_memory(
                &feats.pix_feat,
                &lows,
                &scores,
                &vec![binarize; b],
                cancel,
            )?;
            let per = mm.len() / b;
            for (k, slot) in maskmems.iter_mut().enumerate() {
                *slot = Some(
                    mm[k * per..(k + 1) * per]
                        .iter()
                        .map(|&v| ops::bf16_bits(v) as u16)
                        .collect(),
                );
            }
        }
        Ok(outs
            .into_iter()
            .zip(maskmems)
            .map(|((mut low, obj_ptr, score), maskmem)| {
                // after the memory encoder, on the stored/returned logits
                if c.fill_hole_area > 0 {
                    ops::fill_holes_in_mask_scores(&mut low, l, l, c.fill_hole_area);
                }
                FrameOut {
                    pred_masks: Some(Arc::new(LowResLogits { size: l, data: low })),
                    obj_ptr,
                    score,
                    maskmem,
                }
            })
            .collect())
    }

    /// Video-size outputs of all objects on frame `t` from their low-res logits
    /// (`_get_orig_video_res_output`). One object's video-size logit plane is alive at a time
    /// (see [`binary_masks`]), so the transient memory does not grow with the number of objects.
    fn video_res(&self, t: usize, outs: Vec<Slot>) -> Vec<ObjectFrame> {
        let c = &self.c;
        let l = c.low_res_mask_size;
        let (w, h) = (self.width as usize, self.height as usize);
        let empty = Arc::new(LowResLogits {
            size: l,
            data: vec![c.no_obj_score; l * l],
        });
        let slots: Vec<(u32, bool, Arc<LowResLogits>, f32)> = outs
            .into_iter()
            .map(|(id, lr, conditioning)| {
                let (lr, score) = lr.unwrap_or((Arc::clone(&empty), c.no_obj_score));
                (id, conditioning, lr, score)
            })
            .collect();
        let non_overlap = c.non_overlap_masks && slots.len() > 1;
        let masks = binary_masks(
            slots.iter().map(|(_, _, lr, score)| {
                let visible = *score > 0.0;
                let plane =
                    (visible || non_overlap).then(|| ops::resize_bilinear(&lr.data, l, l, h, w));
                (plane, visible)
            }),
            w * h,
            c.mask_threshold,
            non_overlap,
        );
        slots
            .into_iter()
            .zip(masks)
            .map(|((id, conditioning, lr, score), data)| {
                let mask = Mask::from_raw(self.width, self.height, data)
                    .unwrap_or_else(|_| Mask::new(self.width, self.height));
                ObjectFrame {
                    obj_id: id,
                    frame: t,
                    mask,
                    score,
                    visible: score > 0.0,
                    conditioning,
                    low_res_logits: lr,
                }
            })
            .collect()
    }

    /// Adds clicks and/or a box for object `obj_id` on frame `t` (`add_new_points_or_box`): a new
    /// object, a new conditioning frame, or a correction of a tracked frame. Returns every
    /// object's result on that frame. Propagate again to spread the change.
    pub fn add_prompts(
        &mut self,
        frames: &mut dyn FrameSource,
        t: usize,
        obj_id: u32,
        prompts: &Prompts,
        clear_old_points: bool,
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<ObjectFrame>, SegmentError> {
        self.check_index(t)?;
        if frames.frame_count() != self.num_frames {
            return Err(SegmentError::Frame(format!(
                "the frame source has {} frames, the tracker {}",
                frames.frame_count(),
                self.num_frames
            )));
        }
        if prompts.bbox.is_some() && !clear_old_points {
            return Err(SegmentError::Prompt(
                "a box replaces earlier clicks on that frame (clear_old_points must be true)"
                    .into(),
            ));
        }
        let (pts, labels) = prompts.to_points(self.width, self.height)?;
        let s = self.c.image_size as f32;
        let (w, h) = (self.width as f32, self.height as f32);
        let mut coords: Vec<f32> = pts
            .iter()
            .flat_map(|[x, y]| [x / w * s, y / h * s])
            .collect();
        let mut labels = labels;
        let i = self.object_index(obj_id);
        let st = &mut self.objs[i];
        if !clear_old_points && let Some((oc, ol)) = st.points.get(&t) {
            let mut c2 = oc.clone();
            c2.extend_from_slice(&coords);
            coords = c2;
            let mut l2 = ol.clone();
            l2.extend_from_slice(&labels);
            labels = l2;
        }
        st.points.insert(t, (coords.clone(), labels.clone()));
        let is_init_cond = !st.tracked.contains_key(&t);
        let reverse = if is_init_cond {
            false
        } else {
            st.tracked.get(&t).copied().unwrap_or(false)
        };
        let is_cond = is_init_cond || self.c.add_all_frames_to_correct_as_cond;
        let clamp = self.c.prev_mask_logits_clamp;
        let prev = {
            let temp = if is_cond {
                &st.temp_cond
            } else {
                &st.temp_non_cond
            };
            temp.get(t).or_else(|| st.stored(t))
        };
        let prev_logits: Option<Vec<f32>> = prev
            .and_then(|p| p.pred_masks.as_ref())
            .map(|p| p.data.iter().map(|v| v.clamp(-clamp, clamp)).collect());
        self.ensure_features(frames, t, cancel)?;
        let mut out = self.run_single_frame(
            &[i],
            t,
            is_init_cond,
            Some((&coords, &labels)),
            reverse,
            false,
            prev_logits.as_deref(),
            cancel,
        )?;
        let Some(out) = out.pop() else {
            return Err(SegmentError::Frame("no output".into()));
        };
        Ok(self.keep_prompt_output(i, t, is_cond, out))
    }

    /// The index of object `obj_id`, added when new (`_obj_id_to_idx`).
    fn object_index(&mut self, obj_id: u32) -> usize {
        match self.objs.iter().position(|o| o.id == obj_id) {
            Some(i) => i,
            None => {
                self.objs.push(ObjState::new(obj_id));
                self.objs.len() - 1
            }
        }
    }

    /// Keeps object `i`'s output of a prompt on frame `t` until the next preflight (as a
    /// conditioning frame when `is_cond`) and returns every object's result on that frame.
    fn keep_prompt_output(
        &mut self,
        i: usize,
        t: usize,
        is_cond: bool,
        out: FrameOut,
    ) -> Vec<ObjectFrame> {
        let st = &mut self.objs[i];
        if is_cond {
            st.temp_cond.insert(t, out);
        } else {
            st.temp_non_cond.insert(t, out);
        }
        self.consolidated(t, is_cond)
    }

    /// Every object's result on frame `t` after a prompt there (missing ones: no_obj_score).
    fn consolidated(&self, t: usize, is_cond: bool) -> Vec<ObjectFrame> {
        let outs = self
            .objs
            .iter()
            .map(|s| {
                let temp = if is_cond {
                    &s.temp_cond
                } else {
                    &s.temp_non_cond
                };
                let o = temp.get(t).or_else(|| s.stored(t));
                let lr = o.and_then(|o| o.pred_masks.clone().map(|p| (p, o.score)));
                (s.id, lr, s.temp_cond.contains(t) || s.cond.contains(t))
            })
            .collect();
        self.video_res(t, outs)
    }

    /// Adds one object's input on frame `t`: clicks and/or a box replace the frame's earlier
    /// clicks ([`Self::add_prompts`]), a mask is the object there ([`Self::add_mask`]).
    pub fn add_input(
        &mut self,
        frames: &mut dyn FrameSource,
        t: usize,
        obj_id: u32,
        input: &TrackInput,
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<ObjectFrame>, SegmentError> {
        match input {
            TrackInput::Clicks(prompts) => {
                self.add_prompts(frames, t, obj_id, prompts, true, cancel)
            }
            TrackInput::Mask(mask) => self.add_mask(frames, t, obj_id, mask, cancel),
        }
    }

    /// Sets object `obj_id`'s mask on frame `t` from a binary mask of the video's size
    /// (`add_new_mask`, e.g. a mask the person painted): it replaces the object's clicks on that
    /// frame and becomes a conditioning frame (or a correction of a tracked one) as a click
    /// would. The mask itself is the frame's output (`_use_mask_as_output`); the decoder only
    /// gives its object pointer. An empty mask says the object is absent there. Returns every
    /// object's result on that frame. Fails with a sentence when the model directory cannot
    /// take mask prompts ([`Sam2Model::mask_prompt`]).
    pub fn add_mask(
        &mut self,
        frames: &mut dyn FrameSource,
        t: usize,
        obj_id: u32,
        mask: &Mask,
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<ObjectFrame>, SegmentError> {
        self.check_index(t)?;
        if (mask.width(), mask.height()) != (self.width, self.height) {
            return Err(SegmentError::Prompt(format!(
                "the mask is {}x{} but the video is {}x{}",
                mask.width(),
                mask.height(),
                self.width,
                self.height
            )));
        }
        let model = Arc::clone(&self.model);
        let weights = model.mask_prompt()?;
        let c = self.c.clone();
        let (s, l) = (c.image_size, c.low_res_mask_size);
        let (w, h) = (self.width as usize, self.height as usize);
        // the mask at the model's square input size: antialiased bilinear, then >= 0.5
        let plane: Vec<f32> = mask.data().iter().map(|&v| f32::from(v != 0)).collect();
        let square: Vec<f32> = if (h, w) == (s, s) {
            plane
        } else {
            ops::resize_antialias_bilinear(&plane, 1, h, w, s, s)
                .into_iter()
                .map(|v| f32::from(v >= 0.5))
                .collect()
        };
        self.ensure_features(frames, t, cancel)?;
        let feats = self.feats()?;
        // out_scale, out_bias of `_use_mask_as_output` (sam2/modeling/sam2_base.py)
        let (scale, bias) = (20f32, -10f32);
        let high: Vec<f32> = square.iter().map(|v| v * scale + bias).collect();
        let mut low = ops::resize_antialias_bilinear(&high, 1, s, s, l, l);
        let ch = c.hidden_dim;
        let mut obj_ptr = if c.use_obj_ptrs_in_encoder {
            let mask_input =
                ops::conv_stride_k(&square, s, weights.kernel, &weights.weight, weights.bias);
            // no points: one padding point (the graph appends a second one), one mask
            let dec = self.model.decode(
                &feats.pix_feat,
                feats,
                &[0.0, 0.0],
                &[-1],
                1,
                &mask_input,
                &[1.0],
                cancel,
            )?;
            // multimask_output=False: the first token's pointer
            dec.obj_ptr[..ch].to_vec()
        } else {
            vec![0f32; ch]
        };
        let appearing = f32::from(square.iter().any(|&v| v > 0.0));
        let score = scale * appearing + bias;
        if c.pred_obj_scores {
            for (p, n) in obj_ptr.iter_mut().zip(&weights.no_obj_ptr) {
                if weights.fixed_no_obj_ptr {
                    *p *= appearing;
                }
                *p += (1.0 - appearing) * n;
            }
        }
        if c.fill_hole_area > 0 {
            ops::fill_holes_in_mask_scores(&mut low, l, l, c.fill_hole_area);
        }
        let out = FrameOut {
            pred_masks: Some(Arc::new(LowResLogits { size: l, data: low })),
            obj_ptr,
            score,
            maskmem: None,
        };
        let i = self.object_index(obj_id);
        let st = &mut self.objs[i];
        st.points.remove(&t);
        let is_cond = !st.tracked.contains_key(&t) || c.add_all_frames_to_correct_as_cond;
        Ok(self.keep_prompt_output(i, t, is_cond, out))
    }

    /// `propagate_in_video_preflight`: encodes the memories of frames that received clicks.
    fn preflight(
        &mut self,
        frames: &mut dyn FrameSource,
        cancel: Option<&CancelToken>,
    ) -> Result<(), SegmentError> {
        if self.objs.is_empty() {
            return Err(SegmentError::NoPrompts);
        }
        let binarize = if self.c.binarize_mask_from_pts_for_mem_enc {
            1f32
        } else {
            0f32
        };
        for i in 0..self.objs.len() {
            for which in [false, true] {
                let items = {
                    let st = &mut self.objs[i];
                    let temp = if which {
                        &mut st.temp_cond
                    } else {
                        &mut st.temp_non_cond
                    };
                    std::mem::take(&mut temp.items)
                };
                for (t, mut out) in items {
                    if out.maskmem.is_none() {
                        let Some(low) = out.pred_masks.clone() else {
                            continue;
                        };
                        self.ensure_features(frames, t, cancel)?;
                        let feats = self.feats()?;
                        let mm = self.model.encode_memory(
                            &feats.pix_feat,
                            &low.data,
                            &[out.score],
                            &[binarize],
                            cancel,
                        )?;
                        out.maskmem = Some(mm.iter().map(|&v| ops::bf16_bits(v) as u16).collect());
                    }
                    let st = &mut self.objs[i];
                    if which {
                        st.cond.insert(t, out);
                    } else {
                        st.non_cond.insert(t, out);
                    }
                }
            }
            let st = &mut self.objs[i];
            if st.cond.is_empty() {
                return Err(SegmentError::Prompt(format!(
                    "object {} has no prompted frame (every object needs a click or a box on some frame)",
                    st.id
                )));
            }
            let conds: Vec<usize> = st.cond.keys().collect();
            for t in conds {
                st.non_cond.remove(&t);
            }
        }
        Ok(())
    }

    /// Drops memory features and logits of non-conditioning frames far from `t` while over the
    /// byte budget, farthest first.
    fn enforce_budget(&mut self, t: usize) {
        let budget = self.options.memory_budget_bytes;
        let mut total = self.memory_bytes();
        if total <= budget {
            return;
        }
        // keep what the next memory banks can use: the recent-frame window around t
        let window =
            (self.c.num_maskmem as i64) * self.c.memory_temporal_stride_for_eval.max(1) + 1;
        let mut victims: Vec<(usize, usize, usize)> = Vec::new(); // (distance, obj index, frame)
        for (i, o) in self.objs.iter().enumerate() {
            for (&f, v) in &o.non_cond {
                let d = f.abs_diff(t);
                if d as i64 > window && v.evictable_bytes() > 0 {
                    victims.push((d, i, f));
                }
            }
        }
        victims.sort_unstable_by(|a, b| b.cmp(a));
        for (_, i, f) in victims {
            if total <= budget {
                break;
            }
            if let Some(v) = self.objs[i].non_cond.get_mut(&f) {
                total -= v.evictable_bytes();
                v.maskmem = None;
                v.pred_masks = None;
            }
        }
    }

    /// Propagates every object from `start` (default: the earliest conditioning frame) in
    /// `direction` through at most `max_frames` frames (`propagate_in_video`). `on_frame` gets
    /// progress and all objects' results after each frame, as soon as it is done. The cancel
    /// token is checked between frames and stops a running graph.
    pub fn propagate(
        &mut self,
        frames: &mut dyn FrameSource,
        start: Option<usize>,
        direction: Direction,
        max_frames: Option<usize>,
        cancel: Option<&CancelToken>,
        on_frame: &mut dyn FnMut(PropagationProgress, Vec<ObjectFrame>),
    ) -> Result<(), SegmentError> {
        if let Some(c) = cancel {
            c.check()?;
        }
        if frames.frame_count() != self.num_frames {
            return Err(SegmentError::Frame(format!(
                "the frame source has {} frames, the tracker {}",
                frames.frame_count(),
                self.num_frames
            )));
        }
        self.preflight(frames, cancel)?;
        let n = self.num_frames;
        let start = match start {
            Some(s) => {
                self.check_index(s)?;
                s
            }
            None => self
                .objs
                .iter()
                .flat_map(|o| o.cond.keys())
                .min()
                .ok_or(SegmentError::NoPrompts)?,
        };
        let max_frames = max_frames.unwrap_or(n);
        let reverse = direction == Direction::Backward;
        let order: Vec<usize> = if reverse {
            let end = start.saturating_sub(max_frames);
            if start > 0 {
                (end..=start).rev().collect()
            } else {
                Vec::new()
            }
        } else {
            let end = (start + max_frames).min(n - 1);
            (start..=end).collect()
        };
        let total = order.len();
        std::thread::scope(|scope| {
            let mut next: Option<Prefetched<'_>> = None;
            for (done, &t) in order.iter().enumerate() {
                if let Some(c) = cancel {
                    c.check()?;
                }
                self.propagate_frame(
                    scope,
                    frames,
                    &mut next,
                    t,
                    order.get(done + 1).copied(),
                    reverse,
                    cancel,
                )?;
                self.report_frame(t, reverse, done, total, direction, on_frame);
            }
            Ok::<(), SegmentError>(())
        })
    }

    /// One frame of [`Self::propagate`]: the objects without a conditioning output on `t` run
    /// on `t`'s features (prefetched in `next` or encoded now), while `t_next`'s encoder pass
    /// starts on a thread of `scope`.
    #[allow(clippy::too_many_arguments)]
    fn propagate_frame<'scope>(
        &mut self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        frames: &mut dyn FrameSource,
        next: &mut Option<Prefetched<'scope>>,
        t: usize,
        t_next: Option<usize>,
        reverse: bool,
        cancel: Option<&CancelToken>,
    ) -> Result<(), SegmentError> {
        let todo = self.objects_to_track(t);
        if todo.is_empty() {
            return Ok(());
        }
        match next.take() {
            Some((ft, handle)) if ft == t => {
                let out = handle.join().map_err(|_| {
                    SegmentError::Frame(format!("the encoder thread of frame {t} panicked"))
                })??;
                self.set_features(t, out);
            }
            _ => self.ensure_features(frames, t, cancel)?,
        }
        *next = self.prefetch(scope, frames, t_next, cancel)?;
        let outs = self.run_single_frame(&todo, t, false, None, reverse, true, None, cancel)?;
        for (&i, out) in todo.iter().zip(outs) {
            self.objs[i].non_cond.insert(t, out);
        }
        Ok(())
    }

    /// Marks frame `t` tracked for every object and hands its video-size masks to `on_frame`.
    fn report_frame(
        &mut self,
        t: usize,
        reverse: bool,
        done: usize,
        total: usize,
        direction: Direction,
        on_frame: &mut dyn FnMut(PropagationProgress, Vec<ObjectFrame>),
    ) {
        let mut res = Vec::with_capacity(self.objs.len());
        for st in &mut self.objs {
            st.tracked.insert(t, reverse);
            let cond = st.cond.contains(t);
            let o = st.stored(t);
            res.push((
                st.id,
                o.and_then(|o| o.pred_masks.clone().map(|p| (p, o.score))),
                cond,
            ));
        }
        let results = self.video_res(t, res);
        self.enforce_budget(t);
        on_frame(
            PropagationProgress {
                frame: t,
                done: done + 1,
                total,
                direction,
            },
            results,
        );
    }
}

/// The image encoder's pass over one video frame (preprocessed as the official video predictor
/// does), keeping `pix_feat` for memory attention.
fn encode_frame(
    model: &Sam2Model,
    c: &Sam2Config,
    img: &RgbImage,
    cancel: Option<&CancelToken>,
) -> Result<EncoderOutput, SegmentError> {
    model.encode_image(&preprocess_video_frame(img, c), true, cancel)
}

/// A frame index and its encoder pass running on a scoped thread.
type Prefetched<'scope> = (
    usize,
    std::thread::ScopedJoinHandle<'scope, Result<EncoderOutput, SegmentError>>,
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The streaming non-overlap constraint equals the spec's all-planes version, ties (first
    /// maximum wins), NaN and thresholds on both sides of -10 included.
    #[test]
    fn binary_masks_match_apply_non_overlapping_constraints() {
        let len = 64;
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            // few distinct values so ties are common
            f32::from((seed >> 24) as u8 % 9) * 4.0 - 16.0
        };
        for objects in 1..5 {
            for threshold in [0.0f32, -12.0] {
                let mut planes: Vec<Vec<f32>> = (0..objects)
                    .map(|_| (0..len).map(|_| next()).collect())
                    .collect();
                planes[0][3] = f32::NAN;
                if objects > 1 {
                    planes[1][5] = f32::NAN;
                }
                let visible: Vec<bool> = (0..objects).map(|k| k != 2).collect();
                let mut expected = planes.clone();
                ops::apply_non_overlapping_constraints(&mut expected);
                let expected: Vec<Vec<u8>> = expected
                    .iter()
                    .zip(&visible)
                    .map(|(p, &v)| p.iter().map(|&x| u8::from(v && x > threshold)).collect())
                    .collect();
                let got = binary_masks(
                    planes
                        .into_iter()
                        .zip(visible.iter().copied())
                        .map(|(p, v)| (Some(p), v)),
                    len,
                    threshold,
                    objects > 1,
                );
                assert_eq!(got, expected, "{objects} objects, threshold {threshold}");
            }
        }
    }
}
