//! Opt-in weight-quantized PixelRefer exports (`export_pixelrefer.py --quantize int8|int4`):
//! labelled as such, run by the same engine, and measured against their fp32 source with
//! [`compare`]: greedy token agreement with the fp32 tokens fed to both, and the largest logit
//! difference. The tiny fixtures share their fp32 source's weights (same seed). Bounds are set
//! from measurement with room for CPU-kernel differences (int8 PixelRefer: 60/64 steps agree, max
//! |Δlogit| 3.0 of logits reaching 15, most of it from the dynamically quantized vision encoder
//! feeding 1.6k vision tokens; int4 Lite: 62/64, 7.6 of 24.5): a broken quantization (weights
//! scrambled, wrong block order) agrees on almost no step. Also the checks before loading: a
//! quantization this build cannot run, and a machine with too little memory.
#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
mod refer_common;

use pixelrefer_studio::refer::compare::{compare, probe_request};
use pixelrefer_studio::refer::{CancelToken, PixelRefer};
use pixelrefer_studio::runtime::SessionOptions;
use refer_common::fixtures::{model_fixture as fixture, quantized_manifest};
use std::path::Path;
use std::process::Command;

fn load(dir: &Path) -> PixelRefer {
    PixelRefer::load(dir, &SessionOptions::default())
        .unwrap_or_else(|e| panic!("{} (run ./test.sh for the fixtures): {e}", dir.display()))
}

#[test]
fn quantized_exports_say_so_in_the_manifest_and_the_model() {
    for (name, scheme, llm_bits) in [
        ("pixelrefer-tiny-int8", "int8", 8),
        ("pixelrefer-lite-tiny-int4", "int4", 4),
    ] {
        let dir = fixture(name);
        let m = quantized_manifest(&dir, scheme, "MatMulNBits");
        let q = m.quantization.as_ref().expect("a quantization entry");
        assert_eq!(q.llm_bits, Some(llm_bits));
        assert_eq!(q.vision_bits, Some(8));
        let model = load(&dir);
        assert_eq!(
            model.quantization().map(|q| q.scheme.as_str()),
            Some(scheme)
        );
        // The decoder's weights really are smaller than the fp32 source's.
        let src = fixture(if scheme == "int8" {
            "pixelrefer-tiny"
        } else {
            "pixelrefer-lite-tiny"
        });
        let size = |d: &Path| std::fs::metadata(d.join("decoder.onnx")).unwrap().len();
        assert!(
            size(&dir) * 2 < size(&src),
            "{} bytes quantized vs {} fp32",
            size(&dir),
            size(&src)
        );
    }
    assert!(load(&fixture("pixelrefer-tiny")).quantization().is_none());
}

#[test]
fn int8_and_int4_stay_close_to_fp32_on_the_tiny_models() {
    let cancel = CancelToken::new();
    for (src, quant, min_rate, max_diff) in [
        ("pixelrefer-tiny", "pixelrefer-tiny-int8", 0.85, 5.0),
        (
            "pixelrefer-lite-tiny",
            "pixelrefer-lite-tiny-int4",
            0.8,
            10.0,
        ),
    ] {
        let (mut a, mut b) = (load(&fixture(src)), load(&fixture(quant)));
        let r = compare(&mut a, &mut b, &probe_request(None), 64, &cancel).unwrap();
        println!("{quant}: {r:?}");
        assert_eq!(r.steps, 64);
        assert!(r.rate() >= min_rate, "{quant}: {r:?}");
        assert!(r.max_logit_diff <= max_diff, "{quant}: {r:?}");
        assert!(
            r.max_logit_diff > 0.0,
            "{quant}: outputs identical to fp32?"
        );
        // The same model agrees with itself exactly.
        let mut a2 = load(&fixture(src));
        let same = compare(&mut a, &mut a2, &probe_request(None), 8, &cancel).unwrap();
        assert_eq!((same.agreed, same.max_logit_diff), (8, 0.0), "{same:?}");
        assert_eq!(same.median_step_diff, 0.0);
        assert!(same.median_margin > 0.0, "{same:?}");
        assert!(r.median_step_diff > 0.0 && r.median_step_diff <= r.max_logit_diff);
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn models_compare_reports_agreement_as_json() {
    let (a, b) = (fixture("pixelrefer-tiny"), fixture("pixelrefer-tiny-int8"));
    let (ok, out, err) = run(
        &[
            "models",
            "compare",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--steps",
            "16",
            "--json",
        ],
        &[],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["steps"], 16);
    assert_eq!(v["other"]["precision"], "int8 quantized");
    assert_eq!(v["reference"]["precision"], "full precision");
    let agreed = v["agreed"].as_f64().unwrap();
    assert!(
        (v["agreement_rate"].as_f64().unwrap() - agreed / 16.0).abs() < 1e-9,
        "{v}"
    );
    assert!(agreed >= 8.0, "{v}");
    // `models verify` has no fp32 reference to hold a quantized model to: it says what to run.
    let (ok, _, err) = run(
        &["models", "verify", b.to_str().unwrap(), "--device", "cpu"],
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("is an int8 quantized export") && err.contains("models compare"),
        "{err}"
    );
}

/// A copy of `src` whose manifest is edited by `edit` (files hashed in the manifest untouched).
fn edited_copy(src: &Path, dst: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    let path = dst.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut m);
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
}

#[test]
fn unrunnable_quantization_and_too_little_memory_are_one_sentence_before_loading() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("scene.png");
    image::RgbImage::from_pixel(64, 48, image::Rgb([90, 120, 200]))
        .save(&image)
        .unwrap();
    let mask = tmp.path().join("m.png");
    image::GrayImage::from_fn(64, 48, |x, _| image::Luma([if x < 32 { 255 } else { 0 }]))
        .save(&mask)
        .unwrap();
    let fp4 = tmp.path().join("fp4");
    edited_copy(&fixture("pixelrefer-lite-tiny-int4"), &fp4, |m| {
        m["quantization"]["scheme"] = "fp4".into();
    });
    let ask = |model: &Path, env: &[(&str, &str)]| {
        run(
            &[
                "ask",
                "--model",
                model.to_str().unwrap(),
                "--image",
                image.to_str().unwrap(),
                "--mask",
                mask.to_str().unwrap(),
                "--max-new-tokens",
                "2",
                "What is <object0>?",
            ],
            env,
        )
    };
    let (ok, _, err) = ask(&fp4, &[]);
    assert!(!ok);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error:")
            && last.contains(
                "is quantized as `fp4`, which this version cannot run (it runs int8 and int4)"
            ),
        "{err}"
    );
    // Memory: a 64 MiB cap is far below what any model needs.
    let cap = [("PIXELREFER_MEMORY_LIMIT_MB", "64")];
    let (ok, _, err) = ask(&fixture("pixelrefer-lite-tiny-int4"), &cap);
    assert!(!ok);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("GiB of memory and 0.1 GiB is available")
            && last.contains("choose a smaller or quantized model"),
        "{err}"
    );
    // The same for SAM 2 (tracking), and the override loads it anyway.
    let sam = fixture("sam2-tiny");
    let (ok, _, err) = run(
        &["models", "verify", sam.to_str().unwrap(), "--device", "cpu"],
        &cap,
    );
    assert!(!ok);
    assert!(
        err.contains("GiB of memory and 0.1 GiB is available"),
        "{err}"
    );
    let (ok, _, err) = ask(
        &fixture("pixelrefer-lite-tiny-int4"),
        &[cap[0], ("PIXELREFER_SKIP_MEMORY_CHECK", "1")],
    );
    assert!(ok, "{err}");
}
