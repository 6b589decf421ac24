//! Importing COCO `instances` JSON made by other tools as an undoable [`Edit::Batch`].
//!
//! Images map to items by `file_name` (folders), or to frames of a video by their
//! `frame_index` / `frame_id` field, else the trailing number of `file_name`, else their order.
//! Segmentations may be compressed or uncompressed RLE or polygons (rasterised as pycocotools
//! does). Annotations are grouped into objects by `track_id`, `instance_id` or
//! `attributes.track_id`; without one each annotation becomes its own object.

use super::ProjectError;
use super::model::{
    Document, Edit, FrameAnnotation, Item, MaskSource, MediaKind, MediaRef, Object, PALETTE,
};
use crate::mask::{Mask, Rle};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Reads a COCO JSON file.
pub fn read_coco(path: &Path) -> Result<Value, ProjectError> {
    let bytes = std::fs::read(path).map_err(|source| ProjectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ProjectError::Import(format!("{} is not valid JSON: {e}", path.display())))
}

/// A fresh document for `media` and `items` holding the objects of `coco`
/// (see [`import_coco`]).
pub fn import_project(
    media: MediaRef,
    items: Vec<Item>,
    coco: &Value,
) -> Result<Document, ProjectError> {
    let mut doc = Document::new(media, items);
    let edit = import_coco(&doc, coco)?;
    doc.apply(edit)?;
    Ok(doc)
}

fn key_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(format!("s:{s}")),
        _ => None,
    }
}

