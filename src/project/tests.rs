//! Unit tests of edits, undo/redo and the history bound, and of COCO import.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::mask::{Mask, Rle};
use serde_json::json;

fn video_doc() -> Document {
    let media = MediaRef {
        kind: MediaKind::Video,
        path: "/data/clip.mp4".into(),
        fingerprint: None,
    };
    Document::new(media, vec![Item::new(None, 16, 12, 20, 10.0)])
}

fn mask_rle(w: u32, h: u32, x0: u32, y0: u32, x1: u32, y1: u32) -> Rle {
    let mut m = Mask::new(w, h);
    for y in y0..y1 {
        for x in x0..x1 {
            m.set(x as i64, y as i64, true);
        }
    }
    Rle::from_mask(&m)
}

/// A small deterministic generator so failures reproduce.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn random_edit(doc: &Document, rng: &mut Lcg) -> Edit {
    let item = &doc.items[0];
    let pick = |rng: &mut Lcg| item.objects[rng.next(item.objects.len() as u64) as usize].id;
    let kind = if item.objects.is_empty() {
        0
    } else {
        rng.next(7)
    };
    match kind {
        0 => doc.add_object_edit(0).unwrap(),
        1 => Edit::RemoveObject {
            item: 0,
            id: pick(rng),
        },
        2 => Edit::SetObjectProps {
            item: 0,
            id: pick(rng),
            props: ObjectProps {
                label: format!("label{}", rng.next(100)),
                color: [rng.next(255) as u8, 1, 2],
                hidden: rng.next(2) == 0,
                locked: rng.next(2) == 0,
                caption: "c".repeat(rng.next(5) as usize),
                crowd: rng.next(2) == 0,
            },
        },
        3 => Edit::MoveObject {
            item: 0,
            id: pick(rng),
            index: rng.next(item.objects.len() as u64) as usize,
        },
        4 | 5 => {
            let x = rng.next(12) as u32;
            let y = rng.next(9) as u32;
            let annotation = if rng.next(4) == 0 {
                None
            } else {
                Some(Box::new(FrameAnnotation::from_mask(
                    mask_rle(16, 12, x, y, x + 4, y + 3),
                    MaskSource::Painted,
                )))
            };
            Edit::SetFrame {
                item: 0,
                id: pick(rng),
                frame: rng.next(20),
                annotation,
            }
        }
        _ => Edit::Batch(vec![
            Edit::SetFrameRate {
                item: 0,
                fps: rng.next(60) as f64 / 2.0,
            },
            Edit::SetChat {
                item: 0,
                chat: vec![ChatTurn {
                    role: Role::User,
                    text: format!("q{}", rng.next(9)),
                    frame: 0,
                    model: None,
                }],
            },
            Edit::SetFrame {
                item: 0,
                id: pick(rng),
                frame: rng.next(20),
                annotation: Some(Box::new(FrameAnnotation::from_mask(
                    mask_rle(16, 12, 0, 0, 2, 2),
                    MaskSource::Propagated,
                ))),
            },
        ]),
    }
}

fn without_id_counter(mut doc: Document) -> Document {
    for item in &mut doc.items {
        item.next_object_id = 0;
    }
    doc
}

#[test]
fn random_edits_undo_and_redo_exactly() {
    for seed in 0..20 {
        let mut rng = Lcg(seed);
        let mut doc = video_doc();
        let original = doc.clone();
        let mut history = History::new(usize::MAX);
        let mut states = vec![doc.clone()];
        for _ in 0..60 {
            let edit = random_edit(&doc, &mut rng);
            let inverse = doc.apply(edit).unwrap();
            history.push(inverse);
            states.push(doc.clone());
        }
        doc.validate().unwrap();
        let fin = doc.clone();
        let mut n = states.len() - 1;
        while history.undo(&mut doc).unwrap() {
            n -= 1;
            // Ids are never handed out again, so only the counter may differ.
            assert_eq!(
                without_id_counter(doc.clone()),
                without_id_counter(states[n].clone())
            );
        }
        assert_eq!(n, 0);
        assert_eq!(
            without_id_counter(doc.clone()),
            without_id_counter(original.clone())
        );
        assert!(doc.items[0].next_object_id >= fin.items[0].next_object_id);
        while history.redo(&mut doc).unwrap() {}
        assert_eq!(doc, fin, "seed {seed}");
        assert!(!history.can_redo() && history.can_undo());
    }
}

