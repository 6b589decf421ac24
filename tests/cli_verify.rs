//! `pixelrefer-studio models verify DIR` on the tiny PixelRefer and PixelRefer-Lite fixtures
//! (`$PIXELREFER_FIXTURES/pixelrefer-tiny`, `…/pixelrefer-lite-tiny`, written by ./test.sh): it
//! passes on the exported reference, and fails with one clear sentence when a reference output
//! is tampered with or the reference folder is missing.
#![allow(clippy::unwrap_used)]

mod refer_common;

use refer_common::fixture;
use std::path::Path;
use std::process::{Command, Output};

fn verify(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .args(["models", "verify"])
        .arg(dir)
        .args(["--device", "cpu", "--threads", "2"])
        .output()
        .unwrap()
}

/// The last stderr line (the CLI's one-sentence error).
fn error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr.lines().last().unwrap_or_default().to_string()
}

/// Copies a model directory's files and its `reference/` folder (not the checkpoint).
fn copy_model(from: &Path, to: &Path, with_reference: bool) {
    let copy_files = |src: &Path, dst: &Path| {
        std::fs::create_dir_all(dst).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
            }
        }
    };
    copy_files(from, to);
    if with_reference {
        copy_files(&from.join("reference"), &to.join("reference"));
    }
}

/// Adds `delta` to element `index` of tensor `key` (I64 or F32) in a safetensors file, in place.
fn tamper(path: &Path, key: &str, index: usize, delta: f64) {
    let mut raw = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(raw[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&raw[8..8 + n]).unwrap();
    let t = &header[key];
    let start = 8 + n + t["data_offsets"][0].as_u64().unwrap() as usize;
    match t["dtype"].as_str().unwrap() {
        "I64" => {
            let at = start + 8 * index;
            let v = i64::from_le_bytes(raw[at..at + 8].try_into().unwrap()) + delta as i64;
            raw[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        "F32" => {
            let at = start + 4 * index;
            let v = f32::from_le_bytes(raw[at..at + 4].try_into().unwrap()) + delta as f32;
            raw[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        other => panic!("cannot tamper with {other}"),
    }
    std::fs::write(path, raw).unwrap();
}

fn assert_passes(name: &str, cases: &[&str]) {
    let out = verify(&fixture(name));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for case in cases {
        assert!(
            stdout.contains(&format!("[case] {case}")),
            "no line for {case}:\n{stdout}"
        );
        assert!(
            stdout.contains(&format!("[turn] {case}")),
            "no turn line for {case}:\n{stdout}"
        );
    }
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("[summary]"))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    eprintln!("{name}: {summary}");
    assert!(summary.contains("raw inputs (required)"), "{summary}");
    assert!(summary.contains("exact host mismatches 0"), "{summary}");
    assert_eq!(stdout.lines().last(), Some("PASS"));
}

#[test]
fn verify_passes_on_the_tiny_pixelrefer_model() {
    assert_passes(
        "pixelrefer-tiny",
        &["image_1obj", "image_3obj", "video_2obj", "two_turn"],
    );
}

#[test]
fn verify_passes_on_the_tiny_lite_model() {
    assert_passes(
        "pixelrefer-lite-tiny",
        &["lite_image", "lite_video", "lite_two_turn"],
    );
}

#[test]
fn verify_fails_when_a_generated_id_is_tampered_with() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    copy_model(&fixture("pixelrefer-tiny"), &dir, true);
    tamper(
        &dir.join("reference/image_1obj.safetensors"),
        "turn0.generated_ids",
        1,
        1.0,
    );
    let out = verify(&dir);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(
        line.starts_with("error:")
            && line.contains("does not match its reference")
            && line.contains("image_1obj turn 0: generated ids differ (reference crops)"),
        "{line}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("[summary]") && !stdout.contains("PASS"));
}

#[test]
fn verify_fails_when_first_logits_are_tampered_with() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    copy_model(&fixture("pixelrefer-lite-tiny"), &dir, true);
    tamper(
        &dir.join("reference/lite_video.safetensors"),
        "turn0.first_logits",
        7,
        0.01,
    );
    let out = verify(&dir);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(
        line.starts_with("error:") && line.contains("first-step logits max|diff|"),
        "{line}"
    );
    assert!(!line.contains("generated ids differ"), "{line}");
}

#[test]
fn verify_without_reference_data_says_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    copy_model(&fixture("pixelrefer-lite-tiny"), &dir, false);
    let out = verify(&dir);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(
        line.starts_with("error:")
            && line.contains("has no reference data")
            && line.contains("--reference"),
        "{line}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// A file that is not ONNX Runtime where the library is looked for first: one sentence that
/// names the file once and says why, before any model is read.
#[test]
fn a_broken_onnx_runtime_library_is_one_sentence() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("libonnxruntime.so");
    std::fs::write(&lib, b"not a shared library").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .args(["models", "verify"])
        .arg(fixture("pixelrefer-lite-tiny"))
        .args(["--device", "cpu"])
        .env("ORT_DYLIB_PATH", &lib)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let line = error_line(&out);
    let head = format!("ONNX Runtime at {} could not be loaded: ", lib.display());
    assert!(line.contains(&head), "{line}");
    assert_eq!(line.matches("ONNX Runtime at").count(), 1, "{line}");
    assert!(
        line.len() > line.find(&head).unwrap() + head.len(),
        "no reason: {line}"
    );
}
