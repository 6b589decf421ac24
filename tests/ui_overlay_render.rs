//! Renders the mask overlay offscreen with wgpu (Mesa lavapipe in CI) and reads the pixels
//! back: fill colour, constant-width outline at high zoom, hidden objects skipped, selection
//! highlight, dirty-rect updates. Skips (passes with a note) when no adapter exists.

#![allow(clippy::unwrap_used)]

use pixelrefer_studio::mask::{BBox, Mask};
use pixelrefer_studio::render::{
    FLAG_SELECTED, FLAG_VISIBLE, OverlayFrame, OverlayMasks, OverlayRenderer, OverlayUniforms,
    SlotStyle,
};
use std::sync::Arc;

const SIZE: u32 = 64; // target is 64×64 px, the 8×8 image at zoom 8
const ZOOM: f32 = 8.0;

struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
}

fn gpu() -> Option<Gpu> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        force_fallback_adapter: false,
        ..Default::default()
    }))
    .ok()?;
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).ok()?;
    Some(Gpu { device, queue })
}

fn render(gpu: &Gpu, renderer: &mut OverlayRenderer, frame: &OverlayFrame) -> Vec<[u8; 4]> {
    let Gpu { device, queue } = gpu;
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d {
            width: SIZE,
            height: SIZE,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = target.create_view(&Default::default());
    renderer.prepare(device, queue, frame);
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: u64::from(SIZE * SIZE * 4),
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: None,
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::TRANSPARENT),
                    store: wgpu::StoreOp::Store,
                },
            })],
            ..Default::default()
        });
        renderer.paint(&mut pass);
    }
    encoder.copy_texture_to_buffer(
        wgpu::TexelCopyTextureInfo {
            texture: &target,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        wgpu::TexelCopyBufferInfo {
            buffer: &readback,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(SIZE * 4),
                rows_per_image: Some(SIZE),
            },
        },
        wgpu::Extent3d {
            width: SIZE,
            height: SIZE,
            depth_or_array_layers: 1,
        },
    );
    queue.submit([encoder.finish()]);
    let slice = readback.slice(..);
    slice.map_async(wgpu::MapMode::Read, |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let bytes = slice.get_mapped_range().unwrap().to_vec();
    bytes
        .chunks_exact(4)
        .map(|c| [c[0], c[1], c[2], c[3]])
        .collect()
}

fn block(x0: i64, y0: i64, x1: i64, y1: i64) -> Mask {
    let mut mask = Mask::new(8, 8);
    for y in y0..y1 {
        for x in x0..x1 {
            mask.set(x, y, true);
        }
    }
    mask
}

fn uniforms() -> OverlayUniforms {
    OverlayUniforms {
        image_origin_px: [0.0, 0.0],
        image_px_per_screen_px: [1.0 / ZOOM, 1.0 / ZOOM],
        image_size_px: [0, 0],
        layer_count: 0,
        slot_count: 0,
        outline_width_px: 1.5,
        fill_opacity: 1.0,
        _pad: [0.0; 2],
    }
}

fn at(pixels: &[[u8; 4]], x: u32, y: u32) -> [u8; 4] {
    pixels[(y * SIZE + x) as usize]
}

#[test]
fn overlay_draws_fill_outline_and_skips_hidden() {
    let Some(gpu) = gpu() else {
        eprintln!("no wgpu adapter; overlay render test skipped");
        return;
    };
    let red = block(2, 2, 6, 6); // image pixels 2..6 → screen 16..48
    let green = block(0, 6, 8, 8); // hidden
    let (masks, _) = OverlayMasks::pack(8, 8, &[Some(&red), Some(&green)]);
    let frame = OverlayFrame {
        masks: Arc::new(masks),
        styles: vec![
            SlotStyle::new([255, 0, 0], 0.5, FLAG_VISIBLE),
            SlotStyle::new([0, 255, 0], 0.5, 0),
        ],
        uniforms: uniforms(),
    };
    let mut renderer = OverlayRenderer::new(&gpu.device, wgpu::TextureFormat::Rgba8Unorm, 1);
    let pixels = render(&gpu, &mut renderer, &frame);

    // Interior: premultiplied red at 50%.
    let inside = at(&pixels, 32, 32);
    assert!((inside[0] as i32 - 128).abs() <= 2, "{inside:?}");
    assert_eq!((inside[1], inside[2]), (0, 0));
    assert!((inside[3] as i32 - 128).abs() <= 2);
    // Outline: the first screen pixel inside the mask edge is opaque red…
    assert_eq!(at(&pixels, 16, 32), [255, 0, 0, 255]);
    // …and it is thin (1.5 px), not a whole image pixel (8 screen px) wide.
    assert_eq!(at(&pixels, 19, 32), inside);
    // Outside every mask, and on the hidden object: nothing drawn.
    assert_eq!(at(&pixels, 4, 4), [0, 0, 0, 0]);
    assert_eq!(at(&pixels, 32, 60), [0, 0, 0, 0]);
}

#[test]
fn selection_thickens_and_lightens_the_outline() {
    let Some(gpu) = gpu() else {
        eprintln!("no wgpu adapter; overlay render test skipped");
        return;
    };
    let red = block(2, 2, 6, 6);
    let (masks, _) = OverlayMasks::pack(8, 8, &[Some(&red)]);
    let frame = OverlayFrame {
        masks: Arc::new(masks),
        styles: vec![SlotStyle::new(
            [255, 0, 0],
            0.5,
            FLAG_VISIBLE | FLAG_SELECTED,
        )],
        uniforms: uniforms(),
    };
    let mut renderer = OverlayRenderer::new(&gpu.device, wgpu::TextureFormat::Rgba8Unorm, 1);
    let pixels = render(&gpu, &mut renderer, &frame);
    let edge = at(&pixels, 16, 32);
    assert_eq!(edge[0], 255);
    assert!(edge[1] > 100, "selected outline is lightened: {edge:?}");
    // Two outline widths (3 px) thick.
    assert_eq!(at(&pixels, 18, 32), edge);
    assert_ne!(at(&pixels, 20, 32), edge);
}

#[test]
fn dirty_rect_updates_reach_the_gpu() {
    let Some(gpu) = gpu() else {
        eprintln!("no wgpu adapter; overlay render test skipped");
        return;
    };
    let empty = Mask::new(8, 8);
    let (mut masks, _) = OverlayMasks::pack(8, 8, &[Some(&empty)]);
    masks.mark_submitted();
    let styles = vec![SlotStyle::new([0, 0, 255], 1.0, FLAG_VISIBLE)];
    let mut renderer = OverlayRenderer::new(&gpu.device, wgpu::TextureFormat::Rgba8Unorm, 1);
    let mut frame = OverlayFrame {
        masks: Arc::new(masks.clone()),
        styles,
        uniforms: uniforms(),
    };
    let pixels = render(&gpu, &mut renderer, &frame);
    assert_eq!(at(&pixels, 36, 36), [0, 0, 0, 0]);
    let full_bytes = renderer.last_upload_bytes;
    assert_eq!(full_bytes, 8 * 8 * 4);

    // A brush dab on pixel (4,4): only that rect is uploaded.
    let dab = block(4, 4, 5, 5);
    masks.update_slot_rect(
        0,
        &dab,
        BBox {
            x: 4,
            y: 4,
            w: 1,
            h: 1,
        },
    );
    frame.masks = Arc::new(masks);
    let pixels = render(&gpu, &mut renderer, &frame);
    assert_eq!(renderer.last_upload_bytes, 4);
    assert_eq!(at(&pixels, 36, 36), [0, 0, 255, 255]);
}
