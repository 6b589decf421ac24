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
        write!(
            f,
            "Mask({}x{}, area {})",
            self.width,
            self.height,
            self.area()
        )
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

impl BBox {
    /// The whole of a `width × height` image.
    pub fn whole(width: u32, height: u32) -> BBox {
        BBox {
            x: 0,
            y: 0,
            w: width,
            h: height,
        }
    }

    /// The smallest box containing both boxes.
    pub fn union(self, other: BBox) -> BBox {
        let x0 = self.x.min(other.x);
        let y0 = self.y.min(other.y);
        let x1 = (self.x + self.w).max(other.x + other.w);
        let y1 = (self.y + self.h).max(other.y + other.h);
        BBox {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        }
    }

    /// Clipped to a `width × height` image; None when nothing is left.
    pub fn clipped(self, width: u32, height: u32) -> Option<BBox> {
        let x1 = (self.x.saturating_add(self.w)).min(width);
        let y1 = (self.y.saturating_add(self.h)).min(height);
        (self.x < x1 && self.y < y1).then(|| BBox {
            x: self.x,
            y: self.y,
            w: x1 - self.x,
            h: y1 - self.y,
        })
    }

    /// `[x, y, w, h]` as COCO writes a bbox.
    pub fn to_xywh(self) -> [u32; 4] {
        [self.x, self.y, self.w, self.h]
    }
}

/// Tracks the inclusive pixel range touched by a rasteriser.
#[derive(Default)]
struct Dirty {
    range: Option<(u32, u32, u32, u32)>,
}

impl Dirty {
    fn add_span(&mut self, y: u32, x0: u32, x1: u32) {
        self.range = Some(match self.range {
            None => (x0, y, x1, y),
            Some((a, b, c, d)) => (a.min(x0), b.min(y), c.max(x1), d.max(y)),
        });
    }

    fn bbox(&self) -> Option<BBox> {
        self.range.map(|(x0, y0, x1, y1)| BBox {
            x: x0,
            y: y0,
            w: x1 - x0 + 1,
            h: y1 - y0 + 1,
        })
    }
}

impl Mask {
    fn check_same_size(&self, other: &Mask) -> Result<(), MaskError> {
        if self.width != other.width || self.height != other.height {
            return Err(MaskError::SizeMismatch {
                expected_w: self.width,
                expected_h: self.height,
                actual_w: other.width,
                actual_h: other.height,
            });
        }
        Ok(())
    }

    /// The tight bounding box of the set pixels, or None for an empty mask.
    pub fn bbox(&self) -> Option<BBox> {
        let w = self.width as usize;
        if w == 0 {
            return None;
        }
        let mut range: Option<(usize, usize, usize, usize)> = None;
        for (y, row) in self.data.chunks_exact(w).enumerate() {
            let Some(first) = row.iter().position(|&v| v != 0) else {
                continue;
            };
            let last = row.iter().rposition(|&v| v != 0).unwrap_or(first);
            range = Some(match range {
                None => (first, y, last, y),
                Some((x0, y0, x1, _)) => (x0.min(first), y0, x1.max(last), y),
            });
        }
        range.map(|(x0, y0, x1, y1)| BBox {
            x: x0 as u32,
            y: y0 as u32,
            w: (x1 - x0 + 1) as u32,
            h: (y1 - y0 + 1) as u32,
        })
    }

    /// Nearest-neighbour resize to `width × height`: output pixel centre `(x + 0.5) · sw / w`
    /// samples the source pixel it falls in.
    pub fn resize_nearest(&self, width: u32, height: u32) -> Mask {
        let mut out = Mask::new(width, height);
        if self.width == 0 || self.height == 0 || width == 0 || height == 0 {
            return out;
        }
        let sx: Vec<usize> = (0..width as u64)
            .map(|x| (((2 * x + 1) * self.width as u64) / (2 * width as u64)) as usize)
            .map(|x| x.min(self.width as usize - 1))
            .collect();
        let sw = self.width as usize;
        for y in 0..height as u64 {
            let syy = (((2 * y + 1) * self.height as u64) / (2 * height as u64)) as usize;
            let syy = syy.min(self.height as usize - 1);
            let src = &self.data[syy * sw..(syy + 1) * sw];
            let dst_start = y as usize * width as usize;
            let dst = &mut out.data[dst_start..dst_start + width as usize];
            for (d, &s) in dst.iter_mut().zip(&sx) {
                *d = src[s];
            }
        }
        out
    }

