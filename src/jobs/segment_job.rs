//! The SAM 2 click-to-mask worker: one named thread that loads a `sam2` model directory, owns
//! the [`ImagePredictor`] (with its per-frame embedding cache) and answers segmentation
//! requests. The latest request wins: when several are queued only the newest is served.
//! Results come back as [`SegmentMessage`]s over a bounded channel; the UI polls it every frame
//! and is woken through [`Repaint`].

use super::Repaint;
use crate::media::{Frame, MediaSource, SourceKind};
use crate::project::ModelRecord;
use crate::runtime::SessionOptions;
use crate::segment::{CancelToken, FrameKey, ImagePredictor, LowResLogits, Prompts, Sam2Model};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use image::RgbImage;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

/// Embedding cache budget of the worker's predictor.
const CACHE_BUDGET_BYTES: usize = 256 << 20;
/// Capacity of the request and result channels.
const CHANNEL_CAPACITY: usize = 16;
/// Frames on each side of the shown one that the worker encodes ahead while idle.
pub const AHEAD_FRAMES: usize = 2;

/// A request to the worker.
#[derive(Debug, Clone)]
pub enum SegmentRequest {
    /// Encode `image` (item, frame) ahead of time so the first click is fast.
    Preencode {
        /// Item index.
        item: usize,
        /// Frame index.
        frame: u64,
        /// The frame's pixels.
        image: Arc<Frame>,
    },
    /// The media whose frames near the shown one are encoded ahead while the worker is idle
    /// (the worker opens its own copy).
    Media {
        /// The media file or folder.
        path: PathBuf,
        /// True when the folder is annotated as the frames of one video
        /// ([`crate::project::Document::is_frame_sequence`]), false for its separate images.
        frames: bool,
    },
    /// Predict the mask of object `id` on (item, frame) from `prompts`.
    Predict {
        /// Item index.
        item: usize,
        /// Object id.
        id: u32,
        /// Frame index.
        frame: u64,
        /// The frame's pixels.
        image: Arc<Frame>,
        /// The prompts as stored in the document.
        prompts: crate::project::Prompts,
    },
}

/// A predicted mask for one object on one frame.
#[derive(Debug, Clone)]
pub struct SegmentResult {
    /// Item index.
    pub item: usize,
    /// Object id.
    pub id: u32,
    /// Frame index.
    pub frame: u64,
    /// The prompts the mask was predicted from (stale results are dropped by the UI).
    pub prompts: crate::project::Prompts,
    /// The mask at frame size.
    pub mask: crate::mask::Mask,
    /// Predicted IoU of the chosen mask.
    pub iou: f32,
    /// Object score logit.
    pub object_score: f32,
}

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum SegmentMessage {
    /// The model loaded: its record (for `doc.models`), provider name and load warnings.
    Loaded {
        /// What to record in the document.
        record: ModelRecord,
        /// The SAM 2 family member (`sam2`, `edgetam`).
        family: String,
        /// Execution provider in use ("CPU", "CUDA").
        provider: String,
        /// The scheme of an opt-in quantized export (`int8`; None: full precision).
        quantization: Option<String>,
        /// Fallback and other warnings, one sentence each.
        warnings: Vec<String>,
    },
    /// The model could not be loaded (one sentence).
    LoadFailed(String),
    /// A mask is ready.
    Mask(Box<SegmentResult>),
    /// A prediction failed (one sentence).
    Failed(String),
    /// The encoder ran for (item, frame): the shown frame, a neighbour encoded ahead, or the
    /// frame of a prediction that was not cached.
    Encoded {
        /// Item index.
        item: usize,
        /// Frame index.
        frame: u64,
    },
}

/// Handle to the SAM 2 worker thread. Dropping it stops the thread.
pub struct SegmentWorker {
    model: Arc<parking_lot::Mutex<Option<Arc<Sam2Model>>>>,
    requests: Option<Sender<SegmentRequest>>,
    results: Receiver<SegmentMessage>,
    cancel: Option<CancelToken>,
    /// The token of the running ahead-of-time encode, cancelled when a prediction arrives.
    ahead: AheadSlot,
    thread: Option<std::thread::JoinHandle<()>>,
}

type AheadSlot = Arc<parking_lot::Mutex<Option<CancelToken>>>;

