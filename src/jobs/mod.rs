//! Background work (decode, encode, propagate, generate, save, export) with progress,
//! cancellation, and results delivered as messages to the UI thread.
//!
//! This module never imports egui, eframe or wgpu (checked by `tests/layers.rs`): the UI hands
//! in a [`Repaint`] trait object that wakes it up when a message is ready.
//!
//! * [`JobRunner`] runs one-shot jobs on named threads. Each [`Job`] has a name, a progress
//!   value (0..1 plus a line of text) and a cancel flag; its result comes back as a
//!   [`JobMessage`] over a bounded channel that the UI polls once per frame.
//! * [`MediaWorker`] is a long-lived thread that owns a [`FrameSource`] (the opened media) and
//!   serves frame requests: the latest request wins while scrubbing, and neighbours are
//!   prefetched when it is idle.

mod document;
mod media_worker;
pub mod model_fetch;
mod project_media;
mod propagate_job;
pub mod refer_job;
mod segment_job;

pub use document::{media_kind, new_document, open_media};
pub use media_worker::{FrameMessage, FrameRequest, FrameSource, MediaWorker};
pub use model_fetch::{
    FetchError, FetchEvent, FetchRequest, FetchStage, VerifyError, fetch_model, verify_model,
};
pub use project_media::{
    ProjectMediaError, check_project_media, compare_with_media, complete_from_media,
};
pub use propagate_job::{
    MediaFrames, PropagateDirection, PropagateMessage, PropagateRequest, PropagatedFrame,
    PropagationJob,
};
pub use segment_job::{SegmentMessage, SegmentRequest, SegmentResult, SegmentWorker};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Asks the UI to run another frame. Implemented by the UI around `egui::Context`, so this
/// module does not depend on egui.
pub trait Repaint: Send + Sync {
    /// Wakes the UI thread up (must be cheap and non-blocking).
    fn request_repaint(&self);
}

/// A [`Repaint`] that does nothing (tests, the CLI).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRepaint;

impl Repaint for NoRepaint {
    fn request_repaint(&self) {}
}

/// How long dropping a job handle waits for its thread to end after cancelling it. The model
/// graphs stop at the next operator once terminated, so a thread normally ends in milliseconds;
/// waiting matters at exit, where a thread still inside ONNX Runtime would outlive the runtime.
pub(crate) const JOIN_LIMIT: Duration = Duration::from_secs(10);

/// Waits up to `limit` for `handle`'s thread to end, calling `tick` while it waits (to drain a
/// channel the thread may be blocked on); true when it ended. A thread still busy after that (a
/// model load, which cannot be interrupted) is left to finish on its own.
pub(crate) fn join_within(
    handle: std::thread::JoinHandle<()>,
    limit: Duration,
    mut tick: impl FnMut(),
) -> bool {
    let start = std::time::Instant::now();
    while !handle.is_finished() {
        tick();
        if start.elapsed() >= limit {
            log::warn!(
                "background thread {:?} did not stop within {limit:?}; leaving it",
                handle.thread().name()
            );
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    handle.join().is_ok()
}

/// Errors a job ends with.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job saw its cancel flag and stopped.
    #[error("cancelled")]
    Cancelled,
    /// The job failed; the message is one sentence for the status bar.
    #[error("{0}")]
    Failed(String),
    /// The job thread could not be started.
    #[error("could not start a background thread: {0}")]
    Spawn(String),
}

impl JobError {
    /// Wraps any error as [`JobError::Failed`], keeping the cause chain in one line.
    pub fn failed(err: impl std::fmt::Display) -> Self {
        Self::Failed(err.to_string())
    }
}

/// Identifies a job within one [`JobRunner`].
pub type JobId = u64;

/// Progress of a running job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Fraction done, 0..=1.
    pub fraction: f32,
    /// What the job is doing now ("Saving project…").
    pub text: String,
}

