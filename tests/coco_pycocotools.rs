//! Cross-checks with pycocotools: masks and exports written by Rust are decoded by
//! `tests/python/check_coco.py` and compared pixel by pixel with raw bytes and PNGs Rust also
//! wrote; masks and polygons encoded by pycocotools are decoded here. Polygons must agree
//! exactly (tolerance: 0 pixels), since `Rle::from_polygon` replicates `rleFrPoly`.
//!
//! Python: `$PIXELREFER_PYTHON`, else `~/.cache/pixelrefer-studio/venv/bin/python` (with
//! pycocotools, numpy and pillow). Without one the test fails; it never skips.
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::mask::{Mask, Rle};
use pixelrefer_studio::project::*;
use serde_json::{Value, json};
#[path = "support/python_ref.rs"]
mod python_ref;

use python_ref::{Rng, run_script};
use std::path::Path;

fn test_masks() -> Vec<(String, Mask)> {
    let mut out = vec![
        ("empty".to_string(), Mask::new(7, 5)),
        (
            "full".to_string(),
            Mask::from_raw(6, 4, vec![1; 24]).unwrap(),
        ),
        ("zero_width".to_string(), Mask::new(0, 3)),
    ];
    let mut one = Mask::new(9, 11);
    one.set(8, 10, true);
    out.push(("one_pixel_corner".into(), one));
    let mut first = Mask::new(9, 11);
    first.set(0, 0, true);
    out.push(("one_pixel_first".into(), first));
    let mut line = Mask::new(13, 8);
    let mut col = Mask::new(13, 8);
    for x in 0..13 {
        line.set(x, 3, true);
    }
    for y in 0..8 {
        col.set(12, y, true);
    }
    out.push(("row_line".into(), line));
    out.push(("column_line".into(), col));
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for i in 0..12 {
        let (w, h) = (1 + rng.below(70) as u32, 1 + rng.below(50) as u32);
        let density = rng.below(100);
        let data = (0..w * h)
            .map(|_| u8::from(rng.below(100) < density))
            .collect();
        out.push((format!("random_{i}"), Mask::from_raw(w, h, data).unwrap()));
        let mut brush = Mask::new(w, h);
        brush.paint_stroke(
            (rng.below(w as u64) as f32, 0.0),
            (0.0, rng.below(h as u64) as f32),
            2.5,
            true,
        );
        out.push((format!("brush_{i}"), brush));
    }
    // Long runs: counts well past what fits in one or two characters.
    let mut big = Mask::new(700, 500);
    big.fill_polygon(&[(10.0, 10.0), (690.0, 40.0), (350.0, 490.0)], true);
    out.push(("big_triangle".into(), big));
    out
}

fn write_rust_masks(work: &Path) {
    let mut list = Vec::new();
    for (name, mask) in test_masks() {
        std::fs::write(work.join(format!("{name}.bin")), mask.data()).unwrap();
        if mask.width() > 0 && mask.height() > 0 {
            mask.to_png(&work.join(format!("{name}.png"))).unwrap();
        }
        let rle = Rle::from_mask(&mask);
        let b = rle.bbox().map(|b| b.to_xywh()).unwrap_or([0; 4]);
        list.push(json!({
            "name": name, "height": mask.height(), "width": mask.width(),
            "raw": format!("{name}.bin"), "png": format!("{name}.png"),
            "rle": rle, "area": rle.area(), "bbox": b,
        }));
    }
    std::fs::write(
        work.join("rust_masks.json"),
        serde_json::to_vec(&list).unwrap(),
    )
    .unwrap();
}

/// A folder project of two images plus exports; expected.json maps annotations and regions
/// frames to the PNGs export_pngs wrote.
fn write_exports(work: &Path) {
    let media = MediaRef {
        kind: MediaKind::Folder,
        path: work.join("photos"),
        fingerprint: None,
    };
    let mut doc = Document::new(
        media,
        vec![
            Item::new(Some("a.jpg".into()), 40, 30, 1, 0.0),
            Item::new(Some("b.png".into()), 33, 47, 1, 0.0),
        ],
    );
    let mut rng = Rng(42);
    for item in 0..2 {
        for k in 0..3 {
            let edit = doc.add_object_edit(item).unwrap();
            let Edit::AddObject { object, .. } = &edit else {
                unreachable!()
            };
            let id = object.id;
            doc.apply(edit).unwrap();
            let (w, h) = (doc.items[item].width, doc.items[item].height);
            let mut m = Mask::new(w, h);
            let pts: Vec<(f32, f32)> = (0..5)
                .map(|_| {
                    (
                        rng.below(w as u64) as f32 + 0.3,
                        rng.below(h as u64) as f32 + 0.7,
                    )
                })
                .collect();
            m.fill_polygon(&pts, true);
            m.paint_stroke(
                (1.0, 1.0),
                (w as f32 / 2.0, h as f32 - 1.0),
                1.0 + k as f32,
                true,
            );
            doc.apply(Edit::SetObjectProps {
                item,
                id,
                props: ObjectProps {
                    label: ["cat", "dog", ""][k].into(),
                    color: [0, 0, 0],
                    hidden: false,
                    locked: false,
                    caption: String::new(),
                    crowd: false,
                },
            })
            .unwrap();
            doc.apply(Edit::SetFrame {
                item,
                id,
                frame: 0,
                annotation: Some(Box::new(FrameAnnotation::from_mask(
                    Rle::from_mask(&m),
                    MaskSource::Painted,
                ))),
            })
            .unwrap();
        }
    }
    export_coco(&doc, &work.join("instances.json")).unwrap();
    export_regions(&doc, &work.join("regions.json")).unwrap();
    export_pngs(&doc, &work.join("png")).unwrap();
    let coco: Value =
        serde_json::from_slice(&std::fs::read(work.join("instances.json")).unwrap()).unwrap();
    let mut anns = serde_json::Map::new();
    for ann in coco["annotations"].as_array().unwrap() {
        let image = &coco["images"][ann["image_id"].as_u64().unwrap() as usize - 1];
        let png = format!(
            "png/{}/object{}/000000.png",
            image["file_name"].as_str().unwrap(),
            ann["track_id"]
        );
        assert!(work.join(&png).exists(), "{png}");
        anns.insert(ann["id"].to_string(), json!(png));
    }
    let mut regions = serde_json::Map::new();
    for (i, item) in doc.items.iter().enumerate() {
        for o in &item.objects {
            regions.insert(
                format!("{i}/{}/0", o.id),
                json!(format!(
                    "png/{}/object{}/000000.png",
                    item_name(&doc, i),
                    o.id
                )),
            );
        }
    }
    std::fs::write(
        work.join("expected.json"),
        serde_json::to_vec(&json!({"annotations": anns, "regions": regions})).unwrap(),
    )
    .unwrap();
}

