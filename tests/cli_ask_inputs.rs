//! Bad `ask` (and `--threads`) input from the command line: each is refused with one sentence,
//! before any model is loaded (so in a moment, whatever the model), or read correctly: thread
//! counts, decoding options, mask images in other pixel formats, regions that do not fit the
//! media, and a PixelRefer model whose files differ from their manifest sha256.
#![allow(clippy::unwrap_used)]

mod refer_common;

use image::{ImageBuffer, Luma, RgbImage, Rgba};
use refer_common::{fixture, reference_case};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary with `args`, killing it after `limit` (the app would otherwise open a
/// window); returns its output and how long it ran.
fn run_within(args: &[&OsStr], limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .args(args)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (out, t0.elapsed())
}

/// The error line of a run that must fail quickly (well under the time a model load takes).
fn quick_error(args: &[&OsStr]) -> String {
    let (out, took) = run_within(args, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure: {stderr}");
    assert!(took < Duration::from_secs(3), "took {took:?}: {stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error:"), "{stderr}");
    last
}

/// A 8x6 image (and a directory that is no model) in a fresh temp dir.
fn scene() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("scene.png");
    RgbImage::from_fn(8, 6, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 90]))
        .save(&image)
        .unwrap();
    let model = tmp.path().join("no-model");
    std::fs::create_dir(&model).unwrap();
    (tmp, image, model)
}

fn os(s: &str) -> &OsStr {
    s.as_ref()
}

#[test]
fn thread_counts_beyond_the_machine_are_refused_before_loading() {
    let (_tmp, image, model) = scene();
    let mask = image.with_file_name("m.png");
    ImageBuffer::from_pixel(8, 6, Luma([255u8]))
        .save(&mask)
        .unwrap();
    let too_many = pixelrefer_studio::runtime::max_intra_threads() + 1;
    let n = too_many.to_string();
    let huge = "100000";
    let want = |line: &str, count: &str| {
        assert!(
            line.contains(&format!(
                "{count} threads is more than this machine can use"
            )) && line.contains("give 0 (one per core)"),
            "{line}"
        );
    };
    let ask_args = |threads: &str| -> Vec<PathBuf> {
        vec![
            "ask".into(),
            "--model".into(),
            model.clone(),
            "--image".into(),
            image.clone(),
            "--mask".into(),
            mask.clone(),
            "--threads".into(),
            threads.into(),
            "What is <object0>?".into(),
        ]
    };
    for threads in [huge, n.as_str()] {
        let args = ask_args(threads);
        let args: Vec<&OsStr> = args.iter().map(|p| p.as_os_str()).collect();
        want(&quick_error(&args), threads);
    }
    let line = quick_error(&[
        os("track"),
        image.as_os_str(),
        os("--model"),
        model.as_os_str(),
        os("--prompts"),
        image.as_os_str(),
        os("--out"),
        os("/nonexistent/out.regions.json"),
        os("--threads"),
        os(huge),
    ]);
    want(&line, huge);
    want(
        &quick_error(&[
            os("models"),
            os("verify"),
            model.as_os_str(),
            os("--threads"),
            os(huge),
        ]),
        huge,
    );
    // The app itself: refused before a window opens.
    want(&quick_error(&[os("--threads"), os(huge)]), huge);
    // 0 (one per core) and the largest count pass the check and reach the model directory.
    for threads in ["0", &(too_many - 1).to_string()] {
        let args = ask_args(threads);
        let args: Vec<&OsStr> = args.iter().map(|p| p.as_os_str()).collect();
        let line = quick_error(&args);
        assert!(line.contains("cannot load the model"), "{line}");
    }
}

#[test]
fn bad_decoding_options_are_refused_with_a_sentence() {
    let (_tmp, image, model) = scene();
    let cases: &[(&str, &str, &str)] = &[
        ("--temperature", "NaN", "temperature NaN is not accepted"),
        ("--temperature", "-0.5", "temperature -0.5 is not accepted"),
        ("--temperature", "inf", "temperature inf is not accepted"),
        (
            "--top-p",
            "0",
            "top-p 0 is not accepted: give a number in (0, 1]",
        ),
        ("--top-p", "1.5", "top-p 1.5 is not accepted"),
        ("--top-p", "NaN", "top-p NaN is not accepted"),
        (
            "--max-new-tokens",
            "0",
            "max-new-tokens 0 is not accepted: give at least 1",
        ),
        (
            "--max-frames",
            "0",
            "0 video frames cannot be sampled: give 1 to 768",
        ),
        ("--max-frames", "769", "769 video frames cannot be sampled"),
    ];
    let line = quick_error(&[
        os("ask"),
        os("--model"),
        model.as_os_str(),
        os("--image"),
        image.as_os_str(),
        os("  "),
    ]);
    assert!(line.contains("the question is empty"), "{line}");
    for (flag, value, want) in cases {
        let line = quick_error(&[
            os("ask"),
            os("--model"),
            model.as_os_str(),
            os("--image"),
            image.as_os_str(),
            os(flag),
            os(value),
            os("What is it?"),
        ]);
        assert!(line.contains(want), "{flag} {value}: {line}");
    }
}

