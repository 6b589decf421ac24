//! The SAM 2 click-to-mask worker: one named thread that loads a `sam2` model directory, owns
//! the [`ImagePredictor`] (with its per-frame embedding cache) and answers segmentation
//! requests. The latest request wins: when several are queued only the newest is served.
//! Results come back as [`SegmentMessage`]s over a bounded channel; the UI polls it every frame
//! and is woken through [`Repaint`].

use super::Repaint;
use crate::media::Frame;
use crate::project::ModelRecord;
use crate::runtime::SessionOptions;
use crate::segment::{
    CancelToken, FrameKey, ImagePredictor, LowResLogits, Prompts, RgbImage, Sam2Model,
};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Embedding cache budget of the worker's predictor.
const CACHE_BUDGET_BYTES: usize = 256 << 20;
/// Capacity of the request and result channels.
const CHANNEL_CAPACITY: usize = 16;

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
        /// Execution provider in use ("CPU", "CUDA").
        provider: String,
        /// Fallback and other warnings, one sentence each.
        warnings: Vec<String>,
    },
    /// The model could not be loaded (one sentence).
    LoadFailed(String),
    /// A mask is ready.
    Mask(Box<SegmentResult>),
    /// A prediction failed (one sentence).
    Failed(String),
}

/// Handle to the SAM 2 worker thread. Dropping it stops the thread.
pub struct SegmentWorker {
    model: Arc<parking_lot::Mutex<Option<Arc<Sam2Model>>>>,
    requests: Option<Sender<SegmentRequest>>,
    results: Receiver<SegmentMessage>,
    cancel: Option<CancelToken>,
    thread: Option<std::thread::JoinHandle<()>>,
}

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
        let cancel = CancelToken::new().ok();
        let thread_cancel = cancel.clone();
        let model = Arc::new(parking_lot::Mutex::new(None));
        let thread_model = Arc::clone(&model);
        let thread = std::thread::Builder::new()
            .name("sam2-segment".into())
            .spawn(move || {
                run(
                    dir,
                    options,
                    (req_rx, res_tx),
                    repaint,
                    thread_cancel,
                    thread_model,
                );
            })?;
        Ok(Self {
            model,
            requests: Some(req_tx),
            results: res_rx,
            cancel,
            thread: Some(thread),
        })
    }

    /// Queues a request (never blocks; a full queue drops the request and returns false).
    pub fn request(&self, request: SegmentRequest) -> bool {
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
        self.requests = None;
        if let Some(t) = self.thread.take() {
            // The thread ends as soon as the request channel is closed; do not wait on it.
            drop(t);
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
    RgbImage::from_rgba(frame.width, frame.height, &frame.rgba).map_err(|e| e.to_string())
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
    shared: Arc<parking_lot::Mutex<Option<Arc<Sam2Model>>>>,
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
            provider: model.provider().to_string(),
            warnings: model.warnings().to_vec(),
        },
    );
    let mut predictor = ImagePredictor::new(model, CACHE_BUDGET_BYTES);
    let mut prev: PrevLogits = HashMap::new();
    while let Ok(first) = requests.recv() {
        // Latest predict request wins; pre-encodes are kept only if nothing else is queued.
        let mut request = first;
        while let Ok(next) = requests.try_recv() {
            if matches!(next, SegmentRequest::Predict { .. })
                || matches!(request, SegmentRequest::Preencode { .. })
            {
                request = next;
            }
        }
        if cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return;
        }
        match request {
            SegmentRequest::Preencode { item, frame, image } => {
                let key = FrameKey {
                    item,
                    frame: frame as usize,
                };
                if let Err(e) = to_rgb(&image).and_then(|rgb| {
                    predictor
                        .encode(key, &rgb, cancel.as_ref())
                        .map_err(|e| e.to_string())
                }) {
                    log::warn!("pre-encoding frame {frame}: {e}");
                }
            }
            SegmentRequest::Predict {
                item,
                id,
                frame,
                image,
                prompts,
            } => {
                let message = predict(
                    &mut predictor,
                    &mut prev,
                    cancel.as_ref(),
                    (item, id, frame),
                    &image,
                    &prompts,
                )
                .map_or_else(SegmentMessage::Failed, |r| {
                    SegmentMessage::Mask(Box::new(r))
                });
                log::debug!("sam2 {model_id}: {item}/{id}/{frame} done");
                send(&results, &repaint, message);
            }
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
