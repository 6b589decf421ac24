//! `cv2_linear_u8` / `cv2_area_u8` against the real `cv2.resize` (INTER_LINEAR / INTER_AREA on
//! uint8 RGB), tolerance 0: every output byte must agree.
//!
//! The cases come from a fixed-seed generator: random sizes that shrink, grow or do both (one
//! axis each way), integer factors (OpenCV's block-mean INTER_AREA path, non-square factors,
//! one axis only, the 2×2 path INTER_LINEAR also takes), 1-pixel inputs and outputs, odd sizes,
//! ratios such as 10/3 and 5/3, and a few frame-sized inputs (wide enough for OpenCV's SIMD
//! loops). `tests/python/resize_ref.py` runs `cv2.resize` on them.
//!
//! Python: `$PIXELREFER_PYTHON`, else `~/.cache/pixelrefer-studio/venv/bin/python`, with the
//! opencv-python-headless pinned in `onnx/requirements.txt` (5.0.0). Without it the test fails;
//! it never skips.
#![allow(clippy::unwrap_used)]

use image::RgbImage;
use pixelrefer_studio::refer::resize::{cv2_area_u8, cv2_linear_u8};
use serde_json::json;
#[path = "support/python_ref.rs"]
mod python_ref;

use python_ref::{Rng, reference_resizes, test_image};

/// The opencv-python version the ports are bit-exact with (`onnx/requirements.txt`).
const CV2_VERSION: &str = "5.0.0";

/// `(w, h, out_w, out_h)` size pairs; each runs with both interpolations.
fn size_pairs(rng: &mut Rng) -> Vec<(usize, usize, usize, usize)> {
    let mut v = Vec::new();
    // Random small sizes: shrink, grow and mixed in any combination.
    for _ in 0..160 {
        let (w, h) = (rng.range(1, 48), rng.range(1, 48));
        v.push((w, h, rng.range(1, 48), rng.range(1, 48)));
    }
    // Mixed on purpose: one axis shrinks, the other grows.
    for _ in 0..20 {
        let (w, h) = (rng.range(20, 90), rng.range(2, 15));
        v.push((w, h, rng.range(2, w - 1), rng.range(h + 1, 60)));
        v.push((h, w, rng.range(h + 1, 60), rng.range(2, w - 1)));
    }
    // Integer factors: both axes, one axis, non-square factors, and growing by them.
    for k in [2, 3, 4, 5, 7, 10] {
        for base in [1, 2, 3, 5, 8] {
            let b2 = base + rng.range(0, 6);
            v.push((base * k, b2 * k, base, b2));
            v.push((base * k, b2, base, b2));
            v.push((base, b2 * k, base, b2));
            v.push((base, b2, base * k, b2 * k));
        }
    }
    for (kx, ky) in [
        (2, 3),
        (3, 2),
        (4, 2),
        (2, 4),
        (4, 1),
        (1, 4),
        (6, 3),
        (10, 2),
    ] {
        let (ow, oh) = (rng.range(1, 9), rng.range(1, 9));
        v.push((ow * kx, oh * ky, ow, oh));
    }
    // Integer factors where 1 / (out / in) is not exactly the factor in double arithmetic.
    for _ in 0..20 {
        let k = rng.range(2, 6);
        let (ow, oh) = (rng.range(10, 70), rng.range(10, 70));
        v.push((ow * k, oh * k, ow, oh));
    }
    // Exact doubling (OpenCV 5 has a dedicated INTER_LINEAR 2x-up entry) and halving.
    for _ in 0..6 {
        let (w, h) = (rng.range(1, 40), rng.range(1, 40));
        v.push((w, h, 2 * w, 2 * h));
        v.push((2 * w, 2 * h, w, h));
    }
    // 1-pixel inputs and outputs, single rows and columns.
    v.extend([
        (1, 1, 7, 5),
        (1, 1, 1, 9),
        (9, 6, 1, 1),
        (1, 8, 5, 1),
        (8, 1, 1, 5),
        (1, 13, 1, 4),
        (13, 1, 4, 1),
        (1, 4, 1, 13),
        (4, 1, 13, 1),
        (2, 2, 1, 1),
        (3, 3, 1, 1),
    ]);
    // Rational ratios, odd sizes, and frame-sized inputs as the app resizes them (336×336 global
    // image, 224 crops).
    v.extend([
        (10, 10, 3, 3),
        (30, 20, 9, 6),
        (5, 5, 3, 3),
        (25, 40, 15, 24),
        (13, 17, 7, 11),
        (7, 11, 13, 17),
        (1120, 1120, 336, 336),
        (560, 560, 336, 336),
        (640, 480, 336, 336),
        (333, 251, 336, 336),
        (97, 203, 224, 224),
        (301, 157, 224, 99),
        (200, 37, 61, 300),
    ]);
    v
}

