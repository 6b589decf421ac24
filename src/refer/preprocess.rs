//! The image processor and vision-side host steps (`damovl_encoder/image_processing.py`,
//! `modeling_damovl_encoder.py`, `pixelrefer_arch.py`; see `onnx/PIXELREFER_NOTES.md` §2-4).

use super::config::ReferConfig;
use super::resize::pil_bicubic;
use crate::media::rgb_pixels;
use image::RgbImage;

/// `smart_resize` (`image_processing.py:99-129`), Python `round` = round half to even.
/// Returns `(height, width)`, multiples of `factor`.
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: usize,
    max_pixels: usize,
) -> (usize, usize) {
    let (mut h, mut w) = (height as f64, width as f64);
    let f = factor as f64;
    if height < factor || width < factor {
        let scale = f / h.min(w);
        w = (scale * w).round_ties_even();
        h = (scale * h).round_ties_even();
    }
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = ((h * w) / max_pixels as f64).sqrt();
        h_bar = (h / beta / f).floor() * f;
        w_bar = (w / beta / f).floor() * f;
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    (h_bar as usize, w_bar as usize)
}

/// `int(max_pixels / (merge_size / d)**2) // num_images` (`image_processing.py:273-279`).
pub fn processor_max_pixels(cfg: &ReferConfig, d: usize, num_images: usize) -> usize {
    let ratio = cfg.processor_merge_size as f64 / d as f64;
    let v = (cfg.max_pixels as f64 / (ratio * ratio)) as usize;
    v / num_images.max(1)
}

/// Normalised patches of one image and its grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Patches {
    /// `[grid_h * grid_w, 3 * patch * patch]`, row-major, in `d×d` block order.
    pub data: Vec<f32>,
    /// Patch rows.
    pub grid_h: usize,
    /// Patch columns.
    pub grid_w: usize,
    /// Block size (`image_downsampling`).
    pub d: usize,
}

/// Rescale and normalise an RGB8 image to CHW float32: `x/255`, then `(x-mean)/std`
/// (`image_processing.py:285-293`).
pub fn normalize(img: &RgbImage, cfg: &ReferConfig) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut lut = [[0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, out) in table.iter_mut().enumerate() {
            let x = (v as f64 * cfg.rescale_factor) as f32;
            *out = (x - cfg.image_mean[c]) / cfg.image_std[c];
        }
    }
    let src = rgb_pixels(img);
    let mut chw = vec![0f32; 3 * h * w];
    for (i, px) in src.chunks_exact(3).enumerate() {
        for c in 0..3 {
            chw[c * h * w + i] = lut[c][px[c] as usize];
        }
    }
    chw
}

/// Patchify a CHW image (`c×h×w`, sides multiples of `patch*d`) in `d×d` block order (block
/// row-major, then row-major inside the block), each patch channel-major `[c][py][px]`
/// (`image_processing.py:300-314`). Returns `[h/p * w/p, c*p*p]`.
pub fn patchify_chw(chw: &[f32], c: usize, h: usize, w: usize, p: usize, d: usize) -> Vec<f32> {
    let (gh, gw) = (h / p, w / p);
    let dim = c * p * p;
    let mut data = vec![0f32; gh * gw * dim];
    let mut k = 0;
    for bi in 0..gh / d {
        for bj in 0..gw / d {
            for dy in 0..d {
                for dx in 0..d {
                    let (py0, px0) = ((bi * d + dy) * p, (bj * d + dx) * p);
                    let row = &mut data[k * dim..(k + 1) * dim];
                    for ch in 0..c {
                        for py in 0..p {
                            let s = ch * h * w + (py0 + py) * w + px0;
                            row[(ch * p + py) * p..(ch * p + py + 1) * p]
                                .copy_from_slice(&chw[s..s + p]);
                        }
                    }
                    k += 1;
                }
            }
        }
    }
    data
}

/// Normalise and patchify an RGB8 image whose sides are multiples of `patch*d`.
pub fn patchify(img: &RgbImage, cfg: &ReferConfig, d: usize) -> Patches {
    let p = cfg.patch_size;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let chw = normalize(img, cfg);
    Patches {
        data: patchify_chw(&chw, 3, h, w, p, d),
        grid_h: h / p,
        grid_w: w / p,
        d,
    }
}

/// The processor for one image: `smart_resize` with `factor = patch*d` and the image budget,
/// PIL bicubic resize, normalise, patchify. Returns the resized image and its patches.
pub fn preprocess(
    img: &RgbImage,
    cfg: &ReferConfig,
    d: usize,
    num_images: usize,
) -> (RgbImage, Patches) {
    let (rh, rw) = smart_resize(
        img.height() as usize,
        img.width() as usize,
        cfg.patch_size * d,
        cfg.min_pixels,
        processor_max_pixels(cfg, d, num_images),
    );
    let resized = pil_bicubic(img, rw, rh);
    let patches = patchify(&resized, cfg, d);
    (resized, patches)
}

