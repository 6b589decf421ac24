//! CPU side of the overlay: object masks packed into bit planes, per-slot styles and the
//! uniform block shared with `shaders/mask_overlay.wgsl`. Pure data, no GPU.

use crate::mask::{BBox, Mask};
use std::sync::atomic::{AtomicU64, Ordering};

/// Objects per layer: bit `k` of layer `l` means object slot `32 * l + k` covers the texel.
pub const SLOTS_PER_LAYER: usize = 32;

/// Style flag: the slot is drawn (hidden objects leave it clear).
pub const FLAG_VISIBLE: u32 = 1;
/// Style flag: the selected object (stronger fill, thicker light outline).
pub const FLAG_SELECTED: u32 = 2;
/// Style flag: the object under the pointer (thicker outline).
pub const FLAG_HOVERED: u32 = 4;

/// Uniform block of the overlay shader.
///
/// KEEP IN SYNC with `struct Uniforms` in `shaders/mask_overlay.wgsl` (field order, types and
/// size; `tests/shaders.rs` checks the size against naga's layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OverlayUniforms {
    /// Framebuffer position (physical pixels) of the image's top-left corner.
    pub image_origin_px: [f32; 2],
    /// Image pixels per framebuffer pixel, per axis (the inverse of the zoom).
    pub image_px_per_screen_px: [f32; 2],
    /// Image (and mask texture) size in image pixels.
    pub image_size_px: [u32; 2],
    /// Number of texture layers in use.
    pub layer_count: u32,
    /// Number of styled slots.
    pub slot_count: u32,
    /// Outline width in framebuffer pixels (doubled for selected and hovered objects).
    pub outline_width_px: f32,
    /// Global multiplier on fill opacity (0 shows outlines only).
    pub fill_opacity: f32,
    /// Padding to a 16-byte multiple.
    pub _pad: [f32; 2],
}

/// Style of one object slot.
///
/// KEEP IN SYNC with `struct SlotStyle` in `shaders/mask_overlay.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SlotStyle {
    /// Colour, RGB in gamma space 0..1, and fill alpha in `a`.
    pub color: [f32; 4],
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Padding to a 16-byte multiple.
    pub _pad: [u32; 3],
}

impl SlotStyle {
    /// A style from an 8-bit colour, a fill alpha and flags.
    pub fn new(rgb: [u8; 3], fill_alpha: f32, flags: u32) -> Self {
        Self {
            color: [
                f32::from(rgb[0]) / 255.0,
                f32::from(rgb[1]) / 255.0,
                f32::from(rgb[2]) / 255.0,
                fill_alpha,
            ],
            flags,
            _pad: [0; 3],
        }
    }
}

static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

/// Every object mask of one frame packed as bits of `u32` texels, `layers` planes of
/// `width × height`, plane-major then row-major (the layout of the R32Uint texture array).
///
/// Changes are versioned with process-unique numbers so a GPU copy can tell whether it can
/// catch up by uploading only the dirty rectangles or needs a full upload.
#[derive(Debug, Clone)]
pub struct OverlayMasks {
    width: u32,
    height: u32,
    layers: u32,
    data: Vec<u32>,
    version: u64,
    dirty_since: u64,
    dirty: Vec<BBox>,
}

impl OverlayMasks {
    /// All-clear planes for `slot_count` objects (at least one layer).
    pub fn new(width: u32, height: u32, slot_count: usize) -> Self {
        let layers = slot_count.div_ceil(SLOTS_PER_LAYER).max(1) as u32;
        let version = next_version();
        Self {
            width,
            height,
            layers,
            data: vec![0; width as usize * height as usize * layers as usize],
            version,
            dirty_since: version,
            dirty: Vec::new(),
        }
    }