#[test]
fn ids_are_not_reused_after_undo() {
    let mut doc = video_doc();
    let mut history = History::new(1 << 20);
    history.push(doc.apply(doc.add_object_edit(0).unwrap()).unwrap());
    assert_eq!(doc.items[0].objects[0].id, 0);
    assert!(history.undo(&mut doc).unwrap());
    assert!(doc.items[0].objects.is_empty());
    history.push(doc.apply(doc.add_object_edit(0).unwrap()).unwrap());
    assert_eq!(
        doc.items[0].objects[0].id, 1,
        "tag <object0> may be in the chat already"
    );
    assert!(!history.can_redo(), "a new edit clears the redo stack");
    // Colours differ between objects.
    history.push(doc.apply(doc.add_object_edit(0).unwrap()).unwrap());
    assert_ne!(doc.items[0].objects[0].color, doc.items[0].objects[1].color);
}

#[test]
fn invalid_edits_are_rejected_and_change_nothing() {
    let mut doc = video_doc();
    doc.apply(doc.add_object_edit(0).unwrap()).unwrap();
    let before = doc.clone();
    let wrong_size = Edit::SetFrame {
        item: 0,
        id: 0,
        frame: 0,
        annotation: Some(Box::new(FrameAnnotation::from_mask(
            Rle::empty(16, 12),
            MaskSource::Painted,
        ))),
    };
    let err = doc.apply(wrong_size).unwrap_err().to_string();
    assert!(err.contains("12x16") && err.contains("16x12"), "{err}");
    let bad_counts = Edit::SetFrame {
        item: 0,
        id: 0,
        frame: 0,
        annotation: Some(Box::new(FrameAnnotation::from_mask(
            Rle {
                size: [12, 16],
                counts: vec![3],
            },
            MaskSource::Painted,
        ))),
    };
    assert!(doc.apply(bad_counts).is_err());
    let ok = Edit::SetFrame {
        item: 0,
        id: 0,
        frame: 1,
        annotation: Some(Box::new(FrameAnnotation::from_mask(
            Rle::empty(12, 16),
            MaskSource::Painted,
        ))),
    };
    let out_of_range = Edit::SetFrame {
        item: 0,
        id: 0,
        frame: 20,
        annotation: None,
    };
    let add_again = Edit::AddObject {
        item: 0,
        index: 0,
        object: Box::new(Object::new(0, "x", [0, 0, 0])),
    };
    for edit in [
        Edit::RemoveObject { item: 0, id: 7 },
        Edit::RemoveObject { item: 3, id: 0 },
        Edit::MoveObject {
            item: 0,
            id: 0,
            index: 1,
        },
        Edit::SetFrame {
            item: 0,
            id: 0,
            frame: 25,
            annotation: ok_annotation(),
        },
        add_again,
        // A batch failing in the middle rolls back its first part.
        Edit::Batch(vec![ok.clone(), out_of_range.clone(), ok.clone()]),
        Edit::Batch(vec![ok, Edit::RemoveObject { item: 0, id: 9 }]),
    ] {
        assert!(doc.apply(edit.clone()).is_err(), "{edit:?}");
        assert_eq!(doc, before, "{edit:?}");
    }
}

fn ok_annotation() -> Option<Box<FrameAnnotation>> {
    Some(Box::new(FrameAnnotation::from_mask(
        Rle::empty(12, 16),
        MaskSource::Painted,
    )))
}