/// What a job body sees: its cancel flag and progress reporting.
pub struct JobContext {
    cancel: Arc<AtomicBool>,
    progress: Arc<Mutex<Progress>>,
    repaint: Arc<dyn Repaint>,
}

impl JobContext {
    /// True once someone asked the job to stop; long loops check this between steps.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Returns `Err(JobError::Cancelled)` when cancelled, for `?` in job bodies.
    pub fn check_cancelled(&self) -> Result<(), JobError> {
        if self.is_cancelled() {
            Err(JobError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Reports progress (clamped to 0..=1) and asks the UI to repaint.
    pub fn set_progress(&self, fraction: f32, text: impl Into<String>) {
        *self.progress.lock() = Progress {
            fraction: fraction.clamp(0.0, 1.0),
            text: text.into(),
        };
        self.repaint.request_repaint();
    }

    /// The cancel flag, to hand to code that polls it (ONNX RunOptions, decoders).
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancel)
    }
}

/// A running (or finished, not yet collected) job as the UI sees it.
#[derive(Clone)]
pub struct Job {
    /// Identifier, unique within its runner.
    pub id: JobId,
    /// Human name ("Save project").
    pub name: String,
    cancel: Arc<AtomicBool>,
    progress: Arc<Mutex<Progress>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("progress", &*self.progress.lock())
            .finish()
    }
}

impl Job {
    /// Asks the job to stop; it ends with [`JobError::Cancelled`] at its next check.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Whether cancel was requested.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// The latest reported progress.
    pub fn progress(&self) -> Progress {
        self.progress.lock().clone()
    }
}

/// The result of one job, delivered to the UI.
#[derive(Debug)]
pub struct JobMessage<T> {
    /// Which job.
    pub id: JobId,
    /// Its name.
    pub name: String,
    /// What it produced.
    pub result: Result<T, JobError>,
}

/// Runs jobs on named threads and collects their results over a bounded channel.
pub struct JobRunner<T: Send + 'static> {
    next_id: AtomicU64,
    sender: Sender<JobMessage<T>>,
    receiver: Receiver<JobMessage<T>>,
    repaint: Arc<dyn Repaint>,
    running: Vec<Job>,
}

/// Capacity of the result channel. A job whose result does not fit waits (checking its cancel
/// flag) until the UI polls.
pub const RESULT_CHANNEL_CAPACITY: usize = 64;