/// `ask --image IMAGE --mask MASK` against a directory that is no model.
fn ask_mask(image: &Path, mask: &Path, model: &Path) -> String {
    quick_error(&[
        os("ask"),
        os("--model"),
        model.as_os_str(),
        os("--image"),
        image.as_os_str(),
        os("--mask"),
        mask.as_os_str(),
        os("What is <object0>?"),
    ])
}

#[test]
fn unusable_mask_files_are_refused_before_loading() {
    let (tmp, image, model) = scene();
    let dir = tmp.path();
    // A cut-out whose transparent background is white: nothing is opaque, so nothing is drawn
    // (it used to become an all-ones mask).
    let clear = dir.join("clear.png");
    ImageBuffer::from_pixel(8, 6, Rgba([255u8, 255, 255, 0]))
        .save(&clear)
        .unwrap();
    let line = ask_mask(&image, &clear, &model);
    assert!(line.contains("no pixel is in the mask"), "{line}");
    // Another size than the image.
    let small = dir.join("small.png");
    ImageBuffer::from_pixel(4, 3, Luma([255u8]))
        .save(&small)
        .unwrap();
    let line = ask_mask(&image, &small, &model);
    assert!(
        line.contains("is 4x3 but") && line.contains("is 8x6"),
        "{line}"
    );
    // Not an image, a folder, a missing file.
    let text = dir.join("notes.png");
    std::fs::write(&text, "hello").unwrap();
    let line = ask_mask(&image, &text, &model);
    assert!(
        line.contains("notes.png: it is not a readable image"),
        "{line}"
    );
    assert!(ask_mask(&image, dir, &model).contains("is not a file"));
    assert!(ask_mask(&image, &dir.join("gone.png"), &model).contains("cannot read it"));
    // No mask at all.
    let line = quick_error(&[
        os("ask"),
        os("--model"),
        model.as_os_str(),
        os("--image"),
        image.as_os_str(),
        os("What is it?"),
    ]);
    assert!(line.contains("no objects: give --mask"), "{line}");
}

/// A regions file for `scene()` with the given objects (`tag`, frame, width, height).
fn regions(dir: &Path, objects: &[(&str, u64, u32, u32)]) -> PathBuf {
    let objects: Vec<serde_json::Value> = objects
        .iter()
        .map(|&(tag, frame, w, h)| {
            let mut m = pixelrefer_studio::mask::Mask::new(w, h);
            m.set(1, 1, true);
            let rle = pixelrefer_studio::mask::Rle::from_mask(&m);
            serde_json::json!({"tag": tag, "frames": [{"index": frame, "rle": rle}]})
        })
        .collect();
    let path = dir.join("r.regions.json");
    std::fs::write(
        &path,
        serde_json::json!({"items": [{"objects": objects}]}).to_string(),
    )
    .unwrap();
    path
}

