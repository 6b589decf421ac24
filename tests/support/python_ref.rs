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
