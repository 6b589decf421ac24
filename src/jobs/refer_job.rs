//! PixelRefer questions as background jobs (the chat panel's engine side).
//!
//! A [`ReferJob`] runs on a named thread: it loads the chosen model (kept in a shared
//! [`ModelSlot`] between jobs), reads the frames it needs from a [`FrameSource`], decodes the
//! objects' masks, asks the model and streams [`ReferEvent`]s (tokens, progress, captions, the
//! final answer or a one-sentence error) over a bounded channel, waking the UI with [`Repaint`].
//! Cancelling the job (or dropping it) stops generation between tokens and terminates the
//! running graph.

use super::{FrameSource, Repaint};
use crate::mask::Rle;
use crate::refer::{
    AnnotatedObject, CancelToken, DEFAULT_MAX_VIDEO_FRAMES, GenerationOptions, PixelRefer,
    ReferError, Request, RequestFrames, Turn, Variant,
};
use crate::runtime::remote::RemoteEndpoint;
use crate::runtime::{ExecutionProvider, SessionOptions};
use crossbeam_channel::{Receiver, Sender};
use image::RgbImage;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Capacity of a job's event channel (a token is one event; the UI drains it every frame).
pub const EVENT_CHANNEL_CAPACITY: usize = 256;

/// The prompt of the "Describe" quick action for `<object{id}>`.
pub fn describe_prompt(id: u32) -> String {
    format!("Please describe <object{id}> in detail.")
}

/// A loaded model and what it was loaded with.
pub struct LoadedModel {
    /// Model directory.
    pub dir: PathBuf,
    /// Requested provider.
    pub requested: ExecutionProvider,
    /// Requested server, if the graphs run remotely.
    pub remote: Option<RemoteEndpoint>,
    /// The engine.
    pub model: PixelRefer,
}

/// The model shared by successive jobs (loaded on first use, reloaded when the choice changes).
pub type ModelSlot = Arc<Mutex<Option<LoadedModel>>>;

/// Frames for jobs: a shared [`FrameSource`].
pub type SharedFrames = Arc<Mutex<Box<dyn FrameSource>>>;

/// One object of the item: its tag number and its masks by frame index.
#[derive(Debug, Clone)]
pub struct ObjectSnapshot {
    /// Tag number (`<object{id}>`).
    pub id: u32,
    /// Masks by frame index.
    pub masks: Vec<(u64, Rle)>,
}

/// What to ask.
#[derive(Debug, Clone)]
pub enum ReferTask {
    /// One chat question with the earlier turns.
    Chat {
        /// Earlier turns (oldest first).
        history: Vec<Turn>,
        /// The question with `<objectN>` tags.
        question: String,
    },
    /// Describe these objects one by one (a caption each).
    Describe {
        /// Object ids.
        ids: Vec<u32>,
    },
}

/// Everything a job needs, captured on the UI thread.
pub struct ReferJobSpec {
    /// Model directory.
    pub model_dir: PathBuf,
    /// Execution provider.
    pub provider: ExecutionProvider,
    /// Run the graphs on this server instead.
    pub remote: Option<RemoteEndpoint>,
    /// Item index in the media.
    pub item: usize,
    /// Number of frames of the item (1 for images).
    pub frame_count: u64,
    /// Frames per second (0 for images).
    pub fps: f64,
    /// The frame the question is asked on.
    pub frame: u64,
    /// The item's objects.
    pub objects: Vec<ObjectSnapshot>,
    /// Token budget per answer.
    pub max_new_tokens: usize,
    /// The task.
    pub task: ReferTask,
}

/// What a job reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ReferEvent {
    /// The model is loaded: the active provider and any warning (CUDA fallback…).
    Loaded {
        /// Model directory.
        dir: PathBuf,
        /// Whether it is PixelRefer-Lite.
        lite: bool,
        /// Active provider ("CPU", "CUDA").
        provider: String,
        /// Warnings of the load.
        warnings: Vec<String>,
    },
    /// A piece of the answer being generated.
    Token(String),
    /// Describe: `done` of `total` objects finished.
    Progress {
        /// Objects done.
        done: usize,
        /// Objects in all.
        total: usize,
    },
    /// Describe: the caption of one object.
    Caption {
        /// Object id.
        id: u32,
        /// The caption.
        text: String,
    },
    /// The chat answer, complete.
    Answer(String),
    /// The job stopped because it was cancelled.
    Cancelled,
    /// The job failed; one sentence.
    Failed(String),
    /// The job is over (always the last event).
    Finished,
}

