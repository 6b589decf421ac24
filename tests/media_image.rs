//! Still images and image folders: every format, EXIF orientation, bit depths, colour models,
//! damaged files, size limits and folder listing.
#![allow(clippy::unwrap_used)]

#[path = "support/media_gen.rs"]
mod media_gen;

use image::{ImageBuffer, ImageFormat, Luma, LumaA, Rgb, Rgba};
use pixelrefer_studio::media::{self, MediaError, SourceKind};
use std::path::{Path, PathBuf};

/// 40×20 picture of four flat quadrants: red, green / blue, white. Flat blocks survive JPEG.
fn quadrants() -> ImageBuffer<Rgb<u8>, Vec<u8>> {
    ImageBuffer::from_fn(40, 20, |x, y| match (x < 20, y < 10) {
        (true, true) => Rgb([255, 0, 0]),
        (false, true) => Rgb([0, 255, 0]),
        (true, false) => Rgb([0, 0, 255]),
        (false, false) => Rgb([255, 255, 255]),
    })
}

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const WHITE: [u8; 3] = [255, 255, 255];

/// Colours at the four corners (inset by 2 px): top-left, top-right, bottom-left, bottom-right.
fn corners(frame: &media::Frame) -> [[u8; 3]; 4] {
    let px = |x: u32, y: u32| {
        let i = ((y * frame.width + x) * 4) as usize;
        [frame.rgba[i], frame.rgba[i + 1], frame.rgba[i + 2]]
    };
    let (w, h) = (frame.width - 3, frame.height - 3);
    [px(2, 2), px(w, 2), px(2, h), px(w, h)]
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 24)
}

fn assert_corners(frame: &media::Frame, want: [[u8; 3]; 4], what: &str) {
    let got = corners(frame);
    assert!(
        got.iter().zip(want).all(|(g, w)| close(*g, w)),
        "{what}: corners {got:?}, want {want:?}"
    );
}

fn open_one(path: &Path) -> (media::ItemInfo, std::sync::Arc<media::Frame>) {
    let mut source = media::open(path).unwrap();
    assert_eq!(source.kind(), SourceKind::Image, "{}", path.display());
    assert_eq!(source.item_count(), 1);
    let info = source.item_info(0).unwrap();
    let frame = source.frame(0, 0).unwrap();
    assert_eq!((frame.width, frame.height), (info.width, info.height));
    assert_eq!(frame.rgba.len(), (frame.width * frame.height * 4) as usize);
    (info, frame)
}

#[test]
fn every_format_decodes_upright_and_is_sniffed_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let img = quadrants();
    for (format, codec) in [
        (ImageFormat::Png, "png"),
        (ImageFormat::Jpeg, "jpeg"),
        (ImageFormat::WebP, "webp"),
        (ImageFormat::Tiff, "tiff"),
        (ImageFormat::Bmp, "bmp"),
        (ImageFormat::Gif, "gif"),
        (ImageFormat::Pnm, "pnm"),
    ] {
        // A misleading extension: the content decides.
        let path = dir.path().join(format!("picture_{codec}.dat"));
        img.save_with_format(&path, format).unwrap();
        let (info, frame) = open_one(&path);
        assert_eq!(info.codec, codec);
        assert_eq!((info.width, info.height), (40, 20));
        assert_eq!(info.frame_count, 1);
        assert_corners(&frame, [RED, GREEN, BLUE, WHITE], codec);
        assert!(
            frame.rgba.chunks_exact(4).all(|p| p[3] == 255),
            "{codec} alpha"
        );
    }
}

