//! Importing COCO `instances` JSON made by other tools as an undoable [`Edit::Batch`].
//!
//! Images map to items by `file_name` (folders), or to frames of a video by their
//! `frame_index` / `frame_id` field, else (a folder of frames) the frame whose file is named,
//! else the trailing number of `file_name`, else their order.
//! Segmentations may be compressed or uncompressed RLE or polygons (rasterised as pycocotools
//! does). Annotations are grouped into objects by `track_id`, `instance_id` or
//! `attributes.track_id`; without one each annotation becomes its own object.
//!
//! What pycocotools refuses is refused here too, with a sentence naming the annotation: empty
//! segmentations, polygons of fewer than 3 points, RLE whose runs do not add up to the image.
//! So is what would import silently wrong: a segmentation that covers no pixel, a bbox outside
//! the image, a `frame_index` that is not a frame number, an image id used twice, a score that
//! is not a number within 32-bit float range.

use super::ProjectError;
use super::model::{
    Category, Document, Edit, FrameAnnotation, Item, MaskSource, MediaKind, MediaRef, Object,
    PALETTE,
};
use crate::mask::Rle;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Largest COCO file [`read_coco`] reads: 1 GiB. COCO 2017's largest file (train instances) is
/// 448 MiB; a parsed document takes several times its size in memory.
pub const MAX_COCO_BYTES: u64 = 1 << 30;

/// How far (in pixels) a bbox may reach outside the image before it is refused: exporters
/// round outward, so one pixel of slack.
const BBOX_SLACK: f64 = 1.0;

/// Reads a COCO JSON file: a regular file (not a FIFO, device or folder) of at most
/// [`MAX_COCO_BYTES`].
pub fn read_coco(path: &Path) -> Result<Value, ProjectError> {
    let bytes = super::file::read_bounded(path, MAX_COCO_BYTES)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ProjectError::Import(format!("{} is not valid JSON: {e}", path.display())))
}

/// Refuses an import output that names one of its inputs: the media (for a folder, also each of
/// its images, `items`) or the COCO file. Call it before reading anything.
pub fn check_import_output(
    out: &Path,
    media: &MediaRef,
    items: &[Item],
    coco: &Path,
) -> Result<(), ProjectError> {
    super::file::check_output_path(out, &[&media.path, coco])?;
    if media.kind == MediaKind::Folder
        && let Some(parent) = out.parent()
    {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        // Only an output inside the media folder can name one of its images.
        let inside = super::file::same_file(parent, &media.path)
            || items
                .iter()
                .any(|i| i.file.as_deref().is_some_and(|f| f.contains(['/', '\\'])));
        if inside {
            for file in items.iter().filter_map(|i| i.file.as_deref()) {
                super::file::check_output_path(out, &[&media.path.join(file)])?;
            }
        }
    }
    Ok(())
}

