//! Image and mask resizes used by the host steps, ported from the libraries the reference uses.
//!
//! * [`pil_bicubic`]: Pillow `Image.resize(..., BICUBIC)` on RGB8, the port in
//!   [`crate::media::resample`] that SAM 2's video frames share. Used by the image processor
//!   (`image_processing.py`, `resample=3`). Bit-exact with Pillow 13 for any sizes.
//! * [`torch_uint8_bilinear`]: `F.interpolate` on a uint8 mask (`pixelrefer/mm_utils.py:52`),
//!   ported from `host.torch_uint8_bilinear`. Bit-exact.
//! * [`cv2_linear_f32`]: `cv2.resize(float32 mask, INTER_LINEAR)` (`pixelreferlite/mm_utils.py:140-145`),
//!   ported from `host.cv2_linear_f32`; the `> 0` selection matches.
//! * [`cv2_linear_u8`], [`cv2_area_u8`]: OpenCV's uint8 `INTER_LINEAR` / `INTER_AREA` on RGB8
//!   (`modules/imgproc/src/resize.cpp`: 11-bit fixed-point linear kernels with the uchar
//!   vertical rounding, integer-factor block means, float area weights). Bit-exact with the
//!   pinned opencv-python 5.0.0 for any sizes (`tests/refer_cv2.rs` compares with `cv2.resize`).
//! * [`bilinear_features`]: `F.interpolate(float, bilinear, align_corners=False)` on feature grids.

use crate::media::rgb_pixels;
use image::RgbImage;

/// Pillow `Image.resize((w, h), BICUBIC)` of an RGB8 image (an unchanged size returns a copy).
pub fn pil_bicubic(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    if in_w == out_w && in_h == out_h {
        return img.clone();
    }
    let out = crate::media::resample::pil_bicubic_rgb8(rgb_pixels(img), in_w, in_h, out_w, out_h);
    RgbImage::from_raw(out_w as u32, out_h as u32, out).unwrap_or_else(|| RgbImage::new(0, 0))
}

/// Half-pixel bilinear taps of torch's separable uint8 kernel (antialias off): `(xmin, weights)`.
fn torch_taps(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = in_size as f64 / out_size as f64;
    (0..out_size)
        .map(|o| {
            let center = scale * (o as f64 + 0.5);
            let xmin = ((center - 1.0 + 0.5) as i64).max(0) as usize;
            let xmax = ((center + 1.0 + 0.5) as i64)
                .min(in_size as i64)
                .max(xmin as i64) as usize;
            let ws: Vec<f64> = (0..xmax - xmin)
                .map(|j| (1.0 - (j as f64 + xmin as f64 - center + 0.5).abs()).max(0.0))
                .collect();
            let tot: f64 = ws.iter().sum();
            let ws = ws
                .iter()
                .map(|x| if tot != 0.0 { x / tot } else { 0.0 })
                .collect();
            (xmin, ws)
        })
        .collect()
}

/// One pass of torch's uint8 bilinear along `axis` (0 = rows, 1 = columns) of an `h×w` grid.
fn torch_u8_pass(x: &[i64], h: usize, w: usize, out: usize, axis: usize) -> Vec<i64> {
    let in_size = if axis == 1 { w } else { h };
    if in_size == out {
        return x.to_vec();
    }
    let taps = torch_taps(in_size, out);
    let maxw = taps
        .iter()
        .flat_map(|(_, ws)| ws.iter().copied())
        .fold(0.0f64, f64::max);
    let mut prec = 0u32;
    for p in 0..22u32 {
        prec = p;
        if (0.5 + maxw * f64::from(1u32 << (p + 1))) as i64 >= (1 << 15) {
            break;
        }
    }
    let taps: Vec<(usize, Vec<i64>)> = taps
        .into_iter()
        .map(|(xmin, ws)| {
            let wi = ws
                .iter()
                .map(|&wv| {
                    let s = wv * f64::from(1u32 << prec);
                    if wv >= 0.0 {
                        (s + 0.5).floor() as i64
                    } else {
                        (s - 0.5).ceil() as i64
                    }
                })
                .collect();
            (xmin, wi)
        })
        .collect();
    let round = if prec > 0 { 1i64 << (prec - 1) } else { 0 };
    let (oh, ow) = if axis == 1 { (h, out) } else { (out, w) };
    let mut y = vec![0i64; oh * ow];
    for r in 0..oh {
        for c in 0..ow {
            let (o, line) = if axis == 1 { (c, r) } else { (r, c) };
            let (xmin, ws) = &taps[o];
            let mut acc = round;
            for (j, wv) in ws.iter().enumerate() {
                let v = if axis == 1 {
                    x[line * w + xmin + j]
                } else {
                    x[(xmin + j) * w + line]
                };
                acc += v * wv;
            }
            y[r * ow + c] = (acc >> prec).clamp(0, 255);
        }
    }
    y
}

