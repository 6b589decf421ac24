//! The opt-in int8 SAM 2 export (`export_sam2.py --quantize int8`: the image encoder's matrices in
//! int8, activations quantized per call): labelled as such, run by the same engine, and measured
//! against its fp32 source with [`compare`] (IoU of every mask for clicks on one frame and two
//! objects tracked through the frames). The tiny fixtures share their weights (same seed).
//! Bounds come from measurement with room for CPU-kernel differences (tiny model, 6 frames:
//! image IoU min 0.994, video IoU min 0.969 / mean 0.987); a different model (EdgeTAM: mean IoU
//! 0.31 and 0.14) on the same probe stays far below them, so the measure can fail.
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::runtime::{Manifest, SessionOptions};
use pixelrefer_studio::segment::compare::{compare, probe_frames};
use pixelrefer_studio::segment::{CancelToken, Sam2Model};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{fixture, model_fixture, quantized_manifest};

fn load(dir: &Path) -> Arc<Sam2Model> {
    Arc::new(
        Sam2Model::load(dir, &SessionOptions::default())
            .unwrap_or_else(|e| panic!("{} (run ./test.sh for the fixtures): {e}", dir.display())),
    )
}

#[test]
fn the_int8_export_says_so_in_the_manifest_and_the_model() {
    let dir = model_fixture("sam2-tiny-int8");
    let m = quantized_manifest(&dir, "int8", "MatMulInteger");
    let q = m.quantization.as_ref().expect("a quantization entry");
    assert_eq!(q.vision_bits, Some(8));
    assert_eq!(q.llm_bits, None);
    let model = load(&dir);
    assert_eq!(
        model.quantization().map(|q| q.scheme.as_str()),
        Some("int8")
    );
    assert!(load(&fixture("sam2-tiny")).quantization().is_none());
    // Only the image encoder is quantized: a new, smaller file (on the tiny model most of its
    // bytes are not matrices: 2.49 vs 2.61 MB; full-size SAM 2.1-tiny 55 vs 134 MB); the other
    // graphs are the fp32 ones.
    let src = fixture("sam2-tiny");
    let size = |d: &Path| {
        std::fs::metadata(d.join("image_encoder.onnx"))
            .unwrap()
            .len()
    };
    assert!(size(&dir) < size(&src), "{} vs {}", size(&dir), size(&src));
    let fp32 = Manifest::load(&src).unwrap();
    for f in [
        "prompt_decoder.onnx",
        "memory_encoder.onnx",
        "memory_attention.onnx",
    ] {
        assert_eq!(
            m.files.get(f),
            fp32.files.get(f),
            "{f} should be copied as exported"
        );
    }
}

#[test]
fn int8_masks_stay_close_to_fp32_and_another_model_does_not() {
    let cancel = CancelToken::new();
    let (fp32, int8) = (
        load(&fixture("sam2-tiny")),
        load(&model_fixture("sam2-tiny-int8")),
    );
    let frames = probe_frames(None, 6).unwrap();
    let r = compare(&fp32, &int8, &frames, &cancel).unwrap();
    println!("int8 against fp32: {r:?}");
    assert_eq!((r.clicks, r.frames, r.objects), (9, 6, 2));
    assert!(r.max_logit_diff > 0.0, "outputs identical to fp32? {r:?}");
    assert!(r.image_min_iou >= 0.9 && r.image_mean_iou >= 0.97, "{r:?}");
    assert!(r.video_min_iou >= 0.9 && r.video_mean_iou >= 0.97, "{r:?}");
    // The same model agrees with itself exactly.
    let same = compare(&fp32, &load(&fixture("sam2-tiny")), &frames, &cancel).unwrap();
    assert_eq!(
        (same.image_min_iou, same.video_min_iou, same.max_logit_diff),
        (1.0, 1.0, 0.0),
        "{same:?}"
    );
    assert_eq!((same.image_choice_changes, same.visibility_changes), (0, 0));
    // Another model entirely: the measure tells it apart.
    let other = compare(&fp32, &load(&fixture("edgetam-tiny")), &frames, &cancel).unwrap();
    println!("EdgeTAM against SAM 2: {other:?}");
    assert!(
        other.image_mean_iou < 0.9 || other.video_mean_iou < 0.9,
        "{other:?}"
    );
}

#[test]
fn models_compare_and_verify_on_sam2_dirs() {
    let (a, b) = (fixture("sam2-tiny"), model_fixture("sam2-tiny-int8"));
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
            .args(args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&[
        "models",
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--frames",
        "3",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["frames"], 3);
    assert_eq!(v["clicks"], 9);
    assert_eq!(v["other"]["precision"], "int8 quantized");
    assert_eq!(v["reference"]["precision"], "full precision");
    assert!(v["video_min_iou"].as_f64().unwrap() >= 0.9, "{v}");
    // A SAM 2 model against a PixelRefer model: one sentence, nothing run.
    let (ok, _, err) = run(&[
        "models",
        "compare",
        a.to_str().unwrap(),
        fixture("pixelrefer-tiny").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("compare two SAM 2 models or two PixelRefer models"),
        "{err}"
    );
    // `models verify` has no fp32 reference to hold the int8 model to: it says what to run.
    let (ok, _, err) = run(&["models", "verify", b.to_str().unwrap(), "--device", "cpu"]);
    assert!(!ok);
    assert!(
        err.contains("is an int8 quantized export") && err.contains("models compare"),
        "{err}"
    );
}
