//! Exports (DESIGN.md §5): `*.regions.json`, COCO `instances` JSON with compressed RLE
//! segmentations, and one PNG mask per object and frame.
//!
//! The JSON exports are streamed (serde serialisers writing into a buffered temporary file; no
//! whole-document `Value`), then fsynced and renamed into place. PNG masks are encoded row by
//! row straight from the RLE (memory O(width), never width × height), each renamed into place,
//! and made durable with one file-system sync at the end rather than one fsync per file.

use super::ProjectError;
use super::model::{Document, Item, MaskSource, MediaKind, Object, Role};
use crate::mask::{MAX_PNG_SIDE, MaskError, Rle};
use serde::Serialize;
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Format name written in the `format` field of a regions export.
pub const REGIONS_FORMAT: &str = "pixelrefer-studio/regions";
/// Version of the regions export layout.
pub const REGIONS_VERSION: u32 = 1;

// Field order in every serialised struct below is alphabetical: the exports were first written
// through `serde_json::Value` (whose maps sort their keys), and streaming keeps them
// byte-identical.

#[derive(Serialize)]
struct RleOut<'a> {
    counts: String,
    size: &'a [u32; 2],
}

fn rle_out(rle: &Rle) -> RleOut<'_> {
    RleOut {
        counts: rle.to_coco_string(),
        size: &rle.size,
    }
}

fn bbox_of(rle: &Rle) -> [u32; 4] {
    // pycocotools `toBbox` gives [0, 0, 0, 0] for an empty mask.
    rle.bbox().map(|b| b.to_xywh()).unwrap_or([0; 4])
}

/// A sequence serialised lazily from an iterator made by the closure.
struct Seq<F>(F);

impl<F, I> Serialize for Seq<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for element in (self.0)() {
            seq.serialize_element(&element)?;
        }
        seq.end()
    }
}

/// Every question of `item`'s chat with its answers (the assistant turns that follow it,
/// joined by a blank line) and its frame.
fn qa_pairs(item: &Item) -> Vec<(String, String, u64)> {
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
        out.push((turn.text.clone(), answers.join("\n\n"), turn.frame));
    }
    out
}

/// Question/answer pairs of `item`'s chat whose question mentions `tag`: each user turn paired
/// with the assistant turns that follow it (joined by a blank line when there are several).
pub fn qa_turns(item: &Item, tag: &str) -> Vec<(String, String, u64)> {
    qa_pairs(item)
        .into_iter()
        .filter(|(q, _, _)| q.contains(tag))
        .collect()
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
/// string). Streamed to a temporary file, fsynced and renamed: memory does not grow with the
/// number of objects beyond the document itself.
pub fn export_regions(doc: &Document, out_path: &Path) -> Result<(), ProjectError> {
    write_json_streamed(&Regions(doc), out_path)
}

/// The regions export as JSON (what [`export_regions`] writes).
pub fn regions_json(doc: &Document) -> Value {
    serde_json::to_value(Regions(doc)).unwrap_or(Value::Null)
}

struct Regions<'a>(&'a Document);

#[derive(Serialize)]
struct MediaOut<'a> {
    kind: MediaKind,
    path: std::borrow::Cow<'a, str>,
}

impl Serialize for Regions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let doc = self.0;
        let mut st = s.serialize_struct("Regions", 4)?;
        st.serialize_field("format", REGIONS_FORMAT)?;
        st.serialize_field(
            "items",
            &Seq(|| {
                doc.items
                    .iter()
                    .enumerate()
                    .map(move |(index, item)| RegionsItem { doc, index, item })
            }),
        )?;
        st.serialize_field(
            "media",
            &MediaOut {
                kind: doc.media.kind,
                path: doc.media.path.to_string_lossy(),
            },
        )?;
        st.serialize_field("version", &REGIONS_VERSION)?;
        st.end()
    }
}

struct RegionsItem<'a> {
    doc: &'a Document,
    index: usize,
    item: &'a Item,
}

