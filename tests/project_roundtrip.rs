//! Project files: save/load round trips, atomic writes, frozen fixtures of every schema version,
//! media paths, autosave and recovery, exports, and the `export` command.
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::mask::{Mask, Rle};
use pixelrefer_studio::project::*;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/projects")
}

fn sample_doc(media: &Path) -> Document {
    let mut doc = Document::new(
        MediaRef {
            kind: MediaKind::Video,
            path: media.to_path_buf(),
            fingerprint: Some(Fingerprint {
                size_bytes: 5,
                sha256_head_tail: "abc".into(),
            }),
        },
        vec![Item::new(None, 9, 7, 30, 15.0)],
    );
    let add = doc.add_object_edit(0).unwrap();
    doc.apply(add).unwrap();
    let mut m = Mask::new(9, 7);
    m.paint_stroke((1.0, 1.0), (7.0, 5.0), 1.5, true);
    let mut annotation = FrameAnnotation::from_mask(Rle::from_mask(&m), MaskSource::Clicked);
    annotation.score = Some(0.75);
    annotation.prompts.points.push(PointPrompt {
        x: 1.5,
        y: 2.25,
        positive: true,
    });
    annotation.model = Some("sam2".into());
    doc.apply(Edit::SetFrame {
        item: 0,
        id: 0,
        frame: 12,
        annotation: Some(Box::new(annotation)),
    })
    .unwrap();
    doc.apply(Edit::SetChat {
        item: 0,
        chat: vec![
            ChatTurn {
                role: Role::User,
                text: "Describe <object0>.".into(),
                frame: 12,
                model: None,
            },
            ChatTurn {
                role: Role::Assistant,
                text: "A line.".into(),
                frame: 12,
                model: Some("lite".into()),
            },
        ],
    })
    .unwrap();
    doc
}

#[test]
fn save_then_load_is_identical_and_media_is_relative() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("media")).unwrap();
    std::fs::create_dir_all(dir.path().join("projects")).unwrap();
    let media = dir.path().join("media/clip.mp4");
    let doc = sample_doc(&media);
    let path = dir.path().join("projects/a.prj.json");
    save_project(&doc, &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(raw["media"]["path"], "../media/clip.mp4");
    assert_eq!(raw["version"], PROJECT_VERSION);
    assert!(raw["items"][0]["objects"][0]["frames"]["12"]["mask"]["counts"].is_string());
    let loaded = load_project(&path).unwrap();
    assert_eq!(loaded, doc);
    // Nothing but the project file is left in the folder (no temporary files).
    let names: Vec<_> = std::fs::read_dir(dir.path().join("projects"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("a.prj.json")]);
    // Moving project and media together keeps the link.
    let moved = dir.path().join("moved");
    std::fs::create_dir(&moved).unwrap();
    std::fs::rename(dir.path().join("media"), moved.join("media")).unwrap();
    std::fs::rename(dir.path().join("projects"), moved.join("projects")).unwrap();
    let again = load_project(&moved.join("projects/a.prj.json")).unwrap();
    assert_eq!(again.media.path, moved.join("media/clip.mp4"));
}

