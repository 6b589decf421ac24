//! SAM 2 video propagation as a background job: a named thread opens its own copy of the media,
//! adds every object's prompts (clicks and boxes, or a mask the person gave) to a
//! [`VideoTracker`] and propagates forward, backward or both,
//! streaming each finished frame back as a [`PropagateMessage`] over a bounded channel. The
//! [`CancelToken`] stops a running graph and is checked between frames.

use super::Repaint;
use crate::media::{ItemInfo, MediaError, MediaSource};
use crate::segment::{
    CancelToken, Direction, FrameSource, ObjectFrame, Sam2Model, SegmentError, TrackInput,
    TrackerOptions, VideoTracker,
};
use crossbeam_channel::{Receiver, Sender};
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Which way to propagate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagateDirection {
    /// From the start frame to the end.
    Forward,
    /// From the start frame to frame 0.
    Backward,
    /// Forward, then backward.
    Both,
}

/// What to propagate.
#[derive(Debug, Clone)]
pub struct PropagateRequest {
    /// The media file (a video) to read frames from.
    pub media_path: PathBuf,
    /// Item index in the document (0 for a video).
    pub item: usize,
    /// Inputs per (object id, frame), added in this order.
    pub prompts: Vec<(u32, u64, TrackInput)>,
    /// Frame to start from (the current frame).
    pub start: u64,
    /// Direction.
    pub direction: PropagateDirection,
}

/// One object's result on one frame.
#[derive(Debug, Clone)]
pub struct PropagatedFrame {
    /// Object id.
    pub id: u32,
    /// Frame index.
    pub frame: u64,
    /// The mask (empty when not visible).
    pub mask: crate::mask::Mask,
    /// Object score logit (≤ 0: not visible).
    pub score: f32,
    /// Whether this is one of the object's prompted frames.
    pub conditioning: bool,
}

/// Messages of a propagation job.
#[derive(Debug, Clone)]
pub enum PropagateMessage {
    /// `done` of the `total` prompted frames are added (each costs an encoder pass); frames
    /// follow once all are.
    Prompted {
        /// Prompted frames added.
        done: usize,
        /// Prompted frames in the request.
        total: usize,
    },
    /// Results of one frame, with `done` of `total` frames finished in this pass.
    Frame {
        /// Frames done in this pass.
        done: usize,
        /// Frames in this pass.
        total: usize,
        /// The frame's objects.
        objects: Vec<PropagatedFrame>,
    },
    /// Finished (all passes done).
    Finished,
    /// Cancelled by the user.
    Cancelled,
    /// Failed (one sentence).
    Failed(String),
}

/// A running propagation.
pub struct PropagationJob {
    cancel: CancelToken,
    messages: Receiver<PropagateMessage>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for PropagationJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PropagationJob").finish_non_exhaustive()
    }
}

impl PropagationJob {
    /// Starts propagating `request` with `model` on a new named thread.
    pub fn spawn(
        model: Arc<Sam2Model>,
        request: PropagateRequest,
        repaint: Arc<dyn Repaint>,
    ) -> Result<Self, String> {
        let cancel = CancelToken::new();
        let (tx, rx) = crossbeam_channel::bounded(8);
        let thread_cancel = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("sam2-propagate".into())
            .spawn(move || {
                let end = match run(model, &request, &tx, &repaint, &thread_cancel) {
                    Ok(()) => PropagateMessage::Finished,
                    Err(_) if thread_cancel.is_cancelled() => PropagateMessage::Cancelled,
                    Err(e) => PropagateMessage::Failed(e),
                };
                send(&tx, &repaint, &thread_cancel, end, true);
            })
            .map_err(|e| format!("could not start the propagation thread: {e}"))?;
        Ok(Self {
            cancel,
            messages: rx,
            thread: Some(thread),
        })
    }

    /// Asks the job to stop (the running graph is terminated).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Messages since the last poll (never blocks).
    pub fn poll(&self) -> Vec<PropagateMessage> {
        self.messages.try_iter().collect()
    }
}

impl Drop for PropagationJob {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(thread) = self.thread.take() {
            let messages = &self.messages;
            super::join_within(thread, super::JOIN_LIMIT, || {
                while messages.try_recv().is_ok() {}
            });
        }
    }
}

