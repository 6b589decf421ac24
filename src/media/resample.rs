//! Pillow's 8-bit bicubic resize (`Image.resize(size, BICUBIC)`), the one port both engines use:
//! SAM 2's video frames (`sam2/utils/misc.py` `_load_img_as_tensor`) and PixelRefer's image
//! processor (`image_processing.py`, `resample=3`) resize with it.
//!
//! Pillow `src/libImaging/Resample.c`: `precompute_coeffs` with the bicubic filter (a = -0.5,
//! support 2), `normalize_coeffs_8bpc` (22 fractional bits), one pass per axis with an 8-bit
//! image in between, in `ImagingResampleInner`'s order, 32-bit integer sums. Integer arithmetic throughout, so the result is the same
//! bit for bit; the loops are arranged for speed (the vertical pass accumulates whole rows, which
//! the compiler vectorises) without changing a single sum.

/// Pillow's `PRECISION_BITS` for 8-bit resampling (`Resample.c`: `32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Pillow's bicubic filter, `a = -0.5`, support 2 (`Resample.c`: `bicubic_filter`).
fn bicubic_filter(x: f64) -> f64 {
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

/// The taps of one axis: output `i` reads inputs `start[i] .. start[i] + weights(i).len()`.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    /// `ksize` fixed-point weights per output, zero-padded.
    weights: Vec<i32>,
    ksize: usize,
}

impl Taps {
    /// `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size -> out_size`.
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = 2.0 * filterscale;
        let ksize = (support.ceil() as usize) * 2 + 1;
        let mut taps = Taps {
            start: Vec::with_capacity(out_size),
            len: Vec::with_capacity(out_size),
            weights: vec![0; out_size * ksize],
            ksize,
        };
        let ss = 1.0 / filterscale;
        let mut w = Vec::with_capacity(ksize);
        for (xx, k) in taps.weights.chunks_exact_mut(ksize).enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let n = ((xmax - xmin).max(0) as usize).min(ksize);
            w.clear();
            w.extend((0..n).map(|x| bicubic_filter((x as f64 + xmin as f64 - center + 0.5) * ss)));
            let ww: f64 = w.iter().sum();
            for (dst, &v) in k.iter_mut().zip(&w) {
                let v = if ww != 0.0 { v / ww } else { v };
                let s = v * f64::from(1u32 << PRECISION_BITS);
                *dst = if v < 0.0 {
                    (-0.5 + s) as i32
                } else {
                    (0.5 + s) as i32
                };
            }
            taps.start.push(xmin as usize);
            taps.len.push(n);
        }
        taps
    }

    fn of(&self, i: usize) -> (usize, &[i32]) {
        let k = &self.weights[i * self.ksize..i * self.ksize + self.len[i]];
        (self.start[i], k)
    }
}

/// Pillow's `clip8`: the 8-bit value of a fixed-point sum.
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `ImagingResampleHorizontal_8bpc` on an RGB8 `h × w` buffer: `h × out_w`.
fn horizontal(src: &[u8], h: usize, w: usize, out_w: usize) -> Vec<u8> {
    let taps = Taps::new(w, out_w);
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut dst = vec![0u8; h * out_w * 3];
    for (row, out) in src.chunks_exact(w * 3).zip(dst.chunks_exact_mut(out_w * 3)) {
        for (xx, px) in out.chunks_exact_mut(3).enumerate() {
            let (start, k) = taps.of(xx);
            let mut acc = [half; 3];
            for (p, &kw) in row[start * 3..(start + k.len()) * 3].chunks_exact(3).zip(k) {
                for (a, &v) in acc.iter_mut().zip(p) {
                    *a = a.wrapping_add(i32::from(v).wrapping_mul(kw));
                }
            }
            for (o, a) in px.iter_mut().zip(acc) {
                *o = clip8(a);
            }
        }
    }
    dst
}

/// `ImagingResampleVertical_8bpc` on an RGB8 `h × w` buffer: `out_h × w`. Each output row is a
/// weighted sum of whole input rows.
fn vertical(src: &[u8], h: usize, w: usize, out_h: usize) -> Vec<u8> {
    let taps = Taps::new(h, out_h);
    let half = 1i32 << (PRECISION_BITS - 1);
    let stride = w * 3;
    let mut dst = vec![0u8; out_h * stride];
    let mut acc = vec![0i32; stride];
    for (yy, out) in dst.chunks_exact_mut(stride).enumerate() {
        let (start, k) = taps.of(yy);
        acc.fill(half);
        for (j, &kw) in k.iter().enumerate() {
            let row = &src[(start + j) * stride..(start + j + 1) * stride];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a = a.wrapping_add(i32::from(v).wrapping_mul(kw));
            }
        }
        for (o, &a) in out.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    dst
}

