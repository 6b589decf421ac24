//! Scale-Adaptive Object Tokenizer host steps: crop geometry, mask grids, positions, gathering and
//! k-means (`pixelrefer/mm_utils.py:25-58`, `pixelreferlite/mm_utils.py:45-165`,
//! `pixelrefer/model/region_encoder.py`, `pixelreferlite/model/region_encoder.py`;
//! `onnx/PIXELREFER_NOTES.md` §6).

use super::config::ReferConfig;
use super::resize::{cv2_area_u8, cv2_linear_f32, cv2_linear_u8, torch_uint8_bilinear};
use crate::media::rgb_pixels;
use image::RgbImage;

/// Which model's SAOT rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// PixelRefer (Vision-Object).
    Full,
    /// PixelRefer-Lite (Object-Only).
    Lite,
}

/// The geometry of one object crop.
#[derive(Debug, Clone, PartialEq)]
pub struct CropGeometry {
    /// `(top, left, bottom, right)` of the crop in the frame, end exclusive.
    pub crop_box: (usize, usize, usize, usize),
    /// The box passed to the position grid: `(y0, x0, y1, x1)` (`bbox` / `bbox_return` upstream).
    pub bbox: (usize, usize, usize, usize),
    /// Mask pixels.
    pub area: usize,
    /// Scale factor.
    pub scale: f64,
    /// Resized crop height (multiple of the patch).
    pub resized_h: usize,
    /// Resized crop width.
    pub resized_w: usize,
}

/// Crop, mask grid and geometry of one mask.
#[derive(Debug, Clone)]
pub struct SaotCrop {
    /// Geometry.
    pub geometry: CropGeometry,
    /// The crop resized to `resized_w × resized_h`.
    pub crop: RgbImage,
    /// The crop before resizing (Lite's local image source).
    pub raw_crop: RgbImage,
    /// Mask grid `(rows, cols, values)`; a cell is selected when its value is `> 0`.
    pub mask_grid: (usize, usize, Vec<f32>),
}

/// The scale rule (`mm_utils.py:43-46`; Lite `:120-125`): `ceil(sqrt(196*n/A))`, and for very
/// large objects `1/sqrt((A/196)/large)`.
pub fn scale_rate(area: usize, mask_num: usize, per_token: f64, large_patches: f64) -> f64 {
    let a = area as f64;
    let s = (per_token * mask_num as f64 / a).sqrt().ceil();
    if s == 1.0 && a / per_token > large_patches {
        1.0 / ((a / per_token) / large_patches).sqrt()
    } else {
        s
    }
}

/// Bounding box `(min_row, min_col, max_row, max_col)` of a non-empty `h×w` mask.
pub fn mask_bounds(mask: &[u8], w: usize) -> Option<(usize, usize, usize, usize)> {
    let mut b: Option<(usize, usize, usize, usize)> = None;
    for (i, &v) in mask.iter().enumerate() {
        if v != 0 {
            let (r, c) = (i / w, i % w);
            b = Some(match b {
                None => (r, c, r, c),
                Some((r0, c0, r1, c1)) => (r0.min(r), c0.min(c), r1.max(r), c1.max(c)),
            });
        }
    }
    b
}

fn sub_image(img: &RgbImage, top: usize, left: usize, bottom: usize, right: usize) -> RgbImage {
    let w = img.width() as usize;
    let src = rgb_pixels(img);
    let mut out = Vec::with_capacity((bottom - top) * (right - left) * 3);
    for r in top..bottom {
        out.extend_from_slice(&src[(r * w + left) * 3..(r * w + right) * 3]);
    }
    RgbImage::from_raw((right - left) as u32, (bottom - top) as u32, out)
        .unwrap_or_else(|| RgbImage::new(0, 0))
}

/// Geometry of a non-empty mask (`mask` is `h×w`, 0/1). `None` when the mask is empty or the
/// box is degenerate.
pub fn geometry(
    variant: Variant,
    mask: &[u8],
    h: usize,
    w: usize,
    cfg: &ReferConfig,
) -> Option<CropGeometry> {
    let (r0, c0, r1, c1) = mask_bounds(mask, w)?;
    let pad = cfg.context_px;
    let (crop_box, bbox) = match variant {
        // pixelrefer/mm_utils.py:33-40: end exclusive at max+28, clipped to H-1 / W-1.
        Variant::Full => {
            let b = (
                r0.saturating_sub(pad),
                c0.saturating_sub(pad),
                (h - 1).min(r1 + pad),
                (w - 1).min(c1 + pad),
            );
            (b, b)
        }
        // pixelreferlite/mm_utils.py:100-112: cv2.boundingRect, end exclusive, includes the mask.
        Variant::Lite => {
            let (top, left) = (r0.saturating_sub(pad), c0.saturating_sub(pad));
            let (bottom, right) = (h.min(r1 + 1 + pad), w.min(c1 + 1 + pad));
            (
                (top, left, bottom, right),
                (top, left, (h - 1).min(bottom - 1), (w - 1).min(right - 1)),
            )
        }
    };
    let mask_h = crop_box.2.checked_sub(crop_box.0)?;
    let mask_w = crop_box.3.checked_sub(crop_box.1)?;
    if mask_h == 0 || mask_w == 0 {
        return None;
    }
    let area = mask.iter().filter(|&&v| v != 0).count();
    let scale = scale_rate(
        area.max(1),
        cfg.mask_num,
        cfg.scale_area_per_token,
        cfg.large_object_patches,
    );
    let p = cfg.patch_size as f64;
    let resized_h = (((mask_h as f64 * scale) / p).ceil() * p) as usize;
    let resized_w = (((mask_w as f64 * scale) / p).ceil() * p) as usize;
    if resized_h == 0 || resized_w == 0 {
        return None;
    }
    Some(CropGeometry {
        crop_box,
        bbox,
        area,
        scale,
        resized_h,
        resized_w,
    })
}