    /// Paints (or erases, `value = false`) a capsule of `radius` pixels around the segment
    /// `from → to`, in image pixel coordinates where pixel `(x, y)` has its centre at
    /// `(x + 0.5, y + 0.5)`. A pixel is covered when its centre lies within `radius` of the
    /// segment; the pixels under `from` and `to` are always covered so a tiny brush still paints.
    /// Returns the rectangle of covered pixels inside the mask (None when the stroke is outside).
    pub fn paint_stroke(
        &mut self,
        from: (f32, f32),
        to: (f32, f32),
        radius: f32,
        value: bool,
    ) -> Option<BBox> {
        if self.width == 0 || self.height == 0 {
            return None;
        }
        let finite = |v: f32| if v.is_finite() { v } else { 0.0 };
        let (ax, ay) = (finite(from.0) as f64, finite(from.1) as f64);
        let (bx, by) = (finite(to.0) as f64, finite(to.1) as f64);
        let r = (finite(radius) as f64).max(0.0);
        let (w, h) = (self.width as f64, self.height as f64);
        let x_lo = (ax.min(bx) - r - 1.0).floor().clamp(0.0, w - 1.0) as u32;
        let x_hi = (ax.max(bx) + r + 1.0).floor().clamp(0.0, w - 1.0) as u32;
        let y_lo = (ay.min(by) - r - 1.0).floor().clamp(0.0, h - 1.0) as u32;
        let y_hi = (ay.max(by) + r + 1.0).floor().clamp(0.0, h - 1.0) as u32;
        let (dx, dy) = (bx - ax, by - ay);
        let len2 = dx * dx + dy * dy;
        let r2 = r * r;
        let v = u8::from(value);
        let mut dirty = Dirty::default();
        let stride = self.width as usize;
        for y in y_lo..=y_hi {
            let py = y as f64 + 0.5;
            let mut span: Option<(u32, u32)> = None;
            for x in x_lo..=x_hi {
                let px = x as f64 + 0.5;
                let t = if len2 > 0.0 {
                    (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (cx, cy) = (ax + t * dx - px, ay + t * dy - py);
                let under_end = |ex: f64, ey: f64| ex.floor() == x as f64 && ey.floor() == y as f64;
                if cx * cx + cy * cy <= r2 || under_end(ax, ay) || under_end(bx, by) {
                    self.data[y as usize * stride + x as usize] = v;
                    span = Some(match span {
                        None => (x, x),
                        Some((s, _)) => (s, x),
                    });
                }
            }
            if let Some((s, e)) = span {
                dirty.add_span(y, s, e);
            }
        }
        dirty.bbox()
    }

    /// Fills (or clears) the polygon `points` (image pixel coordinates, closed implicitly) with
    /// the even-odd rule, sampling pixel centres `(x + 0.5, y + 0.5)`. Self-intersecting
    /// polygons are fine. Returns the rectangle of covered pixels (None when nothing is covered).
    pub fn fill_polygon(&mut self, points: &[(f32, f32)], value: bool) -> Option<BBox> {
        if points.len() < 3 || self.width == 0 || self.height == 0 {
            return None;
        }
        if points.iter().any(|p| !p.0.is_finite() || !p.1.is_finite()) {
            return None;
        }
        let pts: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (x as f64, y as f64)).collect();
        let y_min = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let y_max = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        let row_lo = (y_min - 0.5).ceil().max(0.0);
        let row_hi = (y_max - 0.5).floor().min(self.height as f64 - 1.0);
        if row_lo > row_hi {
            return None;
        }
        let v = u8::from(value);
        let stride = self.width as usize;
        let mut dirty = Dirty::default();
        let mut xs: Vec<f64> = Vec::new();
        for y in row_lo as u32..=row_hi as u32 {
            let yc = y as f64 + 0.5;
            xs.clear();
            for i in 0..pts.len() {
                let (x0, y0) = pts[i];
                let (x1, y1) = pts[(i + 1) % pts.len()];
                // Half-open rule so a vertex on the scanline is counted once.
                if (y0 <= yc && yc < y1) || (y1 <= yc && yc < y0) {
                    xs.push(x0 + (yc - y0) * (x1 - x0) / (y1 - y0));
                }
            }
            xs.sort_by(f64::total_cmp);
            for pair in xs.chunks_exact(2) {
                // Pixels whose centre x + 0.5 lies in [a, b).
                let a = (pair[0] - 0.5).ceil().max(0.0);
                let b = ((pair[1] - 0.5).ceil() - 1.0).min(self.width as f64 - 1.0);
                if a > b {
                    continue;
                }
                let (a, b) = (a as usize, b as usize);
                let row = y as usize * stride;
                self.data[row + a..=row + b].fill(v);
                dirty.add_span(y, a as u32, b as u32);
            }
        }
        dirty.bbox()
    }

    /// Sets every background pixel that is not 4-connected to the mask border (the holes).
    pub fn fill_holes(&mut self) {
        let (w, h) = (self.width as usize, self.height as usize);
        if w == 0 || h == 0 {
            return;
        }
        // 0 = unvisited background, 1 = foreground, 2 = background reached from the border.
        let mut state = self.data.clone();
        let mut stack: Vec<usize> = Vec::new();
        let seed = |i: usize, state: &mut Vec<u8>, stack: &mut Vec<usize>| {
            if state[i] == 0 {
                state[i] = 2;
                stack.push(i);
            }
        };
        for x in 0..w {
            seed(x, &mut state, &mut stack);
            seed((h - 1) * w + x, &mut state, &mut stack);
        }
        for y in 0..h {
            seed(y * w, &mut state, &mut stack);
            seed(y * w + w - 1, &mut state, &mut stack);
        }
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            if x > 0 {
                seed(i - 1, &mut state, &mut stack);
            }
            if x + 1 < w {
                seed(i + 1, &mut state, &mut stack);
            }
            if y > 0 {
                seed(i - w, &mut state, &mut stack);
            }
            if y + 1 < h {
                seed(i + w, &mut state, &mut stack);
            }
        }
        for (d, s) in self.data.iter_mut().zip(&state) {
            *d = u8::from(*s != 2);
        }
    }