/// A baseline JPEG of `img` with an EXIF APP1 segment carrying `orientation`.
fn jpeg_with_orientation(img: &ImageBuffer<Rgb<u8>, Vec<u8>>, orientation: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    // TIFF header (big endian), one IFD entry: 0x0112 SHORT 1 = orientation.
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let len = u16::try_from(exif.len() + 2).unwrap();
    let mut out = vec![0xff, 0xd8, 0xff, 0xe1];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&exif);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let img = quadrants();
    // Stored: R G / B W (40×20). Displayed corners per EXIF orientation.
    let cases = [
        (1, (40, 20), [RED, GREEN, BLUE, WHITE], 0),
        (2, (40, 20), [GREEN, RED, WHITE, BLUE], 0),
        (3, (40, 20), [WHITE, BLUE, GREEN, RED], 180),
        (4, (40, 20), [BLUE, WHITE, RED, GREEN], 0),
        (5, (20, 40), [RED, BLUE, GREEN, WHITE], 90),
        (6, (20, 40), [BLUE, RED, WHITE, GREEN], 90),
        (7, (20, 40), [WHITE, GREEN, BLUE, RED], 270),
        (8, (20, 40), [GREEN, WHITE, RED, BLUE], 270),
    ];
    for (orientation, size, want, degrees) in cases {
        let path = dir.path().join(format!("o{orientation}.jpg"));
        std::fs::write(&path, jpeg_with_orientation(&img, orientation)).unwrap();
        let (info, frame) = open_one(&path);
        assert_eq!((info.width, info.height), size, "orientation {orientation}");
        assert_eq!(info.rotation_degrees, degrees, "orientation {orientation}");
        assert_corners(&frame, want, &format!("orientation {orientation}"));
    }
}

#[test]
fn sixteen_bit_grey_and_alpha_are_converted() {
    let dir = tempfile::tempdir().unwrap();
    let p16 = dir.path().join("deep.png");
    ImageBuffer::from_fn(8, 4, |x, _| Rgb([(x as u16) * 8192, 65535, 0]))
        .save(&p16)
        .unwrap();
    let (_, frame) = open_one(&p16);
    assert_eq!(&frame.rgba[..4], &[0, 255, 0, 255]);
    assert_eq!(&frame.rgba[4 * 4..4 * 4 + 4], &[128, 255, 0, 255]);

    let grey = dir.path().join("grey.png");
    ImageBuffer::from_fn(4, 4, |x, _| Luma([x as u8 * 60]))
        .save(&grey)
        .unwrap();
    let (_, frame) = open_one(&grey);
    assert_eq!(&frame.rgba[4..8], &[60, 60, 60, 255]);

    // A 16-bit PGM (depth maps and masks of older datasets).
    let pgm = dir.path().join("depth.pgm");
    ImageBuffer::from_fn(4, 2, |x, _| Luma([x as u16 * 20000]))
        .save(&pgm)
        .unwrap();
    let (info, frame) = open_one(&pgm);
    assert_eq!(info.codec, "pnm");
    assert_eq!(&frame.rgba[4..8], &[78, 78, 78, 255]);

    let grey16 = dir.path().join("grey16.png");
    ImageBuffer::from_fn(4, 4, |_, _| Luma([65535u16]))
        .save(&grey16)
        .unwrap();
    assert_eq!(&open_one(&grey16).1.rgba[..4], &[255, 255, 255, 255]);

    let grey_alpha = dir.path().join("ga.png");
    ImageBuffer::from_fn(4, 4, |_, _| LumaA([200u8, 100]))
        .save(&grey_alpha)
        .unwrap();
    assert_eq!(&open_one(&grey_alpha).1.rgba[..4], &[200, 200, 200, 100]);

    let rgba = dir.path().join("alpha.webp");
    ImageBuffer::from_fn(4, 4, |x, _| Rgba([10, 20, 30, x as u8 * 80]))
        .save(&rgba)
        .unwrap();
    let (_, frame) = open_one(&rgba);
    assert_eq!(&frame.rgba[3 * 4..3 * 4 + 4], &[10, 20, 30, 240]);
    // Not premultiplied: colour survives zero alpha.
    assert_eq!(&frame.rgba[..4], &[10, 20, 30, 0]);
}

