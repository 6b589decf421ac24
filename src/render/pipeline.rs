//! GPU side of the overlay: pipeline, mask texture array, style and uniform buffers.

use super::masks::{OverlayMasks, OverlayUniforms, SlotStyle};
use crate::mask::BBox;

/// The WGSL source (validated by naga in `tests/shaders.rs`).
pub const MASK_OVERLAY_WGSL: &str = include_str!("../../shaders/mask_overlay.wgsl");

/// What one frame of the overlay shows.
#[derive(Debug, Clone)]
pub struct OverlayFrame {
    /// Packed masks of the frame.
    pub masks: std::sync::Arc<OverlayMasks>,
    /// One style per slot.
    pub styles: Vec<SlotStyle>,
    /// Placement and look; `image_size_px`, `layer_count` and `slot_count` are filled in by
    /// [`OverlayRenderer::prepare`].
    pub uniforms: OverlayUniforms,
}

/// Texture currently on the GPU.
struct MaskTexture {
    texture: wgpu::Texture,
    width: u32,
    height: u32,
    layers: u32,
    uploaded_version: u64,
}

/// The overlay pipeline and its resources. Create once per device; call [`Self::prepare`] then
/// [`Self::paint`] each frame.
pub struct OverlayRenderer {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    uniforms: wgpu::Buffer,
    styles: wgpu::Buffer,
    styles_capacity: usize,
    texture: Option<MaskTexture>,
    bind_group: Option<wgpu::BindGroup>,
    /// Bytes written to the mask texture by the last [`Self::prepare`] (for tests and benches).
    pub last_upload_bytes: u64,
}