impl std::fmt::Debug for SegmentWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWorker").finish_non_exhaustive()
    }
}

impl SegmentWorker {
    /// Starts the worker thread, which first loads the model in `dir` (reported with
    /// [`SegmentMessage::Loaded`] or [`SegmentMessage::LoadFailed`]).
    pub fn spawn(
        dir: PathBuf,
        options: SessionOptions,
        repaint: Arc<dyn Repaint>,
    ) -> std::io::Result<Self> {
        let (req_tx, req_rx) = crossbeam_channel::bounded::<SegmentRequest>(CHANNEL_CAPACITY);
        let (res_tx, res_rx) = crossbeam_channel::bounded::<SegmentMessage>(CHANNEL_CAPACITY);
        let cancel = Some(CancelToken::new());
        let thread_cancel = cancel.clone();
        let model = Arc::new(parking_lot::Mutex::new(None));
        let thread_model = Arc::clone(&model);
        let ahead: AheadSlot = Arc::default();
        let thread_ahead = Arc::clone(&ahead);
        let thread = std::thread::Builder::new()
            .name("sam2-segment".into())
            .spawn(move || {
                run(
                    dir,
                    options,
                    (req_rx, res_tx),
                    repaint,
                    thread_cancel,
                    (thread_model, thread_ahead),
                );
            })?;
        Ok(Self {
            model,
            requests: Some(req_tx),
            results: res_rx,
            cancel,
            ahead,
            thread: Some(thread),
        })
    }

    /// Queues a request (never blocks; a full queue drops the request and returns false). A
    /// prediction interrupts the encoding of a neighbour frame, which resumes afterwards.
    pub fn request(&self, request: SegmentRequest) -> bool {
        if matches!(request, SegmentRequest::Predict { .. })
            && let Some(token) = self.ahead.lock().as_ref()
        {
            token.cancel();
        }
        match &self.requests {
            Some(tx) => match tx.try_send(request) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        }
    }

    /// The loaded model (None while loading or after a failure), for propagation jobs.
    pub fn model(&self) -> Option<Arc<Sam2Model>> {
        self.model.lock().clone()
    }

    /// Everything the worker has reported since the last poll (never blocks).
    pub fn poll(&self) -> Vec<SegmentMessage> {
        self.results.try_iter().collect()
    }
}

impl Drop for SegmentWorker {
    fn drop(&mut self) {
        if let Some(c) = &self.cancel {
            c.cancel();
        }
        if let Some(token) = self.ahead.lock().as_ref() {
            token.cancel();
        }
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            // The thread ends once the request channel is closed and its graph is terminated.
            let results = &self.results;
            super::join_within(thread, super::JOIN_LIMIT, || {
                while results.try_recv().is_ok() {}
            });
        }
    }
}

fn send(tx: &Sender<SegmentMessage>, repaint: &Arc<dyn Repaint>, message: SegmentMessage) {
    // The UI drains the channel every frame; a full channel means it is gone or stalled, and a
    // dropped result is re-requested with the next prompt change.
    let _ = tx.try_send(message);
    repaint.request_repaint();
}

fn to_rgb(frame: &Frame) -> Result<RgbImage, String> {
    frame.to_rgb_image()
}

/// The model record of a loaded directory: id `sam2-<variant>`, sha256 per file.
fn model_record(model: &Sam2Model) -> ModelRecord {
    let files = crate::runtime::Manifest::load(model.dir())
        .map(|m| m.files)
        .unwrap_or_default();
    ModelRecord {
        id: format!("sam2-{}", model.variant()),
        kind: "sam2".into(),
        variant: model.variant().to_string(),
        files,
    }
}

/// Previous low-res logits of one object on one frame and the prompts that produced them.
type PrevLogits = HashMap<(usize, u32, u64), (crate::project::Prompts, LowResLogits)>;

