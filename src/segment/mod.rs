//! SAM 2 image predictor and video tracker (DESIGN.md §2).
//!
//! Not built yet: it arrives with the SAM 2 issue. Prompts (points, boxes) are already stored
//! on the document by the annotation tools, so masks made here will plug into the same objects.