impl Serialize for RegionsItem<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let item = self.item;
        let qa = qa_pairs(item);
        let qa = qa.as_slice();
        let mut st = s.serialize_struct("Item", 7)?;
        st.serialize_field("file", &item_name(self.doc, self.index))?;
        st.serialize_field("fps", &item.fps)?;
        st.serialize_field("frame_count", &item.frame_count)?;
        st.serialize_field("height", &item.height)?;
        st.serialize_field("index", &self.index)?;
        st.serialize_field(
            "objects",
            &Seq(|| {
                item.objects
                    .iter()
                    .map(move |object| RegionsObject { item, object, qa })
            }),
        )?;
        st.serialize_field("width", &item.width)?;
        st.end()
    }
}

struct RegionsObject<'a> {
    item: &'a Item,
    object: &'a Object,
    qa: &'a [(String, String, u64)],
}

#[derive(Serialize)]
struct QaOut<'a> {
    answer: &'a str,
    frame: u64,
    question: &'a str,
}

#[derive(Serialize)]
struct FrameOut<'a> {
    area: u64,
    bbox: [u32; 4],
    index: u64,
    rle: RleOut<'a>,
    score: Option<f64>,
    source: MaskSource,
    timestamp_secs: f64,
}

impl Serialize for RegionsObject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (item, object) = (self.item, self.object);
        let tag = object.tag();
        let tag = tag.as_str();
        let mut st = s.serialize_struct("Object", 7)?;
        st.serialize_field("caption", &object.caption)?;
        st.serialize_field("color", &object.color)?;
        st.serialize_field(
            "frames",
            &Seq(|| {
                object.frames.iter().filter_map(|(&index, annotation)| {
                    let rle = annotation.mask.as_ref()?;
                    Some(FrameOut {
                        area: rle.area(),
                        bbox: bbox_of(rle),
                        index,
                        rle: rle_out(rle),
                        score: annotation.score.map(f64::from),
                        source: annotation.source,
                        timestamp_secs: item.timestamp_secs(index),
                    })
                })
            }),
        )?;
        st.serialize_field("id", &object.id)?;
        st.serialize_field("label", &object.label)?;
        st.serialize_field(
            "qa",
            &Seq(|| {
                self.qa
                    .iter()
                    .filter(move |(q, _, _)| q.contains(tag))
                    .map(|(q, a, frame)| QaOut {
                        answer: a,
                        frame: *frame,
                        question: q,
                    })
            }),
        )?;
        st.serialize_field("tag", tag)?;
        st.end()
    }
}

fn write_json_streamed<T: Serialize>(value: &T, path: &Path) -> Result<(), ProjectError> {
    super::file::write_atomic_with(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value).map_err(std::io::Error::from)?;
        w.write_all(b"\n")
    })
}

/// The COCO `file_name` of frame `frame` of item `index`: the item's file for images and
/// folders, the frame's own file in a folder of frames (when the project knows it), else
/// `<video stem>_<frame:06>.png` for the frames of a video (which also carry `frame_index`).
pub fn coco_file_name(doc: &Document, index: usize, frame: u64) -> String {
    let frame_file = doc.items.get(index).and_then(|item| {
        let f = usize::try_from(frame).ok()?;
        item.frame_files.get(f)
    });
    if let Some(file) = frame_file {
        file.clone()
    } else if doc.is_video() {
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
/// mask, the document's categories (kept from imports: every one, with its id and
/// supercategory) and a category per other distinct label (empty labels become `object`; ids
/// after the largest, in order of use), and an annotation per object and frame with a non-empty
/// mask: RLE segmentation (`counts` compressed), area, bbox, `iscrowd` (1 for a crowd object),
/// plus `track_id` (the object id) and `object_tag`. Streamed like [`export_regions`].
pub fn export_coco(doc: &Document, out_path: &Path) -> Result<(), ProjectError> {
    write_json_streamed(&Coco::new(doc), out_path)
}

/// The COCO export as JSON (what [`export_coco`] writes).
pub fn coco_json(doc: &Document) -> Value {
    serde_json::to_value(Coco::new(doc)).unwrap_or(Value::Null)
}

/// The COCO document. Annotations are serialised first (keys in alphabetical order); while
/// they stream, the images and categories they refer to are collected for the fields after.
struct Coco<'a> {
    doc: &'a Document,
    /// (item, frame) of each image, in id order.
    images: RefCell<Vec<(usize, u64)>>,
    /// Categories for labels the document's categories do not name, in id order.
    categories: RefCell<Vec<(i64, String)>>,
}

impl<'a> Coco<'a> {
    fn new(doc: &'a Document) -> Coco<'a> {
        Coco {
            doc,
            images: RefCell::new(Vec::new()),
            categories: RefCell::new(Vec::new()),
        }
    }
}

#[derive(Serialize)]
struct AnnotationOut<'a> {
    area: u64,
    bbox: [u32; 4],
    category_id: i64,
    id: usize,
    image_id: usize,
    iscrowd: u8,
    object_tag: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f64>,
    segmentation: RleOut<'a>,
    track_id: u32,
}

#[derive(Serialize)]
struct ImageOut {
    file_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    frame_index: Option<u64>,
    height: u32,
    id: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video: Option<String>,
    width: u32,
}

#[derive(Serialize)]
struct CategoryOut<'a> {
    id: i64,
    name: &'a str,
    supercategory: &'a str,
}

