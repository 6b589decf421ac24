//! Export and import benchmark: time and peak RSS of the regions, COCO and PNG exports of a
//! project with many objects, and of importing a COCO file of many polygons.
//!
//! `cargo bench --bench export` (or, without a release build of the dependencies,
//! `cargo test --locked --bench export`). `EXPORT_BENCH_OBJECTS` (default 100000),
//! `EXPORT_BENCH_PNGS` (default 20000) and `EXPORT_BENCH_POLYGONS` (default 320000) set the
//! sizes; `EXPORT_BENCH_STEPS` (a comma list of `regions,coco,png,import`, default all) picks
//! the steps: run one per process for a fair peak RSS, since freed heap is not always handed
//! back to the system between steps. Uses only the long-standing public API, so the same file
//! measures older commits.
//! Peak RSS is `VmHWM` after resetting it (Linux), above the RSS before the step.
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::mask::Rle;
use pixelrefer_studio::project::{
    self, Document, FrameAnnotation, Item, MaskSource, MediaKind, MediaRef, Object,
};
use std::time::Instant;

fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `f`, printing its wall time and the peak RSS it added.
fn measure<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let out = f();
    let secs = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:").saturating_sub(before);
    println!(
        "{what:<48} {secs:>9.2} s {:>9.1} MiB peak above start",
        peak as f64 / 1024.0
    );
    out
}

fn env_count(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A rectangle's column-major runs, without a bitmap.
fn rect(w: u32, h: u32, x0: u32, y0: u32, x1: u32, y1: u32) -> Rle {
    let mut counts = Vec::new();
    let mut zeros = x0 * h + y0;
    for _ in x0..x1 {
        counts.push(zeros);
        counts.push(y1 - y0);
        zeros = h - y1 + y0;
    }
    counts.push(zeros - y0 + (w - x1) * h);
    Rle {
        size: [h, w],
        counts,
    }
}

/// An image project of 640 x 480 with `n` objects, each a small rectangle.
fn project(n: usize) -> Document {
    let (w, h) = (640, 480);
    let media = MediaRef {
        kind: MediaKind::Image,
        path: "/data/bench.png".into(),
        fingerprint: None,
    };
    let mut item = Item::new(None, w, h, 1, 0.0);
    for i in 0..n {
        let id = i as u32;
        let (x, y) = ((i * 7) as u32 % (w - 20), (i * 13) as u32 % (h - 20));
        let mut o = Object::new(id, format!("class {}", i % 80), [1, 2, 3]);
        o.frames.insert(
            0,
            FrameAnnotation::from_mask(rect(w, h, x, y, x + 16, y + 12), MaskSource::Painted),
        );
        item.objects.push(o);
    }
    item.next_object_id = n as u32;
    Document::new(media, vec![item])
}

fn coco_of_polygons(n: usize) -> serde_json::Value {
    let anns: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let (x, y) = ((i * 7 % 600) as f64 + 0.3, (i * 13 % 440) as f64 + 0.6);
            serde_json::json!({
                "id": i + 1, "image_id": 1, "category_id": 1 + i % 80, "iscrowd": 0,
                "segmentation": [[x, y, x + 20.5, y + 1.0, x + 24.0, y + 18.0, x + 3.0, y + 30.0,
                                  x - 2.0, y + 12.0]],
            })
        })
        .collect();
    let categories: Vec<serde_json::Value> = (1..=80)
        .map(|c| serde_json::json!({"id": c, "name": format!("class {c}")}))
        .collect();
    serde_json::json!({
        "images": [{"id": 1, "file_name": "bench.png", "width": 640, "height": 480}],
        "categories": categories,
        "annotations": anns,
    })
}

fn step(name: &str) -> bool {
    std::env::var("EXPORT_BENCH_STEPS").map_or(true, |s| s.split(',').any(|x| x.trim() == name))
}

fn main() {
    let objects = env_count("EXPORT_BENCH_OBJECTS", 100_000);
    let pngs = env_count("EXPORT_BENCH_PNGS", 20_000);
    let polygons = env_count("EXPORT_BENCH_POLYGONS", 320_000);
    let tmp = tempfile::tempdir().unwrap();
    println!(
        "export bench ({} in {})",
        env!("CARGO_PKG_VERSION"),
        tmp.path().display()
    );

    let doc = measure(&format!("build a project of {objects} objects"), || {
        project(objects)
    });
    if step("regions") {
        let regions = tmp.path().join("bench.regions.json");
        measure(&format!("regions export, {objects} objects"), || {
            project::export_regions(&doc, &regions).unwrap()
        });
        let mib = std::fs::metadata(&regions).unwrap().len() as f64 / 1048576.0;
        println!("  (regions file {mib:.1} MiB)");
    }
    if step("coco") {
        let coco = tmp.path().join("bench.instances.json");
        measure(&format!("COCO export, {objects} objects"), || {
            project::export_coco(&doc, &coco).unwrap()
        });
        let mib = std::fs::metadata(&coco).unwrap().len() as f64 / 1048576.0;
        println!("  (COCO file {mib:.1} MiB)");
    }
    drop(doc);
    if step("png") {
        png_step(pngs, tmp.path());
    }
    if step("import") {
        import_step(polygons, tmp.path());
    }
}

fn png_step(pngs: usize, dir: &std::path::Path) {
    let small = project(pngs);
    let written = measure(&format!("PNG export, {pngs} objects (files)"), || {
        project::export_pngs(&small, &dir.join("png"))
            .unwrap()
            .len()
    });
    assert_eq!(written, pngs);
}

fn import_step(polygons: usize, dir: &std::path::Path) {
    let coco_path = dir.join("polygons.json");
    std::fs::write(
        &coco_path,
        serde_json::to_vec(&coco_of_polygons(polygons)).unwrap(),
    )
    .unwrap();
    println!(
        "  (COCO file of {polygons} polygons: {:.1} MiB)",
        std::fs::metadata(&coco_path).unwrap().len() as f64 / 1048576.0
    );
    let media = MediaRef {
        kind: MediaKind::Image,
        path: "/data/bench.png".into(),
        fingerprint: None,
    };
    let imported = measure(&format!("COCO import, {polygons} polygons"), || {
        let value = project::read_coco(&coco_path).unwrap();
        project::import_project(media, vec![Item::new(None, 640, 480, 1, 0.0)], &value).unwrap()
    });
    assert_eq!(imported.items[0].objects.len(), polygons);
}
