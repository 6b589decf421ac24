//! Shared helpers of the `refer_*` tests: fixture paths and a small safetensors reader.
//!
//! The tiny models and reference data are made by the exporter (./test.sh runs these through
//! scripts/make_fixtures.sh before `cargo test`):
//!
//! ```text
//! PY=~/.cache/pixelrefer-studio/venv/bin/python
//! $PY onnx/export_pixelrefer.py --tiny-random .fixtures/models/pixelrefer-tiny --variant full
//! $PY onnx/export_pixelrefer.py --tiny-random .fixtures/models/pixelrefer-lite-tiny --variant lite
//! ```
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;

#[path = "../support/fixtures.rs"]
pub mod fixtures;
pub use fixtures::fixture;

/// The `cases.json` entry of reference case `name` in model directory `dir`, and its tensors.
pub fn reference_case(
    dir: &std::path::Path,
    name: &str,
) -> (serde_json::Value, HashMap<String, StTensor>) {
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference/cases.json")).unwrap())
            .unwrap();
    let meta = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("case {name} missing: re-run ./test.sh"))
        .clone();
    let st = read_safetensors(&dir.join(meta["file"].as_str().unwrap()));
    (meta, st)
}

/// One tensor of a safetensors file.
pub struct StTensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl StTensor {
    pub fn f32(&self) -> Vec<f32> {
        assert_eq!(self.dtype, "F32");
        self.bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    pub fn i64(&self) -> Vec<i64> {
        assert_eq!(self.dtype, "I64");
        self.bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    pub fn u8(&self) -> Vec<u8> {
        assert_eq!(self.dtype, "U8");
        self.bytes.clone()
    }
}

/// Reads every tensor of a `.safetensors` file (8-byte header length, JSON header, data).
pub fn read_safetensors(path: &std::path::Path) -> HashMap<String, StTensor> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(raw[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&raw[8..8 + n]).unwrap();
    let data = &raw[8 + n..];
    let mut out = HashMap::new();
    for (k, v) in header.as_object().unwrap() {
        if k == "__metadata__" {
            continue;
        }
        let off = v["data_offsets"].as_array().unwrap();
        let (a, b) = (
            off[0].as_u64().unwrap() as usize,
            off[1].as_u64().unwrap() as usize,
        );
        out.insert(
            k.clone(),
            StTensor {
                dtype: v["dtype"].as_str().unwrap().to_string(),
                shape: v["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as usize)
                    .collect(),
                bytes: data[a..b].to_vec(),
            },
        );
    }
    out
}

/// The tiny fixture `model` loaded with default session options, and its directory.
pub fn load(model: &str) -> (pixelrefer_studio::refer::PixelRefer, std::path::PathBuf) {
    let dir = fixture(model);
    let m = pixelrefer_studio::refer::PixelRefer::load(
        &dir,
        &pixelrefer_studio::runtime::SessionOptions::default(),
    )
    .unwrap();
    (m, dir)
}

/// A `w`×`h` patterned image with one rectangular object (`<object0>`), asked about it with at
/// most 4 new tokens.
pub fn simple_request(w: u32, h: u32) -> pixelrefer_studio::refer::Request {
    use image::RgbImage;
    use pixelrefer_studio::mask::Mask;
    use pixelrefer_studio::refer::{FrameMask, GenerationOptions, Media, ObjectMasks, Request};
    let img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 7 % 256) as u8,
            (y * 3 % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    let mut bits = vec![0u8; (w * h) as usize];
    for y in h / 4..h / 2 {
        for x in w / 4..w / 2 {
            bits[(y * w + x) as usize] = 1;
        }
    }
    Request {
        media: Media::Image(img),
        objects: vec![ObjectMasks {
            tag_id: 0,
            masks: vec![FrameMask {
                frame: 0,
                mask: Mask::from_raw(w, h, bits).unwrap(),
            }],
        }],
        history: vec![],
        question: "What is <object0>?".into(),
        options: GenerationOptions {
            max_new_tokens: Some(4),
            ..GenerationOptions::default()
        },
    }
}

/// Max |a-b|; panics naming `what` if the lengths differ or the difference exceeds `tol`.
pub fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let mut worst = 0f32;
    for (x, y) in a.iter().zip(b) {
        let d = (x - y).abs();
        assert!(!d.is_nan(), "{what}: NaN");
        worst = worst.max(d);
    }
    assert!(worst <= tol, "{what}: max abs diff {worst:e} > {tol:e}");
    worst
}

/// Writes a project at `path` over the first frame of reference case `image_1obj` of `model`
/// (saved beside it as PNG) with the case's mask as `<object0>`.
pub fn image_project(model: &std::path::Path, path: &std::path::Path) {
    use pixelrefer_studio::mask::{Mask, Rle};
    use pixelrefer_studio::project::{
        Document, FrameAnnotation, Item, MaskSource, MediaKind, MediaRef, Object, PALETTE,
    };
    let (_, st) = reference_case(model, "image_1obj");
    let frame = &st["input.frame0"];
    let (h, w) = (frame.shape[0] as u32, frame.shape[1] as u32);
    let png = path.with_extension("png");
    image::RgbImage::from_raw(w, h, frame.u8())
        .unwrap()
        .save(&png)
        .unwrap();
    let mask = Mask::from_raw(w, h, st["input.obj0.mask0"].u8()).unwrap();
    let mut doc = Document::new(
        MediaRef {
            kind: MediaKind::Image,
            path: png,
            fingerprint: None,
        },
        vec![Item::new(None, w, h, 1, 0.0)],
    );
    let mut object = Object::new(0, "thing", PALETTE[0]);
    object.frames.insert(
        0,
        FrameAnnotation::from_mask(Rle::from_mask(&mask), MaskSource::Painted),
    );
    doc.items[0].objects.push(object);
    pixelrefer_studio::project::save_project(&doc, path).unwrap();
}