#[test]
fn a_failed_save_leaves_the_old_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.prj.json");
    let doc = sample_doc(&dir.path().join("clip.mp4"));
    save_project(&doc, &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // The target is a directory: the rename fails after the temporary file was written.
    let blocked = dir.path().join("blocked.prj.json");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    assert!(save_project(&doc, &blocked).is_err());
    assert!(blocked.join("keep").exists());
    // A folder that does not exist: nothing is written anywhere.
    assert!(save_project(&doc, &dir.path().join("nope/p.prj.json")).is_err());
    let mut changed = doc.clone();
    changed.items[0].objects[0].label = "changed".into();
    save_project(&changed, &path).unwrap();
    assert_eq!(
        load_project(&path).unwrap().items[0].objects[0].label,
        "changed"
    );
    assert_ne!(std::fs::read(&path).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[cfg(unix)]
#[test]
fn saving_into_a_read_only_folder_fails_cleanly() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let path = ro.join("p.prj.json");
    let doc = sample_doc(&dir.path().join("clip.mp4"));
    save_project(&doc, &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = ro.join("probe");
    let root_ignores_permissions = std::fs::write(&probe, b"x").is_ok();
    let _ = std::fs::remove_file(&probe);
    let mut changed = doc.clone();
    changed.items[0].objects[0].label = "changed".into();
    let result = save_project(&changed, &path);
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    if !root_ignores_permissions {
        let err = result.unwrap_err().to_string();
        assert!(err.contains("ro"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the old project is untouched"
        );
    }
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 1);
}

#[test]
fn frozen_fixtures_of_every_version_load() {
    let dir = fixtures();
    for version in 1..=PROJECT_VERSION {
        let image = load_project(&dir.join(format!("v{version}_image.prj.json"))).unwrap();
        assert_eq!(image.version, PROJECT_VERSION);
        assert_eq!(image.media.path, dir.join("media/photo.png"));
        assert_eq!(image.media.kind, MediaKind::Image);
        let item = &image.items[0];
        assert_eq!((item.width, item.height, item.next_object_id), (6, 4, 3));
        let cat = item.object(0).unwrap();
        assert_eq!(cat.label, "cat");
        assert_eq!(cat.caption, "A grey cat.");
        let mask = cat.frames[&0].mask.as_ref().unwrap();
        assert_eq!(mask.counts, vec![5, 3, 1, 3, 12]);
        assert_eq!(mask.area(), 6);
        assert_eq!(cat.frames[&0].prompts.points.len(), 1);
        let dog = item.object(2).unwrap();
        assert!(dog.hidden && dog.locked);
        assert_eq!(dog.frames[&0].source, MaskSource::Painted);
        assert_eq!(item.chat.len(), 2);
        assert_eq!(image.models[0].kind, "sam2");

        let video = load_project(&dir.join(format!("v{version}_video.prj.json"))).unwrap();
        assert_eq!(
            video.media.path,
            dir.parent().unwrap().join("media/clip.mp4")
        );
        let ball = &video.items[0].objects[0];
        assert_eq!(ball.frames.len(), 4);
        assert_eq!(
            ball.frames[&2].mask.as_ref().unwrap().counts,
            vec![14, 4, 2, 4, 24]
        );
        assert!(ball.frames[&3].mask.is_none());
        assert_eq!(ball.frames[&1].score, Some(4.5));
    }
    // Every version describes the same documents.
    let v1 = load_project(&dir.join("v1_video.prj.json")).unwrap();
    let latest = load_project(&dir.join(format!("v{PROJECT_VERSION}_video.prj.json"))).unwrap();
    assert_eq!(v1, latest);
    // A fixture of every version is committed.
    for version in 1..=PROJECT_VERSION {
        assert!(
            dir.join(format!("v{version}_image.prj.json")).exists(),
            "missing v{version} fixture"
        );
    }
}

#[test]
fn unreadable_projects_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 5] = [
        ("{", "not a readable project"),
        (r#"{"items": []}"#, "version"),
        (r#"{"version": 99, "media": {}, "items": []}"#, "newer"),
        (
            r#"{"version": 2, "media": {"kind": "image", "path": "x.png"}, "items": [{"width": 2, "height": 2,
               "frame_count": 1, "next_object_id": 1, "objects": [{"id": 0, "color": [0,0,0], "frames":
               {"0": {"mask": {"size": [2, 2], "counts": [1, 1]}, "source": "painted"}}}]}]}"#,
            "add up",
        ),
        (
            r#"{"version": 2, "media": {"kind": "image", "path": "x.png"}, "items": [{"width": 2, "height": 2,
               "frame_count": 1, "next_object_id": 5, "objects": [{"id": 3, "color": [0,0,0]},
               {"id": 3, "color": [0,0,0]}]}]}"#,
            "two objects with id 3",
        ),
    ];
    for (n, (text, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{n}.prj.json"));
        std::fs::write(&path, text).unwrap();
        let err = load_project(&path).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.contains("bad"),
            "{err:?} should mention {needle:?}"
        );
    }
    assert!(
        load_project(&dir.path().join("missing.prj.json"))
            .unwrap_err()
            .to_string()
            .contains("missing")
    );
}

