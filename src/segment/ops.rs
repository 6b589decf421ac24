//! Numeric host operations, ported line by line from `onnx/sam2_host_ref.py` (the spec), which
//! reproduces the official `sam2` package (sam2==1.1.0) and the libraries it calls (torchvision,
//! Pillow, torch's `F.interpolate`). All arithmetic is f32 in the same order as the spec unless a
//! comment says otherwise, so results match the host reference bit for bit where it is possible.

use std::collections::VecDeque;

/// Rounds f32 → bfloat16 → f32 (round to nearest even), as `tensor.to(torch.bfloat16)`. The
/// official video predictor stores every `maskmem_features` in bfloat16
/// (sam2/sam2_video_predictor.py `_run_single_frame_inference`).
pub fn round_to_bf16(x: f32) -> f32 {
    f32::from_bits(bf16_bits(x) << 16)
}

/// The bfloat16 bits of `x` (round to nearest even), as `round_to_bf16` stores them.
pub fn bf16_bits(x: f32) -> u32 {
    let u = x.to_bits();
    (u.wrapping_add(((u >> 16) & 1) + 0x7FFF)) >> 16
}

/// torch's separable antialiased bilinear weights (aten `UpSampleKernel.cpp`,
/// `_compute_indices_min_size_weights_aa`), align_corners=False: `(xmin[out], weights[out][K])`.
fn aa_bilinear_weights(in_size: usize, out_size: usize) -> (Vec<usize>, Vec<Vec<f32>>) {
    let scale = in_size as f64 / out_size as f64;
    let support = if scale >= 1.0 { scale } else { 1.0 };
    let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
    let k = (support.ceil() as usize) * 2 + 1;
    let mut xmin = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for i in 0..out_size {
        let center = scale * (i as f64 + 0.5);
        let x0 = ((center - support + 0.5) as i64).max(0);
        let x1 = ((center + support + 0.5) as i64).min(in_size as i64);
        let xs = (x1 - x0).max(0).min(k as i64) as usize;
        let mut ws: Vec<f64> = (0..xs)
            .map(|j| (1.0 - ((j as f64 + x0 as f64 - center + 0.5) * invscale).abs()).max(0.0))
            .collect();
        let total: f64 = ws.iter().sum();
        if total != 0.0 {
            for w in &mut ws {
                *w /= total;
            }
        }
        let mut row = vec![0f32; k];
        for (r, w) in row.iter_mut().zip(&ws) {
            *r = *w as f32;
        }
        xmin.push(x0 as usize);
        weights.push(row);
    }
    (xmin, weights)
}

/// torchvision `Resize((out_h, out_w))` (bilinear, antialias=True) on a float CHW image: width
/// pass, then height pass (`resize_antialias_bilinear` in the spec).
pub fn resize_antialias_bilinear(
    chw: &[f32],
    channels: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    // width pass
    let mut cur = chw.to_vec();
    let mut cur_w = in_w;
    if in_w != out_w {
        let (xmin, w) = aa_bilinear_weights(in_w, out_w);
        let mut out = vec![0f32; channels * in_h * out_w];
        for row in 0..channels * in_h {
            let src = &cur[row * in_w..(row + 1) * in_w];
            let dst = &mut out[row * out_w..(row + 1) * out_w];
            for (i, d) in dst.iter_mut().enumerate() {
                let mut acc = 0f32;
                for (j, wj) in w[i].iter().enumerate() {
                    let idx = (xmin[i] + j).min(in_w - 1);
                    acc += wj * src[idx];
                }
                *d = acc;
            }
        }
        cur = out;
        cur_w = out_w;
    }
    if in_h != out_h {
        let (ymin, w) = aa_bilinear_weights(in_h, out_h);
        let mut out = vec![0f32; channels * out_h * cur_w];
        for c in 0..channels {
            let src = &cur[c * in_h * cur_w..(c + 1) * in_h * cur_w];
            let dst = &mut out[c * out_h * cur_w..(c + 1) * out_h * cur_w];
            for i in 0..out_h {
                let drow = &mut dst[i * cur_w..(i + 1) * cur_w];
                // accumulated in j order, as the spec (out += w[:, j] * x[..., idx])
                for (j, wj) in w[i].iter().enumerate() {
                    let idx = (ymin[i] + j).min(in_h - 1);
                    let srow = &src[idx * cur_w..(idx + 1) * cur_w];
                    for (d, s) in drow.iter_mut().zip(srow) {
                        *d += wj * s;
                    }
                }
            }
        }
        cur = out;
    }
    cur
}