#[derive(Serialize)]
struct InfoOut {
    description: &'static str,
    version: &'static str,
}

struct Annotations<'c, 'a>(&'c Coco<'a>);

impl Serialize for Annotations<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let coco = self.0;
        let mut images = coco.images.borrow_mut();
        let mut categories = coco.categories.borrow_mut();
        images.clear();
        categories.clear();
        let mut category_ids: HashMap<&str, i64> = coco
            .doc
            .categories
            .iter()
            .map(|c| (c.name.as_str(), c.id))
            .collect();
        let mut next_category = coco.doc.categories.iter().map(|c| c.id).max().unwrap_or(0);
        let mut next_id = 1;
        let mut seq = s.serialize_seq(None)?;
        for (i, item) in coco.doc.items.iter().enumerate() {
            // Objects with a non-empty mask, by frame, in display order.
            let mut by_frame: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
            for (o, object) in item.objects.iter().enumerate() {
                for (&frame, annotation) in &object.frames {
                    if annotation.mask.as_ref().is_some_and(|m| !m.is_empty()) {
                        by_frame.entry(frame).or_default().push(o);
                    }
                }
            }
            for (frame, objects) in by_frame {
                images.push((i, frame));
                let image_id = images.len();
                for o in objects {
                    let object = &item.objects[o];
                    let Some(annotation) = object.frames.get(&frame) else {
                        continue;
                    };
                    let Some(rle) = annotation.mask.as_ref() else {
                        continue;
                    };
                    let label = if object.label.is_empty() {
                        "object"
                    } else {
                        object.label.as_str()
                    };
                    let category_id = match category_ids.get(label) {
                        Some(&id) => id,
                        None => {
                            next_category = next_category.saturating_add(1);
                            categories.push((next_category, label.to_string()));
                            category_ids.insert(label, next_category);
                            next_category
                        }
                    };
                    seq.serialize_element(&AnnotationOut {
                        area: rle.area(),
                        bbox: bbox_of(rle),
                        category_id,
                        id: next_id,
                        image_id,
                        iscrowd: u8::from(object.crowd),
                        object_tag: object.tag(),
                        score: annotation.score.map(f64::from),
                        segmentation: rle_out(rle),
                        track_id: object.id,
                    })?;
                    next_id += 1;
                }
            }
        }
        seq.end()
    }
}