fn key_of(v: &Value) -> Option<String> {
    match v {
        // `1.0` and `1` are one id, as in Python (pycocotools keys its dicts by the value).
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(format!("{}", f as i64)),
            _ => Some(n.to_string()),
        },
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

/// Maps COCO image ids to (item, frame) of `doc`, or to why the image maps to none.
fn map_images(
    doc: &Document,
    images: &[Value],
) -> Result<HashMap<String, Result<Target, String>>, ProjectError> {
    let mut out = HashMap::with_capacity(images.len());
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
    // Folder items by full file name and by base name (the first item wins on both).
    let mut by_file: HashMap<&str, usize> = HashMap::new();
    let mut by_base: HashMap<&str, usize> = HashMap::new();
    if doc.media.kind == MediaKind::Folder {
        for (i, item) in doc.items.iter().enumerate() {
            if let Some(file) = item.file.as_deref() {
                by_file.entry(file).or_insert(i);
                by_base.entry(basename(file)).or_insert(i);
            }
        }
    }
    // The frames of a folder of frames by file name (the first frame wins).
    let mut frame_files: HashMap<&str, u64> = HashMap::new();
    if let Some(item) = doc.items.first().filter(|_| doc.is_frame_sequence()) {
        for (frame, file) in item.frame_files.iter().enumerate() {
            frame_files.entry(file.as_str()).or_insert(frame as u64);
        }
    }
    let media_name = doc
        .media
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let mut first_order: HashMap<String, usize> = HashMap::with_capacity(images.len());
    for (order, img) in images.iter().enumerate() {
        let id = img
            .get("id")
            .and_then(key_of)
            .ok_or_else(|| ProjectError::Import(format!("COCO image {order} has no id")))?;
        if let Some(first) = first_order.insert(id.clone(), order) {
            return Err(ProjectError::Import(format!(
                "COCO images {first} and {order} share the id {}",
                id.trim_start_matches("s:")
            )));
        }
        let name = name_of(img);
        // A folder of frames is matched like a video, by frame index (as it is exported).
        let kind = if doc.is_frame_sequence() {
            MediaKind::Video
        } else {
            doc.media.kind
        };
        let target = match kind {
            MediaKind::Folder => by_file
                .get(name.as_str())
                .or_else(|| by_base.get(basename(&name)))
                .map(|&item| Target { item, frame: 0 })
                .ok_or_else(|| format!("COCO image {name:?} is not in the folder")),
            MediaKind::Image => {
                if images.len() == 1 || media_name.as_deref() == Some(basename(&name)) {
                    Ok(Target { item: 0, frame: 0 })
                } else {
                    Err(format!("COCO image {name:?} is not the project's image"))
                }
            }
            MediaKind::Video => {
                let field = ["frame_index", "frame_id"]
                    .into_iter()
                    .find_map(|k| img.get(k).map(|v| (k, v)));
                match field {
                    Some((key, v)) => match v.as_u64() {
                        Some(frame) => Ok(Target { item: 0, frame }),
                        None => Err(format!(
                            "COCO image {name:?} has {key} {v}, which is not a frame number \
                             (a whole number from 0)"
                        )),
                    },
                    None if frame_files.contains_key(basename(&name)) => Ok(Target {
                        item: 0,
                        frame: frame_files[basename(&name)],
                    }),
                    None => {
                        let frame = trailing_number(&name)
                            .filter(|_| numbers.len() == images.len())
                            .map(|n| if one_based { n - 1 } else { n })
                            .unwrap_or(order as u64);
                        Ok(Target { item: 0, frame })
                    }
                }
            }
        };
        out.insert(id, target);
    }
    Ok(out)
}

/// Parses a COCO segmentation for an `height × width` image: compressed or uncompressed RLE
/// (whose runs must add up to height × width), or polygons (a list of `[x0, y0, x1, y1, …]`
/// lists, or one flat list), each of at least 3 points, merged as pycocotools does.
pub fn parse_segmentation(seg: &Value, height: u32, width: u32) -> Result<Rle, String> {
    match seg {
        Value::Object(map) => {
            let size = map
                .get("size")
                .and_then(Value::as_array)
                .filter(|s| s.len() == 2)
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
            if list.is_empty() {
                return Err("the segmentation is an empty list".into());
            }
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
            let mut merged: Option<Rle> = None;
            for (n, poly) in polys.iter().enumerate() {
                if poly.len() < 6 {
                    return Err(format!(
                        "polygon {n} has {} coordinates; a polygon needs at least 3 points (6 \
                         numbers)",
                        poly.len()
                    ));
                }
                let rle = Rle::from_polygon(poly, height, width).map_err(|e| e.to_string())?;
                merged = Some(
                    match merged {
                        None => rle.canonical(),
                        Some(m) => m.union_rle(&rle),
                    }
                    .map_err(|e| e.to_string())?,
                );
            }
            merged.ok_or_else(|| "the segmentation has no polygon".into())
        }
        _ => Err("the segmentation is neither RLE nor polygons".into()),
    }
}

/// Checks an annotation's optional `bbox`: four finite numbers, width and height not negative,
/// inside the `width × height` image (with [`BBOX_SLACK`]).
fn check_bbox(ann: &Value, width: u32, height: u32) -> Result<(), String> {
    let Some(b) = ann.get("bbox") else {
        return Ok(());
    };
    let nums: Option<Vec<f64>> = b
        .as_array()
        .filter(|a| a.len() == 4)
        .and_then(|a| a.iter().map(Value::as_f64).collect());
    let Some([x, y, w, h]) = nums.and_then(|n| <[f64; 4]>::try_from(n).ok()) else {
        return Err(format!(
            "its bbox {b} is not four numbers [x, y, width, height]"
        ));
    };
    let (iw, ih) = (width as f64, height as f64);
    let inside = w >= 0.0
        && h >= 0.0
        && x >= -BBOX_SLACK
        && y >= -BBOX_SLACK
        && x + w <= iw + BBOX_SLACK
        && y + h <= ih + BBOX_SLACK;
    if !inside {
        return Err(format!(
            "its bbox {b} lies outside the {width}x{height} image"
        ));
    }
    Ok(())
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
    crowd: bool,
    frames: BTreeMap<u64, (Rle, Option<f32>)>,
}

/// A COCO category id as a number: an integer, or a float with no fraction (`1.0`), read as
/// [`key_of`] keys it (a string id has none).
fn category_id(v: &Value) -> Option<i64> {
    key_of(v)?.parse().ok()
}

/// The entries of a COCO file's `categories` list that have an id and a name as text:
/// (entry, id, name).
fn named_categories(coco: &Value) -> impl Iterator<Item = (&Value, &Value, &str)> {
    coco.get("categories")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c, c.get("id")?, c.get("name")?.as_str()?)))
}