/// A one-channel square conv with kernel side = stride = `k` and a bias, on a `[side, side]`
/// plane (`SAM2Base.mask_downsample`, `Conv2d(1, 1, kernel_size=4, stride=4)`):
/// `[side / k, side / k]`, each output the bias plus its block's weighted sum in row order.
pub fn conv_stride_k(x: &[f32], side: usize, k: usize, weight: &[f32], bias: f32) -> Vec<f32> {
    let n = side / k;
    let mut out = vec![0f32; n * n];
    for (oy, row) in out.chunks_exact_mut(n).enumerate() {
        for (ox, o) in row.iter_mut().enumerate() {
            let mut acc = 0f32;
            for a in 0..k {
                let src = &x[(oy * k + a) * side + ox * k..][..k];
                for (w, v) in weight[a * k..(a + 1) * k].iter().zip(src) {
                    acc += w * v;
                }
            }
            *o = acc + bias;
        }
    }
    out
}

/// `F.interpolate(mode="bilinear", align_corners=False, antialias=False)` of one `[in_h, in_w]`
/// plane to `[out_h, out_w]` (`resize_bilinear` in the spec), f32 in the spec's order.
pub fn resize_bilinear(
    x: &[f32],
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    if (in_h, in_w) == (out_h, out_w) {
        return x.to_vec();
    }
    let mut out = vec![0f32; out_h * out_w];
    bilinear_rows(x, in_h, in_w, out_h, out_w, |oy, row| {
        out[oy * out_w..(oy + 1) * out_w].copy_from_slice(row);
    });
    out
}

/// Source taps of align_corners=False bilinear sampling along one axis: per output index, the
/// two input indices and their weights (PyTorch's `area_pixel_compute_source_index`).
fn bilinear_taps(in_size: usize, out_size: usize) -> Vec<(usize, usize, f32, f32)> {
    let scale = (in_size as f64 / out_size as f64) as f32;
    (0..out_size)
        .map(|i| {
            let src = ((i as f32 + 0.5f32) * scale - 0.5f32).max(0.0);
            let i0 = (src.floor() as usize).min(in_size - 1);
            let i1 = (i0 + 1).min(in_size - 1);
            let l1 = src - i0 as f32;
            (i0, i1, 1.0f32 - l1, l1)
        })
        .collect()
}

/// Bilinear resampling row by row, handing each output row to `row`. Separable: every input row
/// is interpolated along x once (`wx0 * r[x0] + wx1 * r[x1]`), then each output row blends two
/// of them (`hy0 * top + hy1 * bot`): the same expressions, in the same order, as sampling each
/// pixel from its four neighbours, so the numbers are identical, at a third of the work and in
/// loops the compiler vectorises.
fn bilinear_rows(
    x: &[f32],
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    mut row: impl FnMut(usize, &[f32]),
) {
    let ys = bilinear_taps(in_h, out_h);
    let xs = bilinear_taps(in_w, out_w);
    let mut used = vec![false; in_h];
    for &(y0, y1, _, _) in &ys {
        used[y0] = true;
        used[y1] = true;
    }
    let mut horiz = vec![0f32; in_h * out_w];
    for (y, h) in horiz.chunks_exact_mut(out_w).enumerate() {
        if !used[y] {
            continue;
        }
        let r = &x[y * in_w..(y + 1) * in_w];
        for (o, &(x0, x1, wx0, wx1)) in h.iter_mut().zip(&xs) {
            *o = wx0 * r[x0] + wx1 * r[x1];
        }
    }
    let mut buf = vec![0f32; out_w];
    for (oy, &(y0, y1, hy0, hy1)) in ys.iter().enumerate() {
        let top = &horiz[y0 * out_w..(y0 + 1) * out_w];
        let bot = &horiz[y1 * out_w..(y1 + 1) * out_w];
        for ((o, &t), &b) in buf.iter_mut().zip(top).zip(bot) {
            *o = hy0 * t + hy1 * b;
        }
        row(oy, &buf);
    }
}

