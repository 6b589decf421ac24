//! What the tests that compare with a Python library (Pillow, OpenCV, pycocotools) share: the
//! project's Python, a script runner, and a fixed-seed generator for their cases.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `$PIXELREFER_PYTHON`, else `~/.cache/pixelrefer-studio/venv/bin/python` (the test set-up
/// command in README.md creates it with the pinned `onnx/requirements.txt`). Panics naming
/// `needs` when neither exists: these tests fail rather than skip.
pub fn python(needs: &str) -> PathBuf {
    if let Some(p) = std::env::var_os("PIXELREFER_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = dirs::home_dir()
        .unwrap_or_default()
        .join(".cache/pixelrefer-studio/venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with {needs}: set PIXELREFER_PYTHON or create {} by running the test set-up \
         command from README.md",
        venv.display()
    );
    venv
}

/// Runs `tests/python/<script>` with `args` on [`python`]; panics with its output when it fails.
pub fn run_script(needs: &str, script: &str, args: &[&Path]) -> std::process::Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let python = python(needs);
    let output = std::process::Command::new(&python)
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    output
}

/// xorshift64: the same cases on every run and machine.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A `w × h` RGB8 test image (row-major) drawn from `rng`: mostly uniform noise, and one in four
/// a smooth gradient (gradients round differently from noise).
pub fn test_image(rng: &mut Rng, w: usize, h: usize) -> Vec<u8> {
    let smooth = rng.next().is_multiple_of(4);
    let (gx, gy) = (rng.range(0, 9), rng.range(0, 9));
    let mut img = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                img.push(if smooth {
                    ((x * gx + y * gy + c * 40) % 256) as u8
                } else {
                    (rng.next() >> 24) as u8
                });
            }
        }
    }
    img
}

/// Runs `tests/python/resize_ref.py` on `cases` (JSON objects with `w`, `h`, `out_w`, `out_h`,
/// `interp` and the byte `offset` of their input in `inputs`). Returns the script's `info.json`
/// (library versions) and the reference outputs, back to back in case order.
pub fn reference_resizes(
    cases: &[serde_json::Value],
    inputs: &[u8],
) -> (serde_json::Value, Vec<u8>) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let work = dir.path();
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(work.join(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"))
    };
    write(
        "cases.json",
        &serde_json::to_vec(cases).expect("cases as JSON"),
    );
    write("inputs.bin", inputs);
    run_script("opencv-python and Pillow", "resize_ref.py", &[work]);
    let read =
        |name: &str| std::fs::read(work.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
    let info = serde_json::from_slice(&read("info.json")).expect("info.json");
    (info, read("outputs.bin"))
}
