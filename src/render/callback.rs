//! The only egui-facing part of `render`: an `egui_wgpu` paint callback that prepares and
//! draws the overlay with the renderer stored in egui_wgpu's callback resources.

use super::masks::OverlayUniforms;
use super::pipeline::{OverlayFrame, OverlayRenderer};

/// Registers the overlay pipeline with egui_wgpu (call once at start-up). Without it the
/// callback draws nothing.
pub fn install(render_state: &egui_wgpu::RenderState) {
    let renderer = OverlayRenderer::new(&render_state.device, render_state.target_format, 1);
    render_state
        .renderer
        .write()
        .callback_resources
        .insert(renderer);
}

/// Where the image sits on screen, in egui points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagePlacement {
    /// Screen position (points) of the image's top-left corner.
    pub origin_pt: [f32; 2],
    /// Screen points per image pixel.
    pub points_per_image_px: f32,
}

/// Draws one overlay frame; built by the canvas each frame.
pub struct OverlayCallback {
    frame: OverlayFrame,
    placement: ImagePlacement,
}

impl OverlayCallback {
    /// A callback drawing `frame` with the image at `placement`.
    pub fn new(frame: OverlayFrame, placement: ImagePlacement) -> Self {
        Self { frame, placement }
    }
}

impl egui_wgpu::CallbackTrait for OverlayCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        screen_descriptor: &egui_wgpu::ScreenDescriptor,
        _egui_encoder: &mut wgpu::CommandEncoder,
        callback_resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(renderer) = callback_resources.get_mut::<OverlayRenderer>() {
            let ppp = screen_descriptor.pixels_per_point;
            let px_per_image_px = (self.placement.points_per_image_px * ppp).max(f32::EPSILON);
            let mut frame = self.frame.clone();
            frame.uniforms = OverlayUniforms {
                image_origin_px: [
                    self.placement.origin_pt[0] * ppp,
                    self.placement.origin_pt[1] * ppp,
                ],
                image_px_per_screen_px: [1.0 / px_per_image_px, 1.0 / px_per_image_px],
                ..self.frame.uniforms
            };
            renderer.prepare(device, queue, &frame);
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        render_pass: &mut wgpu::RenderPass<'static>,
        callback_resources: &egui_wgpu::CallbackResources,
    ) {
        if let Some(renderer) = callback_resources.get::<OverlayRenderer>() {
            renderer.paint(render_pass);
        }
    }
}