/// The pass-order rule of `ImagingResampleInner` (`Resample.c`): vertical first when the height
/// loses more than twice as many pixels as the width.
fn vertical_first(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> bool {
    let dy = in_h as i64 - out_h as i64;
    let dx = in_w as i64 - out_w as i64;
    dy > 0 && dy > dx * 2
}

/// Pillow `Image.resize((out_w, out_h), BICUBIC)` of a packed RGB8 buffer (`in_h × in_w × 3`,
/// row-major); returns `out_h × out_w × 3`. An unchanged size returns a copy.
///
/// Pass order as Pillow 13's `ImagingResampleInner`: the vertical pass first when the height
/// shrinks by more than twice as many pixels as the width does (so a 720x1280 or 1080x1920
/// portrait frame to 1024x1024 goes vertical first, 1920x1080 horizontal first); the order
/// changes the 8-bit image in between, so it matters for bit-exactness.
///
/// # Panics
/// When `rgb` is shorter than `in_h * in_w * 3`.
pub fn pil_bicubic_rgb8(
    rgb: &[u8],
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    let src = &rgb[..in_h * in_w * 3];
    if out_w == 0 || out_h == 0 || in_w == 0 || in_h == 0 {
        return vec![0; out_w * out_h * 3];
    }
    if vertical_first(in_w, in_h, out_w, out_h) {
        let t = vertical(src, in_h, in_w, out_h);
        return if in_w != out_w {
            horizontal(&t, out_h, in_w, out_w)
        } else {
            t
        };
    }
    let t = if in_w != out_w {
        horizontal(src, in_h, in_w, out_w)
    } else {
        src.to_vec()
    };
    if in_h != out_h {
        vertical(&t, in_h, out_w, out_h)
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The straightforward reading of `Resample.c` (every tap of every pixel and channel, 64-bit
    /// sums, both passes always run, in [`vertical_first`]'s order): the fast loops must give the
    /// same bytes.
    fn naive(src: &[u8], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<u8> {
        let pass = |src: &[u8], h: usize, w: usize, out: usize, along_x: bool| {
            let taps = Taps::new(if along_x { w } else { h }, out);
            let (oh, ow) = if along_x { (h, out) } else { (out, w) };
            let mut dst = vec![0u8; oh * ow * 3];
            for y in 0..oh {
                for x in 0..ow {
                    for c in 0..3 {
                        let (start, k) = taps.of(if along_x { x } else { y });
                        let mut ss = 1i64 << (PRECISION_BITS - 1);
                        for (j, &kw) in k.iter().enumerate() {
                            let (sy, sx) = if along_x {
                                (y, start + j)
                            } else {
                                (start + j, x)
                            };
                            ss += i64::from(src[(sy * w + sx) * 3 + c]) * i64::from(kw);
                        }
                        dst[(y * ow + x) * 3 + c] = (ss >> PRECISION_BITS).clamp(0, 255) as u8;
                    }
                }
            }
            dst
        };
        if vertical_first(w, h, out_w, out_h) {
            let t = pass(src, h, w, out_h, false);
            return pass(&t, out_h, w, out_w, true);
        }
        let t = pass(src, h, w, out_w, true);
        pass(&t, h, out_w, out_h, false)
    }

    /// A size pair and a random image of the input size.
    fn resize_case() -> impl Strategy<Value = (usize, usize, usize, usize, Vec<u8>)> {
        (1..70usize, 1..70usize, 1..90usize, 1..90usize).prop_flat_map(|(w, h, ow, oh)| {
            let pixels = proptest::collection::vec(any::<u8>(), w * h * 3);
            (Just(w), Just(h), Just(ow), Just(oh), pixels)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn matches_the_naive_reading_on_random_sizes((w, h, ow, oh, src) in resize_case()) {
            prop_assert_eq!(
                pil_bicubic_rgb8(&src, w, h, ow, oh),
                naive(&src, h, w, oh, ow),
                "{}x{} -> {}x{}", w, h, ow, oh
            );
        }
    }

    #[test]
    fn keeps_constants_and_sizes() {
        let x = vec![77u8; 5 * 9 * 3];
        let y = pil_bicubic_rgb8(&x, 9, 5, 4, 12);
        assert_eq!(y.len(), 12 * 4 * 3);
        assert!(y.iter().all(|&v| v == 77));
        assert_eq!(pil_bicubic_rgb8(&x, 9, 5, 9, 5), x);
    }
}