/// Crops and resizes the frame and the mask for one object.
pub fn crop(
    variant: Variant,
    frame: &RgbImage,
    mask: &[u8],
    g: &CropGeometry,
    cfg: &ReferConfig,
) -> SaotCrop {
    let w = frame.width() as usize;
    let (top, left, bottom, right) = g.crop_box;
    let raw_crop = sub_image(frame, top, left, bottom, right);
    let (mh, mw) = (bottom - top, right - left);
    let mut crop_mask = Vec::with_capacity(mh * mw);
    for r in top..bottom {
        crop_mask.extend(
            mask[r * w + left..r * w + right]
                .iter()
                .map(|&v| u8::from(v != 0)),
        );
    }
    let p = cfg.patch_size;
    let (gh, gw) = (g.resized_h / p, g.resized_w / p);
    let (crop, grid) = match variant {
        Variant::Full => (
            cv2_linear_u8(&raw_crop, g.resized_w, g.resized_h),
            torch_uint8_bilinear(&crop_mask, mh, mw, gh, gw)
                .into_iter()
                .map(f32::from)
                .collect(),
        ),
        Variant::Lite => {
            // pixelreferlite/mm_utils.py:128-133
            let c = if g.resized_h >= mh || g.resized_w >= mw {
                cv2_linear_u8(&raw_crop, g.resized_w, g.resized_h)
            } else {
                cv2_area_u8(&raw_crop, g.resized_w, g.resized_h)
            };
            (c, cv2_linear_f32(&crop_mask, mh, mw, gh, gw))
        }
    };
    SaotCrop {
        geometry: g.clone(),
        crop,
        raw_crop,
        mask_grid: (gh, gw, grid),
    }
}

/// `generate_position_tensor` (`region_encoder.py:6-18`) called with `bbox=(y0,x0,y1,x1)`: the
/// first channel comes from rows and is divided by `W-1`, the second from columns divided by
/// `H-1` (upstream quirk, reproduced). `[gh*gw, 2]`, raster order.
pub fn region_position(
    gh: usize,
    gw: usize,
    bbox: (usize, usize, usize, usize),
    raw_h: usize,
    raw_w: usize,
) -> Vec<f32> {
    let bx = (bbox.2 - bbox.0) as f32;
    let by = (bbox.3 - bbox.1) as f32;
    let (b0, b1) = (bbox.0 as f32, bbox.1 as f32);
    let (dw, dh) = ((raw_w as f32) - 1.0, (raw_h as f32) - 1.0);
    let mut out = Vec::with_capacity(gh * gw * 2);
    for i in 0..gh {
        let yt = ((i as f32 / gh as f32) * by + b1) / dh;
        for j in 0..gw {
            let xt = ((j as f32 / gw as f32) * bx + b0) / dw;
            out.push(xt);
            out.push(yt);
        }
    }
    out
}

/// MaskPooling selection (`region_encoder.py:94-119`): rows of `feat` (`[cells, c]`) whose grid
/// value is `> 0`, raster order; the full model also drops all-zero features.
pub fn gather(feat: &[f32], c: usize, grid: &[f32], require_nonzero: bool) -> Vec<f32> {
    let mut out = Vec::new();
    for (i, &g) in grid.iter().enumerate() {
        let row = &feat[i * c..(i + 1) * c];
        if g > 0.0 && (!require_nonzero || row.iter().any(|&v| v != 0.0)) {
            out.extend_from_slice(row);
        }
    }
    out
}

/// The deterministic k-means init of the reference: indices `floor(i*n/k)` (upstream uses an
/// unseeded `torch.randperm`; `onnx/PIXELREFER_NOTES.md` §6.3).
pub fn kmeans_init_indices(n: usize, k: usize) -> Vec<usize> {
    (0..k).map(|i| i * n / k).collect()
}

/// `kmeans_fast` (`region_encoder.py:73-92`; Lite `:116-142`) on `n×c` tokens: squared L2,
/// first-index argmin, empty clusters keep their centroid, stop when `allclose(old, new)` and
/// return the old centroids. Returns `k×c`.
pub fn kmeans(tokens: &[f32], c: usize, k: usize, iters: usize, rtol: f32, atol: f32) -> Vec<f32> {
    let n = tokens.len() / c;
    let mut cent: Vec<f32> = kmeans_init_indices(n, k)
        .into_iter()
        .flat_map(|i| tokens[i * c..(i + 1) * c].iter().copied())
        .collect();
    let mut labels = vec![0usize; n];
    for _ in 0..iters {
        for (t, label) in labels.iter_mut().enumerate() {
            let x = &tokens[t * c..(t + 1) * c];
            let mut best = (f32::INFINITY, 0);
            for j in 0..k {
                let y = &cent[j * c..(j + 1) * c];
                let d: f32 = x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum();
                if d < best.0 {
                    best = (d, j);
                }
            }
            *label = best.1;
        }
        let mut new = cent.clone();
        for j in 0..k {
            let members: Vec<usize> = (0..n).filter(|&t| labels[t] == j).collect();
            if members.is_empty() {
                continue;
            }
            for ch in 0..c {
                let s: f32 = members.iter().map(|&t| tokens[t * c + ch]).sum();
                new[j * c + ch] = s / members.len() as f32;
            }
        }
        let close = cent
            .iter()
            .zip(&new)
            .all(|(o, nw)| (o - nw).abs() <= atol + rtol * nw.abs());
        if close {
            break;
        }
        cent = new;
    }
    cent
}