impl OverlayRenderer {
    /// Builds the pipeline for render passes with `target_format` colour and `sample_count`
    /// samples, without depth.
    pub fn new(
        device: &wgpu::Device,
        target_format: wgpu::TextureFormat,
        sample_count: u32,
    ) -> Self {
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("mask_overlay.wgsl"),
            source: wgpu::ShaderSource::Wgsl(MASK_OVERLAY_WGSL.into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("mask overlay"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: wgpu::BufferSize::new(
                            std::mem::size_of::<OverlayUniforms>() as u64,
                        ),
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Uint,
                        view_dimension: wgpu::TextureViewDimension::D2Array,
                        multisampled: false,
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 2,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: wgpu::BufferSize::new(
                            std::mem::size_of::<SlotStyle>() as u64
                        ),
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("mask overlay"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("mask overlay"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &shader,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            fragment: Some(wgpu::FragmentState {
                module: &shader,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format: target_format,
                    blend: Some(wgpu::BlendState::PREMULTIPLIED_ALPHA_BLENDING),
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState {
                count: sample_count,
                ..Default::default()
            },
            multiview_mask: None,
            cache: None,
        });
        let uniforms = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("mask overlay uniforms"),
            size: std::mem::size_of::<OverlayUniforms>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let styles_capacity = 32;
        let styles = Self::styles_buffer(device, styles_capacity);
        Self {
            pipeline,
            layout,
            uniforms,
            styles,
            styles_capacity,
            texture: None,
            bind_group: None,
            last_upload_bytes: 0,
        }
    }

    fn styles_buffer(device: &wgpu::Device, capacity: usize) -> wgpu::Buffer {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("mask overlay styles"),
            size: (capacity * std::mem::size_of::<SlotStyle>()) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Uploads what changed since the last call (only the dirty rectangles after a brush
    /// stroke, everything after a frame change) and the styles and uniforms.
    pub fn prepare(&mut self, device: &wgpu::Device, queue: &wgpu::Queue, frame: &OverlayFrame) {
        let masks = &frame.masks;
        let limits = device.limits();
        if masks.width() > limits.max_texture_dimension_2d
            || masks.height() > limits.max_texture_dimension_2d
            || masks.layers() > limits.max_texture_array_layers
        {
            // Larger than this GPU can hold: draw no overlay rather than fail the device.
            if self.bind_group.is_some() || self.texture.is_some() {
                log::warn!(
                    "masks of {}x{} exceed the GPU texture limit ({} px); overlay not drawn",
                    masks.width(),
                    masks.height(),
                    limits.max_texture_dimension_2d
                );
            }
            self.bind_group = None;
            self.texture = None;
            self.last_upload_bytes = 0;
            return;
        }
        let mut rebuild_bind_group = self.bind_group.is_none();
        self.last_upload_bytes = 0;

        let needs_new_texture = self.texture.as_ref().is_none_or(|t| {
            t.width != masks.width() || t.height != masks.height() || t.layers != masks.layers()
        });
        if needs_new_texture {
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some("mask overlay bits"),
                size: wgpu::Extent3d {
                    width: masks.width().max(1),
                    height: masks.height().max(1),
                    depth_or_array_layers: masks.layers(),
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::R32Uint,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            self.texture = Some(MaskTexture {
                texture,
                width: masks.width(),
                height: masks.height(),
                layers: masks.layers(),
                uploaded_version: 0,
            });
            rebuild_bind_group = true;
        }
        if let Some(texture) = &mut self.texture
            && masks.width() > 0
            && masks.height() > 0
        {
            match masks.dirty_rects_since(texture.uploaded_version) {
                Some(rects) => {
                    for rect in rects {
                        self.last_upload_bytes += upload_rect(queue, texture, masks, *rect);
                    }
                }
                None => {
                    let all = BBox::whole(masks.width(), masks.height());
                    self.last_upload_bytes += upload_rect(queue, texture, masks, all);
                }
            }
            texture.uploaded_version = masks.version();
        }

        let slots = frame.styles.len().max(1);
        if slots > self.styles_capacity {
            self.styles_capacity = slots.next_power_of_two();
            self.styles = Self::styles_buffer(device, self.styles_capacity);
            rebuild_bind_group = true;
        }
        if !frame.styles.is_empty() {
            queue.write_buffer(&self.styles, 0, bytemuck::cast_slice(&frame.styles));
        }
        let mut uniforms = frame.uniforms;
        uniforms.image_size_px = [masks.width(), masks.height()];
        uniforms.layer_count = masks.layers();
        uniforms.slot_count = frame.styles.len() as u32;
        queue.write_buffer(&self.uniforms, 0, bytemuck::bytes_of(&uniforms));

        if rebuild_bind_group && let Some(texture) = &self.texture {
            let view = texture.texture.create_view(&wgpu::TextureViewDescriptor {
                dimension: Some(wgpu::TextureViewDimension::D2Array),
                ..Default::default()
            });
            self.bind_group = Some(device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("mask overlay"),
                layout: &self.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: self.uniforms.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::TextureView(&view),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: self.styles.as_entire_binding(),
                    },
                ],
            }));
        }
    }

    /// Draws the overlay into the current render pass (viewport = the canvas).
    pub fn paint(&self, render_pass: &mut wgpu::RenderPass<'_>) {
        if let Some(bind_group) = &self.bind_group {
            render_pass.set_pipeline(&self.pipeline);
            render_pass.set_bind_group(0, bind_group, &[]);
            render_pass.draw(0..3, 0..1);
        }
    }
}

/// Writes one rectangle of every layer; returns the bytes written.
fn upload_rect(
    queue: &wgpu::Queue,
    texture: &MaskTexture,
    masks: &OverlayMasks,
    rect: BBox,
) -> u64 {
    let width = masks.width() as usize;
    let plane = width * masks.height() as usize;
    let data: &[u8] = bytemuck::cast_slice(masks.data());
    let mut bytes = 0;
    for layer in 0..masks.layers() {
        let start = (layer as usize * plane + rect.y as usize * width + rect.x as usize) * 4;
        let end = (layer as usize * plane
            + (rect.y + rect.h - 1) as usize * width
            + (rect.x + rect.w) as usize)
            * 4;
        queue.write_texture(
            wgpu::TexelCopyTextureInfo {
                texture: &texture.texture,
                mip_level: 0,
                origin: wgpu::Origin3d {
                    x: rect.x,
                    y: rect.y,
                    z: layer,
                },
                aspect: wgpu::TextureAspect::All,
            },
            &data[start..end],
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(width as u32 * 4),
                rows_per_image: Some(rect.h),
            },
            wgpu::Extent3d {
                width: rect.w,
                height: rect.h,
                depth_or_array_layers: 1,
            },
        );
        bytes += u64::from(rect.w) * u64::from(rect.h) * 4;
    }
    bytes
}
