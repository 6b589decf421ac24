//! Exports (DESIGN.md §5): `*.regions.json`, COCO `instances` JSON with compressed RLE
//! segmentations, and one PNG mask per object and frame. Every file is written atomically.

use super::ProjectError;
use super::file::write_atomic;
use super::model::{Document, Item, MediaKind, Object, Role};
use crate::mask::Rle;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Format name written in the `format` field of a regions export.
pub const REGIONS_FORMAT: &str = "pixelrefer-studio/regions";
/// Version of the regions export layout.
pub const REGIONS_VERSION: u32 = 1;

fn rle_json(rle: &Rle) -> Value {
    json!({ "size": rle.size, "counts": rle.to_coco_string() })
}

fn bbox_json(rle: &Rle) -> Value {
    // pycocotools `toBbox` gives [0, 0, 0, 0] for an empty mask.
    let b = rle.bbox().map(|b| b.to_xywh()).unwrap_or([0; 4]);
    json!(b)
}

/// Question/answer pairs of `item`'s chat whose question mentions `tag`: each user turn paired
/// with the assistant turns that follow it (joined by a blank line when there are several).
pub fn qa_turns(item: &Item, tag: &str) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < item.chat.len() {
        let turn = &item.chat[i];
        i += 1;
        if turn.role != Role::User {
            continue;
        }
        let mut answers = Vec::new();
        while i < item.chat.len() && item.chat[i].role == Role::Assistant {
            answers.push(item.chat[i].text.as_str());
            i += 1;
        }
        if turn.text.contains(tag) {
            out.push((turn.text.clone(), answers.join("\n\n"), turn.frame));
        }
    }
    out
}

fn media_file_name(doc: &Document) -> String {
    doc.media
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "media".into())
}

/// The display name of item `index`: its file inside a folder, else the media file name.
pub fn item_name(doc: &Document, index: usize) -> String {
    match doc.items.get(index).and_then(|i| i.file.clone()) {
        Some(file) => file,
        None => media_file_name(doc),
    }
}

/// Writes the regions export (`*.regions.json`) of `doc` to `out_path`: per item its file,
/// size and fps; per object its tag, label, caption, QA turns and, per frame with a mask, the
/// frame index, timestamp, bbox `[x, y, w, h]`, area and RLE (`counts` as the COCO compressed
/// string).
pub fn export_regions(doc: &Document, out_path: &Path) -> Result<(), ProjectError> {
    let value = regions_json(doc);
    write_json(&value, out_path)
}

/// The regions export as JSON (what [`export_regions`] writes).
pub fn regions_json(doc: &Document) -> Value {
    let items: Vec<Value> = doc
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let objects: Vec<Value> = item.objects.iter().map(|o| object_json(item, o)).collect();
            json!({
                "index": i,
                "file": item_name(doc, i),
                "width": item.width,
                "height": item.height,
                "frame_count": item.frame_count,
                "fps": item.fps,
                "objects": objects,
            })
        })
        .collect();
    json!({
        "format": REGIONS_FORMAT,
        "version": REGIONS_VERSION,
        "media": {
            "kind": doc.media.kind,
            "path": doc.media.path.to_string_lossy(),
        },
        "items": items,
    })
}

fn object_json(item: &Item, object: &Object) -> Value {
    let tag = object.tag();
    let qa: Vec<Value> = qa_turns(item, &tag)
        .into_iter()
        .map(|(q, a, frame)| json!({ "question": q, "answer": a, "frame": frame }))
        .collect();
    let frames: Vec<Value> = object
        .frames
        .iter()
        .filter_map(|(&index, annotation)| {
            let rle = annotation.mask.as_ref()?;
            Some(json!({
                "index": index,
                "timestamp_secs": item.timestamp_secs(index),
                "bbox": bbox_json(rle),
                "area": rle.area(),
                "rle": rle_json(rle),
                "source": annotation.source,
                "score": annotation.score,
            }))
        })
        .collect();
    json!({
        "id": object.id,
        "tag": tag,
        "label": object.label,
        "caption": object.caption,
        "color": object.color,
        "qa": qa,
        "frames": frames,
    })
}

fn write_json(value: &Value, path: &Path) -> Result<(), ProjectError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| ProjectError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// The COCO `file_name` of frame `frame` of item `index`: the item's file for images and
/// folders, `<video stem>_<frame:06>.png` for video frames (which also carry `frame_index`).
pub fn coco_file_name(doc: &Document, index: usize, frame: u64) -> String {
    if doc.media.kind == MediaKind::Video {
        let stem = doc
            .media
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "video".into());
        format!("{stem}_{frame:06}.png")
    } else {
        item_name(doc, index)
    }
}

