//! A long-lived thread that owns the opened media and decodes frames on request.

use super::Repaint;
use crate::media::{Frame, MediaError};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Something that decodes frames: the opened media, or a synthetic source in tests.
pub trait FrameSource: Send + 'static {
    /// The displayed frame `index` of item `item`. May take tens of milliseconds.
    fn frame(&mut self, item: usize, index: u64) -> Result<Arc<Frame>, MediaError>;
    /// Number of frames of item `item` (1 for images).
    fn frame_count(&self, item: usize) -> u64;
}

impl FrameSource for crate::media::MediaSource {
    fn frame(&mut self, item: usize, index: u64) -> Result<Arc<Frame>, MediaError> {
        crate::media::MediaSource::frame(self, item, index)
    }

    fn frame_count(&self, item: usize) -> u64 {
        self.item_info(item).map_or(1, |info| info.frame_count)
    }
}

/// Which frame the UI wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameRequest {
    /// Item index (folders: which image).
    pub item: usize,
    /// Frame index within the item.
    pub index: u64,
}

/// A decoded frame (or the reason it could not be decoded).
#[derive(Debug)]
pub struct FrameMessage {
    /// The request this answers.
    pub request: FrameRequest,
    /// The frame.
    pub result: Result<Arc<Frame>, MediaError>,
}

/// Capacity of the result channel; the UI drains it every frame.
const RESULT_CAPACITY: usize = 4;

/// Serves frame requests on a named thread. Only the newest pending request is decoded (a
/// scrub through 100 frames decodes the ones the worker gets to, not all 100); when idle it
/// prefetches the neighbours of the last frame into the source's cache.
pub struct MediaWorker {
    latest: Arc<Mutex<Option<FrameRequest>>>,
    wake: Sender<()>,
    results: Receiver<FrameMessage>,
    shutdown: Arc<AtomicBool>,
}

impl MediaWorker {
    /// Starts the worker thread (`media-worker`), which takes ownership of `source`.
    pub fn spawn(source: impl FrameSource, repaint: Arc<dyn Repaint>) -> std::io::Result<Self> {
        let latest = Arc::new(Mutex::new(None));
        let (wake, wake_rx) = crossbeam_channel::bounded(1);
        let (result_tx, results) = crossbeam_channel::bounded(RESULT_CAPACITY);
        let shutdown = Arc::new(AtomicBool::new(false));
        let state = WorkerLoop {
            source,
            latest: Arc::clone(&latest),
            wake: wake_rx,
            results: result_tx,
            shutdown: Arc::clone(&shutdown),
            repaint,
        };
        std::thread::Builder::new()
            .name("media-worker".to_owned())
            .spawn(move || state.run())?;
        Ok(Self {
            latest,
            wake,
            results,
            shutdown,
        })
    }

    /// Asks for a frame; replaces any request the worker has not started yet. Never blocks.
    pub fn request(&self, request: FrameRequest) {
        *self.latest.lock() = Some(request);
        // A full wake channel already means "there is work".
        let _ = self.wake.try_send(());
    }

    /// Every frame decoded since the last call, oldest first. Never blocks.
    pub fn poll(&self) -> Vec<FrameMessage> {
        self.results.try_iter().collect()
    }

    /// Waits up to `timeout` for the next decoded frame (tests only).
    pub fn wait_next(&self, timeout: Duration) -> Option<FrameMessage> {
        self.results.recv_timeout(timeout).ok()
    }
}

impl Drop for MediaWorker {
    fn drop(&mut self) {
        // The thread notices within one decode; we do not join it so the UI never waits.
        self.shutdown.store(true, Ordering::Relaxed);
        let _ = self.wake.try_send(());
    }
}

struct WorkerLoop<S> {
    source: S,
    latest: Arc<Mutex<Option<FrameRequest>>>,
    wake: Receiver<()>,
    results: Sender<FrameMessage>,
    shutdown: Arc<AtomicBool>,
    repaint: Arc<dyn Repaint>,
}