#[test]
fn history_stays_within_its_byte_bound() {
    let mut doc = video_doc();
    doc.apply(doc.add_object_edit(0).unwrap()).unwrap();
    let step = |f: u64| Edit::SetFrame {
        item: 0,
        id: 0,
        frame: f % 20,
        annotation: Some(Box::new(FrameAnnotation::from_mask(
            mask_rle(16, 12, (f % 10) as u32, 1, 12, 9),
            MaskSource::Painted,
        ))),
    };
    let one = doc
        .clone()
        .apply(step(0))
        .unwrap()
        .estimated_bytes()
        .max(step(0).estimated_bytes());
    let max = one * 5;
    let mut history = History::new(max);
    for f in 0..100 {
        history.push(doc.apply(step(f)).unwrap());
        assert!(history.bytes() <= max, "{} > {max}", history.bytes());
    }
    assert!(
        history.undo_len() >= 3 && history.undo_len() <= 6,
        "{}",
        history.undo_len()
    );
    let mut undone = 0;
    while history.undo(&mut doc).unwrap() {
        undone += 1;
        assert!(history.bytes() <= max);
    }
    assert!(undone >= 3);
    // A single step larger than the bound is still kept.
    let mut tiny = History::new(1);
    tiny.push(doc.apply(step(3)).unwrap());
    tiny.push(doc.apply(step(4)).unwrap());
    assert_eq!(tiny.undo_len(), 1);
    tiny.clear();
    assert!(!tiny.can_undo() && tiny.bytes() == 0);
}

#[test]
fn undo_of_a_stale_step_reports_an_error() {
    let mut doc = video_doc();
    let mut history = History::new(1 << 20);
    history.push(doc.apply(doc.add_object_edit(0).unwrap()).unwrap());
    doc.items[0].objects.clear(); // changed behind the history's back
    assert!(history.undo(&mut doc).is_err());
    assert!(!history.can_undo());
}

fn folder_doc() -> Document {
    let media = MediaRef {
        kind: MediaKind::Folder,
        path: "/data/photos".into(),
        fingerprint: None,
    };
    Document::new(
        media,
        vec![
            Item::new(Some("a.jpg".into()), 6, 4, 1, 0.0),
            Item::new(Some("b.jpg".into()), 5, 5, 1, 0.0),
        ],
    )
}

#[test]
fn coco_import_folder_with_rle_polygons_and_tracks() {
    let a_mask = mask_rle(6, 4, 1, 1, 3, 3);
    let coco = json!({
        "images": [
            {"id": 10, "file_name": "sub/a.jpg", "width": 6, "height": 4},
            {"id": 11, "file_name": "b.jpg", "width": 5, "height": 5},
            {"id": 12, "file_name": "unused.jpg", "width": 1, "height": 1}
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 1, "segmentation": {"size": [4, 6], "counts": a_mask.to_coco_string()}},
            {"id": 2, "image_id": 10, "category_id": 2, "segmentation": {"size": [4, 6], "counts": [0, 1, 23]}, "iscrowd": 1},
            {"id": 3, "image_id": 11, "category_id": 2, "segmentation": [[0.5, 0.5, 4.5, 0.5, 4.5, 3.5, 0.5, 3.5]], "score": 0.5}
        ]
    });
    let mut doc = folder_doc();
    let edit = import_coco(&doc, &coco).unwrap();
    let inverse = doc.apply(edit).unwrap();
    let a = &doc.items[0];
    assert_eq!(a.objects.len(), 2);
    assert_eq!(a.objects[0].label, "cat");
    assert_eq!(a.objects[0].frames[&0].mask.as_ref().unwrap(), &a_mask);
    assert_eq!(a.objects[0].frames[&0].source, MaskSource::Imported);
    assert_eq!(a.objects[1].frames[&0].mask.as_ref().unwrap().area(), 1);
    let b = &doc.items[1];
    assert_eq!(b.objects[0].label, "dog");
    assert_eq!(b.objects[0].frames[&0].mask.as_ref().unwrap().area(), 12);
    assert_eq!(b.objects[0].frames[&0].score, Some(0.5));
    doc.apply(inverse).unwrap();
    assert!(
        doc.items.iter().all(|i| i.objects.is_empty()),
        "the import is one undo step"
    );
}

