//! COCO import refuses what pycocotools refuses and what would import silently wrong, each
//! with a sentence naming the annotation; a large file of polygons imports in linear time.
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::mask::{Mask, Rle};
use pixelrefer_studio::project::{
    Document, Item, MediaKind, MediaRef, import_coco, import_project,
};
use serde_json::{Value, json};

fn doc(kind: MediaKind) -> Document {
    let media = MediaRef {
        kind,
        path: "/data/clip.mp4".into(),
        fingerprint: None,
    };
    Document::new(media, vec![Item::new(None, 16, 12, 20, 10.0)])
}

fn coco_with(images: Value, annotation: Value) -> Value {
    json!({
        "images": images,
        "categories": [{"id": 1, "name": "ball"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 6, 1, 6, 5]]},
            annotation
        ]
    })
}

fn one_image() -> Value {
    json!([{"id": 1, "file_name": "f_000.jpg", "width": 16, "height": 12}])
}

#[test]
fn malformed_annotations_are_refused_with_their_id() {
    let full = Rle::from_mask(&Mask::from_raw(16, 12, vec![1; 192]).unwrap());
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "1 point",
            one_image(),
            json!({"segmentation": [[3, 3]]}),
            "at least 3 points",
        ),
        (
            "2 points",
            one_image(),
            json!({"segmentation": [[3, 3, 8, 8]]}),
            "at least 3 points",
        ),
        (
            "2.5 points",
            one_image(),
            json!({"segmentation": [[3, 3, 8, 8, 9]]}),
            "at least 3 points",
        ),
        (
            "an empty inner list",
            one_image(),
            json!({"segmentation": [[1, 1, 6, 1, 6, 5], []]}),
            "at least 3 points",
        ),
        (
            "an empty segmentation",
            one_image(),
            json!({"segmentation": []}),
            "empty",
        ),
        (
            "a polygon outside the image",
            one_image(),
            json!({"segmentation": [[100, 100, 140, 100, 140, 130]]}),
            "covers no pixel",
        ),
        (
            "an empty RLE",
            one_image(),
            json!({"segmentation": {"size": [12, 16], "counts": [192]}}),
            "covers no pixel",
        ),
        (
            "RLE counts that do not add up",
            one_image(),
            json!({"segmentation": {"size": [12, 16], "counts": [10, 20]}}),
            "add up",
        ),
        (
            "a compressed RLE that does not add up",
            one_image(),
            json!({"segmentation": {"size": [12, 16], "counts": full.to_coco_string() + "1"}}),
            "RLE",
        ),
        (
            "an RLE of another size",
            one_image(),
            json!({"segmentation": {"size": [12, 17], "counts": [204]}}),
            "17x12",
        ),
        (
            "a bbox outside the image",
            one_image(),
            json!({"segmentation": [[1, 1, 6, 1, 6, 5]], "bbox": [10, 4, 30, 4]}),
            "bbox",
        ),
        (
            "a bbox that is not numbers",
            one_image(),
            json!({"segmentation": [[1, 1, 6, 1, 6, 5]], "bbox": [1, 1, "x", 3]}),
            "bbox",
        ),
        (
            "a score that overflows f32",
            one_image(),
            json!({"segmentation": [[1, 1, 6, 1, 6, 5]], "score": 1e39}),
            "score",
        ),
        (
            "an image id that names no image",
            one_image(),
            json!({"image_id": 99, "segmentation": [[1, 1, 6, 1, 6, 5]]}),
            "image 99",
        ),
        (
            "a negative frame_index",
            json!([{"id": 1, "file_name": "f_000.jpg"}, {"id": 2, "file_name": "g.jpg", "frame_index": -3}]),
            json!({"image_id": 2, "segmentation": [[1, 1, 6, 1, 6, 5]]}),
            "frame_index -3",
        ),
        (
            "a frame_index string",
            json!([{"id": 1, "file_name": "f_000.jpg"}, {"id": 2, "file_name": "g.jpg", "frame_index": "42"}]),
            json!({"image_id": 2, "segmentation": [[1, 1, 6, 1, 6, 5]]}),
            "frame_index \"42\"",
        ),
        (
            "a fractional frame_id",
            json!([{"id": 1, "file_name": "f_000.jpg"}, {"id": 2, "file_name": "g.jpg", "frame_id": 1.5}]),
            json!({"image_id": 2, "segmentation": [[1, 1, 6, 1, 6, 5]]}),
            "frame_id 1.5",
        ),
    ];
    for (what, images, mut ann, needle) in cases {
        let obj = ann.as_object_mut().unwrap();
        obj.insert("id".into(), json!(77));
        obj.entry("image_id").or_insert(json!(1));
        obj.insert("category_id".into(), json!(1));
        let coco = coco_with(images, ann);
        let err = import_coco(&doc(MediaKind::Video), &coco)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("annotation 77"), "{what}: {err}");
        assert!(
            err.contains(needle),
            "{what}: {err:?} should mention {needle:?}"
        );
        assert!(!err.contains('\n'), "{what}: {err}");
    }
    a_slightly_overhanging_bbox_and_polygon_are_accepted();
}