/// Writes COCO `instances` JSON: an image per item and frame that has at least one non-empty
/// mask, a category per distinct label (empty labels become `object`), and an annotation per
/// object and frame with a non-empty mask: RLE segmentation (`counts` compressed), area, bbox,
/// `iscrowd: 0`, plus `track_id` (the object id) and `object_tag`.
pub fn export_coco(doc: &Document, out_path: &Path) -> Result<(), ProjectError> {
    write_json(&coco_json(doc), out_path)
}

/// The COCO export as JSON (what [`export_coco`] writes).
pub fn coco_json(doc: &Document) -> Value {
    let mut categories: Vec<String> = Vec::new();
    let mut images = Vec::new();
    let mut annotations = Vec::new();
    for (i, item) in doc.items.iter().enumerate() {
        let mut frames: Vec<u64> = item
            .objects
            .iter()
            .flat_map(|o| o.frames.iter())
            .filter(|(_, a)| a.mask.as_ref().is_some_and(|m| !m.is_empty()))
            .map(|(&f, _)| f)
            .collect();
        frames.sort_unstable();
        frames.dedup();
        for frame in frames {
            let image_id = images.len() + 1;
            let mut image = json!({
                "id": image_id,
                "file_name": coco_file_name(doc, i, frame),
                "width": item.width,
                "height": item.height,
            });
            if doc.media.kind == MediaKind::Video {
                image["frame_index"] = json!(frame);
                image["timestamp_secs"] = json!(item.timestamp_secs(frame));
                image["video"] = json!(media_file_name(doc));
            }
            images.push(image);
            for object in &item.objects {
                let Some(rle) = object.frames.get(&frame).and_then(|a| a.mask.as_ref()) else {
                    continue;
                };
                if rle.is_empty() {
                    continue;
                }
                let label = if object.label.is_empty() {
                    "object".to_string()
                } else {
                    object.label.clone()
                };
                let category_id = match categories.iter().position(|c| *c == label) {
                    Some(p) => p + 1,
                    None => {
                        categories.push(label);
                        categories.len()
                    }
                };
                let mut ann = json!({
                    "id": annotations.len() + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    "segmentation": rle_json(rle),
                    "area": rle.area(),
                    "bbox": bbox_json(rle),
                    "iscrowd": 0,
                    "track_id": object.id,
                    "object_tag": object.tag(),
                });
                if let Some(score) = object.frames.get(&frame).and_then(|a| a.score) {
                    ann["score"] = json!(score);
                }
                annotations.push(ann);
            }
        }
    }
    let categories: Vec<Value> = categories
        .iter()
        .enumerate()
        .map(|(i, name)| json!({ "id": i + 1, "name": name, "supercategory": "" }))
        .collect();
    json!({
        "info": {
            "description": "Exported by PixelRefer Studio",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "licenses": [],
        "images": images,
        "categories": categories,
        "annotations": annotations,
    })
}

/// The folder name of item `index` in a PNG export: the item's file name for folders, the
/// media file stem otherwise; characters unsafe in file names are replaced by `_`.
pub fn png_item_dir(doc: &Document, index: usize) -> String {
    let name = match doc.items.get(index).and_then(|i| i.file.clone()) {
        Some(file) => file,
        None => doc
            .media
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "media".into()),
    };
    let safe: String = name
        .chars()
        .map(|c| {
            if "<>:\"/\\|?*".contains(c) || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if safe.is_empty() || safe == "." || safe == ".." {
        format!("item{index}")
    } else {
        safe
    }
}

/// Writes one 0/255 grayscale PNG per object and frame with a mask, at
/// `<out_dir>/<item>/object<N>/<frame:06>.png` ([`png_item_dir`]; the folder is the object's
/// tag without the angle brackets, which some file systems forbid). Returns the files written.
pub fn export_pngs(doc: &Document, out_dir: &Path) -> Result<Vec<PathBuf>, ProjectError> {
    let mut written = Vec::new();
    for (i, item) in doc.items.iter().enumerate() {
        let item_dir = out_dir.join(png_item_dir(doc, i));
        for object in &item.objects {
            let dir = item_dir.join(format!("object{}", object.id));
            for (&frame, annotation) in &object.frames {
                let Some(rle) = &annotation.mask else {
                    continue;
                };
                std::fs::create_dir_all(&dir).map_err(|source| ProjectError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let path = dir.join(format!("{frame:06}.png"));
                let bytes = rle.to_mask()?.to_png_bytes()?;
                write_atomic(&path, &bytes)?;
                written.push(path);
            }
        }
    }
    Ok(written)
}
