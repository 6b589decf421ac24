//! PixelRefer Studio: region annotation with SAM 2 and PixelRefer on ONNX Runtime.
//!
//! Layers (DESIGN.md §3), dependencies flow one way:
//! `media`, `mask`, `runtime` → `project` → `segment`, `refer` → `jobs` → `ui`, `render`.
//! Engines and the document never import egui, eframe or wgpu (checked by `tests/layers.rs`).

pub mod cli;
pub mod jobs;
pub mod mask;
pub mod media;
pub mod project;
pub mod refer;
#[cfg(feature = "gui")]
pub mod render;
pub mod runtime;
pub mod segment;
#[cfg(feature = "gui")]
pub mod ui;