    /// Packs `masks[k]` into slot `k` (None = no mask on this frame). Masks whose size differs
    /// from `width × height` are skipped and their slot index returned.
    pub fn pack(width: u32, height: u32, masks: &[Option<&Mask>]) -> (Self, Vec<usize>) {
        let mut packed = Self::new(width, height, masks.len());
        let mut skipped = Vec::new();
        for (slot, mask) in masks.iter().enumerate() {
            if let Some(mask) = mask {
                if mask.width() != width || mask.height() != height {
                    skipped.push(slot);
                    continue;
                }
                packed.or_slot(slot, mask);
            }
        }
        (packed, skipped)
    }

    fn or_slot(&mut self, slot: usize, mask: &Mask) {
        let plane = self.width as usize * self.height as usize;
        let layer = slot / SLOTS_PER_LAYER;
        let bit = 1u32 << (slot % SLOTS_PER_LAYER);
        let texels = &mut self.data[layer * plane..(layer + 1) * plane];
        // Masks are mostly empty: skip 8 zero bytes at a time, and keep the inner loop
        // branch-free so it vectorises.
        let data = mask.data();
        let mut texel_chunks = texels.chunks_exact_mut(8);
        let mut data_chunks = data.chunks_exact(8);
        for (texel8, data8) in (&mut texel_chunks).zip(&mut data_chunks) {
            let word = <[u8; 8]>::try_from(data8).map_or(u64::MAX, u64::from_ne_bytes);
            if word == 0 {
                continue;
            }
            for (texel, &value) in texel8.iter_mut().zip(data8) {
                *texel |= u32::from(value != 0) * bit;
            }
        }
        for (texel, &value) in texel_chunks
            .into_remainder()
            .iter_mut()
            .zip(data_chunks.remainder())
        {
            *texel |= u32::from(value != 0) * bit;
        }
    }

