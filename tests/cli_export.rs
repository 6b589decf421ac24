//! `pixelrefer-studio export` on hostile inputs: an output path that names the project or its
//! media is refused before anything is written, PNG folder names never collide, and an item
//! that cannot be a PNG fails before any file is written.
#![allow(clippy::unwrap_used)]

#[path = "support/media_gen.rs"]
mod media_gen;

use media_gen::{testsrc_video, vfr_video};
use pixelrefer_studio::mask::{Mask, Rle};
use pixelrefer_studio::project::{
    self, Document, FrameAnnotation, Item, MaskSource, MediaKind, MediaRef, Object,
};
use std::path::{Path, PathBuf};
use std::process::Command;

fn export(project: &Path, format: &str, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .arg("export")
        .arg(project)
        .args(["--format", format, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

fn write_image(path: &Path, w: u32, h: u32) {
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 20 + y) as u8]))
        .save(path)
        .unwrap();
}

/// An object whose mask on frame 0 is the single pixel (x, y).
fn object(id: u32, w: u32, h: u32, x: i64, y: i64) -> Object {
    let mut m = Mask::new(w, h);
    m.set(x, y, true);
    let mut o = Object::new(id, "thing", [1, 2, 3]);
    o.frames.insert(
        0,
        FrameAnnotation::from_mask(Rle::from_mask(&m), MaskSource::Painted),
    );
    o
}