#[test]
fn a_single_frame_gif_or_png_is_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let gif = dir.path().join("one.gif");
    let mut file = std::fs::File::create(&gif).unwrap();
    let mut encoder = image::codecs::gif::GifEncoder::new(&mut file);
    let red = image::Frame::new(ImageBuffer::from_pixel(8, 8, Rgba([255u8, 0, 0, 255])));
    encoder.encode_frame(red).unwrap();
    drop(encoder);
    let (info, frame) = open_one(&gif);
    assert_eq!(info.codec, "gif");
    assert_eq!(&frame.rgba[..4], &[255, 0, 0, 255]);

    // An APNG whose animation has one frame.
    let png = dir.path().join("one.png");
    write_apng(&png, 6, 4, &[[0, 200, 0, 255]]);
    let (info, frame) = open_one(&png);
    assert_eq!(info.codec, "png");
    assert_eq!(&frame.rgba[..4], &[0, 200, 0, 255]);

    // An animated WebP of one frame, a patch on a transparent canvas (its red background
    // colour is a hint that libwebp does not paint).
    let webp = dir.path().join("one.webp");
    let patch = ImageBuffer::from_pixel(4, 4, Rgba([10u8, 20, 30, 255]));
    write_animated_webp(&webp, (8, 8), &[(patch, 2, 2, 100, true, false)]);
    let (info, frame) = open_one(&webp);
    assert_eq!(
        (info.codec.as_str(), info.width, info.height),
        ("webp", 8, 8)
    );
    assert_eq!(&frame.rgba[..4], &[0, 0, 0, 0]);
    let at = (3 * 8 + 3) * 4;
    assert_eq!(&frame.rgba[at..at + 4], &[10, 20, 30, 255]);
}

/// Writes an animated PNG of solid `w`×`h` RGBA frames, 10 per second.
fn write_apng(path: &Path, w: u32, h: u32, colours: &[[u8; 4]]) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = png::Encoder::new(file, w, h);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_animated(colours.len() as u32, 0).unwrap();
    encoder.set_frame_delay(1, 10).unwrap();
    let mut writer = encoder.write_header().unwrap();
    for colour in colours {
        let pixels: Vec<u8> = colour.repeat((w * h) as usize);
        writer.write_image_data(&pixels).unwrap();
    }
    writer.finish().unwrap();
}

/// Every frame of `path` as the `image` crate composes it (disposal and sub-rectangles applied).
fn gif_frames_by_image_crate(path: &Path) -> Vec<Vec<u8>> {
    use image::AnimationDecoder;
    let reader = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let decoder = image::codecs::gif::GifDecoder::new(reader).unwrap();
    decoder
        .into_frames()
        .map(|f| f.unwrap().into_buffer().into_raw())
        .collect()
}

#[test]
fn an_animated_gif_opens_as_a_video_of_its_composed_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anim.gif");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut encoder = image::codecs::gif::GifEncoder::new(&mut file);
    let delay = image::Delay::from_numer_denom_ms(100, 1);
    // Full frames and partial ones drawn over what came before, in colours a palette keeps exactly.
    let full = |c: [u8; 3]| ImageBuffer::from_pixel(14, 10, Rgba([c[0], c[1], c[2], 255]));
    let patch = |w, h, c: [u8; 3]| ImageBuffer::from_pixel(w, h, Rgba([c[0], c[1], c[2], 255]));
    let frames = [
        image::Frame::from_parts(full([255, 0, 0]), 0, 0, delay),
        image::Frame::from_parts(patch(5, 4, [0, 0, 255]), 2, 3, delay),
        image::Frame::from_parts(full([0, 255, 0]), 0, 0, delay),
        image::Frame::from_parts(patch(3, 6, [255, 255, 0]), 9, 1, delay),
        image::Frame::from_parts(patch(14, 2, [0, 0, 0]), 0, 8, delay),
    ];
    encoder.encode_frames(frames).unwrap();
    drop(encoder);
    let want = gif_frames_by_image_crate(&path);
    assert_eq!(want.len(), 5);

    let mut source = media::open(&path).unwrap();
    assert_eq!(source.kind(), SourceKind::Video);
    let info = source.item_info(0).unwrap();
    assert_eq!((info.width, info.height, info.frame_count), (14, 10, 5));
    assert_eq!(info.codec, "gif");
    assert!((info.fps - 10.0).abs() < 1e-6, "fps {}", info.fps);
    // Forward, then backward (a seek to the only keyframe and a decode forward).
    for index in [0u64, 1, 2, 3, 4, 3, 1, 0, 4] {
        let frame = source.frame(0, index).unwrap();
        let rgb = |px: &[u8]| {
            px.chunks(4)
                .flat_map(|p| p[..3].to_vec())
                .collect::<Vec<u8>>()
        };
        assert_eq!(
            rgb(&frame.rgba),
            rgb(&want[index as usize]),
            "frame {index} differs from the image crate's composition"
        );
    }
}