/// A running job as the UI sees it.
pub struct ReferJob {
    cancel: CancelToken,
    events: Receiver<ReferEvent>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReferJob {
    /// Starts `spec` on a thread named `job:refer`. Frames come from `frames`, or from the
    /// media at `media_path` when `None`.
    pub fn spawn(
        spec: ReferJobSpec,
        slot: ModelSlot,
        frames: Option<SharedFrames>,
        media_path: PathBuf,
        repaint: Arc<dyn Repaint>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(EVENT_CHANNEL_CAPACITY);
        let cancel = CancelToken::new();
        let token = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("job:refer".into())
            .spawn(move || {
                let sink = Sink {
                    tx,
                    repaint,
                    cancel: token.clone(),
                };
                match run(&spec, &slot, frames, &media_path, &sink, &token) {
                    Ok(()) => {}
                    Err(_) if token.is_cancelled() => sink.send(ReferEvent::Cancelled),
                    Err(ReferError::Cancelled) => sink.send(ReferEvent::Cancelled),
                    Err(e) => sink.send(ReferEvent::Failed(e.to_string())),
                }
                sink.send(ReferEvent::Finished);
            })?;
        Ok(Self {
            cancel,
            events: rx,
            thread: Some(thread),
        })
    }

    /// Asks the job to stop (between tokens; the running graph is terminated).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Events that arrived since the last call, without waiting. A job thread that ended
    /// without saying so (a panic) reports a failure and [`ReferEvent::Finished`].
    pub fn poll(&self) -> Vec<ReferEvent> {
        let mut out = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(event) => out.push(event),
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    if out.last() != Some(&ReferEvent::Finished) {
                        out.push(ReferEvent::Failed(
                            "the model thread stopped unexpectedly".into(),
                        ));
                        out.push(ReferEvent::Finished);
                    }
                    break;
                }
            }
        }
        out
    }
}

impl Drop for ReferJob {
    fn drop(&mut self) {
        self.cancel.cancel();
        // Wait for the thread to leave ONNX Runtime, draining events so it never blocks on a
        // full channel meanwhile.
        if let Some(thread) = self.thread.take() {
            let events = &self.events;
            super::join_within(thread, super::JOIN_LIMIT, || {
                while events.try_recv().is_ok() {}
            });
        }
    }
}

struct Sink {
    tx: Sender<ReferEvent>,
    repaint: Arc<dyn Repaint>,
    cancel: CancelToken,
}

impl Sink {
    fn send(&self, event: ReferEvent) {
        // Bounded: waits while the UI is behind; a closed receiver cancels the job.
        if self.tx.send(event).is_err() {
            self.cancel.cancel();
        }
        self.repaint.request_repaint();
    }
}

fn invalid(text: impl Into<String>) -> ReferError {
    ReferError::InvalidRequest(text.into())
}

fn run(
    spec: &ReferJobSpec,
    slot: &ModelSlot,
    frames: Option<SharedFrames>,
    media_path: &Path,
    sink: &Sink,
    cancel: &CancelToken,
) -> Result<(), ReferError> {
    let mut guard = slot.lock();
    let reload = !matches!(&*guard, Some(m) if m.dir == spec.model_dir && m.requested == spec.provider && m.remote == spec.remote);
    if reload {
        *guard = None;
        let options = SessionOptions {
            provider: spec.provider,
            intra_threads: 0,
            remote: spec.remote.clone(),
        };
        let model = PixelRefer::load(&spec.model_dir, &options)?;
        *guard = Some(LoadedModel {
            dir: spec.model_dir.clone(),
            requested: spec.provider,
            remote: spec.remote.clone(),
            model,
        });
    }
    let Some(loaded) = guard.as_mut() else {
        return Err(invalid("no model is loaded"));
    };
    let model = &mut loaded.model;
    sink.send(ReferEvent::Loaded {
        dir: spec.model_dir.clone(),
        lite: model.variant() == Variant::Lite,
        provider: model.provider().to_string(),
        warnings: model.warnings().to_vec(),
    });
    if cancel.is_cancelled() {
        return Err(ReferError::Cancelled);
    }
    let frames = match frames {
        Some(f) => f,
        None => {
            // A folder item of several frames is the folder opened as frames.
            let source = if media_path.is_dir() && spec.frame_count > 1 {
                crate::media::open_frames(media_path, spec.fps)
            } else {
                crate::media::open(media_path)
            }
            .map_err(|e| invalid(e.to_string()))?;
            Arc::new(Mutex::new(Box::new(source) as Box<dyn FrameSource>))
        }
    };
    let options = GenerationOptions {
        max_new_tokens: Some(spec.max_new_tokens.max(1)),
        ..Default::default()
    };
    match &spec.task {
        ReferTask::Chat { history, question } => {
            let mentioned = mentioned_tags(
                history
                    .iter()
                    .map(|t| t.question.as_str())
                    .chain(std::iter::once(question.as_str())),
            );
            let mut req = build_request(spec, model.variant(), &frames, &mentioned, question)?;
            req.history = history.clone();
            req.options = options;
            let answer = model.ask(
                &req,
                &mut |piece| sink.send(ReferEvent::Token(piece.to_string())),
                cancel,
            )?;
            sink.send(ReferEvent::Answer(answer.text));
        }
        ReferTask::Describe { ids } => {
            let total = ids.len();
            sink.send(ReferEvent::Progress { done: 0, total });
            for (k, &id) in ids.iter().enumerate() {
                if cancel.is_cancelled() {
                    return Err(ReferError::Cancelled);
                }
                let question = describe_prompt(id);
                let mut req = build_request(spec, model.variant(), &frames, &[id], &question)?;
                req.options = options.clone();
                let answer = model.ask(&req, &mut |_| {}, cancel)?;
                sink.send(ReferEvent::Caption {
                    id,
                    text: answer.text,
                });
                sink.send(ReferEvent::Progress { done: k + 1, total });
            }
        }
    }
    Ok(())
}