impl<T: Send + 'static> JobRunner<T> {
    /// A runner that wakes the UI with `repaint` whenever a result or progress arrives.
    pub fn new(repaint: Arc<dyn Repaint>) -> Self {
        let (sender, receiver) = crossbeam_channel::bounded(RESULT_CHANNEL_CAPACITY);
        Self {
            next_id: AtomicU64::new(1),
            sender,
            receiver,
            repaint,
            running: Vec::new(),
        }
    }

    /// Starts `body` on a new thread named `job:<name>`. The returned [`Job`] can be cancelled
    /// and queried for progress; the result arrives later from [`Self::poll`].
    pub fn spawn<F>(&mut self, name: impl Into<String>, body: F) -> Result<Job, JobError>
    where
        F: FnOnce(&JobContext) -> Result<T, JobError> + Send + 'static,
    {
        let name = name.into();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            id,
            name: name.clone(),
            cancel: Arc::new(AtomicBool::new(false)),
            progress: Arc::new(Mutex::new(Progress::default())),
        };
        let ctx = JobContext {
            cancel: Arc::clone(&job.cancel),
            progress: Arc::clone(&job.progress),
            repaint: Arc::clone(&self.repaint),
        };
        let sender = self.sender.clone();
        let thread_name = format!("job:{name}");
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let result = if ctx.is_cancelled() {
                    Err(JobError::Cancelled)
                } else {
                    body(&ctx)
                };
                let mut message = JobMessage { id, name, result };
                // Bounded channel: wait for room, but never forever once cancelled.
                loop {
                    match sender.try_send(message) {
                        Ok(()) => break,
                        Err(TrySendError::Disconnected(_)) => return,
                        Err(TrySendError::Full(back)) => {
                            if ctx.is_cancelled() {
                                return;
                            }
                            message = back;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
                ctx.repaint.request_repaint();
            })
            .map_err(|e| JobError::Spawn(e.to_string()))?;
        self.running.push(job.clone());
        Ok(job)
    }

    /// Collects every finished job's message without waiting.
    pub fn poll(&mut self) -> Vec<JobMessage<T>> {
        let messages: Vec<_> = self.receiver.try_iter().collect();
        self.running
            .retain(|job| !messages.iter().any(|message| message.id == job.id));
        messages
    }

    /// Waits up to `timeout` for the next message (tests and shutdown only; never on the UI
    /// thread's normal path).
    pub fn wait_next(&mut self, timeout: Duration) -> Option<JobMessage<T>> {
        let message = self.receiver.recv_timeout(timeout).ok()?;
        self.running.retain(|job| job.id != message.id);
        Some(message)
    }

    /// Jobs started and not yet collected by [`Self::poll`].
    pub fn running(&self) -> &[Job] {
        &self.running
    }

    /// Cancels every running job.
    pub fn cancel_all(&self) {
        for job in &self.running {
            job.cancel();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Instant;

    struct CountRepaint(AtomicU64);
    impl Repaint for CountRepaint {
        fn request_repaint(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn result_arrives_as_a_message_and_repaints() {
        let repaint = Arc::new(CountRepaint(AtomicU64::new(0)));
        let mut runner = JobRunner::<u32>::new(repaint.clone());
        let job = runner
            .spawn("add", |ctx| {
                ctx.set_progress(0.5, "half");
                Ok(2 + 2)
            })
            .unwrap();
        let message = runner.wait_next(Duration::from_secs(5)).unwrap();
        assert_eq!(message.id, job.id);
        assert_eq!(message.name, "add");
        assert_eq!(message.result.unwrap(), 4);
        assert!(repaint.0.load(Ordering::Relaxed) >= 2);
        assert_eq!(job.progress().text, "half");
        assert!(runner.running().is_empty());
    }

    #[test]
    fn cancel_returns_quickly() {
        let mut runner = JobRunner::<()>::new(Arc::new(NoRepaint));
        let job = runner
            .spawn("forever", |ctx| {
                loop {
                    ctx.check_cancelled()?;
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let start = Instant::now();
        job.cancel();
        let message = runner.wait_next(Duration::from_secs(5)).unwrap();
        assert!(matches!(message.result, Err(JobError::Cancelled)));
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn messages_of_one_job_chain_keep_their_order() {
        // Jobs finishing in a known order deliver their messages in that order.
        let mut runner = JobRunner::<usize>::new(Arc::new(NoRepaint));
        for i in 0..5 {
            runner
                .spawn(format!("j{i}"), move |_| {
                    std::thread::sleep(Duration::from_millis(30 * i as u64));
                    Ok(i)
                })
                .unwrap();
        }
        let order: Vec<usize> = (0..5)
            .map(|_| {
                runner
                    .wait_next(Duration::from_secs(5))
                    .unwrap()
                    .result
                    .unwrap()
            })
            .collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn failures_are_one_sentence() {
        let mut runner = JobRunner::<()>::new(Arc::new(NoRepaint));
        runner
            .spawn("fail", |_| Err(JobError::failed("disk is full")))
            .unwrap();
        let message = runner.wait_next(Duration::from_secs(5)).unwrap();
        assert_eq!(message.result.unwrap_err().to_string(), "disk is full");
    }

    #[test]
    fn job_threads_are_named() {
        let mut runner = JobRunner::<String>::new(Arc::new(NoRepaint));
        runner
            .spawn("named", |_| {
                Ok(std::thread::current().name().unwrap_or("").to_owned())
            })
            .unwrap();
        let message = runner.wait_next(Duration::from_secs(5)).unwrap();
        assert_eq!(message.result.unwrap(), "job:named");
    }
}