/// Bilinear upsampling of `[in_h, in_w]` logits to `[out_h, out_w]`, thresholded: `> threshold`
/// (`SAM2ImagePredictor._transforms.postprocess_masks` then `> mask_threshold`). Same numbers as
/// [`resize_bilinear`], one float row alive at a time instead of the whole plane.
pub fn upsample_threshold(
    x: &[f32],
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    threshold: f32,
) -> Vec<u8> {
    if (in_h, in_w) == (out_h, out_w) {
        return x.iter().map(|&v| u8::from(v > threshold)).collect();
    }
    let mut out = vec![0u8; out_h * out_w];
    bilinear_rows(x, in_h, in_w, out_h, out_w, |oy, row| {
        for (o, &v) in out[oy * out_w..(oy + 1) * out_w].iter_mut().zip(row) {
            *o = u8::from(v > threshold);
        }
    });
    out
}

/// What `sam2.utils.misc.get_connected_components` (8-connectivity) returns for one boolean
/// `[h, w]` mask: per pixel, the area of its component (0 off the mask).
fn component_areas_8(mask: &[bool], h: usize, w: usize) -> Vec<u32> {
    let mut labels = vec![0u32; h * w];
    let mut areas = vec![0u32; h * w];
    let mut cur = 0u32;
    let mut comp = Vec::new();
    let mut queue = VecDeque::new();
    for start in 0..h * w {
        if !mask[start] || labels[start] != 0 {
            continue;
        }
        cur += 1;
        labels[start] = cur;
        comp.clear();
        comp.push(start);
        queue.push_back(start);
        while let Some(p) = queue.pop_front() {
            let (y, x) = ((p / w) as i64, (p % w) as i64);
            for dy in -1..=1i64 {
                for dx in -1..=1i64 {
                    let (yy, xx) = (y + dy, x + dx);
                    if yy < 0 || xx < 0 || yy >= h as i64 || xx >= w as i64 {
                        continue;
                    }
                    let q = yy as usize * w + xx as usize;
                    if mask[q] && labels[q] == 0 {
                        labels[q] = cur;
                        comp.push(q);
                        queue.push_back(q);
                    }
                }
            }
        }
        let n = comp.len() as u32;
        for &p in &comp {
            areas[p] = n;
        }
    }
    areas
}

/// `sam2.utils.misc.fill_holes_in_mask_scores` on one `[h, w]` plane of low-res logits:
/// background components (logits ≤ 0) of area ≤ `max_area` become 0.1.
pub fn fill_holes_in_mask_scores(logits: &mut [f32], h: usize, w: usize, max_area: usize) {
    let bg: Vec<bool> = logits.iter().map(|&v| v <= 0.0).collect();
    let areas = component_areas_8(&bg, h, w);
    for (v, &a) in logits.iter_mut().zip(&areas) {
        if a > 0 && a as usize <= max_area {
            *v = 0.1;
        }
    }
}

/// `SAM2Base._apply_non_overlapping_constraints` over several objects' planes of equal size: at
/// each pixel only the object with the highest logit keeps it; the others get `min(v, -10)`.
pub fn apply_non_overlapping_constraints(planes: &mut [Vec<f32>]) {
    if planes.len() <= 1 {
        return;
    }
    let n = planes[0].len();
    for p in 0..n {
        let mut best = 0;
        for (i, plane) in planes.iter().enumerate() {
            // first maximum, as np.argmax
            if plane[p] > planes[best][p] {
                best = i;
            }
        }
        for (i, plane) in planes.iter_mut().enumerate() {
            if i != best {
                plane[p] = plane[p].min(-10.0);
            }
        }
    }
}

