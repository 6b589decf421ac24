//! Property tests of the COCO importer (bounded, a few hundred cases): a COCO file this program
//! exported imports back to the same masks, and mutated or arbitrary COCO JSON never panics
//! the importer (it imports or says why not).
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::mask::{Mask, Rle};
use pixelrefer_studio::project::{
    Document, FrameAnnotation, Item, MaskSource, MediaKind, MediaRef, Object, coco_json,
    import_coco, import_project, parse_segmentation,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Masks of one object: (frame, row-major bits), at most 3 frames.
type ObjectMasks = Vec<(u64, Vec<bool>)>;

fn doc_strategy() -> impl Strategy<Value = Document> {
    let kind = prop_oneof![
        Just(MediaKind::Image),
        Just(MediaKind::Video),
        Just(MediaKind::Folder)
    ];
    (kind, 1u32..10, 1u32..8).prop_flat_map(|(kind, w, h)| {
        let items = if kind == MediaKind::Folder {
            1..4usize
        } else {
            1..2usize
        };
        let frames = if kind == MediaKind::Video { 4u64 } else { 1 };
        let object = proptest::collection::vec(
            (
                0..frames,
                proptest::collection::vec(any::<bool>(), (w * h) as usize),
            ),
            0..3,
        );
        let item = proptest::collection::vec(object, 0..4);
        proptest::collection::vec(item, items).prop_map(move |items| build(kind, w, h, items))
    })
}

fn build(kind: MediaKind, w: u32, h: u32, items: Vec<Vec<ObjectMasks>>) -> Document {
    let media = MediaRef {
        kind,
        path: if kind == MediaKind::Folder {
            "/data/pics".into()
        } else {
            "/data/clip.mp4".into()
        },
        fingerprint: None,
    };
    let frames = if kind == MediaKind::Video { 4 } else { 1 };
    let fps = if kind == MediaKind::Video { 5.0 } else { 0.0 };
    let built = items
        .into_iter()
        .enumerate()
        .map(|(i, objects)| {
            let file = (kind == MediaKind::Folder).then(|| format!("img{i}.png"));
            let mut item = Item::new(file, w, h, frames, fps);
            for (id, masks) in objects.into_iter().enumerate() {
                let mut o = Object::new(id as u32, ["", "cat", "dog"][id % 3], [1, 2, 3]);
                o.crowd = id % 2 == 1;
                for (frame, bits) in masks {
                    let data = bits.into_iter().map(u8::from).collect();
                    let m = Mask::from_raw(w, h, data).unwrap();
                    o.frames.insert(
                        frame,
                        FrameAnnotation::from_mask(Rle::from_mask(&m), MaskSource::Painted),
                    );
                }
                item.objects.push(o);
            }
            item.next_object_id = item.objects.len() as u32;
            item
        })
        .collect();
    Document::new(media, built)
}

/// An object's non-empty masks: (frame, canonical run lengths).
type FrameRuns = Vec<(u64, Vec<u32>)>;

/// Per item, the sorted list of objects' non-empty masks by frame.
fn masks_of(doc: &Document) -> Vec<Vec<FrameRuns>> {
    doc.items
        .iter()
        .map(|item| {
            let mut objects: Vec<FrameRuns> = item
                .objects
                .iter()
                .map(|o| {
                    o.frames
                        .iter()
                        .filter_map(|(&f, a)| {
                            let m = a.mask.as_ref().filter(|m| !m.is_empty())?;
                            Some((f, m.canonical().unwrap().counts))
                        })
                        .collect::<Vec<_>>()
                })
                .filter(|frames| !frames.is_empty())
                .collect();
            objects.sort();
            objects
        })
        .collect()
}

fn empty_copy(doc: &Document) -> Document {
    let items = doc
        .items
        .iter()
        .map(|i| Item::new(i.file.clone(), i.width, i.height, i.frame_count, i.fps))
        .collect();
    Document::new(doc.media.clone(), items)
}

/// Every path (object keys and array indexes) inside `v`.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                prefix.push(json!(k));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(list) => {
            for (i, child) in list.iter().enumerate() {
                prefix.push(json!(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Value::String(k) => cur.get_mut(k.as_str())?,
            Value::Number(n) => cur.get_mut(n.as_u64()? as usize)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn hostile_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(-3),
        json!("42"),
        json!(1e39),
        json!(1e300),
        json!(4294967296u64),
        json!(u64::MAX),
        json!(-1.5),
        json!(true),
        json!([]),
        json!({}),
        json!([[]]),
        json!([[1, 2]]),
        json!([[1, 2, 3, 4]]),
        json!([[0, 0, 1e30, 0, 0, 1e30]]),
        json!([[0, 0, f64::MAX, 0, 0, 1]]),
        json!({"size": [1, 1], "counts": "0"}),
        json!({"size": [4294967295u64, 4294967295u64], "counts": [0]}),
        json!({"size": [3, 3], "counts": [4294967295u64, 4294967295u64]}),
        json!({"size": [3, 3], "counts": "\u{7f}\u{7f}"}),
        json!({"size": [3, 3], "counts": "oooooooooooooooo"}),
        json!([1, 2, 3, 4, 5, 6]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn exported_coco_imports_back_to_the_same_masks(doc in doc_strategy()) {
        let coco = coco_json(&doc);
        let imported = import_project(doc.media.clone(), empty_copy(&doc).items, &coco).unwrap();
        prop_assert_eq!(masks_of(&imported), masks_of(&doc));
        // The same through the undoable edit on an existing document.
        let mut target = empty_copy(&doc);
        target.apply(import_coco(&target, &coco).unwrap()).unwrap();
        prop_assert_eq!(masks_of(&target), masks_of(&doc));
        // Exported again, the categories are the first export's, and so are the annotations'
        // categories and crowd flags with their images and masks (the import may order the
        // objects of a frame differently, so compared as sorted lists).
        let again = coco_json(&imported);
        prop_assert_eq!(&again["categories"], &coco["categories"]);
        let labels = |c: &serde_json::Value| -> Vec<String> {
            let mut out: Vec<String> = c["annotations"].as_array().unwrap().iter()
                .map(|a| {
                    json!([a["image_id"], a["category_id"], a["iscrowd"], a["segmentation"]])
                        .to_string()
                })
                .collect();
            out.sort();
            out
        };
        prop_assert_eq!(labels(&again), labels(&coco));
    }

    #[test]
    fn mutated_coco_never_panics_the_importer(
        doc in doc_strategy(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..22), 1..4),
    ) {
        let mut coco = coco_json(&doc);
        let hostile = hostile_values();
        for (index, pick) in edits {
            let mut all = Vec::new();
            paths(&coco, &mut Vec::new(), &mut all);
            let path = index.get(&all).clone();
            if let Some(slot) = at_mut(&mut coco, &path) {
                *slot = hostile[pick % hostile.len()].clone();
            }
        }
        let target = empty_copy(&doc);
        if let Ok(edit) = import_coco(&target, &coco) {
            let mut target = target;
            // Whatever imports is a valid document.
            target.apply(edit).unwrap();
            target.validate().unwrap();
        }
    }

    #[test]
    fn arbitrary_rle_strings_and_counts_never_panic(
        s in "[\\x00-\\x7f]{0,40}",
        counts in proptest::collection::vec(any::<u32>(), 0..6),
        h in 0u32..6,
        w in 0u32..6,
    ) {
        for seg in [
            json!({"size": [h, w], "counts": s}),
            json!({"size": [h, w], "counts": counts}),
        ] {
            if let Ok(rle) = parse_segmentation(&seg, h, w) {
                prop_assert!(rle.validate().is_ok());
                let mask = rle.to_mask().unwrap();
                prop_assert_eq!(Rle::from_mask(&mask), rle.canonical().unwrap());
            }
        }
    }
}