fn run(
    dir: PathBuf,
    options: SessionOptions,
    (requests, results): (Receiver<SegmentRequest>, Sender<SegmentMessage>),
    repaint: Arc<dyn Repaint>,
    cancel: Option<CancelToken>,
    (shared, ahead_slot): (Arc<parking_lot::Mutex<Option<Arc<Sam2Model>>>>, AheadSlot),
) {
    let model = match Sam2Model::load(&dir, &options) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            send(
                &results,
                &repaint,
                SegmentMessage::LoadFailed(format!("{}: {e}", dir.display())),
            );
            return;
        }
    };
    *shared.lock() = Some(Arc::clone(&model));
    let record = model_record(&model);
    let model_id = record.id.clone();
    send(
        &results,
        &repaint,
        SegmentMessage::Loaded {
            record,
            family: model.family().to_string(),
            provider: model.provider().to_string(),
            quantization: model.quantization().map(|q| q.scheme.clone()),
            warnings: model.warnings().to_vec(),
        },
    );
    let mut worker = Worker {
        predictor: ImagePredictor::new(model, CACHE_BUDGET_BYTES),
        prev: HashMap::new(),
        media: None,
        ahead: VecDeque::new(),
        results,
        repaint,
    };
    loop {
        let first = if worker.ahead.is_empty() {
            match requests.recv() {
                Ok(r) => r,
                Err(_) => return,
            }
        } else {
            match requests.try_recv() {
                Ok(r) => r,
                Err(crossbeam_channel::TryRecvError::Empty) => {
                    worker.encode_ahead(&ahead_slot, cancel.as_ref());
                    continue;
                }
                Err(crossbeam_channel::TryRecvError::Disconnected) => return,
            }
        };
        // A media change applies at once. Then the latest predict request wins; a pre-encode
        // is kept only if nothing else is queued.
        let mut request = match first {
            SegmentRequest::Media { path, frames } => {
                worker.open_media(path, frames);
                continue;
            }
            r => r,
        };
        while let Ok(next) = requests.try_recv() {
            match next {
                SegmentRequest::Media { path, frames } => worker.open_media(path, frames),
                next if matches!(next, SegmentRequest::Predict { .. })
                    || matches!(request, SegmentRequest::Preencode { .. }) =>
                {
                    request = next;
                }
                _ => {}
            }
        }
        if cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return;
        }
        match request {
            SegmentRequest::Media { path, frames } => worker.open_media(path, frames),
            SegmentRequest::Preencode { item, frame, image } => {
                let key = FrameKey {
                    item,
                    frame: frame as usize,
                };
                let fresh = !worker.predictor.contains(key);
                match to_rgb(&image).and_then(|rgb| {
                    worker
                        .predictor
                        .encode(key, &rgb, cancel.as_ref())
                        .map_err(|e| e.to_string())
                }) {
                    Ok(_) if fresh => worker.encoded(key),
                    Ok(_) => {}
                    Err(e) => log::warn!("pre-encoding frame {frame}: {e}"),
                }
                worker.plan_ahead(key);
            }
            SegmentRequest::Predict {
                item,
                id,
                frame,
                image,
                prompts,
            } => {
                let key = FrameKey {
                    item,
                    frame: frame as usize,
                };
                let fresh = !worker.predictor.contains(key);
                let message = predict(
                    &mut worker.predictor,
                    &mut worker.prev,
                    cancel.as_ref(),
                    (item, id, frame),
                    &image,
                    &prompts,
                )
                .map_or_else(SegmentMessage::Failed, |r| {
                    SegmentMessage::Mask(Box::new(r))
                });
                if fresh && worker.predictor.contains(key) {
                    worker.encoded(key);
                }
                log::debug!("sam2 {model_id}: {item}/{id}/{frame} done");
                send(&worker.results, &worker.repaint, message);
            }
        }
    }
}

/// The worker thread's state between requests.
struct Worker {
    predictor: ImagePredictor,
    prev: PrevLogits,
    /// Own copy of the media, for the neighbours of the shown frame.
    media: Option<MediaSource>,
    /// Frames still to encode ahead, nearest first.
    ahead: VecDeque<FrameKey>,
    results: Sender<SegmentMessage>,
    repaint: Arc<dyn Repaint>,
}

impl Worker {
    fn open_media(&mut self, path: PathBuf, frames: bool) {
        self.ahead.clear();
        let opened = if frames {
            crate::media::open_frames(&path, 0.0)
        } else {
            crate::media::open(&path)
        };
        self.media = match opened {
            Ok(m) => Some(m),
            Err(e) => {
                log::warn!("frames ahead of the shown one will not be pre-encoded: {e}");
                None
            }
        };
    }