/// The categories of a COCO file that have a number for id and a name, by id (a later entry
/// with an id replaces an earlier one, as pycocotools keys them).
fn file_categories(coco: &Value) -> Vec<Category> {
    let mut by_id: BTreeMap<i64, Category> = BTreeMap::new();
    for (c, id, name) in named_categories(coco) {
        let Some(id) = category_id(id) else {
            continue;
        };
        let supercategory = c
            .get("supercategory")
            .and_then(Value::as_str)
            .unwrap_or_default();
        by_id.insert(
            id,
            Category {
                id,
                name: name.to_string(),
                supercategory: supercategory.to_string(),
            },
        );
    }
    by_id.into_values().collect()
}

/// `existing` with the categories of an imported file added, by id: a name the document already
/// has keeps the document's id, a new name keeps the file's id when no category uses it, else
/// it gets the next id after the largest.
pub fn merged_categories(existing: &[Category], file: &[Category]) -> Vec<Category> {
    let mut out = existing.to_vec();
    for c in file {
        if out.iter().any(|e| e.name == c.name) {
            continue;
        }
        let mut added = c.clone();
        if out.iter().any(|e| e.id == c.id) {
            let largest = out.iter().map(|e| e.id).max().unwrap_or(0);
            added.id = largest.saturating_add(1);
        }
        out.push(added);
    }
    out.sort_by_key(|c| c.id);
    out
}

/// COCO's `iscrowd`: 1 (or `1.0`, `true`) is a crowd region.
fn is_crowd(ann: &Value) -> bool {
    match ann.get("iscrowd") {
        Some(Value::Bool(b)) => *b,
        Some(v) => v.as_f64() == Some(1.0),
        None => false,
    }
}