#[test]
fn cv2_ports_are_bit_exact_with_cv2_resize() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let pairs = size_pairs(&mut rng);
    let mut cases = Vec::new();
    let mut inputs: Vec<u8> = Vec::new();
    let mut images = Vec::new();
    for &(w, h, ow, oh) in &pairs {
        let offset = inputs.len();
        inputs.extend(test_image(&mut rng, w, h));
        let img = RgbImage::from_raw(w as u32, h as u32, inputs[offset..].to_vec()).unwrap();
        images.push(img);
        for interp in ["linear", "area"] {
            cases.push(json!({
                "w": w, "h": h, "out_w": ow, "out_h": oh, "interp": interp, "offset": offset,
                "image": images.len() - 1,
            }));
        }
    }

    let (info, want) = reference_resizes(&cases, &inputs);
    assert_eq!(
        info["cv2"], CV2_VERSION,
        "the ports are bit-exact with opencv-python {CV2_VERSION} (onnx/requirements.txt)"
    );
    assert_eq!(info["ipp_not_exact"], false, "IPP's inexact resize is on");

    let mut at = 0;
    let mut failures = Vec::new();
    for c in &cases {
        let (ow, oh) = (
            c["out_w"].as_u64().unwrap() as usize,
            c["out_h"].as_u64().unwrap() as usize,
        );
        let img = &images[c["image"].as_u64().unwrap() as usize];
        let got = match c["interp"].as_str().unwrap() {
            "linear" => cv2_linear_u8(img, ow, oh),
            _ => cv2_area_u8(img, ow, oh),
        };
        assert_eq!((got.width() as usize, got.height() as usize), (ow, oh));
        let n = ow * oh * 3;
        let exp = &want[at..at + n];
        at += n;
        let diffs: Vec<usize> = (0..n).filter(|&i| got.as_raw()[i] != exp[i]).collect();
        if let Some(&i) = diffs.first() {
            let max = diffs
                .iter()
                .map(|&i| (i32::from(got.as_raw()[i]) - i32::from(exp[i])).abs())
                .max()
                .unwrap();
            failures.push(format!(
                "{} {}x{} -> {}x{}: {} of {n} values differ (max {max}); first at pixel ({}, {}) \
                 channel {}: ours {}, cv2 {}",
                c["interp"].as_str().unwrap(),
                c["w"],
                c["h"],
                ow,
                oh,
                diffs.len(),
                (i / 3) % ow,
                i / 3 / ow,
                i % 3,
                got.as_raw()[i],
                exp[i]
            ));
        }
    }
    assert_eq!(at, want.len(), "cv2 wrote a different amount of output");
    assert!(
        failures.is_empty(),
        "{} of {} resizes differ from cv2.resize:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(cases.len() >= 700, "{} cases", cases.len());
}

/// Same-size resizes are copies, and degenerate sizes give an image of the requested size
/// instead of panicking (OpenCV rejects those).
#[test]
fn cv2_ports_same_size_and_empty() {
    let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8, y as u8, 7]));
    assert_eq!(cv2_linear_u8(&img, 5, 3), img);
    assert_eq!(cv2_area_u8(&img, 5, 3), img);
    assert_eq!(cv2_area_u8(&img, 0, 4).dimensions(), (0, 4));
    assert_eq!(cv2_linear_u8(&img, 4, 0).dimensions(), (4, 0));
    let empty = RgbImage::new(0, 0);
    assert_eq!(cv2_linear_u8(&empty, 3, 2).dimensions(), (3, 2));
    assert_eq!(cv2_area_u8(&empty, 3, 2).dimensions(), (3, 2));
}