/// Tag numbers written as `<objectN>` or `<regionN>` in `texts`, in order of first mention.
pub fn mentioned_tags<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<u32> {
    let mut out = Vec::new();
    for text in texts {
        let mut rest = text;
        while let Some(pos) = rest.find('<') {
            rest = &rest[pos + 1..];
            let Some(body) = rest
                .strip_prefix("object")
                .or_else(|| rest.strip_prefix("region"))
            else {
                continue;
            };
            let digits: String = body.chars().take_while(|c| c.is_ascii_digit()).collect();
            if digits.is_empty() || !body[digits.len()..].starts_with('>') {
                continue;
            }
            if let Ok(n) = digits.parse::<u32>()
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
    }
    out
}

/// The job's item as [`RequestFrames`]: frames from the shared source, times from the frame rate.
struct ItemFrames<'a> {
    frames: &'a SharedFrames,
    item: usize,
    count: u64,
    fps: f64,
}

impl RequestFrames for ItemFrames<'_> {
    fn frame_count(&self) -> u64 {
        self.count
    }
    fn fps(&self) -> f64 {
        self.fps
    }
    fn time_secs(&self, index: u64) -> f64 {
        index as f64 / if self.fps > 0.0 { self.fps } else { 1.0 }
    }
    fn frame(&mut self, index: u64) -> Result<RgbImage, ReferError> {
        let frame = self
            .frames
            .lock()
            .frame(self.item, index)
            .map_err(|e| invalid(format!("cannot read frame {index}: {e}")))?;
        frame
            .to_rgb_image()
            .map_err(|e| invalid(format!("frame {index}: {e}")))
    }
}

/// Builds the request about the objects `tags` with [`crate::refer::build_request`]; the frame
/// the question is asked on comes first among an object's masks.
fn build_request(
    spec: &ReferJobSpec,
    variant: Variant,
    frames: &SharedFrames,
    tags: &[u32],
    question: &str,
) -> Result<Request, ReferError> {
    let mut objects = Vec::with_capacity(tags.len());
    for &tag in tags {
        let Some(object) = spec.objects.iter().find(|o| o.id == tag) else {
            return Err(ReferError::UnknownTag {
                tag: format!("<object{tag}>"),
            });
        };
        let mut masks = object.masks.clone();
        if let Some(pos) = masks.iter().position(|(f, _)| *f == spec.frame) {
            let current = masks.remove(pos);
            masks.insert(0, current);
        }
        objects.push(AnnotatedObject { tag_id: tag, masks });
    }
    let mut source = ItemFrames {
        frames,
        item: spec.item,
        count: spec.frame_count,
        fps: spec.fps,
    };
    crate::refer::build_request(
        &mut source,
        variant,
        DEFAULT_MAX_VIDEO_FRAMES,
        &objects,
        question,
        GenerationOptions::default(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_found_in_order() {
        assert_eq!(
            mentioned_tags(["what is <object2> next to <object0>? <object2> <objectx> <region5>"]),
            vec![2, 0, 5]
        );
        assert!(mentioned_tags(["no tags <object> here"]).is_empty());
    }
}