/// The objects a COCO file adds to `doc`, in order, with their item; ids continue after the
/// item's.
fn imported_objects(doc: &Document, coco: &Value) -> Result<Vec<(usize, Object)>, ProjectError> {
    let err = |m: String| ProjectError::Import(m);
    let images = coco
        .get("images")
        .and_then(Value::as_array)
        .ok_or_else(|| err("the COCO file has no \"images\" list".into()))?;
    let annotations = coco
        .get("annotations")
        .and_then(Value::as_array)
        .ok_or_else(|| err("the COCO file has no \"annotations\" list".into()))?;
    let categories: HashMap<String, String> = named_categories(coco)
        .filter_map(|(_, id, name)| Some((key_of(id)?, name.to_string())))
        .collect();
    let targets = map_images(doc, images)?;
    let sizes: HashMap<String, (Option<u64>, Option<u64>, &str)> = images
        .iter()
        .filter_map(|img| {
            Some((
                img.get("id").and_then(key_of)?,
                (
                    img.get("width").and_then(Value::as_u64),
                    img.get("height").and_then(Value::as_u64),
                    img.get("file_name").and_then(Value::as_str).unwrap_or(""),
                ),
            ))
        })
        .collect();

    let mut order: Vec<(usize, String)> = Vec::new();
    let mut pending: HashMap<(usize, String), Pending> = HashMap::new();
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
                    "{ann_name} refers to image {}, which is not listed",
                    image_id.trim_start_matches("s:")
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
        if rle.is_empty() {
            return Err(err(format!(
                "{ann_name}: its segmentation covers no pixel of the {}x{} image",
                item.width, item.height
            )));
        }
        check_bbox(ann, item.width, item.height)
            .map_err(|why| err(format!("{ann_name}: {why}")))?;
        let label = ann
            .get("category_id")
            .and_then(key_of)
            .and_then(|c| categories.get(&c).cloned())
            .unwrap_or_default();
        let score = match ann.get("score") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let s = v.as_f64().map(|s| s as f32).filter(|s| s.is_finite());
                Some(s.ok_or_else(|| {
                    err(format!(
                        "{ann_name}: its score {v} is not a number within 32-bit float range"
                    ))
                })?)
            }
        };
        let key = (
            target.item,
            match track_key(ann) {
                Some(t) => format!("track {t}"),
                None => format!("ann {n}"),
            },
        );
        let entry = pending.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Pending {
                item: target.item,
                label,
                crowd: false,
                frames: BTreeMap::new(),
            }
        });
        entry.crowd |= is_crowd(ann);
        match entry.frames.get_mut(&target.frame) {
            Some((existing, _)) => {
                // Two annotations of one track on one frame: keep their union.
                *existing = existing.union_rle(&rle)?;
            }
            None => {
                entry.frames.insert(target.frame, (rle, score));
            }
        }
    }

    let mut next: HashMap<usize, (u32, usize)> = HashMap::new();
    let mut objects = Vec::with_capacity(order.len());
    for key in order {
        let Some(p) = pending.remove(&key) else {
            continue;
        };
        let item = doc.item(p.item)?;
        let (id, colour) = next.entry(p.item).or_insert_with(|| {
            let id = item
                .next_object_id
                .max(item.objects.iter().map(|o| o.id + 1).max().unwrap_or(0));
            (id, item.objects.len())
        });
        let mut object = Object::new(*id, p.label, PALETTE[*colour % PALETTE.len()]);
        object.crowd = p.crowd;
        for (frame, (rle, score)) in p.frames {
            let mut a = FrameAnnotation::from_mask(rle, MaskSource::Imported);
            a.score = score;
            object.frames.insert(frame, a);
        }
        objects.push((p.item, object));
        *id = id
            .checked_add(1)
            .ok_or_else(|| err(format!("item {} has run out of object ids", p.item)))?;
        *colour += 1;
    }
    Ok(objects)
}

/// An [`Edit::Batch`] adding to `doc` one object per COCO track (or per annotation without a
/// track id), with imported masks on their frames; labels come from the categories, which join
/// the document's ([`merged_categories`], one more edit in the batch when they change). Errors
/// name the offending annotation: an image that maps to no item or frame, a size mismatch,
/// a malformed or empty segmentation, a bbox outside the image.
pub fn import_coco(doc: &Document, coco: &Value) -> Result<Edit, ProjectError> {
    let mut index: HashMap<usize, usize> = HashMap::new();
    let mut edits = Vec::new();
    let categories = merged_categories(&doc.categories, &file_categories(coco));
    if categories != doc.categories {
        edits.push(Edit::SetCategories {
            from: doc.categories.clone(),
            to: categories,
        });
    }
    for (item, object) in imported_objects(doc, coco)? {
        let at = index
            .entry(item)
            .or_insert_with(|| doc.items.get(item).map_or(0, |i| i.objects.len()));
        edits.push(Edit::AddObject {
            item,
            index: *at,
            object: Box::new(object),
        });
        *at += 1;
    }
    Ok(Edit::Batch(edits))
}

/// A fresh document for `media` and `items` holding the objects of `coco` (see
/// [`import_coco`]), checked with [`Document::validate`]. Builds the objects in place rather
/// than through one edit per object, so a file of many annotations imports in linear time.
pub fn import_project(
    media: MediaRef,
    items: Vec<Item>,
    coco: &Value,
) -> Result<Document, ProjectError> {
    let mut doc = Document::new(media, items);
    doc.categories = merged_categories(&[], &file_categories(coco));
    for (item, object) in imported_objects(&doc, coco)? {
        let it = doc
            .items
            .get_mut(item)
            .ok_or_else(|| ProjectError::NotFound(format!("there is no item {item}")))?;
        it.next_object_id = it.next_object_id.max(object.id.saturating_add(1));
        it.objects.push(object);
    }
    doc.validate()?;
    Ok(doc)
}