fn basename(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// The number at the end of a file name's stem (`frame_000123.jpg` → 123).
fn trailing_number(name: &str) -> Option<u64> {
    let base = basename(name);
    let stem = match base.rfind('.') {
        Some(dot) if dot > 0 => &base[..dot],
        _ => base,
    };
    let digits: String = stem
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    if digits.is_empty() {
        return None;
    }
    digits.chars().rev().collect::<String>().parse().ok()
}

struct Target {
    item: usize,
    frame: u64,
}

/// Maps COCO image ids to (item, frame) of `doc`.
fn map_images(
    doc: &Document,
    images: &[Value],
) -> Result<BTreeMap<String, Result<Target, String>>, ProjectError> {
    let mut out = BTreeMap::new();
    let name_of = |img: &Value| {
        img.get("file_name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    // Trailing-number frames are 0-based unless they look 1-based (min 1, max = frame count).
    let frame_count = doc.items.first().map(|i| i.frame_count).unwrap_or(0);
    let numbers: Vec<u64> = images
        .iter()
        .filter_map(|i| trailing_number(&name_of(i)))
        .collect();
    let (lo, hi) = (numbers.iter().min().copied(), numbers.iter().max().copied());
    let one_based = matches!((lo, hi), (Some(lo), Some(hi)) if lo >= 1 && hi == frame_count);
    for (order, img) in images.iter().enumerate() {
        let id = img
            .get("id")
            .and_then(key_of)
            .ok_or_else(|| ProjectError::Import(format!("COCO image {order} has no id")))?;
        let name = name_of(img);
        let target = match doc.media.kind {
            MediaKind::Folder => doc
                .items
                .iter()
                .position(|it| it.file.as_deref() == Some(name.as_str()))
                .or_else(|| {
                    doc.items
                        .iter()
                        .position(|it| it.file.as_deref().map(basename) == Some(basename(&name)))
                })
                .map(|item| Target { item, frame: 0 })
                .ok_or_else(|| format!("COCO image {name:?} is not in the folder")),
            MediaKind::Image => {
                let media_name = doc
                    .media
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                if images.len() == 1 || media_name.as_deref() == Some(basename(&name)) {
                    Ok(Target { item: 0, frame: 0 })
                } else {
                    Err(format!("COCO image {name:?} is not the project's image"))
                }
            }
            MediaKind::Video => {
                let explicit = img
                    .get("frame_index")
                    .or_else(|| img.get("frame_id"))
                    .and_then(Value::as_u64);
                let frame = explicit
                    .or_else(|| {
                        trailing_number(&name)
                            .filter(|_| numbers.len() == images.len())
                            .map(|n| if one_based { n - 1 } else { n })
                    })
                    .unwrap_or(order as u64);
                Ok(Target { item: 0, frame })
            }
        };
        out.insert(id, target);
    }
    Ok(out)
}

/// Parses a COCO segmentation for an `height × width` image.
pub fn parse_segmentation(seg: &Value, height: u32, width: u32) -> Result<Rle, String> {
    match seg {
        Value::Object(map) => {
            let size = map
                .get("size")
                .and_then(Value::as_array)
                .and_then(|s| Some([s.first()?.as_u64()?, s.get(1)?.as_u64()?]))
                .ok_or("an RLE segmentation without a [height, width] size")?;
            if size != [height as u64, width as u64] {
                return Err(format!(
                    "the RLE is {}x{} (w x h) but the image is {width}x{height}",
                    size[1], size[0]
                ));
            }
            match map.get("counts") {
                Some(Value::String(s)) => {
                    Rle::from_coco_string(s, height, width).map_err(|e| e.to_string())
                }
                Some(Value::Array(a)) => {
                    let counts = a
                        .iter()
                        .map(|c| c.as_u64().and_then(|c| u32::try_from(c).ok()))
                        .collect::<Option<Vec<u32>>>()
                        .ok_or("uncompressed RLE counts must be non-negative integers")?;
                    let rle = Rle {
                        size: [height, width],
                        counts,
                    };
                    rle.validate().map_err(|e| e.to_string())?;
                    Ok(rle)
                }
                _ => Err("an RLE segmentation without counts".into()),
            }
        }
        Value::Array(list) => {
            let as_numbers = |v: &Value| -> Option<Vec<f64>> {
                v.as_array()?.iter().map(Value::as_f64).collect()
            };
            let polys: Vec<Vec<f64>> = if list.iter().all(Value::is_number) {
                vec![as_numbers(seg).unwrap_or_default()]
            } else {
                list.iter()
                    .map(as_numbers)
                    .collect::<Option<_>>()
                    .ok_or("a polygon segmentation must be a list of lists of numbers")?
            };
            Rle::from_polygons(&polys, height, width).map_err(|e| e.to_string())
        }
        _ => Err("the segmentation is neither RLE nor polygons".into()),
    }
}

fn track_key(ann: &Value) -> Option<String> {
    ann.get("track_id")
        .or_else(|| ann.get("instance_id"))
        .or_else(|| ann.get("attributes").and_then(|a| a.get("track_id")))
        .and_then(key_of)
}

struct Pending {
    item: usize,
    label: String,
    frames: BTreeMap<u64, (Rle, Option<f32>)>,
}

/// An [`Edit::Batch`] adding to `doc` one object per COCO track (or per annotation without a
/// track id), with imported masks on their frames; labels come from the categories. Errors
/// name the offending annotation: an image that maps to no item or frame, a size mismatch,
/// a malformed segmentation.
pub fn import_coco(doc: &Document, coco: &Value) -> Result<Edit, ProjectError> {
    let err = |m: String| ProjectError::Import(m);
    let images = coco
        .get("images")
        .and_then(Value::as_array)
        .ok_or_else(|| err("the COCO file has no \"images\" list".into()))?;
    let annotations = coco
        .get("annotations")
        .and_then(Value::as_array)
        .ok_or_else(|| err("the COCO file has no \"annotations\" list".into()))?;
    let mut categories: BTreeMap<String, String> = BTreeMap::new();
    for c in coco
        .get("categories")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(id), Some(name)) = (
            c.get("id").and_then(key_of),
            c.get("name").and_then(Value::as_str),
        ) {
            categories.insert(id, name.to_string());
        }
    }
    let targets = map_images(doc, images)?;
    let sizes: BTreeMap<String, (Option<u64>, Option<u64>, String)> = images
        .iter()
        .filter_map(|img| {
            Some((
                img.get("id").and_then(key_of)?,
                (
                    img.get("width").and_then(Value::as_u64),
                    img.get("height").and_then(Value::as_u64),
                    img.get("file_name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ),
            ))
        })
        .collect();

    let mut order: Vec<(usize, String)> = Vec::new();
    let mut pending: BTreeMap<(usize, String), Pending> = BTreeMap::new();
    for (n, ann) in annotations.iter().enumerate() {
        let ann_name = match ann.get("id").and_then(key_of) {
            Some(id) => format!("annotation {}", id.trim_start_matches("s:")),
            None => format!("annotation #{n}"),
        };
        let image_id = ann
            .get("image_id")
            .and_then(key_of)
            .ok_or_else(|| err(format!("{ann_name} has no image_id")))?;
        let target = match targets.get(&image_id) {
            Some(Ok(t)) => t,
            Some(Err(why)) => return Err(err(format!("{ann_name}: {why}"))),
            None => {
                return Err(err(format!(
                    "{ann_name} refers to image {image_id}, which is not listed"
                )));
            }
        };
        let item = doc.item(target.item)?;
        if target.frame >= item.frame_count.max(1) {
            return Err(err(format!(
                "{ann_name}: frame {} is outside the media ({} frames)",
                target.frame, item.frame_count
            )));
        }
        if let Some((w, h, name)) = sizes.get(&image_id)
            && (w.is_some_and(|w| w != item.width as u64)
                || h.is_some_and(|h| h != item.height as u64))
        {
            return Err(err(format!(
                "{ann_name}: COCO image {name:?} is {}x{} but the media is {}x{}",
                w.unwrap_or(0),
                h.unwrap_or(0),
                item.width,
                item.height
            )));
        }
        let seg = ann
            .get("segmentation")
            .ok_or_else(|| err(format!("{ann_name} has no segmentation")))?;
        let rle = parse_segmentation(seg, item.height, item.width)
            .map_err(|why| err(format!("{ann_name}: {why}")))?;
        let label = ann
            .get("category_id")
            .and_then(key_of)
            .and_then(|c| categories.get(&c).cloned())
            .unwrap_or_default();
        let score = ann.get("score").and_then(Value::as_f64).map(|s| s as f32);
        let key = (
            target.item,
            match track_key(ann) {
                Some(t) => format!("track {t}"),
                None => format!("ann {n}"),
            },
        );
        let entry = pending.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            Pending {
                item: target.item,
                label,
                frames: BTreeMap::new(),
            }
        });
        match entry.frames.get_mut(&target.frame) {
            Some((existing, _)) => {
                // Two annotations of one track on one frame: keep their union.
                let mut mask: Mask = existing.to_mask()?;
                mask.union(&rle.to_mask()?)?;
                *existing = Rle::from_mask(&mask);
            }
            None => {
                entry.frames.insert(target.frame, (rle, score));
            }
        }
    }

    let mut next: BTreeMap<usize, (u32, usize, usize)> = BTreeMap::new();
    let mut edits = Vec::new();
    for key in order {
        let Some(p) = pending.remove(&key) else {
            continue;
        };
        let item = doc.item(p.item)?;
        let (id, index, colour) = next.entry(p.item).or_insert_with(|| {
            let id = item
                .next_object_id
                .max(item.objects.iter().map(|o| o.id + 1).max().unwrap_or(0));
            (id, item.objects.len(), item.objects.len())
        });
        let mut object = Object::new(*id, p.label, PALETTE[*colour % PALETTE.len()]);
        for (frame, (rle, score)) in p.frames {
            let mut a = FrameAnnotation::from_mask(rle, MaskSource::Imported);
            a.score = score;
            object.frames.insert(frame, a);
        }
        edits.push(Edit::AddObject {
            item: p.item,
            index: *index,
            object: Box::new(object),
        });
        *id += 1;
        *index += 1;
        *colour += 1;
    }
    Ok(Edit::Batch(edits))
}
