//! The wgpu mask-overlay pipeline (WGSL in `shaders/`), drawn through an egui_wgpu callback.
//!
//! * [`masks`]: CPU packing of object masks into bit planes, styles and uniforms (no GPU).
//! * [`pipeline`]: the wgpu pipeline, texture array and buffers (no egui).
//! * [`callback`]: the egui_wgpu paint-callback glue, the only place that touches egui.

pub mod callback;
pub mod masks;
pub mod pipeline;

pub use masks::{
    FLAG_HOVERED, FLAG_SELECTED, FLAG_VISIBLE, OverlayMasks, OverlayUniforms, SLOTS_PER_LAYER,
    SlotStyle,
};
pub use pipeline::{MASK_OVERLAY_WGSL, OverlayFrame, OverlayRenderer};
