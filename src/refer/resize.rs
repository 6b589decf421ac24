//! Image and mask resizes used by the host steps, ported from the libraries the reference uses.
//!
//! * [`pil_bicubic`]: Pillow `Image.resize(..., BICUBIC)` on RGB8 (Pillow `libImaging/Resample.c`:
//!   `precompute_coeffs`, `normalize_coeffs_8bpc`, horizontal pass then vertical pass, 22-bit fixed
//!   point). Used by the image processor (`image_processing.py`, `resample=3`). Bit-exact port
//!   except for Pillow 13's pass-order choice when both axes shrink (see [`pil_bicubic`]).
//! * [`torch_uint8_bilinear`]: `F.interpolate` on a uint8 mask (`pixelrefer/mm_utils.py:52`),
//!   ported from `host.torch_uint8_bilinear`. Bit-exact.
//! * [`cv2_linear_f32`]: `cv2.resize(float32 mask, INTER_LINEAR)` (`pixelreferlite/mm_utils.py:140-145`),
//!   ported from `host.cv2_linear_f32`; the `> 0` selection matches.
//! * [`cv2_linear_u8`], [`cv2_area_u8`]: OpenCV's uint8 `INTER_LINEAR` / `INTER_AREA`. OpenCV's
//!   vectorised paths round differently from its scalar code, so these ports follow the scalar
//!   algorithm and agree within ±1 grey level (tests say which).
//! * [`bilinear_features`]: `F.interpolate(float, bilinear, align_corners=False)` on feature grids.

use image::RgbImage;

/// Pillow's `PRECISION_BITS` for 8-bit resampling (`Resample.c`: `32 - 8 - 2`).
const PIL_PRECISION_BITS: u32 = 22;