#[test]
fn moved_or_changed_media_is_detected_and_relinked() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("clip.mp4");
    std::fs::write(&media, b"hello").unwrap();
    // A stand-in for media::fingerprint_file: size and content.
    let fp = |p: &Path| {
        let bytes = std::fs::read(p).ok()?;
        Some(Fingerprint {
            size_bytes: bytes.len() as u64,
            sha256_head_tail: String::from_utf8_lossy(&bytes).into(),
        })
    };
    let mut doc = sample_doc(&media);
    doc.media.fingerprint = fp(&media);
    let path = dir.path().join("p.prj.json");
    save_project(&doc, &path).unwrap();
    let mut loaded = load_project(&path).unwrap();
    assert_eq!(check_media(&loaded, fp), MediaStatus::Ok);
    let elsewhere = dir.path().join("elsewhere.mp4");
    std::fs::rename(&media, &elsewhere).unwrap();
    assert_eq!(check_media(&loaded, fp), MediaStatus::Missing);
    relink_media(&mut loaded, &elsewhere);
    assert_eq!(check_media(&loaded, fp), MediaStatus::Ok);
    std::fs::write(&elsewhere, b"other").unwrap();
    assert_eq!(check_media(&loaded, fp), MediaStatus::Changed);
    // A folder with a missing item.
    let folder = dir.path().join("photos");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("a.jpg"), b"a").unwrap();
    let mut item = Item::new(Some("a.jpg".into()), 2, 2, 1, 0.0);
    item.fingerprint = fp(&folder.join("a.jpg"));
    let mut item_b = Item::new(Some("b.jpg".into()), 2, 2, 1, 0.0);
    item_b.fingerprint = Some(Fingerprint {
        size_bytes: 1,
        sha256_head_tail: "b".into(),
    });
    let folder_doc = Document::new(
        MediaRef {
            kind: MediaKind::Folder,
            path: folder.clone(),
            fingerprint: None,
        },
        vec![item, item_b],
    );
    assert_eq!(check_media(&folder_doc, fp), MediaStatus::Missing);
    std::fs::write(folder.join("b.jpg"), b"b").unwrap();
    assert_eq!(check_media(&folder_doc, fp), MediaStatus::Ok);
}

#[test]
fn autosave_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("walk.prj.json");
    let media = dir.path().join("walk.mp4");
    let auto = autosave_path(Some(&project), &media);
    assert_eq!(auto, dir.path().join(".walk.prj.json.autosave"));
    let unsaved = autosave_path(None, &media);
    assert!(unsaved.to_string_lossy().contains("pixelrefer-studio"));
    assert_ne!(unsaved, autosave_path(None, &dir.path().join("other.mp4")));
    assert_eq!(unsaved, autosave_path(None, &media), "stable key");

    let doc = sample_doc(&media);
    assert_eq!(find_recovery(Some(&project), &media), None);
    save_project(&doc, &project).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut edited = doc.clone();
    edited.items[0].objects[0].label = "unsaved work".into();
    write_autosave(&edited, &auto).unwrap();
    let found = find_recovery(Some(&project), &media).unwrap();
    assert_eq!(found, auto);
    let recovered = load_project(&found).unwrap();
    assert_eq!(recovered, edited);
    // Saving the project afterwards makes the autosave stale.
    std::thread::sleep(std::time::Duration::from_millis(20));
    save_project(&edited, &project).unwrap();
    let project_time = std::fs::metadata(&project).unwrap().modified().unwrap();
    let auto_time = std::fs::metadata(&auto).unwrap().modified().unwrap();
    if project_time > auto_time {
        assert_eq!(find_recovery(Some(&project), &media), None);
    }
    discard_autosave(&auto).unwrap();
    assert!(!auto.exists());
    discard_autosave(&auto).unwrap();
    // An unsaved project's autosave is found without a project file.
    let never_saved = dir.path().join("never.prj.json");
    let auto2 = autosave_path(Some(&never_saved), &media);
    write_autosave(&doc, &auto2).unwrap();
    assert_eq!(find_recovery(Some(&never_saved), &media), Some(auto2));
}