#[test]
fn an_animated_png_opens_as_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anim.png");
    let colours = [[255, 0, 0, 255], [0, 0, 255, 255], [10, 200, 30, 255]];
    write_apng(&path, 6, 4, &colours);
    let mut source = media::open(&path).unwrap();
    assert_eq!(source.kind(), SourceKind::Video);
    let info = source.item_info(0).unwrap();
    assert_eq!((info.width, info.height, info.frame_count), (6, 4, 3));
    for index in [2u64, 0, 1] {
        let frame = source.frame(0, index).unwrap();
        let want = colours[index as usize].repeat(24);
        let diff = media_gen::mean_abs_diff(&frame.rgba, &want);
        assert!(frame.rgba == want, "frame {index}: mean difference {diff}");
    }
}

#[test]
fn an_animated_webp_opens_as_a_video_of_its_frames() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("anim.webp");
    // One RGBA source for both, so that no colour conversion differs between them.
    let src = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=5,format=bgra",
        "-frames:v",
        "6",
    ];
    // The same frames as PNGs, and losslessly as an animated WebP.
    let pngs = dir.path().join("f%d.png");
    let mut args = src.to_vec();
    args.push(pngs.to_str().unwrap());
    media_gen::ffmpeg(&args);
    let mut args = src.to_vec();
    args.extend([
        "-pix_fmt",
        "bgra",
        "-c:v",
        "libwebp",
        "-lossless",
        "1",
        "-loop",
        "0",
    ]);
    args.push(path.to_str().unwrap());
    media_gen::ffmpeg(&args);

    let mut source = media::open(&path).unwrap();
    assert_eq!(source.kind(), SourceKind::Video);
    let info = source.item_info(0).unwrap();
    assert_eq!((info.width, info.height, info.frame_count), (64, 48, 6));
    assert_eq!(info.codec, "webp");
    assert!((info.fps - 5.0).abs() < 1e-9, "fps {}", info.fps);
    for index in [5u64, 0, 3, 1, 4, 2] {
        let frame = source.frame(0, index).unwrap();
        let want = image::open(dir.path().join(format!("f{}.png", index + 1)))
            .unwrap()
            .into_rgba8()
            .into_raw();
        assert_eq!(frame.rgba, want, "frame {index}");
        let t = source.frame_time_secs(0, index);
        assert!(
            (t - index as f64 * 0.2).abs() < 1e-9,
            "frame {index} at {t} s"
        );
    }
    assert!(matches!(
        source.frame(0, 6),
        Err(MediaError::OutOfRange { count: 6, .. })
    ));
}

/// The bitstream chunks (`VP8L`, or `ALPH` and `VP8 `) of a still WebP of `img`.
fn webp_bitstream(img: &image::RgbaImage) -> Vec<u8> {
    let mut file = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut file)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgba8,
        )
        .unwrap();
    let mut out = Vec::new();
    let mut at = 12;
    while at + 8 <= file.len() {
        let size = u32::from_le_bytes(file[at + 4..at + 8].try_into().unwrap()) as usize;
        let end = at + 8 + size + (size & 1);
        if matches!(&file[at..at + 4], b"VP8L" | b"VP8 " | b"ALPH") {
            out.extend_from_slice(&file[at..end.min(file.len())]);
        }
        at = end;
    }
    out
}

fn riff_chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(fourcc);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    if body.len() % 2 == 1 {
        out.push(0);
    }
}

/// An animated WebP on a `w`×`h` canvas: per frame its picture, offset (even), duration in
/// ms, whether it blends with the canvas and whether it is cleared afterwards.
fn write_animated_webp(
    path: &Path,
    (w, h): (u32, u32),
    frames: &[(image::RgbaImage, u32, u32, u32, bool, bool)],
) {
    let u24 = |v: u32| v.to_le_bytes()[..3].to_vec();
    let mut body = b"WEBP".to_vec();
    let mut vp8x = vec![0x12, 0, 0, 0]; // animation and alpha
    vp8x.extend(u24(w - 1));
    vp8x.extend(u24(h - 1));
    riff_chunk(&mut body, b"VP8X", &vp8x);
    riff_chunk(&mut body, b"ANIM", &[0, 0, 255, 255, 0, 0]); // a red background (a hint only)
    for (img, x, y, ms, blend, dispose) in frames {
        let mut anmf = [
            u24(x / 2),
            u24(y / 2),
            u24(img.width() - 1),
            u24(img.height() - 1),
        ]
        .concat();
        anmf.extend(u24(*ms));
        anmf.push(u8::from(!blend) << 1 | u8::from(*dispose));
        anmf.extend(webp_bitstream(img));
        riff_chunk(&mut body, b"ANMF", &anmf);
    }
    let mut file = b"RIFF".to_vec();
    file.extend_from_slice(&(body.len() as u32).to_le_bytes());
    file.extend(body);
    std::fs::write(path, file).unwrap();
}