#[test]
fn regions_that_do_not_fit_the_media_are_refused_before_loading() {
    let (tmp, image, model) = scene();
    let ask_regions = |r: &Path| {
        quick_error(&[
            os("ask"),
            os("--model"),
            model.as_os_str(),
            os("--image"),
            image.as_os_str(),
            os("--regions"),
            r.as_os_str(),
            os("What is it?"),
        ])
    };
    let beyond = regions(tmp.path(), &[("<object0>", 5, 8, 6)]);
    let line = ask_regions(&beyond);
    assert!(
        line.contains("<object0> has a mask on frame 5, but the media has 1 frame(s)"),
        "{line}"
    );
    let twice = regions(
        tmp.path(),
        &[("<object2>", 0, 8, 6), ("<object2>", 0, 8, 6)],
    );
    let line = ask_regions(&twice);
    assert!(line.contains("two objects are <object2>"), "{line}");
    // Not a regions file: a character device would be read forever.
    let line = ask_regions(Path::new("/dev/zero"));
    assert!(
        line.contains("/dev/zero is a device, not a regular file"),
        "{line}"
    );
    // An object whose only mask is empty.
    let path = tmp.path().join("empty.regions.json");
    let rle = pixelrefer_studio::mask::Rle::empty(6, 8);
    let doc = serde_json::json!({"items": [{"objects": [
        {"tag": "<object1>", "frames": [{"index": 0, "rle": rle}]}
    ]}]});
    std::fs::write(&path, doc.to_string()).unwrap();
    let line = ask_regions(&path);
    assert!(
        line.contains("<object1> has no mask: every mask given for it is empty"),
        "{line}"
    );
    let size = regions(tmp.path(), &[("<object0>", 0, 6, 8)]);
    let line = ask_regions(&size);
    assert!(
        line.contains("<object0> on frame 0 is 6x8 but the media is 8x6"),
        "{line}"
    );
    // Headers of another format or a newer version, a frame given twice, a negative index.
    let mut m = pixelrefer_studio::mask::Mask::new(8, 6);
    m.set(1, 1, true);
    let rle = pixelrefer_studio::mask::Rle::from_mask(&m);
    let frame = serde_json::json!({"index": 0, "rle": rle});
    let object = |frames: serde_json::Value| serde_json::json!({"items": [{"objects": [{"tag": "<object0>", "frames": frames}]}]});
    let cases = [
        (
            {
                let mut v = object(serde_json::json!([frame]));
                v["format"] = "other/thing".into();
                v
            },
            "not a regions export",
        ),
        (
            {
                let mut v = object(serde_json::json!([frame]));
                v["format"] = pixelrefer_studio::project::REGIONS_FORMAT.into();
                v["version"] = 9.into();
                v
            },
            "of version 9",
        ),
        (
            object(serde_json::json!([frame, frame])),
            "gives frame 0 twice",
        ),
        (
            object(serde_json::json!([{"index": -1, "rle": rle}])),
            "not a whole number >= 0 (-1)",
        ),
    ];
    for (doc, says) in cases {
        let path = tmp.path().join("hand.regions.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        let line = ask_regions(&path);
        assert!(line.contains(says), "{line}");
    }
}

#[test]
fn a_sixteen_bit_zero_one_mask_is_asked_about() {
    let model = fixture("pixelrefer-tiny");
    let (_, st) = reference_case(&model, "image_1obj");
    let frame = &st["input.frame0"];
    let (h, w) = (frame.shape[0] as u32, frame.shape[1] as u32);
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("frame.png");
    RgbImage::from_raw(w, h, frame.u8())
        .unwrap()
        .save(&image)
        .unwrap();
    let bits = st["input.obj0.mask0"].u8();
    let as_16 = |path: &Path| {
        ImageBuffer::from_fn(w, h, |x, y| Luma([u16::from(bits[(y * w + x) as usize])]))
            .save(path)
            .unwrap();
    };
    let mask16 = tmp.path().join("mask16.png");
    as_16(&mask16);
    let (out, _) = run_within(
        &[
            os("ask"),
            os("--model"),
            model.as_os_str(),
            os("--image"),
            image.as_os_str(),
            os("--mask"),
            mask16.as_os_str(),
            os("--json"),
            os("--max-new-tokens"),
            os("12"),
            os("What is <object0> doing?"),
        ],
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<i64> = v["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(got, st["turn0.generated_ids"].i64());
}

#[test]
fn a_pixelrefer_file_changed_after_export_is_refused() {
    use pixelrefer_studio::refer::PixelRefer;
    use pixelrefer_studio::runtime::SessionOptions;
    for name in ["pixelrefer-tiny", "pixelrefer-lite-tiny"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(name);
        refer_common::fixtures::copy_model(&fixture(name), &dir);
        // It loads as copied (which records it as verified)...
        PixelRefer::load(&dir, &SessionOptions::default()).unwrap();
        // ...then one byte of the tokenizer changes in a way its parser cannot see (a final
        // newline becomes a space): the loader must notice through the manifest's sha256, even
        // though the file was verified before.
        let tok = dir.join("tokenizer.json");
        let mut bytes = std::fs::read(&tok).unwrap();
        let last = bytes.last_mut().unwrap();
        *last = if *last == b'\n' { b' ' } else { b'\n' };
        std::fs::write(&tok, &bytes).unwrap();
        let e = PixelRefer::load(&dir, &SessionOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("tokenizer.json") && e.contains("the file changed after export"),
            "{name}: {e}"
        );
    }
}