fn exported_doc(dir: &Path) -> Document {
    let mut doc = sample_doc(&dir.join("clip.mp4"));
    let add = doc.add_object_edit(0).unwrap();
    doc.apply(add).unwrap();
    doc.apply(Edit::SetObjectProps {
        item: 0,
        id: 1,
        props: ObjectProps {
            label: "dog".into(),
            color: [1, 2, 3],
            hidden: false,
            locked: false,
            caption: "A dog.".into(),
            crowd: false,
        },
    })
    .unwrap();
    let mut m = Mask::new(9, 7);
    m.fill_polygon(&[(0.0, 0.0), (3.0, 0.0), (0.0, 4.0)], true);
    doc.apply(Edit::SetFrame {
        item: 0,
        id: 1,
        frame: 12,
        annotation: Some(Box::new(FrameAnnotation::from_mask(
            Rle::from_mask(&m),
            MaskSource::Painted,
        ))),
    })
    .unwrap();
    doc.apply(Edit::SetFrame {
        item: 0,
        id: 1,
        frame: 13,
        annotation: Some(Box::new(FrameAnnotation::from_mask(
            Rle::empty(7, 9),
            MaskSource::Painted,
        ))),
    })
    .unwrap();
    doc
}

#[test]
fn exports_have_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let doc = exported_doc(dir.path());
    let regions_path = dir.path().join("a.regions.json");
    export_regions(&doc, &regions_path).unwrap();
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&regions_path).unwrap()).unwrap();
    let item = &r["items"][0];
    assert_eq!(
        (
            item["width"].as_u64(),
            item["height"].as_u64(),
            item["fps"].as_f64()
        ),
        (Some(9), Some(7), Some(15.0))
    );
    let o0 = &item["objects"][0];
    assert_eq!(o0["tag"], "<object0>");
    assert_eq!(o0["qa"][0]["question"], "Describe <object0>.");
    assert_eq!(o0["qa"][0]["answer"], "A line.");
    assert_eq!(item["objects"][1]["qa"].as_array().unwrap().len(), 0);
    let f = &o0["frames"][0];
    assert_eq!(f["index"], 12);
    assert_eq!(f["timestamp_secs"].as_f64(), Some(12.0 / 15.0));
    let rle = Rle::from_coco_string(f["rle"]["counts"].as_str().unwrap(), 7, 9).unwrap();
    let want = doc.items[0].objects[0].frames[&12].mask.as_ref().unwrap();
    assert_eq!(&rle, want);
    let b = want.bbox().unwrap();
    assert_eq!(f["bbox"], serde_json::json!([b.x, b.y, b.w, b.h]));
    assert_eq!(f["area"].as_u64(), Some(want.area()));
    let dog_frames = item["objects"][1]["frames"].as_array().unwrap();
    assert_eq!(dog_frames.len(), 2);
    assert_eq!(dog_frames[1]["bbox"], serde_json::json!([0, 0, 0, 0]));

    let coco_path = dir.path().join("a.instances.json");
    export_coco(&doc, &coco_path).unwrap();
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(&coco_path).unwrap()).unwrap();
    assert_eq!(
        c["images"].as_array().unwrap().len(),
        1,
        "frame 13 has only an empty mask"
    );
    assert_eq!(c["images"][0]["frame_index"], 12);
    assert_eq!(c["annotations"].as_array().unwrap().len(), 2);
    assert_eq!(c["categories"][1]["name"], "dog");
    assert_eq!(c["categories"][0]["name"], "object", "unlabelled objects");
    assert_eq!(c["annotations"][1]["track_id"], 1);
    assert_eq!(c["annotations"][1]["object_tag"], "<object1>");
    assert_eq!(c["annotations"][1]["iscrowd"], 0);
    // The COCO export imports back into an empty copy of the document.
    let mut empty = Document::new(doc.media.clone(), vec![Item::new(None, 9, 7, 30, 15.0)]);
    let edit = import_coco(&empty, &c).unwrap();
    empty.apply(edit).unwrap();
    assert_eq!(empty.items[0].objects[1].label, "dog");
    assert_eq!(
        empty.items[0].objects[0].frames[&12].mask,
        doc.items[0].objects[0].frames[&12].mask
    );

    let png_dir = dir.path().join("png");
    let files = export_pngs(&doc, &png_dir).unwrap();
    assert_eq!(files.len(), 3);
    let png = png_dir.join("clip/object1/000012.png");
    assert!(files.contains(&png));
    let decoded = Mask::from_png(&png, 127).unwrap();
    assert_eq!(
        Rle::from_mask(&decoded),
        *doc.items[0].objects[1].frames[&12].mask.as_ref().unwrap()
    );
}