/// Sends `message`, waiting while the channel is full unless cancelled (`last` messages are
/// always tried for a while so the UI learns the job ended).
fn send(
    tx: &Sender<PropagateMessage>,
    repaint: &Arc<dyn Repaint>,
    cancel: &CancelToken,
    mut message: PropagateMessage,
    last: bool,
) -> bool {
    for _ in 0..2000 {
        match tx.send_timeout(message, Duration::from_millis(10)) {
            Ok(()) => {
                repaint.request_repaint();
                return true;
            }
            Err(crossbeam_channel::SendTimeoutError::Timeout(m)) => {
                repaint.request_repaint();
                if cancel.is_cancelled() && !last {
                    return false;
                }
                message = m;
            }
            Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return false,
        }
    }
    false
}

/// Frames of opened media for the SAM 2 tracker: a video's frames, or a folder's images in
/// order (each image one frame, [`crate::media::open_frames`]).
pub struct MediaFrames {
    /// The opened media: one item.
    pub source: MediaSource,
    /// Number of frames.
    pub count: usize,
    /// Size and rate of the item.
    pub info: ItemInfo,
}

impl MediaFrames {
    /// Opens `path` (a video, an image, or a folder of frames of one size) as one sequence; a
    /// folder's frame rate is unknown (0).
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        let source = if path.is_dir() {
            crate::media::open_frames(path, 0.0)?
        } else {
            crate::media::open(path)?
        };
        Self::from_source(source)
    }

    /// The frames of item 0 of `source` (an image, a video or a folder opened as frames).
    pub fn from_source(source: MediaSource) -> Result<Self, MediaError> {
        let info = source.item_info(0)?;
        let count = usize::try_from(info.frame_count).unwrap_or(usize::MAX);
        Ok(Self {
            source,
            count,
            info,
        })
    }
}

impl FrameSource for MediaFrames {
    fn frame_count(&self) -> usize {
        self.count
    }
    fn frame(&mut self, index: usize) -> Result<RgbImage, SegmentError> {
        let f = self
            .source
            .frame(0, index as u64)
            .map_err(|e| SegmentError::Media {
                index,
                reason: e.to_string(),
            })?;
        f.to_rgb_image()
            .map_err(|e| SegmentError::Frame(format!("frame {index}: {e}")))
    }
}

fn run(
    model: Arc<Sam2Model>,
    request: &PropagateRequest,
    tx: &Sender<PropagateMessage>,
    repaint: &Arc<dyn Repaint>,
    cancel: &CancelToken,
) -> Result<(), String> {
    let mut frames = MediaFrames::open(&request.media_path).map_err(|e| e.to_string())?;
    let (count, info) = (frames.count, frames.info.clone());
    let options = TrackerOptions {
        add_all_frames_to_correct_as_cond: Some(true),
        ..TrackerOptions::default()
    };
    let mut tracker = VideoTracker::new(model, count, info.width, info.height, options)
        .map_err(|e| e.to_string())?;
    let total = request.prompts.len();
    for (done, (id, frame, prompt)) in request.prompts.iter().enumerate() {
        if !send(
            tx,
            repaint,
            cancel,
            PropagateMessage::Prompted { done, total },
            false,
        ) {
            return Err("cancelled".into());
        }
        let frame = usize::try_from(*frame).unwrap_or(usize::MAX);
        tracker
            .add_input(&mut frames, frame, *id, prompt, Some(cancel))
            .map_err(|e| format!("object {id} frame {frame}: {e}"))?;
    }
    let directions: &[Direction] = match request.direction {
        PropagateDirection::Forward => &[Direction::Forward],
        PropagateDirection::Backward => &[Direction::Backward],
        PropagateDirection::Both => &[Direction::Forward, Direction::Backward],
    };
    let start = usize::try_from(request.start).unwrap_or(0);
    for &direction in directions {
        let mut stopped = false;
        tracker
            .propagate(
                &mut frames,
                Some(start),
                direction,
                None,
                Some(cancel),
                &mut |p, objs: Vec<ObjectFrame>| {
                    if stopped {
                        return;
                    }
                    let objects = objs
                        .into_iter()
                        .map(|o| PropagatedFrame {
                            id: o.obj_id,
                            frame: o.frame as u64,
                            mask: o.mask,
                            score: o.score,
                            conditioning: o.conditioning,
                        })
                        .collect();
                    let message = PropagateMessage::Frame {
                        done: p.done,
                        total: p.total,
                        objects,
                    };
                    if !send(tx, repaint, cancel, message, false) {
                        stopped = true;
                        cancel.cancel();
                    }
                },
            )
            .map_err(|e| format!("propagation failed: {e}"))?;
        cancel.check().map_err(|e| e.to_string())?;
    }
    Ok(())
}
