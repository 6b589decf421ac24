//! Parity of the Rust SAM 2 engine with the official `sam2` predictors (sam2==1.1.0) on the tiny
//! random-weight model: the reference outputs bundled in `sam2-tiny/reference/` were written by
//! `onnx/export_sam2.py --tiny-random` (scripts/make_fixtures.sh, run by ./test.sh).

#![allow(clippy::unwrap_used)]

use pixelrefer_studio::runtime::SessionOptions;
use pixelrefer_studio::segment::Sam2Model;
use pixelrefer_studio::segment::reference::{Tolerances, run_reference};
use std::path::PathBuf;
use std::sync::Arc;

#[path = "support/fixtures.rs"]
mod fixtures;

fn fixture() -> PathBuf {
    fixtures::fixture("sam2-tiny")
}

#[test]
fn sam2_matches_official_predictors_image_and_video() {
    let dir = fixture();
    let model = Arc::new(
        Sam2Model::load(
            &dir,
            &SessionOptions {
                intra_threads: 2,
                ..SessionOptions::default()
            },
        )
        .unwrap(),
    );
    let report = run_reference(model, &mut |line| eprintln!("{line}")).unwrap();
    let tol = Tolerances::default();
    eprintln!("{}", report.summary());
    // all five image cases and all seven video steps (both objects, both directions, correction)
    assert_eq!(report.image.len(), 5);
    assert_eq!(report.video.len(), 7);
    assert!(report.video.iter().any(|s| s.reverse));
    let failures = report.failures(&tol);
    assert!(failures.is_empty(), "parity targets missed: {failures:?}");
    // the bank must pick the same frames as the official code
    assert_eq!(report.bank_mismatches(), 0);
}
