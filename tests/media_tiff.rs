//! Multi-page TIFF (microscopy stacks, scanned series) opens as a video of its pages, and grey
//! TIFFs of wide samples (32-bit float, signed 16-bit) open at all. Files are written here with
//! the `tiff` crate and, where the project venv has it, by tifffile in ImageJ's own layout.
#![allow(clippy::unwrap_used)]

#[path = "support/media_gen.rs"]
mod media_gen;

use std::fs::File;
use std::path::Path;

use pixelrefer_studio::media::{self, MediaError, SourceKind};
use tiff::encoder::{TiffEncoder, colortype};
use tiff::tags::Tag;

/// Page `t` of a `w`×`h` RGB stack: every pixel differs from its neighbours and every page
/// from the others.
fn rgb_page(w: u32, h: u32, t: u32) -> Vec<u8> {
    (0..h)
        .flat_map(|y| {
            (0..w).flat_map(move |x| {
                [
                    (x * 7 + t * 40) as u8,
                    (y * 5 + t * 3) as u8,
                    (t * 60) as u8,
                ]
            })
        })
        .collect()
}

fn rgba_of_rgb(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks(3)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect()
}

/// Grey samples shown over the display range `lo`..`hi` (clamped), as ImageJ shows them.
fn shown(values: impl IntoIterator<Item = f64>, lo: f64, hi: f64) -> Vec<u8> {
    values
        .into_iter()
        .map(|v| ((v - lo) / (hi - lo) * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

fn grey_of(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks(4).map(|p| p[0]).collect()
}

fn write_stack(path: &Path, pages: u32) {
    let mut enc = TiffEncoder::new(File::create(path).unwrap()).unwrap();
    for t in 0..pages {
        enc.write_image::<colortype::RGB8>(32, 24, &rgb_page(32, 24, t))
            .unwrap();
        if t == 1 {
            // A thumbnail between pages (NewSubfileType 1, reduced resolution): not a frame.
            let mut thumb = enc.new_image::<colortype::RGB8>(8, 6).unwrap();
            thumb
                .encoder()
                .write_tag(Tag::NewSubfileType, 1u32)
                .unwrap();
            thumb.write_data(&rgb_page(8, 6, 9)).unwrap();
        }
    }
}

#[test]
fn a_multi_page_tiff_opens_as_a_video_of_its_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stack.tif");
    write_stack(&path, 4);
    let mut source = media::open(&path).unwrap();
    assert_eq!(source.kind(), SourceKind::Video);
    let info = source.item_info(0).unwrap();
    assert_eq!(
        (
            info.width,
            info.height,
            info.frame_count,
            info.codec.as_str()
        ),
        (32, 24, 4, "tiff")
    );
    // No rate in a plain TIFF: unknown, every frame at time 0.
    assert_eq!((info.fps, info.duration_secs), (0.0, 0.0));
    assert_eq!(source.frame_time_secs(0, 3), 0.0);
    source.set_cache_budget_bytes(0);
    for t in [3u32, 0, 2, 1, 3] {
        let frame = source.frame(0, u64::from(t)).unwrap();
        assert_eq!(frame.rgba, rgba_of_rgb(&rgb_page(32, 24, t)), "page {t}");
    }
    assert!(matches!(
        source.frame(0, 4),
        Err(MediaError::OutOfRange { count: 4, .. })
    ));
}

#[test]
fn a_stack_whose_directory_chain_breaks_keeps_the_pages_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.tif");
    write_stack(&path, 3);
    // The encoder writes each page's directory after its pixels, so the last directory ends
    // the file: cut into it.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();
    let mut source = media::open(&path).unwrap();
    assert_eq!(source.kind(), SourceKind::Video);
    assert_eq!(source.item_info(0).unwrap().frame_count, 2);
    let frame = source.frame(0, 1).unwrap();
    assert_eq!(frame.rgba, rgba_of_rgb(&rgb_page(32, 24, 1)));
}

#[test]
fn a_tiff_of_pages_of_several_sizes_opens_as_its_first_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("document.tif");
    let mut enc = TiffEncoder::new(File::create(&path).unwrap()).unwrap();
    enc.write_image::<colortype::RGB8>(32, 24, &rgb_page(32, 24, 0))
        .unwrap();
    enc.write_image::<colortype::RGB8>(24, 32, &rgb_page(24, 32, 1))
        .unwrap();
    drop(enc);
    let mut source = media::open(&path).unwrap();
    assert_eq!(source.kind(), SourceKind::Image);
    let frame = source.frame(0, 0).unwrap();
    assert_eq!(frame.rgba, rgba_of_rgb(&rgb_page(32, 24, 0)));
}