fn write_polygons(work: &Path) {
    let polys = json!([
        {"name": "triangle", "height": 10, "width": 12, "polygons": [[1.2, 1.7, 8.9, 2.1, 6.3, 7.8, 0.4, 5.5]]},
        {"name": "square_on_centres", "height": 8, "width": 8, "polygons": [[1.5, 1.5, 5.5, 1.5, 5.5, 5.5, 1.5, 5.5]]},
        {"name": "integer_square", "height": 8, "width": 8, "polygons": [[1, 1, 6, 1, 6, 6, 1, 6]]},
        {"name": "outside", "height": 6, "width": 9, "polygons": [[-4, -4, 20, -4, 20, 20, -4, 20]]},
        {"name": "bowtie", "height": 20, "width": 20, "polygons": [[0, 0, 19, 19, 19, 0, 0, 19]]},
        {"name": "two_parts", "height": 16, "width": 16, "polygons": [[1, 1, 5, 1, 3, 6], [8, 8, 15, 9, 10, 15, 9.5, 9]]},
        {"name": "thin", "height": 10, "width": 10, "polygons": [[2, 2, 8, 2.2, 2, 2.4]]}
    ]);
    std::fs::write(
        work.join("polygons.json"),
        serde_json::to_vec(&polys).unwrap(),
    )
    .unwrap();
}

fn read_raw(path: &Path, w: u32, h: u32) -> Mask {
    Mask::from_raw(w, h, std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn rle_and_exports_agree_with_pycocotools() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    write_rust_masks(work);
    write_exports(work);
    write_polygons(work);
    let output = run_script("pycocotools, numpy and pillow", "check_coco.py", &[work]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok:"));

    let out: Value =
        serde_json::from_slice(&std::fs::read(work.join("py_out.json")).unwrap()).unwrap();
    let masks = out["masks"].as_array().unwrap();
    assert!(masks.len() >= 20);
    for m in masks {
        let (h, w) = (
            m["height"].as_u64().unwrap() as u32,
            m["width"].as_u64().unwrap() as u32,
        );
        let name = m["name"].as_str().unwrap();
        let raw = read_raw(&work.join(m["raw"].as_str().unwrap()), w, h);
        let s = m["counts"].as_str().unwrap();
        let rle = Rle::from_coco_string(s, h, w).unwrap();
        assert_eq!(rle.to_mask().unwrap(), raw, "{name}: compressed");
        assert_eq!(Rle::from_mask(&raw).to_coco_string(), s, "{name}: encode");
        assert_eq!(rle.area(), m["area"].as_u64().unwrap(), "{name}: area");
        let unc: Rle =
            serde_json::from_value(json!({"size": [h, w], "counts": m["uncompressed"]})).unwrap();
        assert_eq!(unc.to_mask().unwrap(), raw, "{name}: uncompressed");
    }
    let polys = out["polygons"].as_array().unwrap();
    assert!(polys.len() >= 60);
    for p in polys {
        let (h, w) = (
            p["height"].as_u64().unwrap() as u32,
            p["width"].as_u64().unwrap() as u32,
        );
        let name = p["name"].as_str().unwrap();
        let group: Vec<Vec<f64>> = serde_json::from_value(p["polygons"].clone()).unwrap();
        let raw = read_raw(&work.join(p["raw"].as_str().unwrap()), w, h);
        let ours = Rle::from_polygons(&group, h, w).unwrap();
        let mask = ours.to_mask().unwrap();
        let differing = mask
            .data()
            .iter()
            .zip(raw.data())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            differing, 0,
            "{name}: {differing} pixels differ from pycocotools (tolerance 0)"
        );
        assert_eq!(
            ours.to_coco_string(),
            p["counts"].as_str().unwrap(),
            "{name}"
        );
    }
}