#[test]
fn animated_webp_frames_are_composed_as_libwebp_composes_them() {
    let Some(python) = media_gen::python() else {
        eprintln!("skipped: no Pillow venv at ~/.cache/pixelrefer-studio/venv");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("composed.webp");
    let pattern = |w, h, alpha: fn(u32, u32) -> u8| {
        image::RgbaImage::from_fn(w, h, |x, y| {
            Rgba([(x * 23 % 256) as u8, (y * 41 % 256) as u8, 90, alpha(x, y)])
        })
    };
    let frames = [
        // An opaque background, then a half-transparent patch that is cleared afterwards, a
        // patch blended partly over that cleared hole, and a frame drawn without blending.
        (pattern(20, 12, |_, _| 255), 0, 0, 100, false, false),
        (
            pattern(8, 6, |x, _| [0, 100, 255][x as usize % 3]),
            4,
            2,
            80,
            true,
            true,
        ),
        (
            pattern(6, 6, |x, y| (60 + 30 * x + y) as u8),
            10,
            4,
            0,
            true,
            false,
        ),
        (
            pattern(10, 4, |x, _| (x * 25) as u8),
            2,
            8,
            120,
            false,
            false,
        ),
        (
            pattern(20, 12, |x, y| ((x + y) * 9) as u8),
            0,
            0,
            50,
            true,
            false,
        ),
    ];
    write_animated_webp(&path, (20, 12), &frames);
    let script = r#"
import sys
from PIL import Image, ImageSequence
im = Image.open(sys.argv[1])
for i, f in enumerate(ImageSequence.Iterator(im)):
    f.convert("RGBA").save(f"{sys.argv[2]}/ref{i}.png")
"#;
    let status = std::process::Command::new(python)
        .args(["-c", script])
        .arg(&path)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "Pillow could not read the animation");

    let mut source = media::open(&path).unwrap();
    assert_eq!(source.kind(), SourceKind::Video);
    assert_eq!(source.item_info(0).unwrap().frame_count, 5);
    for index in 0..5u64 {
        let frame = source.frame(0, index).unwrap();
        let want = image::open(dir.path().join(format!("ref{index}.png")))
            .unwrap()
            .into_rgba8();
        // Colour under full transparency is not defined: compare what shows.
        for (i, (got, want)) in frame
            .rgba
            .chunks(4)
            .zip(want.as_raw().chunks(4))
            .enumerate()
        {
            let shown = |p: &[u8]| {
                if p[3] == 0 {
                    [0; 4]
                } else {
                    [p[0], p[1], p[2], p[3]]
                }
            };
            assert_eq!(
                shown(got),
                shown(want),
                "frame {index}, pixel ({}, {})",
                i % 20,
                i / 20
            );
        }
    }
    // The frame without a delay shows for a tenth of a second, as in browsers.
    let times: Vec<f64> = (0..5).map(|i| source.frame_time_secs(0, i)).collect();
    let want = [0.0, 0.1, 0.18, 0.28, 0.4];
    assert!(
        times.iter().zip(want).all(|(t, w)| (t - w).abs() < 1e-9),
        "{times:?}"
    );
}

