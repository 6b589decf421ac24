//! Parity of the Rust SAM 2 engine with the official `sam2` predictors (sam2==1.1.0) on the tiny
//! random-weight model: the reference outputs bundled in `sam2-tiny/reference/` were written by
//! `onnx/export_sam2.py --tiny-random` (scripts/make_fixtures.sh, run by ./test.sh).

#![allow(clippy::unwrap_used)]

use pixelrefer_studio::runtime::SessionOptions;
use pixelrefer_studio::segment::Sam2Model;
use std::path::PathBuf;
use std::sync::Arc;

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/sam_parity.rs"]
mod sam_parity;

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
    sam_parity::assert_matches_reference(model);
}
