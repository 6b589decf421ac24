//! The committed demo assets open and look as `scripts/make_assets.sh` describes.
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::media::{self, SourceKind};
use std::path::Path;

fn asset(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name)
}

#[test]
fn demo_image_is_a_photo() {
    let mut source = media::open(&asset("demo.jpg")).unwrap();
    assert_eq!(source.kind(), SourceKind::Image);
    let info = source.item_info(0).unwrap();
    assert_eq!(
        (info.width, info.height, info.codec.as_str()),
        (600, 400, "jpeg")
    );
    let frame = source.frame(0, 0).unwrap();
    // A photo, not a flat test card: plenty of distinct colours.
    let mut colours: Vec<[u8; 3]> = frame
        .rgba
        .chunks_exact(4)
        .map(|p| [p[0] >> 3, p[1] >> 3, p[2] >> 3])
        .collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 1000, "{} colours", colours.len());
    assert!(std::fs::metadata(asset("demo.jpg")).unwrap().len() < 1_500_000);
}

#[test]
fn demo_video_has_moving_objects() {
    let mut source = media::open(&asset("demo.mp4")).unwrap();
    let info = source.item_info(0).unwrap();
    assert_eq!(info.codec, "h264");
    assert_eq!((info.width, info.height), (640, 360));
    assert_eq!(info.frame_count, 100);
    assert!((info.duration_secs - 4.0).abs() < 0.05);
    let first = source.frame(0, 0).unwrap();
    let last = source.frame(0, 99).unwrap();
    let changed = first
        .rgba
        .chunks_exact(4)
        .zip(last.rgba.chunks_exact(4))
        .filter(|(a, b)| a.iter().zip(b.iter()).any(|(x, y)| x.abs_diff(*y) > 40))
        .count();
    // The objects moved: a good share of the picture changed, but not all of it.
    let total = (info.width * info.height) as usize;
    assert!(
        changed > total / 20 && changed < total / 2,
        "{changed} of {total}"
    );
    assert!(std::fs::metadata(asset("demo.mp4")).unwrap().len() < 1_500_000);
}