#[test]
fn heic_photos_are_named_not_called_damaged() {
    let dir = tempfile::tempdir().unwrap();
    // The first box of a HEIC file from a phone, then its `meta` box (cut).
    let heic = b"\0\0\0\x1cftypheic\0\0\0\0mif1heicmiaf\0\0\x01\x7dmeta\0\0\0\0";
    let photo = dir.path().join("IMG_0001.HEIC");
    std::fs::write(&photo, heic).unwrap();
    let err = media::open(&photo).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, MediaError::Unsupported { .. }), "{text}");
    assert!(
        text.contains("HEIC/HEIF image") && text.contains("JPEG or PNG"),
        "{text}"
    );

    // A folder of them says so too; beside other images they are left out.
    let folder = dir.path().join("phone");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("a.heic"), heic).unwrap();
    std::fs::write(folder.join("b.heic"), heic).unwrap();
    let text = media::open(&folder).unwrap_err().to_string();
    assert!(text.contains("its 2 image(s) are HEIC/HEIF"), "{text}");
    ImageBuffer::from_pixel(4, 3, Rgb([1u8, 2, 3]))
        .save(folder.join("c.png"))
        .unwrap();
    let source = media::open(&folder).unwrap();
    assert_eq!(source.item_count(), 1);
}

#[test]
fn pictures_only_ffmpeg_decodes_open_as_images() {
    let dir = tempfile::tempdir().unwrap();
    let src = ["-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1"];
    // PPM, TGA (no magic bytes; its demuxer cannot seek back) and QOI through FFmpeg's image
    // demuxers, AVIF (an ISO-BMFF picture) when this FFmpeg has an AV1 encoder, and a
    // one-frame MP4, which stays a video.
    let cases: [(&str, &[&str], SourceKind); 5] = [
        ("p.ppm", &[], SourceKind::Image),
        ("p.tga", &[], SourceKind::Image),
        ("p.qoi", &[], SourceKind::Image),
        (
            "p.avif",
            &["-c:v", "libaom-av1", "-still-picture", "1"],
            SourceKind::Image,
        ),
        ("one.mp4", &["-c:v", "libx264"], SourceKind::Video),
    ];
    for (name, codec, kind) in cases {
        let path = dir.path().join(name);
        let made = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
            .args(src)
            .args(codec)
            .arg(&path)
            .status()
            .unwrap();
        if !made.success() {
            eprintln!("skipped {name}: this ffmpeg cannot write it");
            continue;
        }
        let mut source = media::open(&path).unwrap();
        assert_eq!(source.kind(), kind, "{name}");
        let info = source.item_info(0).unwrap();
        assert_eq!(
            (info.width, info.height, info.frame_count),
            (64, 48, 1),
            "{name}"
        );
        let frame = source.frame(0, 0).unwrap();
        let want = &media_gen::reference_frames(&path, 64, 48, None)[0];
        let diff = media_gen::mean_abs_diff(&frame.rgba, want);
        assert!(diff < 1.0, "{name}: differs from the ffmpeg CLI by {diff}");
        if kind == SourceKind::Image {
            assert_eq!(info.fps, 0.0);
            assert!(matches!(
                source.frame(0, 1),
                Err(MediaError::OutOfRange { count: 1, .. })
            ));
        }
    }
}

/// Writes a CMYK JPEG and a CMYK TIFF with Pillow and Pillow's own RGB rendering of each.
fn pillow_cmyk(dir: &Path) -> Option<Vec<(PathBuf, PathBuf)>> {
    let python = media_gen::python()?;
    let script = r#"
import sys
from PIL import Image
d = sys.argv[1]
rgb = Image.new("RGB", (48, 32))
px = rgb.load()
for y in range(32):
    for x in range(48):
        px[x, y] = (x * 5, y * 7, 255 - x * 5)
cmyk = rgb.convert("CMYK")
cmyk.save(d + "/cmyk.jpg", quality=95)
cmyk.save(d + "/cmyk.tif")
Image.open(d + "/cmyk.jpg").convert("RGB").save(d + "/cmyk_jpg_ref.png")
Image.open(d + "/cmyk.tif").convert("RGB").save(d + "/cmyk_tif_ref.png")
"#;
    let status = std::process::Command::new(python)
        .args(["-c", script])
        .arg(dir)
        .status()
        .ok()?;
    status.success().then(|| {
        vec![
            (dir.join("cmyk.jpg"), dir.join("cmyk_jpg_ref.png")),
            (dir.join("cmyk.tif"), dir.join("cmyk_tif_ref.png")),
        ]
    })
}

