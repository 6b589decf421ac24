//! The wgpu mask-overlay pipeline (WGSL in `shaders/`), drawn through an egui_wgpu callback.
