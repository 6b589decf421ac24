//! COCO category ids, supercategories and crowd flags survive an import and a COCO export: the
//! file's categories join the project's (conflicting ids renumbered), labels keep their ids,
//! new labels get ids after the largest, and the import is one undo step with its categories.
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::project::{
    Category, Document, Edit, Item, MediaKind, MediaRef, ObjectProps, coco_json, import_coco,
    import_project, merged_categories,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn media() -> MediaRef {
    MediaRef {
        kind: MediaKind::Video,
        path: "/data/clip.mp4".into(),
        fingerprint: None,
    }
}

fn items() -> Vec<Item> {
    vec![Item::new(None, 16, 12, 4, 10.0)]
}

fn cat(id: i64, name: &str, supercategory: &str) -> Category {
    Category {
        id,
        name: name.into(),
        supercategory: supercategory.into(),
    }
}

/// Two frames; a crowd `car` track (category 3), a `person` (category 1) and a category
/// (`tree`, 7) no annotation uses. Category ids are not in file order.
fn dataset() -> Value {
    json!({
        "images": [
            {"id": 10, "file_name": "f_000000.jpg", "frame_index": 0, "width": 16, "height": 12},
            {"id": 11, "file_name": "f_000001.jpg", "frame_index": 1, "width": 16, "height": 12}
        ],
        "categories": [
            {"id": 7, "name": "tree", "supercategory": "plant"},
            {"id": 3, "name": "car", "supercategory": "vehicle"},
            {"id": 1.0, "name": "person", "supercategory": "human"}
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 3, "track_id": 5, "iscrowd": 1,
             "segmentation": [[1, 1, 6, 1, 6, 5]]},
            {"id": 2, "image_id": 11, "category_id": 3, "track_id": 5, "iscrowd": 0,
             "segmentation": [[2, 1, 7, 1, 7, 5]]},
            {"id": 3, "image_id": 10, "category_id": 1, "track_id": 6, "iscrowd": 0,
             "segmentation": [[9, 2, 14, 2, 14, 9]]}
        ]
    })
}

