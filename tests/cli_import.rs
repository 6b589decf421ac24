//! `pixelrefer-studio import` end to end: real media opened by the media reader, COCO RLE and
//! polygon annotations from another tool, a project written and read back, then exported again.
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::mask::{Mask, Rle};
use pixelrefer_studio::project::{self, MaskSource};
use std::path::Path;
use std::process::Command;

fn studio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
}

fn run_import(media: &Path, coco: &Path, out: &Path) -> std::process::Output {
    studio()
        .args(["import", "--media"])
        .arg(media)
        .arg("--coco")
        .arg(coco)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// `export PROJECT --format FORMAT --out DIR`, which must succeed and write one JSON file: its
/// contents.
fn export_one(project: &Path, format: &str, dir: &Path) -> serde_json::Value {
    let out = studio()
        .arg("export")
        .arg(project)
        .args(["--format", format, "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    assert_eq!(written.len(), 1);
    serde_json::from_slice(&std::fs::read(written[0].path()).unwrap()).unwrap()
}

fn demo_image() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo.jpg")
}

#[test]
fn coco_rle_and_polygons_import_onto_an_image_and_export_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (w, h) = image::image_dimensions(demo_image()).unwrap();
    // A rectangle as compressed RLE, and a triangle as a polygon, on the demo photo.
    let mut rect = Mask::new(w, h);
    for y in 40..120 {
        for x in 100..260 {
            rect.set(x, y, true);
        }
    }
    let rle = Rle::from_mask(&rect);
    let coco = serde_json::json!({
        "images": [{"id": 7, "file_name": "demo.jpg", "width": w, "height": h}],
        "categories": [
            {"id": 44, "name": "mug", "supercategory": "kitchen"},
            {"id": 2, "name": "spoon", "supercategory": "kitchen"},
            {"id": 90, "name": "toothbrush", "supercategory": "indoor"}
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 44, "iscrowd": 1,
             "segmentation": {"size": [h, w], "counts": rle.to_coco_string()}},
            {"id": 2, "image_id": 7, "category_id": 2, "iscrowd": 0,
             "segmentation": [[300.0, 300.0, 400.0, 300.0, 350.0, 380.0]]}
        ]
    });
    let coco_path = tmp.path().join("coco.json");
    std::fs::write(&coco_path, coco.to_string()).unwrap();
    let project_path = tmp.path().join("imported.prj.json");

    let out = run_import(&demo_image(), &coco_path, &project_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let doc = project::load_project(&project_path).unwrap();
    assert_eq!(doc.items.len(), 1);
    let item = &doc.items[0];
    assert_eq!((item.width, item.height), (w, h));
    assert!(
        doc.media.fingerprint.is_some(),
        "the media fingerprint is recorded"
    );
    assert_eq!(item.objects.len(), 2);
    let labels: Vec<&str> = item.objects.iter().map(|o| o.label.as_str()).collect();
    assert_eq!(labels, ["mug", "spoon"]);
    let mug = &item.objects[0].frames[&0];
    assert_eq!(mug.source, MaskSource::Imported);
    let mask = mug.mask.as_ref().unwrap().to_mask().unwrap();
    assert_eq!(mask, rect, "the RLE mask comes back pixel for pixel");
    let spoon = item.objects[1].frames[&0].mask.as_ref().unwrap();
    assert!(
        spoon.area() > 3000 && spoon.area() < 5000,
        "triangle area {}",
        spoon.area()
    );

    let regions = export_one(&project_path, "regions", &tmp.path().join("export"));
    let text = regions.to_string();
    assert!(
        text.contains("<object0>") && text.contains("<object1>"),
        "{text}"
    );

    // The COCO export from the saved project gives back the file's category ids and
    // supercategories (the unused one too) and the crowd flag.
    let exported = export_one(&project_path, "coco", &tmp.path().join("coco"));
    assert_eq!(
        exported["categories"],
        serde_json::json!([
            {"id": 2, "name": "spoon", "supercategory": "kitchen"},
            {"id": 44, "name": "mug", "supercategory": "kitchen"},
            {"id": 90, "name": "toothbrush", "supercategory": "indoor"}
        ])
    );
    let pairs: Vec<(i64, i64)> = exported["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["category_id"].as_i64().unwrap(),
                a["iscrowd"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs, [(44, 1), (2, 0)]);
}

#[test]
fn import_reports_bad_inputs_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let coco_path = tmp.path().join("coco.json");
    std::fs::write(&coco_path, "{\"images\": [").unwrap();
    let out = run_import(&demo_image(), &coco_path, &tmp.path().join("p.prj.json"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("coco.json"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!tmp.path().join("p.prj.json").exists());

    let missing = tmp.path().join("nope.mp4");
    let out = run_import(&missing, &coco_path, &tmp.path().join("p.prj.json"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.mp4"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn import_never_writes_over_the_media_or_the_coco_file() {
    let tmp = tempfile::tempdir().unwrap();
    let media = tmp.path().join("photo.png");
    image::GrayImage::new(9, 7).save(&media).unwrap();
    let coco = serde_json::json!({
        "images": [{"id": 1, "file_name": "photo.png", "width": 9, "height": 7}],
        "annotations": [{"id": 1, "image_id": 1, "segmentation": [[1, 1, 6, 1, 6, 5, 1, 5]]}]
    });
    let coco_path = tmp.path().join("coco.json");
    std::fs::write(&coco_path, coco.to_string()).unwrap();
    // A folder of images, whose images are inputs too.
    let pics = tmp.path().join("pics");
    std::fs::create_dir(&pics).unwrap();
    std::fs::copy(&media, pics.join("a.png")).unwrap();
    let before = |p: &Path| std::fs::read(p).unwrap();
    let (media_bytes, coco_bytes, a_bytes) = (
        before(&media),
        before(&coco_path),
        before(&pics.join("a.png")),
    );
    let cases = [
        (media.clone(), media.clone()),
        (media.clone(), coco_path.clone()),
        (media.clone(), tmp.path().join("pics/../coco.json")),
        (pics.clone(), pics.join("a.png")),
        (pics.clone(), pics.clone()),
    ];
    for (source, out) in cases {
        let what = format!(
            "import --media {} --out {}",
            source.display(),
            out.display()
        );
        let output = run_import(&source, &coco_path, &out);
        assert!(!output.status.success(), "{what}: it succeeded");
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(err.contains("refusing to write"), "{what}: {err}");
        assert_eq!(before(&media), media_bytes, "{what}");
        assert_eq!(before(&coco_path), coco_bytes, "{what}");
        assert_eq!(before(&pics.join("a.png")), a_bytes, "{what}");
    }
}

#[test]
fn import_reads_no_fifo_or_device_as_coco() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("coco.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let started = std::time::Instant::now();
    for coco in [fifo.as_path(), Path::new("/dev/zero"), tmp.path()] {
        let out = run_import(&demo_image(), coco, &tmp.path().join("p.prj.json"));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not a regular file"),
            "{}: {err}",
            coco.display()
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    assert!(!tmp.path().join("p.prj.json").exists());
}