/// Pillow's bicubic filter, `a = -0.5`, support 2 (`Resample.c: bicubic_filter`).
fn pil_bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc`: per output pixel `(xmin, fixed-point weights)`.
fn pil_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let support_base = 2.0;
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = support_base * filterscale;
    let mut out = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let n = (xmax - xmin).max(0) as usize;
        let mut w: Vec<f64> = (0..n)
            .map(|x| pil_bicubic_filter((x as f64 + xmin as f64 - center + 0.5) * ss))
            .collect();
        let ww: f64 = w.iter().sum();
        if ww != 0.0 {
            for v in &mut w {
                *v /= ww;
            }
        }
        let k = w
            .iter()
            .map(|&v| {
                let s = v * f64::from(1u32 << PIL_PRECISION_BITS);
                if v < 0.0 {
                    (-0.5 + s) as i32
                } else {
                    (0.5 + s) as i32
                }
            })
            .collect();
        out.push((xmin as usize, k));
    }
    out
}

fn pil_clip8(v: i64) -> u8 {
    (v >> PIL_PRECISION_BITS).clamp(0, 255) as u8
}

/// One 8-bit pass of Pillow's resampler along rows (`axis == 1`, `ImagingResampleHorizontal_8bpc`)
/// or columns (`axis == 0`, `ImagingResampleVertical_8bpc`) of an RGB8 `h×w` buffer.
fn pil_pass(src: &[u8], h: usize, w: usize, out: usize, axis: usize) -> Vec<u8> {
    let half = 1i64 << (PIL_PRECISION_BITS - 1);
    if axis == 1 {
        let k = pil_coeffs(w, out);
        let mut dst = vec![0u8; h * out * 3];
        for y in 0..h {
            for (xx, (xmin, ws)) in k.iter().enumerate() {
                for c in 0..3 {
                    let mut ss = half;
                    for (j, &wt) in ws.iter().enumerate() {
                        ss += i64::from(src[(y * w + xmin + j) * 3 + c]) * i64::from(wt);
                    }
                    dst[(y * out + xx) * 3 + c] = pil_clip8(ss);
                }
            }
        }
        dst
    } else {
        let k = pil_coeffs(h, out);
        let mut dst = vec![0u8; out * w * 3];
        for (yy, (ymin, ws)) in k.iter().enumerate() {
            for x in 0..w * 3 {
                let mut ss = half;
                for (j, &wt) in ws.iter().enumerate() {
                    ss += i64::from(src[(ymin + j) * w * 3 + x]) * i64::from(wt);
                }
                dst[yy * w * 3 + x] = pil_clip8(ss);
            }
        }
        dst
    }
}

/// Pillow `Image.resize((w, h), BICUBIC)` of an RGB8 image (an unchanged size returns a copy).
///
/// Pass order: Pillow 13 runs the vertical pass first when the height shrinks and the width
/// grows, and horizontal first otherwise in the cases we measured (random sizes against
/// Pillow 13.0.0: every case with one axis growing or both growing matches bit for bit). When
/// both axes shrink Pillow sometimes picks the vertical pass first by a rule we have not pinned
/// down; the results then differ by a few grey levels at most. The processor only shrinks
/// images above its pixel budget, so reference inputs are reproduced exactly.
pub fn pil_bicubic(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    if in_w == out_w && in_h == out_h {
        return img.clone();
    }
    let src = img.as_raw();
    let vertical_first = out_h < in_h && out_w > in_w;
    let out = if vertical_first {
        let t = pil_pass(src, in_h, in_w, out_h, 0);
        pil_pass(&t, out_h, in_w, out_w, 1)
    } else {
        let t = if in_w != out_w {
            pil_pass(src, in_h, in_w, out_w, 1)
        } else {
            src.to_vec()
        };
        if in_h != out_h {
            pil_pass(&t, in_h, out_w, out_h, 0)
        } else {
            t
        }
    };
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

/// OpenCV's uint8 `INTER_LINEAR` resize (scalar algorithm: 11-bit weights, horizontal then
/// vertical pass, rounded shift by 22). Within ±1 of `cv2.resize` (its SIMD rounding differs).
pub fn cv2_linear_u8(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let taps_w = cv2_linear_taps(w, out_w);
    let taps_h = cv2_linear_taps(h, out_h);
    let coef = |f: f32| (f * 2048.0).round() as i32;
    cv2_separable(img, out_w, out_h, &taps_w, &taps_h, coef)
}

fn cv2_separable(
    img: &RgbImage,
    out_w: usize,
    out_h: usize,
    tx: &[(usize, usize, f32, f32)],
    ty: &[(usize, usize, f32, f32)],
    coef: impl Fn(f32) -> i32,
) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let mut t = vec![0i32; h * out_w * 3];
    for r in 0..h {
        for (c, &(i0, i1, w0, w1)) in tx.iter().enumerate() {
            let (a, b) = (coef(w0), coef(w1));
            for ch in 0..3 {
                t[(r * out_w + c) * 3 + ch] = i32::from(src[(r * w + i0) * 3 + ch]) * a
                    + i32::from(src[(r * w + i1) * 3 + ch]) * b;
            }
        }
    }
    let mut out = vec![0u8; out_h * out_w * 3];
    for (r, &(i0, i1, w0, w1)) in ty.iter().enumerate() {
        let (a, b) = (i64::from(coef(w0)), i64::from(coef(w1)));
        for x in 0..out_w * 3 {
            let v = i64::from(t[i0 * out_w * 3 + x]) * a + i64::from(t[i1 * out_w * 3 + x]) * b;
            out[r * out_w * 3 + x] = ((v + (1 << 21)) >> 22).clamp(0, 255) as u8;
        }
    }
    RgbImage::from_raw(out_w as u32, out_h as u32, out).unwrap_or_else(|| RgbImage::new(0, 0))
}

/// OpenCV `INTER_AREA` area weights along one axis: per output, `(src index, weight)` summing to 1.
fn area_tab(in_size: usize, out_size: usize) -> Vec<Vec<(usize, f64)>> {
    let scale = in_size as f64 / out_size as f64;
    (0..out_size)
        .map(|o| {
            let fsx1 = o as f64 * scale;
            let fsx2 = (fsx1 + scale).min(in_size as f64);
            let sx1 = fsx1.ceil() as usize;
            let sx2 = fsx2.floor() as usize;
            let cell = fsx2 - fsx1;
            let mut taps = Vec::new();
            if sx1 as f64 - fsx1 > 1e-3 && sx1 > 0 {
                taps.push((sx1 - 1, (sx1 as f64 - fsx1) / cell));
            }
            for s in sx1..sx2.min(in_size) {
                taps.push((s, 1.0 / cell));
            }
            if fsx2 - sx2 as f64 > 1e-3 && sx2 < in_size {
                taps.push((sx2, (fsx2 - sx2 as f64) / cell));
            }
            taps
        })
        .collect()
}

/// OpenCV's uint8 `INTER_AREA` resize. Shrinking on both axes: area averaging (float weights,
/// rounded); otherwise OpenCV's "area-mode" linear interpolation (`resize.cpp`, `area_mode`
/// coefficients `fx = (dx+1) - (sx+1)/scale`). Within ±1 of `cv2.resize`.
pub fn cv2_area_u8(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == out_w && h == out_h {
        return img.clone();
    }
    if w >= out_w && h >= out_h {
        let tx = area_tab(w, out_w);
        let ty = area_tab(h, out_h);
        let src = img.as_raw();
        let mut out = vec![0u8; out_w * out_h * 3];
        for (r, rows) in ty.iter().enumerate() {
            for (c, cols) in tx.iter().enumerate() {
                for ch in 0..3 {
                    let mut acc = 0f64;
                    for &(sy, wy) in rows {
                        let mut row = 0f64;
                        for &(sx, wx) in cols {
                            row += f64::from(src[(sy * w + sx) * 3 + ch]) * wx;
                        }
                        acc += row * wy;
                    }
                    out[(r * out_w + c) * 3 + ch] = acc.round_ties_even().clamp(0.0, 255.0) as u8;
                }
            }
        }
        return RgbImage::from_raw(out_w as u32, out_h as u32, out)
            .unwrap_or_else(|| RgbImage::new(0, 0));
    }
    let area_taps = |in_size: usize, out_size: usize| -> Vec<(usize, usize, f32, f32)> {
        let inv_scale = out_size as f64 / in_size as f64;
        let scale = in_size as f64 / out_size as f64;
        (0..out_size)
            .map(|d| {
                let mut sx = (d as f64 * scale).floor() as i64;
                let fx = ((d + 1) as f64 - (sx + 1) as f64 * inv_scale) as f32;
                let mut f = if fx <= 0.0 { 0.0 } else { fx - fx.floor() };
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
    };
    let tx = area_taps(w, out_w);
    let ty = area_taps(h, out_h);
    cv2_separable(img, out_w, out_h, &tx, &ty, |f: f32| {
        (f * 2048.0).round() as i32
    })
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