impl Serialize for Coco<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let doc = self.doc;
        let mut st = s.serialize_struct("Coco", 5)?;
        st.serialize_field("annotations", &Annotations(self))?;
        let categories = self.categories.borrow();
        st.serialize_field(
            "categories",
            &Seq(|| {
                let kept = doc.categories.iter().map(|c| CategoryOut {
                    id: c.id,
                    name: &c.name,
                    supercategory: &c.supercategory,
                });
                kept.chain(categories.iter().map(|(id, name)| CategoryOut {
                    id: *id,
                    name,
                    supercategory: "",
                }))
            }),
        )?;
        let images = self.images.borrow();
        let video = doc.is_video();
        st.serialize_field(
            "images",
            &Seq(|| {
                images.iter().enumerate().map(|(n, &(i, frame))| {
                    let item = &doc.items[i];
                    ImageOut {
                        file_name: coco_file_name(doc, i, frame),
                        frame_index: video.then_some(frame),
                        height: item.height,
                        id: n + 1,
                        timestamp_secs: video.then(|| item.timestamp_secs(frame)),
                        video: video.then(|| media_file_name(doc)),
                        width: item.width,
                    }
                })
            }),
        )?;
        st.serialize_field(
            "info",
            &InfoOut {
                description: "Exported by PixelRefer Studio",
                version: env!("CARGO_PKG_VERSION"),
            },
        )?;
        st.serialize_field("licenses", &[(); 0])?;
        st.end()
    }
}