#[test]
fn cmyk_jpeg_and_tiff_match_pillow() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pairs) = pillow_cmyk(dir.path()) else {
        eprintln!("skipped: no Pillow venv at ~/.cache/pixelrefer-studio/venv");
        return;
    };
    for (cmyk, reference) in pairs {
        let (_, frame) = open_one(&cmyk);
        let want = image::open(&reference).unwrap().to_rgba8();
        assert_eq!((frame.width, frame.height), want.dimensions());
        let diff = media_gen::mean_abs_diff(&frame.rgba, want.as_raw());
        assert!(
            diff < 4.0,
            "{}: differs from Pillow by {diff:.2}",
            cmyk.display()
        );
    }
}

#[test]
fn damaged_and_oversized_images_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let img = quadrants();
    for format in [
        ImageFormat::Png,
        ImageFormat::Jpeg,
        ImageFormat::WebP,
        ImageFormat::Gif,
    ] {
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), format)
            .unwrap();
        let path = dir
            .path()
            .join(format!("cut.{}", format.extensions_str()[0]));
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        match media::open(&path) {
            Err(err) => {
                assert!(err.to_string().contains("cut."), "{err}");
                assert!(
                    matches!(
                        err,
                        MediaError::Corrupt { .. } | MediaError::Unsupported { .. }
                    ),
                    "{err:?}"
                );
            }
            Ok(_) => panic!("truncated {format:?} opened"),
        }
    }
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        media::open(&empty),
        Err(MediaError::Corrupt { .. })
    ));

    let huge = dir.path().join("wide.png");
    ImageBuffer::from_pixel(media::MAX_IMAGE_SIDE + 1, 1, Luma([0u8]))
        .save(&huge)
        .unwrap();
    match media::open(&huge) {
        Err(MediaError::Unsupported { reason, .. }) => {
            assert!(reason.contains("16384"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let ok = dir.path().join("limit.png");
    ImageBuffer::from_pixel(media::MAX_IMAGE_SIDE, 1, Luma([0u8]))
        .save(&ok)
        .unwrap();
    assert_eq!(open_one(&ok).0.width, media::MAX_IMAGE_SIDE);
}

#[test]
fn folders_list_images_in_natural_order() {
    let dir = tempfile::tempdir().unwrap();
    let img = quadrants();
    for name in ["img10.png", "img2.png", ".hidden.png"] {
        img.save_with_format(dir.path().join(name), ImageFormat::Png)
            .unwrap();
    }
    std::fs::write(dir.path().join("img1.jpg"), jpeg_with_orientation(&img, 6)).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    std::fs::write(dir.path().join("fake.png"), "not a png either").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    // Listed by magic bytes, damaged inside: errors only when decoded.
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .unwrap();
    std::fs::write(dir.path().join("img3.png"), &png[..png.len() / 2]).unwrap();

    let mut source = media::open(dir.path()).unwrap();
    assert_eq!(source.kind(), SourceKind::Folder);
    let names: Vec<String> = (0..source.item_count())
        .map(|i| {
            source
                .item_path(i)
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["img1.jpg", "img2.png", "img3.png", "img10.png"]);
    let first = source.item_info(0).unwrap();
    assert_eq!(
        (first.name.as_str(), first.width, first.height),
        ("img1.jpg", 20, 40)
    );
    assert_eq!(source.frame(3, 0).unwrap().width, 40);
    assert!(matches!(
        source.frame(2, 0),
        Err(MediaError::Corrupt { .. })
    ));
    assert!(matches!(
        source.frame(9, 0),
        Err(MediaError::OutOfRange { .. })
    ));
    assert!(matches!(
        source.frame(0, 1),
        Err(MediaError::OutOfRange { .. })
    ));

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("readme.txt"), "x").unwrap();
    assert!(matches!(
        media::open(empty.path()),
        Err(MediaError::EmptyFolder { .. })
    ));
}

#[test]
fn a_folder_opens_as_the_frames_of_one_video() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip");
    std::fs::create_dir(&clip).unwrap();
    let flat = |c: [u8; 3]| ImageBuffer::from_pixel(8, 6, Rgb(c));
    for (name, colour) in [("f10.png", BLUE), ("f2.png", GREEN), ("f1.png", RED)] {
        flat(colour).save(clip.join(name)).unwrap();
    }
    std::fs::write(clip.join("notes.txt"), "not an image").unwrap();
    flat(WHITE).save(clip.join(".hidden.png")).unwrap();

    let mut source = media::open_frames(&clip, 12.5).unwrap();
    assert_eq!(source.kind(), SourceKind::Frames);
    assert_eq!(source.item_count(), 1);
    let info = source.item_info(0).unwrap();
    assert_eq!(
        (
            info.name.as_str(),
            info.width,
            info.height,
            info.frame_count
        ),
        ("clip", 8, 6, 3)
    );
    assert_eq!((info.fps, info.duration_secs), (12.5, 0.24));
    // Frame N is image N in natural order.
    for (i, want) in [RED, GREEN, BLUE].into_iter().enumerate() {
        let frame = source.frame(0, i as u64).unwrap();
        assert_eq!(&frame.rgba[..3], want, "frame {i}");
    }
    assert_eq!(source.frame_time_secs(0, 2), 0.16);
    assert!(matches!(
        source.frame(0, 3),
        Err(MediaError::OutOfRange { count: 3, .. })
    ));
    assert!(matches!(
        source.frame(1, 0),
        Err(MediaError::OutOfRange { .. })
    ));

    // An image replaced by one of another size after opening is refused when read.
    let mut fresh = media::open_frames(&clip, 0.0).unwrap();
    assert_eq!(fresh.frame_time_secs(0, 2), 0.0, "rate unknown: no times");
    ImageBuffer::from_pixel(9, 6, Rgb(RED))
        .save(clip.join("f2.png"))
        .unwrap();
    let err = fresh.frame(0, 1).unwrap_err().to_string();
    assert!(err.contains("f2.png") && err.contains("9x6"), "{err}");

    // The frames of a video share one size: a folder of mixed sizes names the odd image.
    let err = media::open_frames(&clip, 25.0).unwrap_err().to_string();
    assert!(
        err.contains("f2.png is 9x6 but f1.png is 8x6"),
        "one sentence naming both images: {err}"
    );
    for fps in [-1.0, f64::NAN, f64::INFINITY, 1e6] {
        let err = media::open_frames(&clip, fps).unwrap_err();
        assert!(matches!(err, MediaError::NotFrames { .. }), "{fps}: {err}");
    }
    assert!(matches!(
        media::open_frames(&clip.join("f1.png"), 25.0),
        Err(MediaError::NotFrames { .. })
    ));
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        media::open_frames(empty.path(), 25.0),
        Err(MediaError::EmptyFolder { .. })
    ));
}

