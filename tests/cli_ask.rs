//! `ask` from the command line with the objects of a project file (`--project`), against the
//! tiny PixelRefer reference ids and against the same question asked with a regions file; bad
//! input (a tag without an object, a project without masks, a missing item) is one error line.
#![allow(clippy::unwrap_used)]

mod refer_common;

use pixelrefer_studio::mask::{Mask, Rle};
use pixelrefer_studio::project::{
    Document, FrameAnnotation, Item, MaskSource, MediaKind, MediaRef, Object, PALETTE, save_project,
};
use refer_common::{fixture, reference_case};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

fn ask(args: &[&std::ffi::OsStr]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .arg("ask")
        .args(args)
        .output()
        .unwrap()
}

fn json_ids(out: &Output) -> Vec<u64> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn last_error_line(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error:"), "{stderr}");
    last
}

/// A project over `dir/media` (saved relative to the project's folder) with one object per
/// `(id, frame, mask)` entry.
fn project(
    dir: &Path,
    media: &str,
    kind: MediaKind,
    item: Item,
    masks: &[(u32, u64, Mask)],
) -> PathBuf {
    let mut doc = Document::new(
        MediaRef {
            kind,
            path: dir.join(media),
            fingerprint: None,
        },
        vec![item],
    );
    for (id, frame, mask) in masks {
        let objects = &mut doc.items[0].objects;
        if !objects.iter().any(|o| o.id == *id) {
            objects.push(Object::new(*id, format!("thing {id}"), PALETTE[0]));
        }
        let o = objects.iter_mut().find(|o| o.id == *id).unwrap();
        o.frames.insert(
            *frame,
            FrameAnnotation::from_mask(Rle::from_mask(mask), MaskSource::Painted),
        );
    }
    let path = dir.join("p.prj.json");
    save_project(&doc, &path).unwrap();
    path
}

#[test]
fn project_objects_give_the_reference_answer() {
    let model = fixture("pixelrefer-tiny");
    let (_, st) = reference_case(&model, "image_1obj");
    let frame = &st["input.frame0"];
    let (h, w) = (frame.shape[0] as u32, frame.shape[1] as u32);
    let tmp = tempfile::tempdir().unwrap();
    image::RgbImage::from_raw(w, h, frame.u8())
        .unwrap()
        .save(tmp.path().join("frame.png"))
        .unwrap();
    let m = &st["input.obj0.mask0"];
    let mask = Mask::from_raw(w, h, m.u8()).unwrap();
    // Object 0 is the reference object; object 7 is another one the question does not name.
    let mut other = Mask::new(w, h);
    other.set(3, 3, true);
    let prj = project(
        tmp.path(),
        "frame.png",
        MediaKind::Image,
        Item::new(None, w, h, 1, 0.0),
        &[(0, 0, mask), (7, 0, other)],
    );
    let out = ask(&[
        "--model".as_ref(),
        model.as_os_str(),
        "--project".as_ref(),
        prj.as_os_str(),
        "--json".as_ref(),
        "--max-new-tokens".as_ref(),
        "12".as_ref(),
        "What is <object0> doing?".as_ref(),
    ]);
    let want: Vec<u64> = st["turn0.generated_ids"]
        .i64()
        .into_iter()
        .map(|v| v as u64)
        .collect();
    assert_eq!(json_ids(&out), want);

    // A tag without an object.
    let out = ask(&[
        "--model".as_ref(),
        model.as_os_str(),
        "--project".as_ref(),
        prj.as_os_str(),
        "What is <object3> doing?".as_ref(),
    ]);
    let line = last_error_line(&out);
    assert!(
        line.contains("<object3>") && line.contains("<object0>, <object7>"),
        "{line}"
    );
    // An item the project does not have.
    let out = ask(&[
        "--model".as_ref(),
        model.as_os_str(),
        "--project".as_ref(),
        prj.as_os_str(),
        "--item".as_ref(),
        "4".as_ref(),
        "What is <object0> doing?".as_ref(),
    ]);
    assert!(last_error_line(&out).contains("no item 4"));
}

#[test]
fn video_project_matches_the_regions_file() {
    let model = fixture("pixelrefer-lite-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let video = tmp.path().join("demo.mp4");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.mp4"),
        &video,
    )
    .unwrap();
    let info = pixelrefer_studio::media::open(&video)
        .unwrap()
        .item_info(0)
        .unwrap();
    let (w, h) = (info.width, info.height);
    let rect = |x0: u32, x1: u32| {
        let mut m = Mask::new(w, h);
        for y in h / 4..h / 2 {
            for x in x0..x1 {
                m.set(i64::from(x), i64::from(y), true);
            }
        }
        m
    };
    let masks = [
        (0, 0, rect(w / 4, w / 2)),
        (0, 2, rect(w / 4 + 2, w / 2 + 2)),
        (1, 2, rect(w / 2, w * 3 / 4)),
    ];
    let item = Item::new(None, w, h, info.frame_count, info.fps);
    let prj = project(tmp.path(), "demo.mp4", MediaKind::Video, item, &masks);
    let question = "Does <object0> touch <object1>?";
    let common = |extra: &[&std::ffi::OsStr]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "--model".as_ref(),
            model.as_os_str(),
            "--json".as_ref(),
            "--max-new-tokens".as_ref(),
            "6".as_ref(),
        ];
        args.extend_from_slice(extra);
        args.push(question.as_ref());
        ask(&args)
    };
    let from_project = json_ids(&common(&["--project".as_ref(), prj.as_os_str()]));
    assert!(!from_project.is_empty());
    // The same objects through a regions export of that project.
    let doc = pixelrefer_studio::project::load_project(&prj).unwrap();
    let regions = tmp.path().join("p.regions.json");
    pixelrefer_studio::project::export_regions(&doc, &regions).unwrap();
    let from_regions = json_ids(&common(&[
        "--video".as_ref(),
        video.as_os_str(),
        "--regions".as_ref(),
        regions.as_os_str(),
    ]));
    assert_eq!(from_project, from_regions);

    // A project whose objects have no mask yet.
    let empty = project(
        tmp.path(),
        "demo.mp4",
        MediaKind::Video,
        Item::new(None, w, h, info.frame_count, info.fps),
        &[],
    );
    let out = common(&["--project".as_ref(), empty.as_os_str()]);
    let line = last_error_line(&out);
    assert!(line.contains("no such object (objects: none)"), "{line}");
}