    /// Sets every pixel set in `other` (same size required).
    pub fn union(&mut self, other: &Mask) -> Result<(), MaskError> {
        self.check_same_size(other)?;
        for (a, &b) in self.data.iter_mut().zip(&other.data) {
            *a |= b;
        }
        Ok(())
    }

    /// Keeps only pixels also set in `other` (same size required).
    pub fn intersect(&mut self, other: &Mask) -> Result<(), MaskError> {
        self.check_same_size(other)?;
        for (a, &b) in self.data.iter_mut().zip(&other.data) {
            *a &= b;
        }
        Ok(())
    }

    /// Intersection over union with `other` (same size required); 1 when both are empty.
    pub fn iou(&self, other: &Mask) -> Result<f64, MaskError> {
        self.check_same_size(other)?;
        let (mut inter, mut union) = (0u64, 0u64);
        for (&a, &b) in self.data.iter().zip(&other.data) {
            inter += u64::from(a & b);
            union += u64::from(a | b);
        }
        Ok(if union == 0 {
            1.0
        } else {
            inter as f64 / union as f64
        })
    }

    /// Clears every pixel set in `other` (same size required).
    pub fn subtract(&mut self, other: &Mask) -> Result<(), MaskError> {
        self.check_same_size(other)?;
        for (a, &b) in self.data.iter_mut().zip(&other.data) {
            *a &= 1 - b;
        }
        Ok(())
    }

    /// Encodes the mask as an 8-bit grayscale PNG with values 0 and 255 (through
    /// [`Rle::write_png`](crate::mask::Rle::write_png), the one PNG mask encoder).
    pub fn to_png_bytes(&self) -> Result<Vec<u8>, MaskError> {
        crate::mask::Rle::from_mask(self).to_png_bytes()
    }

    /// Writes the mask as an 8-bit grayscale PNG with values 0 and 255.
    pub fn to_png(&self, path: &std::path::Path) -> Result<(), MaskError> {
        let bytes = self.to_png_bytes()?;
        std::fs::write(path, bytes)
            .map_err(|e| MaskError::Image(format!("cannot write {}: {e}", path.display())))
    }

    /// Decodes any PNG (or other image the `image` crate reads): a pixel is set when its
    /// grayscale value (luma of colour images, alpha ignored) is greater than `threshold`.
    pub fn from_png_bytes(bytes: &[u8], threshold: u8) -> Result<Mask, MaskError> {
        let img = image::load_from_memory(bytes)
            .map_err(|e| MaskError::Image(format!("cannot decode the mask image: {e}")))?;
        let gray = img.to_luma8();
        let (w, h) = gray.dimensions();
        let data = gray
            .into_raw()
            .into_iter()
            .map(|v| u8::from(v > threshold))
            .collect();
        Ok(Mask {
            width: w,
            height: h,
            data,
        })
    }

    /// Reads a mask image from `path`; see [`Mask::from_png_bytes`] for the threshold.
    pub fn from_png(path: &std::path::Path, threshold: u8) -> Result<Mask, MaskError> {
        let bytes = std::fs::read(path)
            .map_err(|e| MaskError::Image(format!("cannot read {}: {e}", path.display())))?;
        Self::from_png_bytes(&bytes, threshold)
            .map_err(|e| MaskError::Image(format!("{}: {e}", path.display())))
    }
}
