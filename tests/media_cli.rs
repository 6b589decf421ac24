//! The `info` and `frame` commands of the binary.
#![allow(clippy::unwrap_used)]

#[path = "support/media_gen.rs"]
mod media_gen;

use std::path::Path;
use std::process::{Command, Output};

fn studio(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn info_json(path: &Path) -> serde_json::Value {
    let out = studio(&["info".as_ref(), path.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn info_describes_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let path = media_gen::testsrc_video(
        dir.path(),
        "clip.mp4",
        "160x120",
        50,
        &["-c:v", "libx264", "-preset", "veryfast"],
    );
    let json = info_json(&path);
    assert_eq!(json["kind"], "video");
    assert_eq!(json["width"], 160);
    assert_eq!(json["height"], 120);
    assert_eq!(json["frame_count"], 50);
    assert_eq!(json["codec"], "h264");
    assert!((json["fps"].as_f64().unwrap() - 25.0).abs() < 1e-6);
    assert!((json["duration_secs"].as_f64().unwrap() - 2.0).abs() < 0.05);
}

#[test]
fn info_lists_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    for (name, w) in [("b10.png", 30u32), ("b9.png", 20)] {
        image::RgbImage::new(w, 10)
            .save(dir.path().join(name))
            .unwrap();
    }
    let json = info_json(dir.path());
    assert_eq!(json["kind"], "folder");
    assert_eq!(json["count"], 2);
    assert_eq!(json["items"][0]["name"], "b9.png");
    assert_eq!(json["items"][0]["width"], 20);
    assert_eq!(json["items"][1]["codec"], "png");
}

#[test]
fn frame_writes_the_displayed_frame() {
    let dir = tempfile::tempdir().unwrap();
    let plain = media_gen::testsrc_video(
        dir.path(),
        "plain.mp4",
        "160x96",
        30,
        &["-c:v", "libx264", "-preset", "veryfast", "-g", "8"],
    );
    let rotated = dir.path().join("rot.mp4");
    media_gen::ffmpeg(&[
        "-i",
        plain.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        rotated.to_str().unwrap(),
    ]);
    let out_png = dir.path().join("f17.png");
    let out = studio(&[
        "frame".as_ref(),
        rotated.as_os_str(),
        "--index".as_ref(),
        "17".as_ref(),
        "--out".as_ref(),
        out_png.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = image::open(&out_png).unwrap().to_rgba8();
    assert_eq!(png.dimensions(), (96, 160));
    let reference = media_gen::reference_frames(&rotated, 96, 160, None);
    let (best, diff) = media_gen::closest(&reference, png.as_raw());
    assert_eq!(best, 17, "diff {diff}");
    assert!(diff < 3.0);

    // Past the end: a clear error and a failure status.
    let out = studio(&[
        "frame".as_ref(),
        rotated.as_os_str(),
        "--index".as_ref(),
        "30".as_ref(),
        "--out".as_ref(),
        out_png.as_os_str(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("frame 30 is outside"), "{stderr}");
}

#[test]
fn frame_of_a_folder_uses_the_item_index() {
    let dir = tempfile::tempdir().unwrap();
    image::RgbImage::from_pixel(7, 5, image::Rgb([9, 9, 9]))
        .save(dir.path().join("a1.png"))
        .unwrap();
    image::RgbImage::from_pixel(6, 4, image::Rgb([200, 10, 10]))
        .save(dir.path().join("a2.bmp"))
        .unwrap();
    let out_png = dir.path().join("out.png");
    let out = studio(&[
        "frame".as_ref(),
        dir.path().as_os_str(),
        "--index".as_ref(),
        "1".as_ref(),
        "--out".as_ref(),
        out_png.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = image::open(&out_png).unwrap().to_rgba8();
    assert_eq!(png.dimensions(), (6, 4));
    assert_eq!(png.get_pixel(0, 0).0, [200, 10, 10, 255]);
}

#[test]
fn bad_media_fails_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("movie.mp4");
    std::fs::write(&text, "plain text, renamed\n").unwrap();
    let empty = dir.path().join("empty.mov");
    std::fs::write(&empty, b"").unwrap();
    for path in [text, empty, dir.path().join("missing.mkv")] {
        let out = studio(&["info".as_ref(), path.as_os_str()]);
        assert!(!out.status.success(), "{}", path.display());
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].starts_with("error: "), "{stderr}");
        // Names the file once, says what is wrong, and does not repeat the cause.
        let name = path.to_string_lossy();
        assert_eq!(lines[0].matches(&*name).count(), 1, "{stderr}");
        assert!(
            ["not a supported", "empty", "No such file"]
                .iter()
                .any(|m| lines[0].contains(m)),
            "{stderr}"
        );
        assert!(lines[0].matches("os error").count() <= 1, "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn frame_never_writes_over_its_input_and_writes_the_format_its_name_says() {
    let dir = tempfile::tempdir().unwrap();
    let video = media_gen::testsrc_video(
        dir.path(),
        "clip.mp4",
        "64x48",
        3,
        &["-c:v", "libx264", "-preset", "veryfast"],
    );
    let before = std::fs::read(&video).unwrap();
    let pictures = dir.path().join("pics");
    std::fs::create_dir(&pictures).unwrap();
    for name in ["a.png", "b.png"] {
        image::RgbImage::from_pixel(8, 6, image::Rgb([10, 200, 30]))
            .save(pictures.join(name))
            .unwrap();
    }
    let picture_before = std::fs::read(pictures.join("b.png")).unwrap();
    std::os::unix::fs::symlink(&video, dir.path().join("link.png")).unwrap();
    let refused = |media: &Path, index: &str, out: &Path, says: &str| {
        let o = studio(&[
            "frame".as_ref(),
            media.as_os_str(),
            "--index".as_ref(),
            index.as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{} accepted", out.display());
        assert!(err.contains(says), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    };
    // The media itself, through a link, through `..`, and a folder's own image.
    refused(&video, "0", &video, "one of the inputs");
    refused(
        &video,
        "0",
        &dir.path().join("link.png"),
        "one of the inputs",
    );
    let dotted = dir.path().join("absent").join("..").join("clip.mp4");
    refused(&video, "1", &dotted, "one of the inputs");
    refused(&pictures, "1", &pictures.join("b.png"), "one of the inputs");
    refused(
        &video,
        "0",
        &dir.path().join("f.bmp"),
        ".png, .jpg or .jpeg",
    );
    assert_eq!(std::fs::read(&video).unwrap(), before);
    assert_eq!(
        std::fs::read(pictures.join("b.png")).unwrap(),
        picture_before
    );
    // Another image of the folder is a fine output; `.jpg` is JPEG, no extension PNG.
    for (out, format) in [
        (pictures.join("a.png"), image::ImageFormat::Png),
        (dir.path().join("f.JPG"), image::ImageFormat::Jpeg),
        (dir.path().join("plain"), image::ImageFormat::Png),
    ] {
        let media = if out.starts_with(&pictures) {
            &pictures
        } else {
            &video
        };
        let o = studio(&[
            "frame".as_ref(),
            media.as_os_str(),
            "--index".as_ref(),
            "1".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(
            image::guess_format(&bytes).unwrap(),
            format,
            "{}",
            out.display()
        );
        let img = image::load_from_memory(&bytes).unwrap();
        let want = if media == &pictures { (8, 6) } else { (64, 48) };
        assert_eq!((img.width(), img.height()), want);
    }
}
