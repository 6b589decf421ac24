//! Row-major binary bitmap.

use super::MaskError;
use serde::{Deserialize, Serialize};

/// Axis-aligned box in image pixels: `x, y` is the top-left pixel, `w, h` the size (≥ 1 when
/// the mask is non-empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BBox {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels.
    pub w: u32,
    /// Height in pixels.
    pub h: u32,
}

/// A binary mask of `width × height` pixels, one byte per pixel (0 or 1), row-major.
#[derive(Clone, PartialEq, Eq)]
pub struct Mask {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mask({}x{}, area {})", self.width, self.height, self.area())
    }
}

impl Mask {
    /// An empty (all zero) mask.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            data: vec![0; width as usize * height as usize],
        }
    }

    /// Wraps row-major bytes; any non-zero byte counts as set.
    pub fn from_raw(width: u32, height: u32, data: Vec<u8>) -> Result<Self, MaskError> {
        if data.len() != width as usize * height as usize {
            return Err(MaskError::SizeMismatch {
                expected_w: width,
                expected_h: height,
                actual_w: data.len() as u32,
                actual_h: 1,
            });
        }
        let data = data.into_iter().map(|v| u8::from(v != 0)).collect();
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Row-major bytes, 0 or 1.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Mutable row-major bytes; callers must only write 0 or 1.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Whether pixel (x, y) is set; false outside the mask.
    pub fn get(&self, x: i64, y: i64) -> bool {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return false;
        }
        self.data[y as usize * self.width as usize + x as usize] != 0
    }

    /// Sets pixel (x, y); ignored outside the mask.
    pub fn set(&mut self, x: i64, y: i64, value: bool) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return;
        }
        self.data[y as usize * self.width as usize + x as usize] = u8::from(value);
    }

    /// Number of set pixels.
    pub fn area(&self) -> u64 {
        self.data.iter().map(|&v| v as u64).sum()
    }

    /// True when no pixel is set.
    pub fn is_empty(&self) -> bool {
        self.data.iter().all(|&v| v == 0)
    }
}