#[test]
fn an_imagej_hyperstack_shows_its_first_channel_at_its_frame_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hyper.tif");
    let (w, h) = (16u32, 12u32);
    // Pages in ImageJ's order, channel fastest: (t0 c0) (t0 c1) (t1 c0) …
    let sample = |t: u32, c: u32, x: u32, y: u32| (t * 9000 + c * 30000 + x * 700 + y * 90) as u16;
    let page = |t, c| -> Vec<u16> {
        (0..h)
            .flat_map(|y| (0..w).map(move |x| sample(t, c, x, y)))
            .collect()
    };
    let description = "ImageJ=1.54f\nimages=6\nchannels=2\nframes=3\nhyperstack=true\n\
                       mode=composite\nfinterval=0.5\nloop=false\nmin=1000.0\nmax=30000.0\n";
    let mut enc = TiffEncoder::new(File::create(&path).unwrap()).unwrap();
    for t in 0..3 {
        for c in 0..2 {
            let mut img = enc.new_image::<colortype::Gray16>(w, h).unwrap();
            if (t, c) == (0, 0) {
                img.encoder()
                    .write_tag(Tag::ImageDescription, description)
                    .unwrap();
            }
            img.write_data(&page(t, c)).unwrap();
        }
    }
    drop(enc);
    let mut source = media::open(&path).unwrap();
    assert_eq!(source.kind(), SourceKind::Video);
    let info = source.item_info(0).unwrap();
    assert_eq!(
        (info.frame_count, info.fps, info.codec.as_str()),
        (3, 2.0, "tiff (channel 1 of 2)")
    );
    assert_eq!(info.duration_secs, 1.5);
    assert_eq!(source.frame_time_secs(0, 2), 1.0);
    for t in 0..3 {
        let frame = source.frame(0, u64::from(t)).unwrap();
        // ImageJ's saved display range (min, max) for every frame.
        let want = shown(page(t, 0).into_iter().map(f64::from), 1000.0, 30000.0);
        assert_eq!(grey_of(&frame.rgba), want, "frame {t}");
    }
}