/// A GIF of `frames` one-pixel frames on a `w` x `h` canvas (a few dozen bytes).
fn tiny_gif_on_a_canvas(w: u16, h: u16, frames: usize) -> Vec<u8> {
    let mut b = b"GIF89a".to_vec();
    b.extend_from_slice(&w.to_le_bytes());
    b.extend_from_slice(&h.to_le_bytes());
    // Global colour table of two colours, then per frame: a graphic control extension (delay
    // 10 cs), an image descriptor at (0, 0) of 1x1 and its LZW data.
    b.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
    for _ in 0..frames {
        b.extend_from_slice(&[
            0x21, 0xf9, 4, 0, 10, 0, 0, 0, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0,
        ]);
        b.extend_from_slice(&[2, 2, 0x44, 1, 0]);
    }
    b.push(b';');
    b
}

#[test]
fn a_gif_declaring_a_huge_canvas_is_refused_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    for frames in [1, 2] {
        let path = dir.path().join(format!("bomb{frames}.gif"));
        std::fs::write(&path, tiny_gif_on_a_canvas(65535, 65535, frames)).unwrap();
        let t = std::time::Instant::now();
        match media::open(&path) {
            Err(e @ MediaError::Unsupported { .. }) => {
                assert!(e.to_string().contains("65535x65535"), "{e}");
            }
            other => panic!("{frames} frames: {other:?}"),
        }
        // Decoding even one canvas-sized frame would take seconds and 17 GB.
        assert!(t.elapsed().as_secs_f64() < 5.0, "{:?}", t.elapsed());
    }
    // The same file on a small canvas is an animation.
    let path = dir.path().join("small.gif");
    std::fs::write(&path, tiny_gif_on_a_canvas(16, 8, 3)).unwrap();
    let source = media::open(&path).unwrap();
    assert_eq!(source.kind(), SourceKind::Video);
    let info = source.item_info(0).unwrap();
    assert_eq!((info.width, info.height, info.frame_count), (16, 8, 3));
}