#[test]
fn coco_ids_written_as_whole_floats_match_as_in_python() {
    // pycocotools keys images and categories by value, and 1.0 == 1 in Python; a string "1"
    // stays another id.
    let coco = json!({
        "images": [{"id": 10.0, "file_name": "a.jpg", "width": 6, "height": 4}],
        "categories": [{"id": 2, "name": "dog"}],
        "annotations": [{"id": 1, "image_id": 10, "category_id": 2.0,
                         "segmentation": [[0.5, 0.5, 4.5, 0.5, 4.5, 3.5, 0.5, 3.5]]}]
    });
    let mut doc = folder_doc();
    let edit = import_coco(&doc, &coco).unwrap();
    doc.apply(edit).unwrap();
    assert_eq!(doc.items[0].objects[0].label, "dog");
    let mut strings = coco.clone();
    strings["annotations"][0]["image_id"] = json!("10");
    let err = import_coco(&folder_doc(), &strings)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refers to image 10, which is not listed"),
        "{err}"
    );
    let mut huge = coco.clone();
    huge["annotations"][0]["score"] = json!(1e300);
    let err = import_coco(&folder_doc(), &huge).unwrap_err().to_string();
    assert!(err.contains("within 32-bit float range"), "{err}");
}

/// The frames of item 0 that each object annotates, object after object.
fn annotated_frames(doc: &Document) -> Vec<u64> {
    doc.items[0]
        .objects
        .iter()
        .flat_map(|o| o.frames.keys().copied())
        .collect()
}

#[test]
fn coco_import_video_groups_tracks_and_maps_frames() {
    let mut doc = video_doc();
    let r = |x: u32| json!({"size": [12, 16], "counts": mask_rle(16, 12, x, 2, x + 3, 5).to_coco_string()});
    // Frames from trailing numbers, 1-based (frame_0001 .. frame_0020 for 20 frames).
    let coco = json!({
        "images": [
            {"id": 1, "file_name": "frame_0001.jpg", "width": 16, "height": 12},
            {"id": 2, "file_name": "frame_0002.jpg", "width": 16, "height": 12},
            {"id": 3, "file_name": "frame_0020.jpg", "width": 16, "height": 12}
        ],
        "categories": [{"id": 5, "name": "ball"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "segmentation": r(0), "track_id": 7},
            {"id": 2, "image_id": 2, "category_id": 5, "segmentation": r(1), "track_id": 7},
            {"id": 3, "image_id": 3, "category_id": 5, "segmentation": r(2), "attributes": {"track_id": 7}},
            {"id": 4, "image_id": 2, "category_id": 5, "segmentation": r(9), "instance_id": "x"}
        ]
    });
    doc.apply(import_coco(&doc, &coco).unwrap()).unwrap();
    let objects = &doc.items[0].objects;
    assert_eq!(objects.len(), 2);
    assert_eq!(
        objects[0].frames.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 19]
    );
    assert_eq!(
        objects[1].frames.keys().copied().collect::<Vec<_>>(),
        vec![1]
    );
    // Explicit frame_index wins; 0-based names stay 0-based.
    let coco = json!({
        "images": [
            {"id": 1, "file_name": "f_000.jpg", "frame_index": 4},
            {"id": 2, "file_name": "f_003.jpg"}
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "segmentation": r(0)},
            {"id": 2, "image_id": 2, "segmentation": r(0)}
        ]
    });
    let mut doc = video_doc();
    doc.apply(import_coco(&doc, &coco).unwrap()).unwrap();
    assert_eq!(annotated_frames(&doc), vec![4, 3]);
    assert_eq!(doc.items[0].objects[0].id, 0);
    assert_eq!(doc.items[0].objects[1].id, 1);

    // A folder of frames whose files the project knows: a COCO file naming them (another
    // tool's, without frame_index) maps by name, whatever numbers the names hold.
    let mut doc = video_doc();
    doc.media.kind = MediaKind::Folder;
    doc.items[0].frame_files = (0..20).map(|i| format!("shot{}.jpg", 19 - i)).collect();
    assert!(doc.is_frame_sequence());
    let coco = json!({
        "images": [
            {"id": 1, "file_name": "clip/shot19.jpg"},
            {"id": 2, "file_name": "shot3.jpg"}
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "segmentation": r(0)},
            {"id": 2, "image_id": 2, "segmentation": r(0)}
        ]
    });
    doc.apply(import_coco(&doc, &coco).unwrap()).unwrap();
    assert_eq!(annotated_frames(&doc), vec![0, 16]);
}