    /// Rewrites slot `slot` inside `rect` from `mask` (same size as the planes), marking the
    /// rectangle dirty. Used for live brush strokes.
    pub fn update_slot_rect(&mut self, slot: usize, mask: &Mask, rect: BBox) {
        if slot >= self.layers as usize * SLOTS_PER_LAYER
            || mask.width() != self.width
            || mask.height() != self.height
        {
            return;
        }
        let Some(rect) = rect.clipped(self.width, self.height) else {
            return;
        };
        let width = self.width as usize;
        let plane = width * self.height as usize;
        let layer = slot / SLOTS_PER_LAYER;
        let bit = 1u32 << (slot % SLOTS_PER_LAYER);
        let mask_data = mask.data();
        for y in rect.y as usize..(rect.y + rect.h) as usize {
            let row = y * width;
            let range = row + rect.x as usize..row + (rect.x + rect.w) as usize;
            let texels = &mut self.data[layer * plane + range.start..layer * plane + range.end];
            for (texel, &value) in texels.iter_mut().zip(&mask_data[range]) {
                *texel = (*texel & !bit) | (u32::from(value != 0) * bit);
            }
        }
        self.version = next_version();
        self.dirty.push(rect);
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Number of 32-slot layers.
    pub fn layers(&self) -> u32 {
        self.layers
    }

    /// The packed texels (plane-major, row-major).
    pub fn data(&self) -> &[u32] {
        &self.data
    }

    /// The texel at `(x, y)` of `layer` (0 outside).
    pub fn texel(&self, layer: u32, x: u32, y: u32) -> u32 {
        if layer >= self.layers || x >= self.width || y >= self.height {
            return 0;
        }
        let plane = self.width as usize * self.height as usize;
        self.data[layer as usize * plane + y as usize * self.width as usize + x as usize]
    }

    /// Version of the current contents (process-unique).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A copy uploaded at version `uploaded` can catch up by uploading these rectangles; None
    /// means it needs a full upload.
    pub fn dirty_rects_since(&self, uploaded: u64) -> Option<&[BBox]> {
        if uploaded == self.version {
            Some(&[])
        } else if uploaded == self.dirty_since {
            Some(&self.dirty)
        } else {
            None
        }
    }

    /// Call after handing these contents to the renderer for a frame: later dirty rectangles
    /// are relative to this version.
    pub fn mark_submitted(&mut self) {
        self.dirty_since = self.version;
        self.dirty.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mask_with(width: u32, height: u32, pixels: &[(i64, i64)]) -> Mask {
        let mut mask = Mask::new(width, height);
        for &(x, y) in pixels {
            mask.set(x, y, true);
        }
        mask
    }

    #[test]
    fn uniform_structs_are_16_byte_multiples() {
        assert_eq!(std::mem::size_of::<OverlayUniforms>(), 48);
        assert_eq!(std::mem::size_of::<SlotStyle>(), 32);
    }

    #[test]
    fn packs_slots_into_bits_and_layers() {
        let a = mask_with(4, 3, &[(0, 0), (1, 1)]);
        let b = mask_with(4, 3, &[(1, 1), (3, 2)]);
        let mut masks: Vec<Option<&Mask>> = vec![Some(&a), Some(&b)];
        masks.extend(std::iter::repeat_n(None, 31));
        masks.push(Some(&a)); // slot 33: layer 1, bit 1
        let (packed, skipped) = OverlayMasks::pack(4, 3, &masks);
        assert!(skipped.is_empty());
        assert_eq!(packed.layers(), 2);
        assert_eq!(packed.texel(0, 0, 0), 0b01);
        assert_eq!(packed.texel(0, 1, 1), 0b11);
        assert_eq!(packed.texel(0, 3, 2), 0b10);
        assert_eq!(packed.texel(0, 2, 2), 0);
        assert_eq!(packed.texel(1, 0, 0), 0b10);
        assert_eq!(packed.texel(1, 1, 1), 0b10);
    }

    #[test]
    fn packing_matches_per_pixel_reference_on_odd_sizes() {
        let (w, h) = (13, 7);
        let mut masks = Vec::new();
        for k in 0..3u32 {
            let mut m = Mask::new(w, h);
            for i in 0..(w * h) as i64 {
                if (i * (k as i64 + 3)) % 5 == 0 {
                    m.set(i % w as i64, i / w as i64, true);
                }
            }
            masks.push(m);
        }
        let refs: Vec<Option<&Mask>> = masks.iter().map(Some).collect();
        let (packed, _) = OverlayMasks::pack(w, h, &refs);
        for y in 0..h {
            for x in 0..w {
                let want = (0..3)
                    .filter(|&k| masks[k].get(x as i64, y as i64))
                    .fold(0u32, |acc, k| acc | (1 << k));
                assert_eq!(packed.texel(0, x, y), want, "({x}, {y})");
            }
        }
    }

    #[test]
    fn wrong_sized_masks_are_skipped() {
        let small = Mask::new(2, 2);
        let (_, skipped) = OverlayMasks::pack(4, 3, &[Some(&small)]);
        assert_eq!(skipped, vec![0]);
    }

    #[test]
    fn rect_updates_touch_only_their_slot_and_rect() {
        let a = mask_with(8, 8, &[(0, 0), (7, 7)]);
        let b = mask_with(8, 8, &[(7, 7)]);
        let (mut packed, _) = OverlayMasks::pack(8, 8, &[Some(&a), Some(&b)]);
        packed.mark_submitted();
        let before = packed.version();
        let painted = mask_with(8, 8, &[(2, 2), (3, 3), (0, 0)]);
        packed.update_slot_rect(
            0,
            &painted,
            BBox {
                x: 2,
                y: 2,
                w: 10,
                h: 2,
            },
        );
        assert_eq!(packed.texel(0, 2, 2), 1);
        assert_eq!(packed.texel(0, 3, 3), 1);
        assert_eq!(packed.texel(0, 0, 0), 1, "outside the rect stays");
        assert_eq!(packed.texel(0, 7, 7), 0b11);
        let rects = packed.dirty_rects_since(before).unwrap();
        assert_eq!(
            rects,
            &[BBox {
                x: 2,
                y: 2,
                w: 6,
                h: 2
            }]
        );
        assert!(packed.dirty_rects_since(12345678).is_none());
        assert_eq!(packed.dirty_rects_since(packed.version()).unwrap(), &[]);
    }
}