#[test]
fn grey_tiffs_of_wide_samples_open() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (20u32, 10u32);
    // 32-bit float of any range: stretched from its smallest to its largest value.
    let float: Vec<f32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| 100.0 + x as f32 * 10.0 + y as f32))
        .collect();
    let (lo, hi) = (100.0f32, 100.0 + 19.0 * 10.0 + 9.0);
    let path = dir.path().join("float.tif");
    TiffEncoder::new(File::create(&path).unwrap())
        .unwrap()
        .write_image::<colortype::Gray32Float>(w, h, &float)
        .unwrap();
    let mut source = media::open(&path).unwrap();
    assert_eq!(source.kind(), SourceKind::Image);
    let frame = source.frame(0, 0).unwrap();
    let want: Vec<u8> = float
        .iter()
        .map(|v| ((v - lo) * 255.0 / (hi - lo)).round() as u8)
        .collect();
    assert_eq!(grey_of(&frame.rgba), want);
    // In a folder too (its header and pixels both read).
    let mut folder = media::open(dir.path()).unwrap();
    assert_eq!(folder.item_info(0).unwrap().width, w);
    assert_eq!(folder.frame(0, 0).unwrap().rgba, frame.rgba);

    // Float data within [0, 1] is scaled by 255, as `image` scales float RGB.
    let unit: Vec<f32> = (0..w * h).map(|i| (i % 5) as f32 / 4.0).collect();
    let path = dir.path().join("unit.tif");
    TiffEncoder::new(File::create(&path).unwrap())
        .unwrap()
        .write_image::<colortype::Gray32Float>(w, h, &unit)
        .unwrap();
    let frame = media::open(&path).unwrap().frame(0, 0).unwrap();
    let want: Vec<u8> = unit.iter().map(|v| (v * 255.0).round() as u8).collect();
    assert_eq!(grey_of(&frame.rgba), want);

    // Signed 16-bit (CT, some cameras): a stack of two pages, both shown over the first
    // page's range.
    let path = dir.path().join("signed.tif");
    let mut enc = TiffEncoder::new(File::create(&path).unwrap()).unwrap();
    let signed =
        |t: i16| -> Vec<i16> { (0..(w * h) as i16).map(|i| i * 3 - 200 * (t + 1)).collect() };
    for t in 0..2 {
        enc.write_image::<colortype::GrayI16>(w, h, &signed(t))
            .unwrap();
    }
    drop(enc);
    let mut source = media::open(&path).unwrap();
    assert_eq!(source.kind(), SourceKind::Video);
    let first = signed(0);
    let (lo, hi) = (f64::from(first[0]), f64::from(first[first.len() - 1]));
    for t in 0..2 {
        let want = shown(signed(t).into_iter().map(f64::from), lo, hi);
        let frame = source.frame(0, t as u64).unwrap();
        assert_eq!(grey_of(&frame.rgba), want, "page {t}");
    }

    // 16-bit grey of a 12-bit camera: over its own range, not dark at a sixteenth of white;
    // over ImageJ's saved display range when the file has one.
    let twelve: Vec<u16> = (0..w * h).map(|i| (i * 20 % 4096) as u16).collect();
    let range = |v: &[u16]| {
        (
            f64::from(*v.iter().min().unwrap()),
            f64::from(*v.iter().max().unwrap()),
        )
    };
    let path = dir.path().join("camera.tif");
    TiffEncoder::new(File::create(&path).unwrap())
        .unwrap()
        .write_image::<colortype::Gray16>(w, h, &twelve)
        .unwrap();
    let frame = media::open(&path).unwrap().frame(0, 0).unwrap();
    let (lo, hi) = range(&twelve);
    assert_eq!(
        grey_of(&frame.rgba),
        shown(twelve.iter().map(|&v| f64::from(v)), lo, hi)
    );
    let path = dir.path().join("fiji.tif");
    let mut enc = TiffEncoder::new(File::create(&path).unwrap()).unwrap();
    let mut img = enc.new_image::<colortype::Gray16>(w, h).unwrap();
    img.encoder()
        .write_tag(
            Tag::ImageDescription,
            "ImageJ=1.54f\nmin=500.0\nmax=2500.0\n",
        )
        .unwrap();
    img.write_data(&twelve).unwrap();
    drop(enc);
    let frame = media::open(&path).unwrap().frame(0, 0).unwrap();
    assert_eq!(
        grey_of(&frame.rgba),
        shown(twelve.iter().map(|&v| f64::from(v)), 500.0, 2500.0)
    );
}