    fn encoded(&self, key: FrameKey) {
        send(
            &self.results,
            &self.repaint,
            SegmentMessage::Encoded {
                item: key.item,
                frame: key.frame as u64,
            },
        );
    }

    /// Queues the neighbours of `shown` (nearest first, forward before backward) that are not
    /// cached yet. A folder's neighbours are the next and previous images.
    fn plan_ahead(&mut self, shown: FrameKey) {
        self.ahead.clear();
        let Some(media) = &self.media else {
            return;
        };
        // A folder's neighbours are its next and previous images, a video's its frames.
        let images = media.kind() == SourceKind::Folder;
        let (pos, count) = if images {
            (shown.item, media.item_count())
        } else {
            let frames = media.item_info(shown.item).map_or(0, |i| i.frame_count);
            (shown.frame, usize::try_from(frames).unwrap_or(usize::MAX))
        };
        for d in 1..=AHEAD_FRAMES {
            for p in [pos.checked_add(d), pos.checked_sub(d)]
                .into_iter()
                .flatten()
            {
                if p >= count {
                    continue;
                }
                let key = if images {
                    FrameKey { item: p, frame: 0 }
                } else {
                    FrameKey {
                        item: shown.item,
                        frame: p,
                    }
                };
                if !self.predictor.contains(key) {
                    self.ahead.push_back(key);
                }
            }
        }
    }

    /// Encodes the next queued neighbour under a token a prediction can cancel; an
    /// interrupted frame goes back to the front of the queue.
    fn encode_ahead(&mut self, slot: &AheadSlot, shutdown: Option<&CancelToken>) {
        let Some(key) = self.ahead.pop_front() else {
            return;
        };
        if self.predictor.contains(key) || shutdown.is_some_and(CancelToken::is_cancelled) {
            return;
        }
        let Some(media) = self.media.as_mut() else {
            self.ahead.clear();
            return;
        };
        let index = key.frame;
        let image = match media
            .frame(key.item, key.frame as u64)
            .map_err(|e| e.to_string())
            .and_then(|f| to_rgb(&f))
        {
            Ok(image) => image,
            Err(e) => {
                log::warn!("pre-encoding item {} frame {index}: {e}", key.item);
                return;
            }
        };
        let token = CancelToken::new();
        *slot.lock() = Some(token.clone());
        let result = self.predictor.encode(key, &image, Some(&token));
        *slot.lock() = None;
        match result {
            Ok(_) => self.encoded(key),
            Err(crate::segment::SegmentError::Cancelled) => self.ahead.push_front(key),
            Err(_) if token.is_cancelled() => self.ahead.push_front(key),
            Err(e) => log::warn!("pre-encoding frame {index}: {e}"),
        }
    }
}

fn predict(
    predictor: &mut ImagePredictor,
    prev: &mut PrevLogits,
    cancel: Option<&CancelToken>,
    (item, id, frame): (usize, u32, u64),
    image: &Frame,
    prompts: &crate::project::Prompts,
) -> Result<SegmentResult, String> {
    let rgb = to_rgb(image)?;
    let key = FrameKey {
        item,
        frame: frame as usize,
    };
    let emb = predictor
        .encode(key, &rgb, cancel)
        .map_err(|e| e.to_string())?;
    let sam_prompts = Prompts::from_project(prompts);
    // Refining with more clicks: feed the previous logits back as mask input, as the official
    // predictor's interactive loop does (only when the old prompts are a prefix of the new).
    let previous = prev.get(&(item, id, frame)).and_then(|(old, logits)| {
        let extends = old.bbox == prompts.bbox
            && old.points.len() < prompts.points.len()
            && prompts.points.starts_with(&old.points);
        extends.then_some(logits)
    });
    let prediction = predictor
        .predict(&emb, &sam_prompts, previous)
        .map_err(|e| e.to_string())?;
    prev.insert(
        (item, id, frame),
        (prompts.clone(), prediction.low_res_logits.clone()),
    );
    Ok(SegmentResult {
        item,
        id,
        frame,
        prompts: prompts.clone(),
        mask: prediction.mask,
        iou: prediction.iou,
        object_score: prediction.object_score,
    })
}
