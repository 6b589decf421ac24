//! A least-recently-used cache of decoded frames, bounded by the bytes of their pixels.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::Frame;

/// Default byte budget of a [`FrameCache`]: 512 MiB.
pub const DEFAULT_CACHE_BUDGET_BYTES: usize = 512 << 20;

/// LRU cache of frames keyed by `(item, frame index)`, bounded by the sum of the frames'
/// RGBA byte sizes. A frame larger than the whole budget is not kept. Frames still held
/// elsewhere through their `Arc` are not counted once evicted.
#[derive(Debug)]
pub struct FrameCache {
    budget_bytes: usize,
    used_bytes: usize,
    last_frame_bytes: usize,
    tick: u64,
    entries: HashMap<(usize, u64), (Arc<Frame>, u64)>,
    /// Last-use tick → key, oldest first.
    order: BTreeMap<u64, (usize, u64)>,
}

impl Default for FrameCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_BUDGET_BYTES)
    }
}

impl FrameCache {
    /// An empty cache that keeps at most `budget_bytes` of pixels.
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget_bytes,
            used_bytes: 0,
            last_frame_bytes: 0,
            tick: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// The byte budget.
    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }

    /// Changes the byte budget, evicting the least recently used frames to fit.
    pub fn set_budget_bytes(&mut self, budget_bytes: usize) {
        self.budget_bytes = budget_bytes;
        self.evict_to(budget_bytes);
    }

    /// Bytes of pixels currently held.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// Byte size of the last frame offered to [`FrameCache::insert`] (0 before any).
    pub fn last_frame_bytes(&self) -> usize {
        self.last_frame_bytes
    }

    /// Number of cached frames.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no frame is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cached frame, marking it most recently used.
    pub fn get(&mut self, item: usize, index: u64) -> Option<Arc<Frame>> {
        self.tick += 1;
        let tick = self.tick;
        let (frame, last) = self.entries.get_mut(&(item, index))?;
        self.order.remove(last);
        *last = tick;
        self.order.insert(tick, (item, index));
        Some(Arc::clone(frame))
    }

    /// Whether a frame is cached, without touching its recency.
    pub fn contains(&self, item: usize, index: u64) -> bool {
        self.entries.contains_key(&(item, index))
    }

    /// Stores a frame as the most recently used one, evicting older frames to stay within the
    /// budget. A frame bigger than the budget is not stored.
    pub fn insert(&mut self, item: usize, index: u64, frame: Arc<Frame>) {
        self.remove(item, index);
        let size = frame.rgba.len();
        self.last_frame_bytes = size;
        if size > self.budget_bytes {
            return;
        }
        self.evict_to(self.budget_bytes - size);
        self.tick += 1;
        self.order.insert(self.tick, (item, index));
        self.entries.insert((item, index), (frame, self.tick));
        self.used_bytes += size;
    }

    /// Drops one frame if cached.
    pub fn remove(&mut self, item: usize, index: u64) {
        if let Some((frame, tick)) = self.entries.remove(&(item, index)) {
            self.order.remove(&tick);
            self.used_bytes -= frame.rgba.len();
        }
    }

    /// Drops every frame.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.used_bytes = 0;
    }

    fn evict_to(&mut self, max_bytes: usize) {
        while self.used_bytes > max_bytes {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some((frame, _)) = self.entries.remove(&key) {
                self.used_bytes -= frame.rgba.len();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frame(bytes: usize) -> Arc<Frame> {
        Arc::new(Frame {
            width: (bytes / 4) as u32,
            height: 1,
            rgba: vec![0; bytes],
        })
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let mut cache = FrameCache::new(100);
        cache.insert(0, 0, frame(40));
        cache.insert(0, 1, frame(40));
        assert_eq!(cache.used_bytes(), 80);
        // Touch frame 0 so frame 1 is the oldest.
        assert!(cache.get(0, 0).is_some());
        cache.insert(0, 2, frame(40));
        assert_eq!(cache.used_bytes(), 80);
        assert!(cache.contains(0, 0));
        assert!(!cache.contains(0, 1));
        assert!(cache.contains(0, 2));
        // A big frame pushes out both.
        cache.insert(1, 0, frame(100));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.used_bytes(), 100);
    }

    #[test]
    fn oversized_frames_are_not_kept_and_budget_shrinks() {
        let mut cache = FrameCache::new(64);
        cache.insert(0, 0, frame(65));
        assert!(cache.is_empty());
        assert_eq!(cache.used_bytes(), 0);
        for i in 0..4 {
            cache.insert(0, i, frame(16));
        }
        assert_eq!(cache.used_bytes(), 64);
        cache.set_budget_bytes(20);
        assert_eq!(cache.used_bytes(), 16);
        assert!(cache.contains(0, 3));
        // Re-inserting the same key replaces without double counting.
        cache.insert(0, 3, frame(8));
        assert_eq!(cache.used_bytes(), 8);
        cache.clear();
        assert_eq!((cache.len(), cache.used_bytes()), (0, 0));
    }
}
