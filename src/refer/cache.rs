//! A bounded cache of frame and region embeddings, keyed by hashes of the frame pixels and mask
//! bits (STYLE.md: key cached region embeddings by frame and mask hash).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

/// A stable 64-bit hash of bytes with a domain tag.
pub fn hash_bytes(bytes: &[u8], domain: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    domain.hash(&mut h);
    bytes.hash(&mut h);
    h.finish()
}

/// A stable 64-bit hash of f32 values (bit patterns) with a domain tag.
pub fn hash_f32(values: &[f32], domain: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    domain.hash(&mut h);
    for v in values {
        v.to_bits().hash(&mut h);
    }
    h.finish()
}

struct Lru {
    cap: usize,
    map: HashMap<u64, Vec<f32>>,
    order: VecDeque<u64>,
}

impl Lru {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, key: u64) -> Option<Vec<f32>> {
        self.map.get(&key).cloned()
    }

    fn put(&mut self, key: u64, value: Vec<f32>) {
        if self.map.insert(key, value).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

/// Frame tokens (projected global tokens) and region tokens (object tokens per mask).
pub struct Cache {
    frames: Lru,
    regions: Lru,
}

impl Cache {
    /// A cache holding at most `regions` region entries and `frames` frame entries.
    pub fn new(regions: usize, frames: usize) -> Self {
        Self {
            frames: Lru::new(frames),
            regions: Lru::new(regions),
        }
    }

    /// Cached region tokens.
    pub fn region(&self, key: u64) -> Option<Vec<f32>> {
        self.regions.get(key)
    }

    /// Stores region tokens.
    pub fn put_region(&mut self, key: u64, v: Vec<f32>) {
        self.regions.put(key, v);
    }

    /// Cached frame tokens.
    pub fn frame(&self, key: u64) -> Option<Vec<f32>> {
        self.frames.get(key)
    }

    /// Stores frame tokens.
    pub fn put_frame(&mut self, key: u64, v: Vec<f32>) {
        self.frames.put(key, v);
    }

    /// Empties both.
    pub fn clear(&mut self) {
        *self = Self::new(self.regions.cap, self.frames.cap);
    }

    /// `(frames, regions)` entries.
    pub fn len(&self) -> (usize, usize) {
        (self.frames.map.len(), self.regions.map.len())
    }
}