#[test]
fn coco_import_errors_are_clear() {
    let doc = folder_doc();
    let cases = [
        (json!({"images": []}), "annotations"),
        (
            json!({"images": [{"id": 1, "file_name": "a.jpg", "width": 7, "height": 4}],
                   "annotations": [{"id": 5, "image_id": 1, "segmentation": [[0, 0, 1, 0, 1, 1]]}]}),
            "7x4",
        ),
        (
            json!({"images": [{"id": 1, "file_name": "a.jpg"}],
                   "annotations": [{"id": 5, "image_id": 1, "segmentation": {"size": [5, 6], "counts": "00"}}]}),
            "annotation 5",
        ),
        (
            json!({"images": [{"id": 1, "file_name": "zzz.jpg"}],
                   "annotations": [{"id": 5, "image_id": 1, "segmentation": []}]}),
            "zzz.jpg",
        ),
        (
            json!({"images": [{"id": 1, "file_name": "a.jpg"}],
                   "annotations": [{"id": 5, "image_id": 2, "segmentation": []}]}),
            "image 2",
        ),
        (
            json!({"images": [{"id": 1, "file_name": "a.jpg"}],
                   "annotations": [{"id": 5, "image_id": 1, "segmentation": {"size": [4, 6], "counts": [1, 2]}}]}),
            "add up",
        ),
    ];
    for (coco, needle) in cases {
        let err = import_coco(&doc, &coco).unwrap_err().to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }
}

#[test]
fn import_project_builds_a_document() {
    let media = MediaRef {
        kind: MediaKind::Image,
        path: "/data/p.png".into(),
        fingerprint: None,
    };
    let coco = json!({
        "images": [{"id": 1, "file_name": "whatever.png", "width": 6, "height": 4}],
        "annotations": [{"id": 1, "image_id": 1, "segmentation": [[1, 1, 5, 1, 5, 3]]}]
    });
    let doc = import_project(media, vec![Item::new(None, 6, 4, 1, 0.0)], &coco).unwrap();
    assert_eq!(doc.items[0].objects.len(), 1);
    assert_eq!(doc.items[0].next_object_id, 1);
    doc.validate().unwrap();
}

#[test]
fn set_mask_edit_keeps_prompts_and_undoes_in_one_step() {
    let mut doc = video_doc();
    doc.apply(doc.add_object_edit(0).unwrap()).unwrap();
    let mut clicked = FrameAnnotation::from_mask(mask_rle(16, 12, 0, 0, 3, 3), MaskSource::Clicked);
    clicked.prompts.points.push(PointPrompt {
        x: 1.0,
        y: 1.0,
        positive: true,
    });
    doc.apply(Edit::SetFrame {
        item: 0,
        id: 0,
        frame: 2,
        annotation: Some(Box::new(clicked)),
    })
    .unwrap();
    let before = doc.clone();
    // One brush stroke: decode, paint, encode, one SetFrame.
    let mut m = doc.object(0, 0).unwrap().frames[&2]
        .mask
        .as_ref()
        .unwrap()
        .to_mask()
        .unwrap();
    m.paint_stroke((5.0, 5.0), (10.0, 8.0), 1.5, true);
    let edit = doc
        .set_mask_edit(0, 0, 2, Rle::from_mask(&m), MaskSource::Painted)
        .unwrap();
    let mut history = History::new(1 << 20);
    history.push(doc.apply(edit).unwrap());
    let a = &doc.object(0, 0).unwrap().frames[&2];
    assert_eq!(a.source, MaskSource::Painted);
    assert_eq!(a.prompts.points.len(), 1);
    assert!(history.undo(&mut doc).unwrap());
    assert_eq!(doc, before);
    assert!(
        doc.set_mask_edit(0, 9, 2, Rle::empty(12, 16), MaskSource::Painted)
            .is_err()
    );
}