#[test]
fn two_images_with_one_id_are_refused() {
    let images = json!([
        {"id": 1, "file_name": "f_000.jpg"},
        {"id": 1, "file_name": "f_005.jpg"}
    ]);
    let coco = coco_with(
        images,
        json!({"id": 2, "image_id": 1, "segmentation": [[1, 1, 6, 1, 6, 5]]}),
    );
    let err = import_coco(&doc(MediaKind::Video), &coco)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("share the id 1"), "{err}");
}

#[test]
fn many_polygons_import_in_linear_time() {
    // 4000 annotations on a 1000x1000 image: rasterising each through a full bitmap (and
    // checking each added object against all others) took seconds; runs take milliseconds.
    let n = 4000;
    let anns: Vec<Value> = (0..n)
        .map(|i| {
            let (x, y) = ((i % 60) as f64 * 16.0, (i / 60) as f64 * 14.0);
            json!({"id": i, "image_id": 1,
                   "segmentation": [[x, y, x + 12.0, y, x + 6.0, y + 10.0]]})
        })
        .collect();
    let coco = json!({
        "images": [{"id": 1, "file_name": "p.png", "width": 1000, "height": 1000}],
        "annotations": anns
    });
    let media = MediaRef {
        kind: MediaKind::Image,
        path: "/data/p.png".into(),
        fingerprint: None,
    };
    let started = std::time::Instant::now();
    let d = import_project(media, vec![Item::new(None, 1000, 1000, 1, 0.0)], &coco).unwrap();
    let took = started.elapsed();
    assert_eq!(d.items[0].objects.len(), n);
    assert!(took.as_secs_f64() < 4.0, "{n} polygons took {took:?}");
    polygons_of_one_annotation_and_one_track_merge_as_pycocotools_does();
}

/// What the checks must still accept.
fn a_slightly_overhanging_bbox_and_polygon_are_accepted() {
    // Exporters round outward: a bbox up to one pixel outside is fine, and a polygon that
    // covers the whole image from outside is clipped as pycocotools does.
    let coco = coco_with(
        one_image(),
        json!({"id": 2, "image_id": 1, "bbox": [-0.5, -1, 17, 13],
               "segmentation": [[-4, -4, 30, -4, 30, 30, -4, 30]]}),
    );
    let mut d = doc(MediaKind::Video);
    d.apply(import_coco(&d, &coco).unwrap()).unwrap();
    let mask = d.items[0].objects[1].frames[&0].mask.as_ref().unwrap();
    let expected = Rle::from_polygons(
        &[vec![-4.0, -4.0, 30.0, -4.0, 30.0, 30.0, -4.0, 30.0]],
        12,
        16,
    );
    assert_eq!(mask, &expected.unwrap());
    assert!(mask.area() > 150, "{}", mask.area());
}

/// Merging on runs must give what merging bitmaps gave.
fn polygons_of_one_annotation_and_one_track_merge_as_pycocotools_does() {
    // Two polygons in one annotation, and a second annotation of the same track on the same
    // frame: the masks are their union, encoded canonically.
    let polys = vec![
        vec![1.0, 1.0, 6.0, 1.0, 6.0, 5.0],
        vec![8.0, 2.0, 14.0, 2.0, 14.0, 10.0, 8.0, 10.0],
    ];
    let extra = vec![2.0, 6.0, 5.0, 11.0, 1.0, 11.0];
    let coco = json!({
        "images": [{"id": 1, "file_name": "f_000.jpg", "width": 16, "height": 12}],
        "annotations": [
            {"id": 1, "image_id": 1, "track_id": 4, "segmentation": polys},
            {"id": 2, "image_id": 1, "track_id": 4, "segmentation": [extra]}
        ]
    });
    let d = import_project(
        doc(MediaKind::Video).media,
        vec![Item::new(None, 16, 12, 20, 10.0)],
        &coco,
    )
    .unwrap();
    let mut all = polys.clone();
    all.push(extra);
    let expected = Rle::from_polygons(&all, 12, 16).unwrap();
    let objects = &d.items[0].objects;
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].frames[&0].mask.as_ref().unwrap(), &expected);
}