/// `F.interpolate(uint8 mask, (out_h, out_w), 'bilinear', align_corners=False)` on the CPU: width
/// pass then height pass, fixed point, each pass rounded (`host.torch_uint8_bilinear`). `mask` is
/// `h×w` row-major 0/1.
pub fn torch_uint8_bilinear(
    mask: &[u8],
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<u8> {
    let x: Vec<i64> = mask.iter().map(|&v| i64::from(v)).collect();
    let x = torch_u8_pass(&x, h, w, out_w, 1);
    let x = torch_u8_pass(&x, h, out_w, out_h, 0);
    x.into_iter().map(|v| v as u8).collect()
}

/// OpenCV `INTER_LINEAR` source taps: `(i0, i1, w0, w1)` per output, half-pixel, clamped.
fn cv2_linear_taps(in_size: usize, out_size: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = in_size as f64 / out_size as f64;
    (0..out_size)
        .map(|o| {
            let fx = (o as f64 + 0.5) * scale - 0.5;
            let mut sx = fx.floor() as i64;
            let mut f = (fx - sx as f64) as f32;
            if sx < 0 {
                f = 0.0;
                sx = 0;
            }
            if sx >= in_size as i64 - 1 {
                f = 0.0;
                sx = in_size as i64 - 1;
            }
            let sx = sx as usize;
            (sx, (sx + 1).min(in_size - 1), 1.0 - f, f)
        })
        .collect()
}

/// `cv2.resize(mask.astype(float32), (out_w, out_h), INTER_LINEAR)` (`host.cv2_linear_f32`).
pub fn cv2_linear_f32(mask: &[u8], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let tx = cv2_linear_taps(w, out_w);
    let ty = cv2_linear_taps(h, out_h);
    let mut t = vec![0f32; h * out_w];
    for r in 0..h {
        for (c, &(i0, i1, w0, w1)) in tx.iter().enumerate() {
            t[r * out_w + c] = f32::from(mask[r * w + i0]) * w0 + f32::from(mask[r * w + i1]) * w1;
        }
    }
    let mut out = vec![0f32; out_h * out_w];
    for (r, &(i0, i1, w0, w1)) in ty.iter().enumerate() {
        for c in 0..out_w {
            out[r * out_w + c] = t[i0 * out_w + c] * w0 + t[i1 * out_w + c] * w1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// OpenCV uint8 `cv::resize` (INTER_LINEAR, INTER_AREA), bit-exact with opencv-python 5.0.0.
//
// Followed from OpenCV's `modules/imgproc/src/resize.cpp` (`hal::resize` and the functions it
// dispatches to; in 5.x the same code lives in `resize.simd.hpp` as `resize_cpu`). The IPP HAL
// (`hal/ipp/src/resize_ipp.cpp`) declines uint8 INTER_LINEAR and INTER_AREA unless
// `cv::ipp::setUseIPP_NotExact(true)` was called (off by default), so OpenCV's own code runs:
//
// * INTER_AREA with both scales >= 1, each an integer (`is_area_fast`): `resizeAreaFast_`, the
//   mean of each `kx×ky` block; 2×2 blocks round `(sum + 2) >> 2` (`ResizeAreaFastVec`), other
//   blocks `saturate_cast<uchar>(sum * (1.f / area))` (float product, rounded half to even).
// * INTER_AREA with both scales >= 1 otherwise: `resizeArea_` / `ResizeArea_Invoker`, float
//   weights from `computeResizeAreaTab`, a float row buffer per source row, then float row sums.
// * everything else (INTER_LINEAR, and INTER_AREA when either axis grows): `resizeGeneric_`
//   with `HResizeLinear` / `VResizeLinear<uchar, int, short, ...>`: 11-bit weights
//   (`INTER_RESIZE_COEF_BITS`), exact integer horizontal pass, and the vertical pass of the
//   uchar specialisation (`((b0 * (S0 >> 4)) >> 16) + ((b1 * (S1 >> 4)) >> 16) + 2) >> 2`, which
//   the SIMD `VResizeLinearVec_32s8u` computes identically. INTER_AREA uses the "area mode"
//   source positions there. An INTER_LINEAR halving of both axes runs the 2×2 area path.
//
// The SIMD variants of these paths are integer-exact or use the same float operations in the
// same order (no fused multiply-add), so the scalar algorithm below reproduces them.
// OpenCV's development branch has since added more INTER_AREA special cases (10×10 blocks
// rounded `(sum + 50) / 100`, dedicated 10/3 and 5/3 ratios, AVX-512 VBMI kernels using FMA);
// the 5.0.0 wheel behaves as described here on those sizes too (tested). A newer OpenCV
// may need them: `tests/refer_cv2.rs` checks the pinned version first.
// ---------------------------------------------------------------------------------------------

/// `INTER_RESIZE_COEF_BITS` (`resize.cpp`): linear weights are 11-bit fixed point.
const CV_COEF_SCALE: f32 = (1 << 11) as f32;

/// Which `cv::resize` interpolation to run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cv2Interp {
    Linear,
    Area,
}

/// OpenCV's uint8 `INTER_LINEAR` resize of an RGB8 image (`cv2.resize(img, (out_w, out_h))`),
/// bit-exact with opencv-python 5.0.0 (see the notes above). Empty sizes give a black image of
/// the requested size (OpenCV rejects them).
pub fn cv2_linear_u8(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    cv2_resize_u8(img, out_w, out_h, Cv2Interp::Linear)
}

/// OpenCV's uint8 `INTER_AREA` resize of an RGB8 image, bit-exact with opencv-python 5.0.0:
/// block means for integer shrink factors, float area weights for other shrinks, and OpenCV's
/// "area-mode" bilinear interpolation when either axis grows.
pub fn cv2_area_u8(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    cv2_resize_u8(img, out_w, out_h, Cv2Interp::Area)
}

/// `cv::resize` + `hal::resize` path selection for 3-channel uint8.
fn cv2_resize_u8(img: &RgbImage, out_w: usize, out_h: usize, interp: Cv2Interp) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == out_w && h == out_h {
        // `cv::resize`: same size is a plain copy.
        return img.clone();
    }
    if w == 0 || h == 0 || out_w == 0 || out_h == 0 {
        return RgbImage::new(out_w as u32, out_h as u32);
    }
    // `cv::resize` passes inv_scale = dst/src; `hal::resize` inverts it (both in double).
    let inv_x = out_w as f64 / w as f64;
    let inv_y = out_h as f64 / h as f64;
    let scale_x = 1.0 / inv_x;
    let scale_y = 1.0 / inv_y;
    // `saturate_cast<int>(double)` rounds half to even.
    let iscale_x = scale_x.round_ties_even();
    let iscale_y = scale_y.round_ties_even();
    let is_area_fast =
        (scale_x - iscale_x).abs() < f64::EPSILON && (scale_y - iscale_y).abs() < f64::EPSILON;
    let mut interp = interp;
    if interp == Cv2Interp::Linear && is_area_fast && iscale_x == 2.0 && iscale_y == 2.0 {
        interp = Cv2Interp::Area;
    }
    let out = if interp == Cv2Interp::Area && scale_x >= 1.0 && scale_y >= 1.0 {
        let (kx, ky) = (iscale_x as usize, iscale_y as usize);
        // An integer scale means the blocks tile the input exactly (checked, not assumed).
        if is_area_fast && out_w * kx <= w && out_h * ky <= h {
            cv2_area_fast(img, out_w, out_h, kx, ky)
        } else {
            cv2_area_generic(img, out_w, out_h, scale_x, scale_y)
        }
    } else {
        let area_mode = interp == Cv2Interp::Area;
        cv2_linear_generic(
            img,
            out_w,
            out_h,
            [scale_x, scale_y],
            [inv_x, inv_y],
            area_mode,
        )
    };
    RgbImage::from_raw(out_w as u32, out_h as u32, out).unwrap_or_else(|| RgbImage::new(0, 0))
}

/// `resizeAreaFast_`: the mean of each `kx×ky` block (the output tiles the input exactly).
fn cv2_area_fast(img: &RgbImage, out_w: usize, out_h: usize, kx: usize, ky: usize) -> Vec<u8> {
    let w = img.width() as usize;
    let src = rgb_pixels(img);
    let area = kx * ky;
    // `resizeAreaFast_Invoker`: `float scale = 1.f/(area)`.
    let inv_area = 1.0f32 / area as f32;
    // `ResizeAreaFastVec` (fast_mode: 2×2, cn 1/3/4): `(a + b + c + d + 2) >> 2`.
    let half_up_quarter = kx == 2 && ky == 2;
    let mut out = vec![0u8; out_w * out_h * 3];
    for dy in 0..out_h {
        for dx in 0..out_w {
            for c in 0..3 {
                let mut sum = 0u32;
                for sy in dy * ky..(dy + 1) * ky {
                    let row = sy * w;
                    for sx in dx * kx..(dx + 1) * kx {
                        sum += u32::from(src[(row + sx) * 3 + c]);
                    }
                }
                out[(dy * out_w + dx) * 3 + c] = if half_up_quarter {
                    ((sum + 2) >> 2).min(255) as u8
                } else {
                    cv_round_u8(sum as f32 * inv_area)
                };
            }
        }
    }
    out
}

/// `saturate_cast<uchar>(float)`: `cvRound` (half to even), then clamp.
fn cv_round_u8(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

/// `computeResizeAreaTab`: `(dst index, src index, weight)` taps along one axis, in OpenCV's
/// order (left partial cell, whole cells, right partial cell).
fn cv2_area_tab(ssize: usize, dsize: usize, scale: f64) -> Vec<(usize, usize, f32)> {
    let mut tab = Vec::with_capacity(ssize * 2);
    let last = ssize as i64 - 1;
    for d in 0..dsize {
        let fsx1 = d as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell = scale.min(ssize as f64 - fsx1);
        let sx2 = (fsx2.floor() as i64).min(last);
        let sx1 = (fsx1.ceil() as i64).min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 && sx1 >= 1 {
            tab.push((d, (sx1 - 1) as usize, ((sx1 as f64 - fsx1) / cell) as f32));
        }
        for s in sx1.max(0)..sx2 {
            tab.push((d, s as usize, (1.0 / cell) as f32));
        }
        if fsx2 - sx2 as f64 > 1e-3 && sx2 >= 0 {
            let a = (fsx2 - sx2 as f64).min(1.0).min(cell) / cell;
            tab.push((d, sx2 as usize, a as f32));
        }
    }
    tab
}

/// `resizeArea_<uchar, float>` (`ResizeArea_Invoker`): per source row a float buffer
/// `buf[dx] += S[sx] * alpha` over the x taps, then per output row `sum = beta * buf` for its
/// first source row and `sum += beta * buf` for the next ones, stored with `cvRound`.
fn cv2_area_generic(
    img: &RgbImage,
    out_w: usize,
    out_h: usize,
    scale_x: f64,
    scale_y: f64,
) -> Vec<u8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = rgb_pixels(img);
    let xtab = cv2_area_tab(w, out_w, scale_x);
    let ytab = cv2_area_tab(h, out_h, scale_y);
    let width = out_w * 3;
    let mut out = vec![0u8; width * out_h];
    let mut buf = vec![0f32; width];
    let mut sum = vec![0f32; width];
    let mut prev_dy: Option<usize> = None;
    let store = |sum: &[f32], out: &mut [u8], dy: usize| {
        for (o, &v) in out[dy * width..(dy + 1) * width].iter_mut().zip(sum) {
            *o = cv_round_u8(v);
        }
    };
    for &(dy, sy, beta) in &ytab {
        buf.fill(0.0);
        let row = &src[sy * w * 3..(sy + 1) * w * 3];
        for &(dx, sx, alpha) in &xtab {
            for c in 0..3 {
                buf[dx * 3 + c] += f32::from(row[sx * 3 + c]) * alpha;
            }
        }
        if prev_dy == Some(dy) {
            for (s, &b) in sum.iter_mut().zip(&buf) {
                *s += beta * b;
            }
        } else {
            if let Some(p) = prev_dy {
                store(&sum, &mut out, p);
            }
            for (s, &b) in sum.iter_mut().zip(&buf) {
                *s = beta * b;
            }
            prev_dy = Some(dy);
        }
    }
    if let Some(p) = prev_dy {
        store(&sum, &mut out, p);
    }
    out
}

/// Source position and fraction of each output along one axis, as `hal::resize` computes them
/// for the linear kernel: `fx = (float)((dx + 0.5) * scale - 0.5)`, or in area mode
/// `sx = floor(dx * scale)`, `fx = (float)((dx + 1) - (sx + 1) * inv_scale)` reduced to `[0, 1)`.
fn cv2_linear_pos(dsize: usize, scale: f64, inv_scale: f64, area_mode: bool) -> Vec<(i64, f32)> {
    (0..dsize)
        .map(|d| {
            if area_mode {
                let s = (d as f64 * scale).floor() as i64;
                let f = ((d + 1) as f64 - (s + 1) as f64 * inv_scale) as f32;
                let f = if f <= 0.0 { 0.0 } else { f - f.floor() };
                (s, f)
            } else {
                let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
                let s = f.floor();
                (s as i64, f - s)
            }
        })
        .collect()
}

/// The two 11-bit weights of a fraction: `saturate_cast<short>(cbuf[k] * INTER_RESIZE_COEF_SCALE)`
/// with `cbuf = {1.f - f, f}`.
fn cv2_linear_coefs(f: f32) -> (i32, i32) {
    let q = |v: f32| (v * CV_COEF_SCALE).round_ties_even() as i32;
    (q(1.0 - f), q(f))
}

/// `resizeGeneric_` with the uint8 linear kernels: horizontal pass into 32-bit rows (weights sum
/// to 2048; outputs left or right of the source are clamped to the edge pixel), vertical pass
/// with OpenCV's uchar rounding. Rows are clamped, the vertical fraction is not.
fn cv2_linear_generic(
    img: &RgbImage,
    out_w: usize,
    out_h: usize,
    scale: [f64; 2],
    inv_scale: [f64; 2],
    area_mode: bool,
) -> Vec<u8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = rgb_pixels(img);
    let xs: Vec<(usize, usize, i32, i32)> =
        cv2_linear_pos(out_w, scale[0], inv_scale[0], area_mode)
            .into_iter()
            .map(|(s, f)| {
                let (s, f) = if s < 0 {
                    (0, 0.0)
                } else if s >= w as i64 - 1 {
                    (w - 1, 0.0)
                } else {
                    (s as usize, f)
                };
                let (a0, a1) = cv2_linear_coefs(f);
                (s, (s + 1).min(w - 1), a0, a1)
            })
            .collect();
    let ys = cv2_linear_pos(out_h, scale[1], inv_scale[1], area_mode);

    // Horizontal pass of every source row (`HResizeLinear`; integer, so its SIMD form agrees).
    let width = out_w * 3;
    let mut rows = vec![0i32; h * width];
    for r in 0..h {
        let s = &src[r * w * 3..(r + 1) * w * 3];
        let d = &mut rows[r * width..(r + 1) * width];
        for (dx, &(x0, x1, a0, a1)) in xs.iter().enumerate() {
            for c in 0..3 {
                d[dx * 3 + c] = i32::from(s[x0 * 3 + c]) * a0 + i32::from(s[x1 * 3 + c]) * a1;
            }
        }
    }

    let clip = |v: i64| v.clamp(0, h as i64 - 1) as usize;
    let mut out = vec![0u8; width * out_h];
    for (dy, &(sy, f)) in ys.iter().enumerate() {
        let (b0, b1) = cv2_linear_coefs(f);
        let r0 = &rows[clip(sy) * width..(clip(sy) + 1) * width];
        let r1 = &rows[clip(sy + 1) * width..(clip(sy + 1) + 1) * width];
        for (o, (&s0, &s1)) in out[dy * width..(dy + 1) * width]
            .iter_mut()
            .zip(r0.iter().zip(r1))
        {
            // `VResizeLinear<uchar, int, short, ...>` / `VResizeLinearVec_32s8u`.
            let v = ((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2;
            *o = (v >> 2).clamp(0, 255) as u8;
        }
    }
    out
}

/// `F.interpolate(feat, (out_h, out_w), 'bilinear', align_corners=False)` on a raster `h×w×C`
/// float grid (torch CPU: float source index `scale*(dst+0.5)-0.5` clamped at 0).
pub fn bilinear_features(
    feat: &[f32],
    h: usize,
    w: usize,
    c: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    let taps = |in_size: usize, out_size: usize| -> Vec<(usize, usize, f32, f32)> {
        let scale = in_size as f32 / out_size as f32;
        (0..out_size)
            .map(|o| {
                let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (src as usize).min(in_size - 1);
                let step = usize::from(i0 < in_size - 1);
                let l1 = src - i0 as f32;
                (i0, i0 + step, 1.0 - l1, l1)
            })
            .collect()
    };
    let ty = taps(h, out_h);
    let tx = taps(w, out_w);
    let mut out = vec![0f32; out_h * out_w * c];
    for (r, &(y0, y1, hy0, hy1)) in ty.iter().enumerate() {
        for (col, &(x0, x1, wx0, wx1)) in tx.iter().enumerate() {
            let o = (r * out_w + col) * c;
            for k in 0..c {
                let a = feat[(y0 * w + x0) * c + k];
                let b = feat[(y0 * w + x1) * c + k];
                let cc = feat[(y1 * w + x0) * c + k];
                let d = feat[(y1 * w + x1) * c + k];
                out[o + k] = hy0 * (wx0 * a + wx1 * b) + hy1 * (wx0 * cc + wx1 * d);
            }
        }
    }
    out
}