#[test]
fn cli_export_writes_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let project = fixtures().join("v1_video.prj.json");
    let bin = env!("CARGO_BIN_EXE_pixelrefer-studio");
    for (format, expected) in [
        ("regions", "v1_video.regions.json"),
        ("coco", "v1_video.instances.json"),
    ] {
        let out = dir.path().join(format);
        let status = std::process::Command::new(bin)
            .args([
                "export",
                project.to_str().unwrap(),
                "--format",
                format,
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(expected)).unwrap()).unwrap();
        if format == "regions" {
            assert_eq!(
                v["items"][0]["objects"][0]["frames"]
                    .as_array()
                    .unwrap()
                    .len(),
                3
            );
            assert_eq!(
                v["items"][0]["objects"][0]["qa"][0]["answer"],
                "It rolls right."
            );
        } else {
            assert_eq!(v["annotations"].as_array().unwrap().len(), 3);
        }
    }
    let out = dir.path().join("png");
    let output = std::process::Command::new(bin)
        .args([
            "export",
            project.to_str().unwrap(),
            "--format",
            "png",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("3 masks"));
    let m = Mask::from_png(&out.join("clip/object0/000001.png"), 127).unwrap();
    assert_eq!(Rle::from_mask(&m).counts, vec![12, 4, 2, 4, 26]);
    // A broken project fails with one clear line.
    let bad = dir.path().join("bad.prj.json");
    std::fs::write(&bad, "{").unwrap();
    let output = std::process::Command::new(bin)
        .args([
            "export",
            bad.to_str().unwrap(),
            "--format",
            "coco",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.prj.json"), "{stderr}");
}

#[test]
fn a_cvat_style_coco_file_imports_as_one_undo_step() {
    let coco_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/coco/cvat_video.json");
    let coco = read_coco(&coco_path).unwrap();
    let media = MediaRef {
        kind: MediaKind::Video,
        path: "/videos/street.mp4".into(),
        fingerprint: None,
    };
    let doc = import_project(media.clone(), vec![Item::new(None, 8, 6, 3, 25.0)], &coco).unwrap();
    let objects = &doc.items[0].objects;
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0].label, "person");
    assert_eq!(
        objects[0].frames.keys().copied().collect::<Vec<_>>(),
        vec![0, 1]
    );
    let person1 = objects[0].frames[&1].mask.as_ref().unwrap();
    assert_eq!(person1.area(), 12);
    assert_eq!(person1.bbox().unwrap().to_xywh(), [2, 1, 3, 4]);
    assert_eq!(objects[1].label, "car");
    assert_eq!(
        objects[1].frames[&2]
            .mask
            .as_ref()
            .unwrap()
            .bbox()
            .unwrap()
            .to_xywh(),
        [6, 0, 2, 2]
    );
    // The wrong video size is a clear error.
    let err = import_project(media, vec![Item::new(None, 16, 12, 3, 25.0)], &coco)
        .unwrap_err()
        .to_string();
    assert!(err.contains("8x6") && err.contains("16x12"), "{err}");
    assert!(read_coco(&coco_path.with_file_name("missing.json")).is_err());
}
