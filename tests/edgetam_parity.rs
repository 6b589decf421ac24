//! Parity of the Rust SAM 2 family engine with the official EdgeTAM code (edgetam-dimos==1.0.1
//! `SAM2Base`, driven by the sam2==1.1.0 predictor logic, see onnx/edgetam_export/predictor.py) on
//! the tiny random-weight EdgeTAM: `edgetam-tiny/reference/` was written by
//! `onnx/export_edgetam.py --tiny-random` (scripts/make_fixtures.sh, run by ./test.sh). The model
//! loads through the same `Sam2Model` seam and runs through the unchanged image predictor and
//! video tracker.

#![allow(clippy::unwrap_used)]

use pixelrefer_studio::runtime::SessionOptions;
use pixelrefer_studio::segment::{Sam2Model, SegmentError};
use std::path::PathBuf;
use std::sync::Arc;

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/sam_parity.rs"]
mod sam_parity;

fn fixture() -> PathBuf {
    fixtures::fixture("edgetam-tiny")
}

fn options() -> SessionOptions {
    SessionOptions {
        intra_threads: 2,
        ..SessionOptions::default()
    }
}

#[test]
fn edgetam_matches_official_code_image_and_video() {
    let dir = fixture();
    let model = Arc::new(Sam2Model::load(&dir, &options()).unwrap());
    assert_eq!(model.family(), "edgetam");
    // compressed memories: perceiver latents, not the F x F grid
    let c = model.config();
    assert!(c.memory_tokens_per_frame() < c.feat_size * c.feat_size);
    sam_parity::assert_matches_reference(model);
}

#[test]
fn edgetam_memory_layout_mismatch_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    // a manifest whose constants claim SAM 2's grid memories for EdgeTAM's token-list graph
    fixtures::copy_model_without_constant(&fixture(), tmp.path(), "mem_tokens");
    match Sam2Model::load(tmp.path(), &options()) {
        Err(SegmentError::Config { reason, .. }) => {
            assert!(reason.contains("mem_features"), "{reason}")
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}