/// Writes, with tifffile, an ImageJ hyperstack (T=3, C=2, 16-bit, 0.25 s a frame), the same
/// as OME-TIFF (0.2 s a frame), a planar
/// RGB stack of two pages and a pyramid-level page between two full pages.
fn tifffile_stacks(dir: &Path) -> bool {
    let Some(python) = media_gen::python() else {
        return false;
    };
    let script = r#"
import sys
import numpy as np
import tifffile
d = sys.argv[1]
t, c, y, x = np.meshgrid(np.arange(3), np.arange(2), np.arange(12), np.arange(16), indexing="ij")
hyper = (t * 9000 + c * 30000 + x * 700 + y * 90).astype(np.uint16)
tifffile.imwrite(d + "/hyper.tif", hyper, imagej=True,
                 metadata={"axes": "TCYX", "finterval": 0.25})
p, s, y, x = np.meshgrid(np.arange(2), np.arange(3), np.arange(24), np.arange(32), indexing="ij")
planar = ((x * 7 + p * 40) * (s == 0) + (y * 5 + p * 3) * (s == 1) + (p * 60) * (s == 2)).astype(np.uint8)
tifffile.imwrite(d + "/planar.tif", planar, photometric="rgb", planarconfig="separate")
tifffile.imwrite(d + "/hyper.ome.tif", hyper, ome=True,
                 metadata={"axes": "TCYX", "TimeIncrement": 0.2, "TimeIncrementUnit": "s"})
y, x = np.meshgrid(np.arange(24), np.arange(32), indexing="ij")
with tifffile.TiffWriter(d + "/pyramid.tif") as tif:
    for t in range(2):
        rgb = np.stack([x * 7 + t * 40, y * 5 + t * 3, np.full_like(x, t * 60)], -1).astype(np.uint8)
        tif.write(rgb, photometric="rgb", contiguous=False)
        tif.write(rgb[::2, ::2], photometric="rgb", subfiletype=1, contiguous=False)
"#;
    std::process::Command::new(python)
        .args(["-c", script])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn stacks_written_by_tifffile_open_as_imagej_ome_and_tifffile_mean_them() {
    let dir = tempfile::tempdir().unwrap();
    if !tifffile_stacks(dir.path()) {
        eprintln!("skipped: no tifffile in the venv at ~/.cache/pixelrefer-studio/venv");
        return;
    }
    for (name, fps) in [("hyper.tif", 4.0), ("hyper.ome.tif", 5.0)] {
        let mut hyper = media::open(&dir.path().join(name)).unwrap();
        let info = hyper.item_info(0).unwrap();
        assert_eq!(
            (
                hyper.kind(),
                info.frame_count,
                info.fps,
                info.codec.as_str()
            ),
            (SourceKind::Video, 3, fps, "tiff (channel 1 of 2)"),
            "{name}"
        );
        // No saved display range: the first frame's (0 to 15 * 700 + 11 * 90) for every frame,
        // as ImageJ opens a stack.
        for t in 0..3u32 {
            let grey = (0..12u32)
                .flat_map(|y| (0..16u32).map(move |x| f64::from(t * 9000 + x * 700 + y * 90)));
            let frame = hyper.frame(0, u64::from(t)).unwrap();
            let want = shown(grey, 0.0, 11490.0);
            assert_eq!(grey_of(&frame.rgba), want, "{name} frame {t}");
        }
    }
    for name in ["planar.tif", "pyramid.tif"] {
        let mut source = media::open(&dir.path().join(name)).unwrap();
        assert_eq!(source.kind(), SourceKind::Video, "{name}");
        assert_eq!(source.item_info(0).unwrap().frame_count, 2, "{name}");
        for t in 0..2u32 {
            let frame = source.frame(0, u64::from(t)).unwrap();
            assert_eq!(
                frame.rgba,
                rgba_of_rgb(&rgb_page(32, 24, t)),
                "{name} page {t}"
            );
        }
    }
}

#[test]
fn an_image_project_made_on_a_stack_becomes_a_video_project() {
    use pixelrefer_studio::project::{Document, Item, MediaKind, MediaRef};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stack.tif");
    write_stack(&path, 3);
    // Before stacks opened as videos, such a file was a picture of its first page, which is
    // frame 0 now: the project becomes a video project with its work on frame 0.
    let media = MediaRef {
        kind: MediaKind::Image,
        path: path.clone(),
        fingerprint: None,
    };
    let mut doc = Document::new(media, vec![Item::new(None, 32, 24, 1, 0.0)]);
    let project = dir.path().join("stack.prj.json");
    pixelrefer_studio::jobs::check_project_media(&mut doc, &project).unwrap();
    assert_eq!(doc.media.kind, MediaKind::Video);
    assert_eq!(doc.items[0].frame_count, 3);
    let mut source = pixelrefer_studio::jobs::open_media(&doc).unwrap();
    let frame = source.frame(0, 0).unwrap();
    assert_eq!(frame.rgba, rgba_of_rgb(&rgb_page(32, 24, 0)));
}
