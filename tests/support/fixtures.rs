//! Paths of the tiny model fixtures that ./test.sh writes (scripts/make_fixtures.sh).
#![allow(dead_code)]

use std::path::PathBuf;

/// `$PIXELREFER_FIXTURES/<name>`, default `<crate>/.fixtures/models/<name>`; panics with a clear
/// message when it or its reference data is missing (these tests must not silently skip).
pub fn fixture(name: &str) -> PathBuf {
    let dir = model_fixture(name);
    assert!(
        dir.join("reference/cases.json").is_file(),
        "missing test fixture {}: run ./test.sh (or scripts/make_fixtures.sh) to export the tiny models",
        dir.display()
    );
    dir
}

/// [`fixture`] for a model without reference data (a quantized export): only its manifest
/// must be there.
pub fn model_fixture(name: &str) -> PathBuf {
    let root = std::env::var_os("PIXELREFER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".fixtures/models"));
    let dir = root.join(name);
    assert!(
        dir.join("manifest.json").is_file(),
        "missing test fixture {}: run ./test.sh (or scripts/make_fixtures.sh) to export the tiny models",
        dir.display()
    );
    dir
}

/// A folder `dir/frames` holding the first `count` reference frames of the `sam2-tiny`
/// fixture (480x270 PNGs `00000.png`, …): a short sequence for `track`.
pub fn sam2_frames_folder(dir: &std::path::Path, count: usize) -> PathBuf {
    let model = fixture("sam2-tiny");
    let folder = dir.join("frames");
    std::fs::create_dir_all(&folder).expect("create the frames folder");
    for i in 0..count {
        let name = format!("{i:05}.png");
        std::fs::copy(
            model.join("reference/frames").join(&name),
            folder.join(&name),
        )
        .expect("copy a reference frame");
    }
    folder
}

/// The manifest of the quantized model in `dir`, after the checks every quantized export must
/// pass: a quantization entry with `scheme` whose operators include `operator`, a variant ending
/// in `-<scheme>`, and no `reference/` (fp32 reference cases do not describe it).
pub fn quantized_manifest(
    dir: &std::path::Path,
    scheme: &str,
    operator: &str,
) -> pixelrefer_studio::runtime::Manifest {
    let m = pixelrefer_studio::runtime::Manifest::load(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let q = m.quantization.as_ref().expect("a quantization entry");
    assert_eq!(q.scheme, scheme);
    assert!(q.operators.iter().any(|o| o == operator), "{q:?}");
    assert!(m.variant.ends_with(&format!("-{scheme}")), "{}", m.variant);
    assert!(
        !dir.join("reference").exists(),
        "fp32 reference cases do not describe a quantized model"
    );
    m
}

/// Copies model directory `src` (its top-level files, not `reference/`) to `dst`.
pub fn copy_model(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// [`copy_model`] with constant `name` removed from the copy's manifest (a directory exported
/// before that constant existed); panics when the source manifest lacks it.
pub fn copy_model_without_constant(src: &std::path::Path, dst: &std::path::Path, name: &str) {
    copy_model(src, dst);
    let path = dst.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["constants"]
        .as_object_mut()
        .unwrap()
        .remove(name)
        .unwrap_or_else(|| panic!("{} has no constant {name}", src.display()));
    std::fs::write(&path, serde_json::to_string(&manifest).unwrap()).unwrap();
}
