//! Overlay cost with 20 objects on a 4K frame: CPU packing of the masks into the bit-plane
//! texture data, and (when a wgpu adapter is available headless, e.g. Mesa lavapipe) the full
//! upload + draw, a dirty-rect brush upload + draw, and a styles-only redraw.
//!
//! Run: `cargo bench --bench overlay` (prints medians; no criterion).

#![allow(clippy::unwrap_used)]

use pixelrefer_studio::mask::{BBox, Mask};
use pixelrefer_studio::render::{
    FLAG_VISIBLE, OverlayFrame, OverlayMasks, OverlayRenderer, OverlayUniforms, SlotStyle,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WIDTH: u32 = 3840;
const HEIGHT: u32 = 2160;
const OBJECTS: usize = 20;

fn masks() -> Vec<Mask> {
    (0..OBJECTS)
        .map(|k| {
            let mut mask = Mask::new(WIDTH, HEIGHT);
            // A disc per object, spread over the frame and overlapping its neighbours.
            let cx = (k as i64 % 5) * 700 + 500;
            let cy = (k as i64 / 5) * 450 + 300;
            let r = 380i64;
            for y in (cy - r).max(0)..(cy + r).min(HEIGHT as i64) {
                for x in (cx - r).max(0)..(cx + r).min(WIDTH as i64) {
                    if (x - cx).pow(2) + (y - cy).pow(2) <= r * r {
                        mask.set(x, y, true);
                    }
                }
            }
            mask
        })
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let masks = masks();
    let refs: Vec<Option<&Mask>> = masks.iter().map(Some).collect();

    let samples: Vec<Duration> = (0..10)
        .map(|_| {
            let start = Instant::now();
            let packed = OverlayMasks::pack(WIDTH, HEIGHT, &refs);
            std::hint::black_box(&packed);
            start.elapsed()
        })
        .collect();
    println!(
        "pack {OBJECTS} masks {WIDTH}x{HEIGHT}: median {:.2} ms (10 runs)",
        ms(median(samples))
    );

    let (mut packed, _) = OverlayMasks::pack(WIDTH, HEIGHT, &refs);
    let stroke = BBox {
        x: 1000,
        y: 800,
        w: 120,
        h: 120,
    };
    let samples: Vec<Duration> = (0..50)
        .map(|_| {
            let start = Instant::now();
            packed.update_slot_rect(3, &masks[3], stroke);
            start.elapsed()
        })
        .collect();
    println!(
        "brush dirty rect 120x120 repack: median {:.3} ms",
        ms(median(samples))
    );

    gpu(packed);
}

fn gpu(packed: OverlayMasks) {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter =
        match pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
        {
            Ok(adapter) => adapter,
            Err(err) => {
                println!("gpu: skipped, no wgpu adapter ({err})");
                return;
            }
        };
    let info = adapter.get_info();
    let (device, queue) =
        match pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())) {
            Ok(pair) => pair,
            Err(err) => {
                println!("gpu: skipped, no device ({err})");
                return;
            }
        };
    println!("gpu adapter: {} ({:?})", info.name, info.backend);
    let format = wgpu::TextureFormat::Rgba8Unorm;
    // A 1920x1080 canvas showing the whole 4K frame at zoom 0.5.
    let (tw, th) = (1920u32, 1080u32);
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("bench target"),
        size: wgpu::Extent3d {
            width: tw,
            height: th,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT,
        view_formats: &[],
    });
    let view = target.create_view(&Default::default());
    let mut renderer = OverlayRenderer::new(&device, format, 1);
    let styles: Vec<SlotStyle> = (0..OBJECTS)
        .map(|k| SlotStyle::new([(k * 40) as u8, 200, 100], 0.4, FLAG_VISIBLE))
        .collect();
    let uniforms = OverlayUniforms {
        image_origin_px: [0.0, 0.0],
        image_px_per_screen_px: [2.0, 2.0],
        image_size_px: [0, 0],
        layer_count: 0,
        slot_count: 0,
        outline_width_px: 1.5,
        fill_opacity: 1.0,
        _pad: [0.0; 2],
    };
    let mut masks = Arc::new(packed);
    let draw = |renderer: &mut OverlayRenderer, masks: &Arc<OverlayMasks>| {
        let frame = OverlayFrame {
            masks: Arc::clone(masks),
            styles: styles.clone(),
            uniforms,
        };
        let start = Instant::now();
        renderer.prepare(&device, &queue, &frame);
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("bench"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                ..Default::default()
            });
            renderer.paint(&mut pass);
        }
        queue.submit([encoder.finish()]);
        let _ = device.poll(wgpu::PollType::wait_indefinitely());
        (start.elapsed(), renderer.last_upload_bytes)
    };

    // Full uploads: a fresh version each time (as after a frame change).
    let mut full = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        // A fresh renderer has no texture yet, so everything is uploaded (as after a frame
        // change, when the packed masks are new).
        renderer = OverlayRenderer::new(&device, format, 1);
        let (elapsed, uploaded) = draw(&mut renderer, &masks);
        full.push(elapsed);
        bytes = uploaded;
    }
    println!(
        "gpu full upload ({:.1} MiB) + draw 1920x1080: median {:.2} ms",
        bytes as f64 / (1024.0 * 1024.0),
        ms(median(full))
    );

    // Brush: only the dirty rect is uploaded.
    let _ = draw(&mut renderer, &masks);
    let mut brush = Vec::new();
    for i in 0..10u32 {
        if let Some(m) = Arc::get_mut(&mut masks) {
            m.mark_submitted();
            m.update_slot_rect(
                1,
                &Mask::new(WIDTH, HEIGHT),
                BBox {
                    x: 100 + i * 50,
                    y: 100,
                    w: 64,
                    h: 64,
                },
            );
        }
        let (elapsed, uploaded) = draw(&mut renderer, &masks);
        brush.push(elapsed);
        bytes = uploaded;
    }
    println!(
        "gpu brush dirty-rect upload ({} bytes) + draw: median {:.2} ms",
        bytes,
        ms(median(brush))
    );

    let redraw: Vec<Duration> = (0..10).map(|_| draw(&mut renderer, &masks).0).collect();
    println!(
        "gpu redraw only (styles/uniforms): median {:.2} ms",
        ms(median(redraw))
    );
}