/// Replaces characters unsafe in file names by `_`.
fn sanitise(name: &str) -> String {
    name.chars()
        .map(|c| {
            if "<>:\"/\\|?*".contains(c) || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn base_item_dir(doc: &Document, index: usize) -> (String, String) {
    let name = match doc.items.get(index).and_then(|i| i.file.clone()) {
        Some(file) => file,
        None => doc
            .media
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "media".into()),
    };
    let mut safe = sanitise(&name);
    if safe.is_empty() || safe == "." || safe == ".." {
        safe = format!("item{index}");
    }
    // Leave room for a disambiguating suffix within the 255-byte name limit.
    let mut cut = safe.len().min(230);
    while !safe.is_char_boundary(cut) {
        cut -= 1;
    }
    safe.truncate(cut);
    (name, safe)
}

/// The folder names of the items in a PNG export, one per item and never two alike (compared
/// without case, for case-insensitive file systems): the item's file name for folders, the
/// media file stem otherwise, with characters unsafe in file names replaced by `_`. Names that
/// needed no change keep it; when two items still map to one name, the later one (or the one
/// that was changed) gets `~<item index>` appended.
pub fn png_item_dirs(doc: &Document) -> Vec<String> {
    let bases: Vec<(String, String)> = (0..doc.items.len())
        .map(|i| base_item_dir(doc, i))
        .collect();
    let mut used: HashSet<String> = HashSet::new();
    let mut out: Vec<Option<String>> = vec![None; bases.len()];
    // Unchanged names first, so `x_1.jpg` keeps its name and `x:1.jpg` is the one renamed.
    for pass in [true, false] {
        for (i, (name, safe)) in bases.iter().enumerate() {
            if (name == safe) != pass {
                continue;
            }
            let mut candidate = safe.clone();
            let mut n = 0;
            while !used.insert(candidate.to_lowercase()) {
                n += 1;
                candidate = if n == 1 {
                    format!("{safe}~{i}")
                } else {
                    format!("{safe}~{i}~{n}")
                };
            }
            out[i] = Some(candidate);
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, n)| n.unwrap_or_else(|| format!("item{i}")))
        .collect()
}

/// Refuses a PNG export into `out_dir` that would write over (or into) one of `inputs`: the
/// folder itself, or an item folder of the export, naming an input or holding one.
fn check_png_outputs(
    out_dir: &Path,
    dirs: &[String],
    inputs: &[&Path],
) -> Result<(), ProjectError> {
    let root = super::file::resolved(out_dir);
    let names: HashSet<String> = dirs.iter().map(|d| d.to_lowercase()).collect();
    for input in inputs {
        let Ok(input) = input.canonicalize() else {
            continue;
        };
        let Ok(rest) = input.strip_prefix(&root) else {
            continue;
        };
        let first = rest
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().to_lowercase());
        let hit = match first {
            None => true,
            Some(first) => names.contains(&first),
        };
        if hit {
            return Err(ProjectError::OutputIsInput {
                out: out_dir.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn sync_error(path: &Path, source: std::io::Error) -> ProjectError {
    ProjectError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes everything written under `dir` durable with one `syncfs` of its file system.
#[cfg(target_os = "linux")]
fn sync_written(dir: &Path, _files: &[PathBuf], _dirs: &[PathBuf]) -> Result<(), ProjectError> {
    use std::os::fd::AsRawFd;
    let d = std::fs::File::open(dir).map_err(|e| sync_error(dir, e))?;
    // SAFETY: `d` stays open for the duration of the call; syncfs only flushes the file system
    // that holds it.
    let rc = unsafe { libc::syncfs(d.as_raw_fd()) };
    if rc != 0 {
        return Err(sync_error(dir, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Makes everything written under `dir` durable: an fsync of each written file, then of each
/// folder (where folders can be opened).
#[cfg(not(target_os = "linux"))]
fn sync_written(dir: &Path, files: &[PathBuf], dirs: &[PathBuf]) -> Result<(), ProjectError> {
    for file in files {
        std::fs::File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(|e| sync_error(file, e))?;
    }
    #[cfg(unix)]
    for d in dirs.iter().map(PathBuf::as_path).chain([dir]) {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(|e| sync_error(d, e))?;
    }
    #[cfg(not(unix))]
    let _ = (dir, dirs);
    Ok(())
}

/// Writes one 0/255 grayscale PNG per object and frame with a mask, at
/// `<out_dir>/<item>/object<N>/<frame:06>.png` ([`png_item_dirs`]; the folder is the object's
/// tag without the angle brackets, which some file systems forbid), and returns how many it
/// wrote; `on_file` sees each file once it is in place.
///
/// Before writing anything it refuses items whose size cannot be a PNG and an export that would
/// write over or into one of `inputs` (the project, its media). Each mask is encoded row by row
/// from its RLE into a hidden staging folder in `out_dir`; only when every file is written are
/// they renamed into place (a failed export, a full disk say, leaves an earlier export as it
/// was and no staged file behind). Then the frame PNGs of an earlier export that this one does
/// not have (a deleted object, a cleared frame) are removed from the item folders, so the folder
/// holds exactly this export; other files are left. The whole export is made durable by one
/// file-system sync at the end.
pub fn write_pngs<F>(
    doc: &Document,
    out_dir: &Path,
    inputs: &[&Path],
    mut on_file: F,
) -> Result<u64, ProjectError>
where
    F: FnMut(&Path),
{
    let dirs = png_item_dirs(doc);
    for (i, item) in doc.items.iter().enumerate() {
        let has_mask = item
            .objects
            .iter()
            .any(|o| o.frames.values().any(|a| a.mask.is_some()));
        let side_ok = |s: u32| (1..=MAX_PNG_SIDE).contains(&s);
        if has_mask && !(side_ok(item.width) && side_ok(item.height)) {
            return Err(ProjectError::Mask(MaskError::Image(format!(
                "item {i} ({}) is {}x{} pixels, which cannot be written as PNG masks",
                item_name(doc, i),
                item.width,
                item.height
            ))));
        }
    }
    check_png_outputs(out_dir, &dirs, inputs)?;
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(ProjectError::Io {
            path: out_dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "it is a file, and PNG masks are written into a folder: give a folder path",
            ),
        });
    }
    std::fs::create_dir_all(out_dir).map_err(|source| ProjectError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    remove_abandoned_staging(out_dir);
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(out_dir)
        .map_err(|source| ProjectError::Io {
            path: out_dir.to_path_buf(),
            source,
        })?;
    // Per item, each object folder with a mask (relative to the item's folder) and its frames.
    let mut planned: Vec<Vec<(String, Vec<u64>)>> = Vec::with_capacity(doc.items.len());
    for (item, dir_name) in doc.items.iter().zip(&dirs) {
        let mut objects = Vec::new();
        for object in &item.objects {
            let object_dir = format!("object{}", object.id);
            let staged = staging.path().join(dir_name).join(&object_dir);
            let mut frames = Vec::new();
            for (&frame, annotation) in &object.frames {
                let Some(rle) = &annotation.mask else {
                    continue;
                };
                if frames.is_empty() {
                    std::fs::create_dir_all(&staged).map_err(|source| ProjectError::Io {
                        path: staged.clone(),
                        source,
                    })?;
                }
                write_png_file(rle, &staged, &staged.join(png_name(frame)))?;
                frames.push(frame);
            }
            if !frames.is_empty() {
                objects.push((object_dir, frames));
            }
        }
        planned.push(objects);
    }
    // Into place: a folder that is not there yet moves whole (one rename), else file by file.
    let mut count = 0u64;
    let mut written: Vec<PathBuf> = Vec::new();
    let mut made_dirs: Vec<PathBuf> = Vec::new();
    let keep_paths = cfg!(not(target_os = "linux"));
    let rename = |from: &Path, to: &Path| {
        move_into_place(from, to).map_err(|source| ProjectError::Io {
            path: to.to_path_buf(),
            source,
        })
    };
    let absent = |p: &Path| std::fs::symlink_metadata(p).is_err();
    for ((item, dir_name), objects) in doc.items.iter().zip(&dirs).zip(&planned) {
        let item_dir = out_dir.join(dir_name);
        let earlier = !absent(&item_dir);
        if !earlier && !objects.is_empty() {
            rename(&staging.path().join(dir_name), &item_dir)?;
        }
        for (object_dir, frames) in objects {
            let dir = item_dir.join(object_dir);
            if earlier {
                let staged = staging.path().join(dir_name).join(object_dir);
                if absent(&dir) {
                    rename(&staged, &dir)?;
                } else {
                    for &frame in frames {
                        rename(&staged.join(png_name(frame)), &dir.join(png_name(frame)))?;
                    }
                }
            }
            if keep_paths {
                made_dirs.push(dir.clone());
            }
            for &frame in frames {
                let path = dir.join(png_name(frame));
                on_file(&path);
                count += 1;
                if keep_paths {
                    written.push(path);
                }
            }
        }
        if earlier {
            remove_stale_pngs(item, &item_dir)?;
        }
    }
    drop(staging);
    sync_written(out_dir, &written, &made_dirs)?;
    Ok(count)
}

/// Renames `from` to `to`. Where `to` is on another file system (an item folder that links to
/// another disk), a folder's files are moved one by one and a file is copied into a temporary
/// file beside `to`, renamed over it, and removed from `from`.
fn move_into_place(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {}
        other => return other,
    }
    if std::fs::symlink_metadata(from)?.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            move_into_place(&entry.path(), &to.join(entry.file_name()))?;
        }
        return std::fs::remove_dir(from);
    }
    let dir = to.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".png.")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    std::io::copy(&mut std::fs::File::open(from)?, tmp.as_file_mut())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(to).map_err(|e| e.error)?;
    std::fs::remove_file(from)
}

/// The name prefix of a PNG export's staging folder in its output folder.
const STAGING_PREFIX: &str = ".png-export.";

/// How long after its creation a staging folder is taken for one a killed export left (no export
/// runs that long; a younger one may be another export's, still running).
const ABANDONED_STAGING: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes the staging folders in `out_dir` last changed [`ABANDONED_STAGING`] ago or more:
/// those of exports that were killed. Best effort: what cannot be removed stays.
fn remove_abandoned_staging(out_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(out_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let staged = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(STAGING_PREFIX));
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= ABANDONED_STAGING);
        if staged && old && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A frame's PNG file name: the frame number with at least 6 digits.
fn png_name(frame: u64) -> String {
    format!("{frame:06}.png")
}

/// Removes from `item_dir` the frame PNGs an earlier export wrote that `item` no longer has: in
/// each `object<N>` folder, the files named like [`png_name`] for frames where object N has no
/// mask (all of them when there is no object N), and the folder once it is empty. Other files
/// and folders are left.
fn remove_stale_pngs(item: &super::Item, item_dir: &Path) -> Result<(), ProjectError> {
    let Ok(entries) = std::fs::read_dir(item_dir) else {
        return Ok(());
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ProjectError::Io { path, source }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix("object"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let object = item.objects.iter().find(|o| o.id == id);
        let dir = entry.path();
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        for file in files.flatten() {
            // Only names this export writes: `png_name` of the number they spell.
            let file_name = file.file_name();
            let Some(frame) = file_name.to_str().and_then(|n| {
                let frame = n.strip_suffix(".png")?.parse::<u64>().ok()?;
                (png_name(frame) == n).then_some(frame)
            }) else {
                continue;
            };
            let current = object
                .and_then(|o| o.frames.get(&frame))
                .is_some_and(|a| a.mask.is_some());
            if !current && file.file_type().is_ok_and(|t| t.is_file()) {
                std::fs::remove_file(file.path()).map_err(io(&file.path()))?;
            }
        }
        // Only an empty folder goes; anything else in it stays.
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(())
}

/// Encodes `rle` into a temporary file in `dir` and renames it to `path` (no fsync: the
/// caller syncs once at the end).
fn write_png_file(rle: &Rle, dir: &Path, path: &Path) -> Result<(), ProjectError> {
    let io = |source: std::io::Error| ProjectError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".png.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    {
        let mut buffered = std::io::BufWriter::with_capacity(64 << 10, tmp.as_file_mut());
        rle.write_png(&mut buffered)?;
        buffered.flush().map_err(io)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// [`write_pngs`] without input checks, returning the files written.
pub fn export_pngs(doc: &Document, out_dir: &Path) -> Result<Vec<PathBuf>, ProjectError> {
    let mut files = Vec::new();
    write_pngs(doc, out_dir, &[], |p| files.push(p.to_path_buf()))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    //! The streamed exports against the `serde_json::Value` builders they replaced (kept here,
    //! unchanged, as the reference), and PNG folder names.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::mask::Mask;
    use crate::project::{ChatTurn, FrameAnnotation, MediaRef};
    use serde_json::json;

    fn rle_json(rle: &Rle) -> Value {
        json!({ "size": rle.size, "counts": rle.to_coco_string() })
    }

    fn bbox_json(rle: &Rle) -> Value {
        // pycocotools `toBbox` gives [0, 0, 0, 0] for an empty mask.
        let b = rle.bbox().map(|b| b.to_xywh()).unwrap_or([0; 4]);
        json!(b)
    }

    /// The regions export as JSON (what [`export_regions`] writes).
    pub fn old_regions_json(doc: &Document) -> Value {
        let items: Vec<Value> = doc
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let objects: Vec<Value> = item
                    .objects
                    .iter()
                    .map(|o| old_object_json(item, o))
                    .collect();
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

    fn old_object_json(item: &Item, object: &Object) -> Value {
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

    /// The COCO export as JSON (what [`export_coco`] writes).
    pub fn old_coco_json(doc: &Document) -> Value {
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
                if doc.is_video() {
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

    fn sample(kind: MediaKind) -> Document {
        let media = MediaRef {
            kind,
            path: "/data/clip \"one\".mp4".into(),
            fingerprint: None,
        };
        let mut items = vec![Item::new(None, 9, 7, 6, 2.5)];
        if kind == MediaKind::Folder {
            items = vec![
                Item::new(Some("a.jpg".into()), 9, 7, 1, 0.0),
                Item::new(Some("b.jpg".into()), 9, 7, 1, f64::NAN),
            ];
        }
        let mut doc = Document::new(media, items);
        for (i, item) in doc.items.iter_mut().enumerate() {
            for id in 0..4u32 {
                let mut o = Object::new(id, ["cat", "", "dog", "cat"][id as usize], [1, 2, 3]);
                o.caption = format!("caption \u{e9} {id}");
                for frame in [0u64, 2, 5] {
                    if frame >= item.frame_count {
                        continue;
                    }
                    let mut m = Mask::new(9, 7);
                    if !(id + frame as u32 + i as u32).is_multiple_of(3) {
                        m.set(id as i64, frame as i64, true);
                        m.set(8, 6, true);
                    }
                    let mut a = FrameAnnotation::from_mask(Rle::from_mask(&m), MaskSource::Clicked);
                    a.score = [None, Some(0.9f32), Some(f32::NAN)][(id as usize + 1) % 3];
                    o.frames.insert(frame, a);
                }
                let mut prompts_only =
                    FrameAnnotation::from_mask(Rle::empty(7, 9), MaskSource::Painted);
                prompts_only.mask = None;
                if item.frame_count > 1 {
                    o.frames.insert(1, prompts_only);
                }
                item.objects.push(o);
            }
            item.next_object_id = 4;
            for (role, text) in [
                (Role::User, "what is <object0> and <object2>?"),
                (Role::Assistant, "a cat"),
                (Role::Assistant, "and a dog"),
                (Role::User, "and <object1>"),
                (Role::Assistant, "nothing"),
                (Role::Assistant, "orphan"),
            ] {
                item.chat.push(ChatTurn {
                    role,
                    text: text.into(),
                    frame: 2,
                    model: None,
                });
            }
        }
        doc
    }

    fn pretty(v: &Value) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(v).unwrap();
        bytes.push(b'\n');
        bytes
    }

    #[test]
    fn streamed_exports_are_byte_identical_to_the_value_builders() {
        let dir = tempfile::tempdir().unwrap();
        for kind in [MediaKind::Video, MediaKind::Folder, MediaKind::Image] {
            let doc = sample(kind);
            let regions = dir.path().join("r.json");
            export_regions(&doc, &regions).unwrap();
            assert_eq!(
                String::from_utf8(std::fs::read(&regions).unwrap()).unwrap(),
                String::from_utf8(pretty(&old_regions_json(&doc))).unwrap(),
                "{kind:?} regions"
            );
            let coco = dir.path().join("c.json");
            export_coco(&doc, &coco).unwrap();
            assert_eq!(
                String::from_utf8(std::fs::read(&coco).unwrap()).unwrap(),
                String::from_utf8(pretty(&old_coco_json(&doc))).unwrap(),
                "{kind:?} coco"
            );
            assert_eq!(regions_json(&doc), old_regions_json(&doc));
            assert_eq!(coco_json(&doc), old_coco_json(&doc));
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 2, "no temporary file is left behind");
    }

    #[test]
    fn a_folder_of_frames_exports_frame_by_frame_like_a_video() {
        let mut doc = sample(MediaKind::Video);
        doc.media.kind = MediaKind::Folder;
        doc.media.path = "/data/clip".into();
        assert!(doc.is_frame_sequence());
        let coco = coco_json(&doc);
        let images = coco["images"].as_array().unwrap();
        let frames: Vec<_> = images.iter().map(|i| i["frame_index"].as_u64()).collect();
        assert_eq!(frames, [Some(0), Some(2), Some(5)]);
        let names: Vec<_> = images.iter().map(|i| i["file_name"].as_str()).collect();
        assert_eq!(
            names,
            [
                Some("clip_000000.png"),
                Some("clip_000002.png"),
                Some("clip_000005.png")
            ]
        );
        assert_eq!(images[2]["timestamp_secs"], 2.0);
        // With the frames' own files known, those are the names.
        doc.items[0].frame_files = (0..doc.items[0].frame_count)
            .map(|i| format!("cam{i}.jpg"))
            .collect();
        let coco = coco_json(&doc);
        let names: Vec<_> = coco["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["file_name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["cam0.jpg", "cam2.jpg", "cam5.jpg"]);
    }

    #[test]
    fn png_item_dirs_never_collide() {
        let media = MediaRef {
            kind: MediaKind::Folder,
            path: "/data/photos".into(),
            fingerprint: None,
        };
        let names = [
            "x:1.jpg",
            "x_1.jpg",
            "X_1.JPG",
            "x?1.jpg",
            "x_1.jpg~0",
            "..",
            "",
        ];
        let items = names
            .iter()
            .map(|n| Item::new(Some(n.to_string()), 4, 4, 1, 0.0))
            .collect();
        let doc = Document::new(media, items);
        let dirs = png_item_dirs(&doc);
        let lower: HashSet<String> = dirs.iter().map(|d| d.to_lowercase()).collect();
        assert_eq!(lower.len(), names.len(), "{dirs:?}");
        assert_eq!(dirs[1], "x_1.jpg", "an unchanged name keeps it");
        assert_eq!(dirs[4], "x_1.jpg~0", "an unchanged name keeps it");
        assert_eq!(dirs[0], "x_1.jpg~0~2", "{dirs:?}");
        assert_eq!(dirs[2], "X_1.JPG~2", "names differing only in case collide");
        assert_eq!(dirs[5], "item5");
        for d in &dirs {
            assert!(!d.contains([':', '?', '/']) && d != "." && d != "..", "{d}");
        }
    }
}
