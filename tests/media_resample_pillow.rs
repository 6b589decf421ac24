//! `media::resample::pil_bicubic_rgb8` against the real Pillow `Image.resize(size, BICUBIC)`,
//! tolerance 0: every output byte must agree, whichever pass Pillow runs first.
//!
//! The cases come from a fixed-seed generator: random sizes (growing, shrinking, one axis each
//! way), both axes shrinking with the height losing more or less than twice the width's pixels
//! (Pillow's pass-order rule), and frame shapes as SAM 2 resizes them to 1024 x 1024 (scaled down
//! 4x to keep the test short): landscape and portrait 360p, 720p and 1080p.
//! `tests/python/resize_ref.py` runs Pillow on them. Python: `$PIXELREFER_PYTHON`, else
//! `~/.cache/pixelrefer-studio/venv/bin/python`, with the Pillow pinned in
//! `onnx/requirements.txt`. Without it the test fails; it never skips.
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::media::resample::pil_bicubic_rgb8;
use serde_json::json;
#[path = "support/python_ref.rs"]
mod python_ref;

use python_ref::{Rng, reference_resizes, test_image};

/// The Pillow version the port is bit-exact with (`onnx/requirements.txt`).
const PILLOW_VERSION: &str = "13.0.0";

fn size_pairs(rng: &mut Rng) -> Vec<(usize, usize, usize, usize)> {
    let mut v = Vec::new();
    for _ in 0..150 {
        let (w, h) = (rng.range(1, 60), rng.range(1, 60));
        v.push((w, h, rng.range(1, 80), rng.range(1, 80)));
    }
    for _ in 0..15 {
        let (w, h) = (rng.range(20, 90), rng.range(2, 15));
        v.push((w, h, rng.range(2, w - 1), rng.range(h + 1, 60)));
        v.push((h, w, rng.range(h + 1, 60), rng.range(2, w - 1)));
    }
    // Both axes shrink: Pillow goes vertical first when the height loses more than twice the
    // width's pixels, so cover both sides of that line and the line itself.
    for _ in 0..30 {
        let (w, h) = (rng.range(10, 90), rng.range(10, 90));
        v.push((w, h, rng.range(1, w - 1), rng.range(1, h - 1)));
    }
    v.extend([(40, 60, 40, 30), (60, 40, 30, 40), (40, 60, 41, 20)]); // one axis unchanged or growing
    for dx in 1..6 {
        v.push((40, 60, 40 - dx, 60 - 2 * dx));
        v.push((40, 60, 40 - dx, 60 - 2 * dx - 1));
    }
    // Frames as SAM 2 resizes them (to 1024 x 1024, scaled down 4x here to keep the test short)
    // and odd sizes: 360p, 720p and 1080p, landscape and portrait.
    v.extend([
        (160, 90, 256, 256),
        (90, 160, 256, 256),
        (320, 180, 256, 256),
        (180, 320, 256, 256),
        (480, 270, 256, 256),
        (270, 480, 256, 256),
        (333, 251, 256, 256),
        (1, 1, 5, 3),
        (7, 1, 1, 9),
        (1, 9, 3, 1),
    ]);
    v
}

#[test]
fn pil_bicubic_port_matches_pillow() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pairs = size_pairs(&mut rng);
    let mut cases = Vec::new();
    let mut inputs: Vec<u8> = Vec::new();
    for &(w, h, ow, oh) in &pairs {
        let offset = inputs.len();
        inputs.extend(test_image(&mut rng, w, h));
        cases.push(json!({
            "w": w, "h": h, "out_w": ow, "out_h": oh, "interp": "pil_bicubic", "offset": offset,
        }));
    }
    let (info, want) = reference_resizes(&cases, &inputs);
    assert_eq!(
        info["pillow"], PILLOW_VERSION,
        "the port is bit-exact with Pillow {PILLOW_VERSION}"
    );

    let mut at = 0;
    let mut failures = Vec::new();
    for (case, &(w, h, ow, oh)) in cases.iter().zip(&pairs) {
        let offset = case["offset"].as_u64().unwrap() as usize;
        let got = pil_bicubic_rgb8(&inputs[offset..offset + w * h * 3], w, h, ow, oh);
        let reference = &want[at..at + ow * oh * 3];
        at += ow * oh * 3;
        let worst = got
            .iter()
            .zip(reference)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        if worst != 0 {
            failures.push(format!("{w}x{h} -> {ow}x{oh}: differs by up to {worst}"));
        }
    }
    assert_eq!(at, want.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases differ: {failures:?}",
        failures.len(),
        pairs.len()
    );
}