/// 2-D vision RoPE tables `(cos, sin)`, each `[grid_h*grid_w, head_dim]`, in the same `d×d` block
/// order as the patches (`rot_pos_emb`, `modeling_damovl_encoder.py:452-479`;
/// `apply_rotary_pos_emb_vision`, `:154-163`): `freqs = [h*inv_freq, w*inv_freq]`, repeated twice.
pub fn vision_rope(
    grid_h: usize,
    grid_w: usize,
    d: usize,
    head_dim: usize,
    theta: f64,
) -> (Vec<f32>, Vec<f32>) {
    let dim = head_dim / 2;
    let theta = theta as f32;
    let inv_freq: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0f32 / theta.powf(i as f32 / dim as f32))
        .collect();
    let nf = inv_freq.len();
    let n = grid_h * grid_w;
    let mut cos = vec![0f32; n * head_dim];
    let mut sin = vec![0f32; n * head_dim];
    let mut k = 0;
    for bi in 0..grid_h / d {
        for bj in 0..grid_w / d {
            for dy in 0..d {
                for dx in 0..d {
                    let (hp, wp) = ((bi * d + dy) as f32, (bj * d + dx) as f32);
                    for (j, &f) in inv_freq.iter().enumerate() {
                        for (pos, off) in [(hp, 0), (wp, nf)] {
                            let x = pos * f;
                            let (c, s) = (x.cos(), x.sin());
                            for rep in [0, 2 * nf] {
                                cos[k * head_dim + rep + off + j] = c;
                                sin[k * head_dim + rep + off + j] = s;
                            }
                        }
                    }
                    k += 1;
                }
            }
        }
    }
    (cos, sin)
}

/// `spatial_downsampling` (`pixelrefer_arch.py:32-52`): with block-ordered features and sides that
/// are multiples of `d`, bilinear downsampling by `d` is the mean of each `d×d` block, which are
/// consecutive rows. Returns raster-ordered `[grid_h/d * grid_w/d, c]`.
pub fn merge_tokens(feats: &[f32], c: usize, d: usize) -> Vec<f32> {
    if d == 1 {
        return feats.to_vec();
    }
    let dd = d * d;
    let n = feats.len() / (c * dd);
    let mut out = vec![0f32; n * c];
    for t in 0..n {
        for k in 0..c {
            let mut s = 0f32;
            for j in 0..dd {
                s += feats[(t * dd + j) * c + k];
            }
            out[t * c + k] = s / dd as f32;
        }
    }
    out
}

/// Rounds an f32 to `bfloat16` / `float16` (nearest even) and back; other names leave it as is.
pub fn round_to_dtype(x: f32, dtype: &str) -> f32 {
    match dtype {
        "bfloat16" | "bf16" => {
            let u = u64::from(x.to_bits());
            let u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF_0000;
            f32::from_bits(u as u32)
        }
        "float16" | "fp16" => half::f16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// numpy's pairwise float32 summation (`numpy/_core/src/umath/loops_utils.h.src`), used by
/// `mean(dtype=float32)` in the reference.
fn numpy_pairwise_sum(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        let mut res = 0f32;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0f32; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - (n % 8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        numpy_pairwise_sum(&a[..n2]) + numpy_pairwise_sum(&a[n2..])
    }
}

/// Video token pruning (`use_token_compression`, `pixelrefer_arch.py:272-289`; host port
/// `host.video_keep_mask`): per frame `i ≥ 1` and merged token `j`, keep when
/// `mean(|x_i - x_{i-1}|) * 255 > threshold`, computed with each op rounded to `dtype`; a frame
/// keeping nothing keeps its first `min_tokens`. `frames[t]` are block-ordered patches.
pub fn video_keep_mask(
    frames: &[&[f32]],
    d: usize,
    patch_dim: usize,
    dtype: &str,
    threshold: f32,
    min_tokens: usize,
) -> Vec<Vec<bool>> {
    let r = |v: f32| round_to_dtype(v, dtype);
    let group = d * d * patch_dim;
    let n_tok = frames.first().map_or(0, |f| f.len() / group);
    let mut keep = vec![vec![true; n_tok]; frames.len()];
    let mut diff = vec![0f32; group];
    for i in 1..frames.len() {
        for j in 0..n_tok {
            let a = &frames[i][j * group..(j + 1) * group];
            let b = &frames[i - 1][j * group..(j + 1) * group];
            for (o, (&x, &y)) in diff.iter_mut().zip(a.iter().zip(b)) {
                *o = r(r(r(x) - r(y)).abs());
            }
            let mean = r(numpy_pairwise_sum(&diff) / group as f32);
            keep[i][j] = r(mean * 255.0) > threshold;
        }
    }
    for k in &mut keep {
        if k.iter().filter(|&&v| v).count() < min_tokens {
            for v in k.iter_mut().take(min_tokens) {
                *v = true;
            }
        }
    }
    keep
}