impl<S: FrameSource> WorkerLoop<S> {
    fn run(mut self) {
        let mut prefetch: Vec<FrameRequest> = Vec::new();
        loop {
            if self.shutdown.load(Ordering::Relaxed) {
                return;
            }
            if let Some(request) = self.latest.lock().take() {
                let result = self.source.frame(request.item, request.index);
                if !self.deliver(FrameMessage { request, result }) {
                    return;
                }
                let count = self.source.frame_count(request.item);
                prefetch = [request.index.checked_add(1), request.index.checked_sub(1)]
                    .into_iter()
                    .flatten()
                    .filter(|&index| index < count)
                    .map(|index| FrameRequest {
                        item: request.item,
                        index,
                    })
                    .collect();
                continue;
            }
            if let Some(next) = prefetch.pop() {
                // Warms the source's cache; the frame is not sent.
                let _ = self.source.frame(next.item, next.index);
                continue;
            }
            match self.wake.recv() {
                Ok(()) => {}
                Err(_) => return,
            }
        }
    }

    /// Sends a result, waiting for room but giving up on shutdown. False when the UI is gone.
    fn deliver(&self, mut message: FrameMessage) -> bool {
        loop {
            match self
                .results
                .send_timeout(message, Duration::from_millis(50))
            {
                Ok(()) => {
                    self.repaint.request_repaint();
                    return true;
                }
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return false,
                Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => {
                    if self.shutdown.load(Ordering::Relaxed) {
                        return false;
                    }
                    message = back;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::jobs::NoRepaint;
    use std::sync::atomic::AtomicUsize;

    struct SlowSource {
        decoded: Arc<Mutex<Vec<u64>>>,
        calls: Arc<AtomicUsize>,
    }

    impl FrameSource for SlowSource {
        fn frame(&mut self, _item: usize, index: u64) -> Result<Arc<Frame>, MediaError> {
            std::thread::sleep(Duration::from_millis(20));
            self.decoded.lock().push(index);
            self.calls.fetch_add(1, Ordering::Relaxed);
            Ok(Arc::new(Frame {
                width: 1,
                height: 1,
                rgba: vec![index as u8, 0, 0, 255],
            }))
        }
        fn frame_count(&self, _item: usize) -> u64 {
            1000
        }
    }

    #[test]
    fn latest_request_wins_while_scrubbing() {
        let decoded = Arc::new(Mutex::new(Vec::new()));
        let worker = MediaWorker::spawn(
            SlowSource {
                decoded: decoded.clone(),
                calls: Arc::new(AtomicUsize::new(0)),
            },
            Arc::new(NoRepaint),
        )
        .unwrap();
        for index in 0..100 {
            worker.request(FrameRequest { item: 0, index });
        }
        // The last answered request must be frame 99, and far fewer than 100 were decoded.
        let mut last = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Some(message) = worker.wait_next(Duration::from_millis(100)) {
                assert!(message.result.is_ok());
                last = Some(message.request.index);
                if message.request.index == 99 {
                    break;
                }
            }
        }
        assert_eq!(last, Some(99));
        assert!(decoded.lock().len() < 10, "decoded {:?}", decoded.lock());
    }

    #[test]
    fn prefetches_neighbours_when_idle() {
        let decoded = Arc::new(Mutex::new(Vec::new()));
        let worker = MediaWorker::spawn(
            SlowSource {
                decoded: decoded.clone(),
                calls: Arc::new(AtomicUsize::new(0)),
            },
            Arc::new(NoRepaint),
        )
        .unwrap();
        worker.request(FrameRequest { item: 0, index: 10 });
        let message = worker.wait_next(Duration::from_secs(5)).unwrap();
        assert_eq!(message.request.index, 10);
        std::thread::sleep(Duration::from_millis(150));
        let seen = decoded.lock().clone();
        assert!(seen.contains(&9) && seen.contains(&11), "{seen:?}");
    }

    #[test]
    fn dropping_the_worker_stops_the_thread() {
        let calls = Arc::new(AtomicUsize::new(0));
        let worker = MediaWorker::spawn(
            SlowSource {
                decoded: Arc::new(Mutex::new(Vec::new())),
                calls: calls.clone(),
            },
            Arc::new(NoRepaint),
        )
        .unwrap();
        worker.request(FrameRequest { item: 0, index: 0 });
        drop(worker);
        std::thread::sleep(Duration::from_millis(200));
        let after = calls.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(calls.load(Ordering::Relaxed), after);
        assert!(after <= 3);
    }
}