#[test]
fn output_paths_that_name_an_input_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.prj.json");
    std::fs::write(&input, b"{}").unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    // The same file spelled differently, through `..`, and through a symbolic link.
    let dotted = sub.join("..").join("a.prj.json");
    assert!(super::check_output_path(&dotted, &[&input]).is_err());
    #[cfg(unix)]
    {
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        assert!(super::check_output_path(&link, &[&input]).is_err());
        let linked_dir = dir.path().join("ld");
        std::os::unix::fs::symlink(&sub, &linked_dir).unwrap();
        // A file that does not exist yet, reached through a linked folder.
        let want = sub.join("new.json");
        assert!(super::same_file(&linked_dir.join("new.json"), &want));
    }
    // Another file, or one not yet written, is fine.
    assert!(super::check_output_path(&dir.path().join("b.json"), &[&input]).is_ok());
    let err = super::check_output_path(&input, &[&dir.path().join("x"), &input]).unwrap_err();
    assert!(err.to_string().contains("one of the inputs"), "{err}");
}

#[test]
fn frame_timestamps_are_checked_used_and_round_trip() {
    let mut doc = video_doc();
    let frames = doc.items[0].frame_count as usize;
    let fps = doc.items[0].fps;
    assert_eq!(doc.items[0].timestamp_secs(2), 2.0 / fps);
    let times: Vec<f64> = (0..frames).map(|i| (i * i) as f64 * 0.25).collect();
    doc.items[0].timestamps_secs = times.clone();
    doc.validate().unwrap();
    assert_eq!(doc.items[0].timestamp_secs(3), 2.25);
    let json = serde_json::to_string(&doc).unwrap();
    let back: Document = serde_json::from_str(&json).unwrap();
    assert_eq!(back.items[0].timestamps_secs, times);
    // Evenly spaced items write no list.
    let plain = serde_json::to_string(&video_doc()).unwrap();
    assert!(!plain.contains("timestamps_secs"));

    let bad = |edit: &dyn Fn(&mut Vec<f64>), want: &str| {
        let mut d = doc.clone();
        edit(&mut d.items[0].timestamps_secs);
        let err = d.validate().unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    };
    bad(&|t| t.truncate(frames - 1), "frame timestamps for");
    bad(&|t| t[1] = f64::NAN, "finite, 0 or more");
    bad(&|t| t[1] = -1.0, "finite, 0 or more");
    bad(&|t| t.swap(1, 2), "go back in time");
}

#[test]
fn frame_rates_are_set_undone_and_refused_when_not_rates() {
    let mut doc = video_doc();
    let inverse = doc
        .apply(Edit::SetFrameRate { item: 0, fps: 12.5 })
        .unwrap();
    assert_eq!(doc.items[0].fps, 12.5);
    assert_eq!(doc.items[0].timestamp_secs(5), 0.4);
    doc.apply(inverse).unwrap();
    assert_eq!(doc.items[0].fps, 10.0);
    for fps in [
        f64::NAN,
        -1.0,
        f64::INFINITY,
        crate::media::MAX_FRAMES_FPS * 2.0,
    ] {
        let err = doc.apply(Edit::SetFrameRate { item: 0, fps }).unwrap_err();
        assert!(err.to_string().contains("not a frame rate"), "{err}");
    }
    assert!(doc.apply(Edit::SetFrameRate { item: 3, fps: 1.0 }).is_err());
    // A variable-rate video's frames carry their own times.
    doc.items[0].timestamps_secs = (0..20).map(|i| f64::from(i) * 0.1 + 0.01).collect();
    let err = doc
        .apply(Edit::SetFrameRate { item: 0, fps: 5.0 })
        .unwrap_err();
    assert!(err.to_string().contains("carry their own times"), "{err}");
    assert_eq!(doc.items[0].fps, 10.0);
}