/// Index of the first maximum, as `np.argmax` / `torch.argmax` (NaN never wins).
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(round_to_bf16(1.0), 1.0);
        // 1 + 2^-8 is halfway between two bf16 values: ties to even (1.0)
        assert_eq!(round_to_bf16(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_to_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
    }

    #[test]
    fn bilinear_identity_and_constant() {
        let x = vec![2.0f32; 16];
        let y = resize_bilinear(&x, 4, 4, 7, 9);
        assert!(y.iter().all(|&v| (v - 2.0).abs() < 1e-6));
        assert_eq!(resize_bilinear(&x, 4, 4, 4, 4), x);
    }

    /// A random plane and an output size, up and down on each axis.
    fn plane_case() -> impl Strategy<Value = (usize, usize, usize, usize, Vec<f32>)> {
        (1..20usize, 1..20usize, 1..48usize, 1..48usize).prop_flat_map(|(ih, iw, oh, ow)| {
            let plane = proptest::collection::vec(-4.0f32..4.0, ih * iw);
            (Just(ih), Just(iw), Just(oh), Just(ow), plane)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The separable pass gives the same bits as sampling each pixel from its four
        /// neighbours (PyTorch's expression), up and down, and the thresholded form agrees.
        #[test]
        fn separable_bilinear_equals_the_four_tap_formula((ih, iw, oh, ow, x) in plane_case()) {
            let (ys, xs) = (bilinear_taps(ih, oh), bilinear_taps(iw, ow));
            let mut want = Vec::with_capacity(oh * ow);
            for &(y0, y1, hy0, hy1) in &ys {
                for &(x0, x1, wx0, wx1) in &xs {
                    let top = wx0 * x[y0 * iw + x0] + wx1 * x[y0 * iw + x1];
                    let bot = wx0 * x[y1 * iw + x0] + wx1 * x[y1 * iw + x1];
                    want.push(hy0 * top + hy1 * bot);
                }
            }
            let got = resize_bilinear(&x, ih, iw, oh, ow);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&got), bits(&want), "{}x{} -> {}x{}", ih, iw, oh, ow);
            let mask = upsample_threshold(&x, ih, iw, oh, ow, 0.25);
            let from_plane: Vec<u8> = want.iter().map(|&v| u8::from(v > 0.25)).collect();
            prop_assert_eq!(mask, from_plane);
        }
    }

    #[test]
    fn antialias_resize_keeps_constants() {
        let x = vec![0.5f32; 3 * 10 * 13];
        let y = resize_antialias_bilinear(&x, 3, 10, 13, 16, 7);
        assert_eq!(y.len(), 3 * 16 * 7);
        assert!(y.iter().all(|&v| (v - 0.5).abs() < 1e-6));
    }

    #[test]
    fn fills_small_holes_only() {
        // 5x5 positive square with one negative pixel inside; the outside border is large.
        let mut l = vec![-1.0f32; 7 * 7];
        for y in 1..6 {
            for x in 1..6 {
                l[y * 7 + x] = 1.0;
            }
        }
        l[3 * 7 + 3] = -1.0;
        fill_holes_in_mask_scores(&mut l, 7, 7, 8);
        assert_eq!(l[3 * 7 + 3], 0.1);
        assert_eq!(l[0], -1.0);
    }

    #[test]
    fn non_overlap_keeps_the_best_object() {
        let mut p = vec![vec![1.0f32, -3.0], vec![2.0f32, -20.0]];
        apply_non_overlapping_constraints(&mut p);
        assert_eq!(p[0], vec![-10.0, -3.0]);
        assert_eq!(p[1], vec![2.0, -20.0]);
    }
}
