//! The parity contract every SAM 2 family model meets on its tiny fixture's reference (written by
//! its exporter's `--tiny-random`): all five image cases and all nine video steps (two clicked
//! objects and one given as a painted mask, forward and backward propagation, a correction click
//! and a painted correction followed by both directions again), within the default tolerances,
//! with the memory bank picking the official code's frames.

use pixelrefer_studio::segment::Sam2Model;
use pixelrefer_studio::segment::reference::{Tolerances, run_reference};
use std::sync::Arc;

/// Runs `model` through the reference cases, prints the summary and asserts the contract.
pub fn assert_matches_reference(model: Arc<Sam2Model>) {
    let report = run_reference(model, &mut |line| eprintln!("{line}")).unwrap();
    eprintln!("{}", report.summary());
    assert_eq!(report.image.len(), 5);
    assert_eq!(report.video.len(), 9);
    assert_eq!(
        report.video.iter().filter(|s| s.op == "add_mask").count(),
        2,
        "a new object and a correction given as masks"
    );
    assert!(report.video.iter().any(|s| s.reverse));
    let objects: std::collections::BTreeSet<u32> = report
        .video
        .iter()
        .flat_map(|s| s.ious.iter().map(|&(_, o, _)| o))
        .collect();
    assert_eq!(objects.len(), 3, "every object compared");
    let failures = report.failures(&Tolerances::default());
    assert!(failures.is_empty(), "parity targets missed: {failures:?}");
    // stricter than the default bound (real weights, CUDA): every object pointer, including
    // those the decoder makes from a painted mask
    let ptr = report.video_obj_ptr_max_abs_diff();
    assert!(ptr <= 1e-4, "object pointer max|diff| {ptr:.3e} > 1e-4");
    // the bank must pick the same frames as the official code
    assert_eq!(report.bank_mismatches(), 0);
}