fn save(doc: &Document, path: &Path) {
    project::save_project(doc, path).unwrap();
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn assert_refused(out: &std::process::Output, what: &str) {
    assert!(!out.status.success(), "{what}: the export succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
    assert!(err.contains("refusing to write"), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

#[test]
fn export_never_writes_over_the_project_or_its_media() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let media = dir.join("photo.png");
    write_image(&media, 9, 7);
    let mut doc = Document::new(
        MediaRef {
            kind: MediaKind::Image,
            path: media.clone(),
            fingerprint: None,
        },
        vec![Item::new(None, 9, 7, 1, 0.0)],
    );
    doc.items[0].objects.push(object(0, 9, 7, 3, 4));
    doc.items[0].next_object_id = 1;
    let prj = dir.join("p.prj.json");
    save(&doc, &prj);
    let (prj_bytes, media_bytes) = (std::fs::read(&prj).unwrap(), std::fs::read(&media).unwrap());
    std::fs::create_dir(dir.join("sub")).unwrap();
    let prj_other_spelling = dir.join("sub/../p.prj.json");
    let cases = [
        ("regions", prj.clone()),
        ("coco", prj.clone()),
        ("png", prj.clone()),
        ("coco", prj_other_spelling),
        ("regions", media.clone()),
        ("png", media.clone()),
    ];
    for (format, out) in cases {
        let what = format!("{format} --out {}", out.display());
        assert_refused(&export(&prj, format, &out), &what);
        assert_eq!(
            std::fs::read(&prj).unwrap(),
            prj_bytes,
            "{what}: the project changed"
        );
        assert_eq!(
            std::fs::read(&media).unwrap(),
            media_bytes,
            "{what}: the media changed"
        );
    }
    // Nothing but the inputs (and the empty sub folder) is in the folder.
    assert_eq!(files_under(dir), vec![prj.clone(), media.clone()]);
    // PNG masks go into a folder: a file given as --out is refused in one sentence.
    let file = dir.join("notes.txt");
    std::fs::write(&file, "keep").unwrap();
    let out = export(&prj, "png", &file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("it is a file") && err.contains("give a folder path"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
}

#[test]
fn png_export_refuses_the_media_folder_as_output() {
    let tmp = tempfile::tempdir().unwrap();
    let pics = tmp.path().join("pics");
    std::fs::create_dir(&pics).unwrap();
    write_image(&pics.join("a.png"), 9, 7);
    let mut doc = Document::new(
        MediaRef {
            kind: MediaKind::Folder,
            path: pics.clone(),
            fingerprint: None,
        },
        vec![Item::new(Some("a.png".into()), 9, 7, 1, 0.0)],
    );
    doc.items[0].objects.push(object(0, 9, 7, 0, 0));
    doc.items[0].next_object_id = 1;
    let prj = tmp.path().join("p.prj.json");
    save(&doc, &prj);
    assert_refused(&export(&prj, "png", &pics), "png --out <media folder>");
    assert_eq!(files_under(&pics), vec![pics.join("a.png")]);
}

#[test]
fn png_export_gives_colliding_file_names_their_own_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let pics = tmp.path().join("pics");
    std::fs::create_dir(&pics).unwrap();
    for name in ["x_1.png", "x:1.png", "X_1.PNG"] {
        write_image(&pics.join(name), 9, 7);
    }
    // The project lists the items in the folder's own order, as the app writes it.
    let source = pixelrefer_studio::media::open(&pics).unwrap();
    let mut items = Vec::new();
    for i in 0..source.item_count() {
        let name = source.item_info(i).unwrap().name;
        let mut item = Item::new(Some(name), 9, 7, 1, 0.0);
        item.objects.push(object(0, 9, 7, i as i64, 0));
        item.next_object_id = 1;
        items.push(item);
    }
    let doc = Document::new(
        MediaRef {
            kind: MediaKind::Folder,
            path: pics.clone(),
            fingerprint: None,
        },
        items,
    );
    let prj = tmp.path().join("p.prj.json");
    save(&doc, &prj);
    let out_dir = tmp.path().join("masks");
    let out = export(&prj, "png", &out_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(3 masks)"), "{stdout}");
    let files = files_under(&out_dir);
    assert_eq!(files.len(), 3, "{files:?}");
    // Each item's mask is its own pixel: no file was written over another.
    let mut pixels: Vec<u32> = files
        .iter()
        .map(|f| {
            let m = Mask::from_png(f, 127).unwrap();
            assert_eq!(m.area(), 1, "{}", f.display());
            (0..9).find(|&x| m.get(x, 0)).unwrap() as u32
        })
        .collect();
    pixels.sort_unstable();
    assert_eq!(pixels, vec![0, 1, 2]);
    // Three item folders, one of which kept its plain name.
    let folders: std::collections::BTreeSet<_> = files
        .iter()
        .map(|f| {
            f.strip_prefix(&out_dir)
                .unwrap()
                .components()
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(folders.len(), 3, "{files:?}");
    assert!(
        out_dir.join("x_1.png").is_dir() || out_dir.join("X_1.PNG").is_dir(),
        "{files:?}"
    );
}

#[test]
fn png_export_of_an_item_that_cannot_be_a_png_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let pics = tmp.path().join("pics");
    std::fs::create_dir(&pics).unwrap();
    write_image(&pics.join("a.png"), 9, 7);
    write_image(&pics.join("b.png"), 9, 7);
    let mut good = Item::new(Some("a.png".into()), 9, 7, 1, 0.0);
    good.objects.push(object(0, 9, 7, 1, 1));
    good.next_object_id = 1;
    // A hand-edited item: 0 pixels wide, with an (empty) 0-wide mask.
    let mut bad = Item::new(Some("b.png".into()), 0, 7, 1, 0.0);
    let mut o = Object::new(0, "", [0, 0, 0]);
    o.frames.insert(
        0,
        FrameAnnotation::from_mask(Rle::empty(7, 0), MaskSource::Painted),
    );
    bad.objects.push(o);
    bad.next_object_id = 1;
    let doc = Document::new(
        MediaRef {
            kind: MediaKind::Folder,
            path: pics.clone(),
            fingerprint: None,
        },
        vec![good, bad],
    );
    let prj = tmp.path().join("p.prj.json");
    save(&doc, &prj);
    let out_dir = tmp.path().join("masks");
    let out = export(&prj, "png", &out_dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        files_under(&out_dir).is_empty(),
        "{:?}",
        files_under(&out_dir)
    );
}

/// Presentation times of every frame of `path` by `ffprobe`, from the first frame.
fn ffprobe_frame_times(path: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["frame=pts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe comes with the ffmpeg CLI");
    assert!(out.status.success());
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    times.iter().map(|t| t - times[0]).collect()
}

#[test]
fn a_variable_frame_rate_video_exports_the_times_its_frames_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    // 8 frames 40 ms apart, then 6 frames half a second apart: a screen recording's pattern.
    let times = "if(lt(N,8),N*0.04,0.28+(N-7)*0.5)";
    let codec = ["-c:v", "libx264", "-pix_fmt", "yuv420p"];
    let video = vfr_video(dir.path(), "vfr.mp4", "64x48", 14, times, &codec);
    let want = ffprobe_frame_times(&video);
    assert_eq!(want.len(), 14);

    let source = pixelrefer_studio::media::open(&video).unwrap();
    let mut doc = pixelrefer_studio::jobs::new_document(&source).unwrap();
    let times = doc.items[0].timestamps_secs.clone();
    assert_eq!(
        times.len(),
        14,
        "a variable frame rate keeps every frame's time"
    );
    for (got, want) in times.iter().zip(&want) {
        assert!((got - want).abs() < 1e-3, "{times:?} vs ffprobe {want:?}");
    }
    let mut o = object(0, 64, 48, 3, 4);
    let mask = o.frames[&0].clone();
    o.frames.insert(12, mask);
    doc.items[0].objects.push(o);
    doc.items[0].next_object_id = 1;

    // A project saved by a build that stored no frame times gets them from the video.
    let mut old = doc.clone();
    old.items[0].timestamps_secs.clear();
    for (name, doc) in [("new", &doc), ("old", &old)] {
        let project = dir.path().join(format!("{name}.prj.json"));
        save(doc, &project);
        let out_dir = dir.path().join(format!("out-{name}"));
        let out = export(&project, "regions", &out_dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out_dir.join(format!("{name}.regions.json"))).unwrap(),
        )
        .unwrap();
        let frames = json["items"][0]["objects"][0]["frames"].as_array().unwrap();
        let exported: Vec<(u64, f64)> = frames
            .iter()
            .map(|f| {
                let t = f["timestamp_secs"].as_f64().unwrap();
                (f["index"].as_u64().unwrap(), t)
            })
            .collect();
        assert_eq!(exported.len(), 2, "{name}");
        assert_eq!(exported[0], (0, 0.0), "{name}");
        assert_eq!(exported[1].0, 12);
        assert!(
            (exported[1].1 - want[12]).abs() < 1e-3,
            "{name}: frame 12 exported at {} s, shown at {} s",
            exported[1].1,
            want[12]
        );
    }
    // Evenly spaced frames need no list: their time is index / fps.
    let even_video = testsrc_video(dir.path(), "even.mp4", "64x48", 10, &["-c:v", "libx264"]);
    let source = pixelrefer_studio::media::open(&even_video).unwrap();
    let doc = pixelrefer_studio::jobs::new_document(&source).unwrap();
    assert!(doc.items[0].timestamps_secs.is_empty());
}