/// (name, id, supercategory) of the export's categories, in its order.
fn categories(coco: &Value) -> Vec<(String, i64, String)> {
    coco["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["id"].as_i64().unwrap(),
                c["supercategory"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// (track id -> (category id, iscrowd)) of the export's annotations.
fn annotations(coco: &Value) -> BTreeMap<u64, (i64, u64)> {
    coco["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["track_id"].as_u64().unwrap(),
                (
                    a["category_id"].as_i64().unwrap(),
                    a["iscrowd"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

fn owned(v: &[(&str, i64, &str)]) -> Vec<(String, i64, String)> {
    v.iter()
        .map(|(n, i, s)| (n.to_string(), *i, s.to_string()))
        .collect()
}

#[test]
fn ids_supercategories_and_crowd_flags_come_back_in_the_export() {
    let mut doc = import_project(media(), items(), &dataset()).unwrap();
    let objects = &doc.items[0].objects;
    assert_eq!(objects.len(), 2);
    assert!(
        objects[0].crowd,
        "a track with an iscrowd annotation is a crowd object"
    );
    assert!(!objects[1].crowd);
    let (car, person) = (objects[0].id, objects[1].id);

    let out = coco_json(&doc);
    assert_eq!(
        categories(&out),
        owned(&[
            ("person", 1, "human"),
            ("car", 3, "vehicle"),
            ("tree", 7, "plant")
        ])
    );
    let by_track = annotations(&out);
    assert_eq!(by_track[&u64::from(car)], (3, 1));
    assert_eq!(by_track[&u64::from(person)], (1, 0));

    // A relabelled object takes the id of its new label; a label no category names gets the
    // next id after the largest, and the kept categories stay listed.
    let relabel = |doc: &mut Document, id: u32, label: &str| {
        let mut props: ObjectProps = doc.items[0]
            .objects
            .iter()
            .find(|o| o.id == id)
            .unwrap()
            .props();
        props.label = label.into();
        doc.apply(Edit::SetObjectProps { item: 0, id, props })
            .unwrap();
    };
    relabel(&mut doc, person, "tree");
    relabel(&mut doc, car, "dog");
    let out = coco_json(&doc);
    assert_eq!(
        categories(&out),
        owned(&[
            ("person", 1, "human"),
            ("car", 3, "vehicle"),
            ("tree", 7, "plant"),
            ("dog", 8, "")
        ])
    );
    let by_track = annotations(&out);
    assert_eq!(by_track[&u64::from(person)], (7, 0));
    assert_eq!(by_track[&u64::from(car)], (8, 1));
}

#[test]
fn the_project_file_keeps_categories_and_crowd_flags() {
    let doc = import_project(media(), items(), &dataset()).unwrap();
    let text = serde_json::to_string(&doc).unwrap();
    let back: Document = serde_json::from_str(&text).unwrap();
    assert_eq!(back, doc);
    assert_eq!(back.categories.len(), 3);
    assert!(back.items[0].objects[0].crowd);
    // A project without categories is written without the field, as before.
    let plain = Document::new(media(), items());
    let text = serde_json::to_value(&plain).unwrap();
    assert!(text.get("categories").is_none());
    assert!(
        serde_json::to_string(&plain)
            .unwrap()
            .find("crowd")
            .is_none()
    );
}

#[test]
fn importing_into_a_project_merges_categories_and_undoes_in_one_step() {
    let mut doc = Document::new(media(), items());
    // The project already has id 3 for another name, and `person` under its own id.
    doc.apply(Edit::SetCategories {
        from: Vec::new(),
        to: vec![cat(3, "bus", ""), cat(9, "person", "")],
    })
    .unwrap();
    let before = doc.clone();
    let edit = import_coco(&doc, &dataset()).unwrap();
    let undo = doc.apply(edit).unwrap();
    assert_eq!(
        doc.categories,
        vec![
            cat(3, "bus", ""),
            cat(7, "tree", "plant"),
            cat(9, "person", ""),
            cat(10, "car", "vehicle"),
        ],
        "car's id 3 is taken: it gets the next after the largest; person keeps the project's 9"
    );
    let out = coco_json(&doc);
    let objects = &doc.items[0].objects;
    let by_track = annotations(&out);
    assert_eq!(by_track[&u64::from(objects[0].id)], (10, 1));
    assert_eq!(by_track[&u64::from(objects[1].id)], (9, 0));
    doc.apply(undo).unwrap();
    assert_eq!(
        doc.categories, before.categories,
        "one undo restores the categories"
    );
    assert!(doc.items[0].objects.is_empty(), "and removes the objects");
}

#[test]
fn an_import_prepared_before_another_landed_is_refused_not_merged_away() {
    // The app reads a COCO file on a worker from a snapshot of the project: two imports started
    // together are both built against the same categories.
    let mut doc = Document::new(media(), items());
    let mut other = dataset();
    other["categories"] = json!([{"id": 4, "name": "dog", "supercategory": "animal"}]);
    for a in other["annotations"].as_array_mut().unwrap() {
        a["category_id"] = json!(4);
    }
    let first = import_coco(&doc, &dataset()).unwrap();
    let second = import_coco(&doc, &other).unwrap();
    doc.apply(first).unwrap();
    let landed = doc.clone();
    let err = doc.apply(second).unwrap_err().to_string();
    assert!(err.contains("categories changed"), "{err}");
    assert_eq!(
        doc.categories, landed.categories,
        "the first import's categories stay"
    );
    assert_eq!(doc.items[0].objects.len(), landed.items[0].objects.len());
    // Prepared again from the project as it is now, it merges.
    doc.apply(import_coco(&doc, &other).unwrap()).unwrap();
    let names: Vec<&str> = doc.categories.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["person", "car", "dog", "tree"],
        "{:?}",
        doc.categories
    );
}

#[test]
fn without_categories_labels_are_numbered_from_one_as_before() {
    let mut coco = dataset();
    coco["categories"] = json!([{"id": "car", "name": "car"}, {"name": "nameless id"}]);
    for a in coco["annotations"].as_array_mut().unwrap() {
        a["category_id"] = json!("car");
    }
    let doc = import_project(media(), items(), &coco).unwrap();
    assert!(
        doc.categories.is_empty(),
        "ids that are not numbers are not kept"
    );
    let out = coco_json(&doc);
    assert_eq!(categories(&out), owned(&[("car", 1, "")]));
}

#[test]
fn categories_with_one_id_or_one_name_are_refused() {
    let mut doc = Document::new(media(), items());
    for bad in [
        vec![cat(1, "a", ""), cat(1, "b", "")],
        vec![cat(1, "a", ""), cat(2, "a", "")],
    ] {
        let err = doc
            .apply(Edit::SetCategories {
                from: Vec::new(),
                to: bad.clone(),
            })
            .unwrap_err();
        assert!(err.to_string().contains("two categories"), "{err}");
        let mut hand_edited = doc.clone();
        hand_edited.categories = bad;
        assert!(hand_edited.validate().is_err());
    }
    assert!(doc.categories.is_empty());
}

#[test]
fn merging_keeps_names_and_renumbers_taken_ids() {
    let merged = merged_categories(
        &[cat(1, "a", ""), cat(2, "b", "")],
        &[cat(2, "c", "x"), cat(5, "a", "y"), cat(3, "d", "")],
    );
    assert_eq!(
        merged,
        vec![
            cat(1, "a", ""),
            cat(2, "b", ""),
            cat(3, "c", "x"),
            cat(4, "d", "")
        ]
    );
}
