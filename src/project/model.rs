//! Document data types. Serialised as the project file (`*.prj.json`, DESIGN.md §5).

use crate::mask::Rle;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Reading 32-bit fields of user files (projects, `track` prompt files) as JSON numbers of any
/// size, narrowed to f32 (±inf beyond its range) as serde_json does without its exact float
/// parsing (`float_roundtrip`, which this crate enables so that f64 fields such as fps reload to
/// the same bits). With it, an out-of-range number in an f32 field would be refused with only a
/// line and column; narrowed, the loaders' checks refuse it naming the object and frame.
pub(crate) mod wide_f32 {
    use serde::{Deserialize, Deserializer};

    pub fn points3<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[f32; 3]>, D::Error> {
        Vec::<[f64; 3]>::deserialize(d)
            .map(|v| v.into_iter().map(|p| p.map(|x| x as f32)).collect())
    }

    pub fn one<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        f64::deserialize(d).map(|v| v as f32)
    }

    pub fn maybe<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
        Option::<f64>::deserialize(d).map(|v| v.map(|v| v as f32))
    }

    pub fn bbox<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[f32; 4]>, D::Error> {
        Option::<[f64; 4]>::deserialize(d).map(|v| v.map(|b| b.map(|v| v as f32)))
    }
}

/// Current project schema version. Older versions must keep loading (tests/fixtures/projects).
///
/// * 1: the first format; RLE `counts` written as lists of run lengths.
/// * 2: RLE `counts` written as COCO compressed strings (pycocotools `rleToString`), which makes
///   long videos' projects several times smaller.
pub const PROJECT_VERSION: u32 = 2;

/// Largest width or height of an item, in pixels. The `media` module refuses larger images
/// (`media::MAX_IMAGE_SIDE`), and 8K video is 7680×4320, so no real media is refused.
pub const MAX_ITEM_SIDE: u32 = 16_384;

/// Largest area of an item, in pixels (the largest square item): one mask bitmap of it is
/// 256 MiB, its RGBA frame 1 GiB, which is what `media` allows too (`media::MAX_IMAGE_PIXELS`).
/// Nothing a project file says can make the program allocate more per mask.
pub const MAX_ITEM_PIXELS: u64 = 256 << 20;

/// Most frames an item may have: about 155 hours at 30 fps.
pub const MAX_ITEM_FRAMES: u64 = 1 << 24;

/// Overlay colours handed to new objects, in order; chosen to be distinct on photos.
pub const PALETTE: [Rgb; 12] = [
    [230, 25, 75],
    [60, 180, 75],
    [255, 225, 25],
    [0, 130, 200],
    [245, 130, 48],
    [145, 30, 180],
    [70, 240, 240],
    [240, 50, 230],
    [210, 245, 60],
    [250, 190, 212],
    [0, 128, 128],
    [170, 110, 40],
];

/// What kind of media a project annotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// One still image: one item with one frame.
    Image,
    /// A video: one item with many frames.
    Video,
    /// A folder of images: one item per image, each with its own objects; or the folder's
    /// images as the frames of one video: one item without a file name, a frame per image in
    /// natural order ([`Document::is_frame_sequence`]).
    Folder,
}

/// Identifies media content so a moved or replaced file is noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// File size in bytes.
    pub size_bytes: u64,
    /// sha256 (hex) of the first and last MiB of the file plus its size.
    pub sha256_head_tail: String,
}

/// The media a project refers to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaRef {
    /// Image, video or folder.
    pub kind: MediaKind,
    /// Path to the file or folder; stored relative to the project file when possible.
    pub path: std::path::PathBuf,
    /// Fingerprint of the file (None for folders; each item carries its own).
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
}

/// One annotated unit: the single image, the video, or one image of a folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// File name inside the folder (folders only), else None.
    #[serde(default)]
    pub file: Option<String>,
    /// Fingerprint of this item's file (folders only).
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
    /// Displayed width in pixels (after rotation).
    pub width: u32,
    /// Displayed height in pixels (after rotation).
    pub height: u32,
    /// Number of frames (1 for images).
    pub frame_count: u64,
    /// Frames per second (0 for images).
    #[serde(default)]
    pub fps: f64,
    /// Presentation time of each frame from the first, in seconds, for a video whose frames are
    /// not evenly spaced at `fps` (variable frame rate); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timestamps_secs: Vec<f64>,
    /// The file name of each frame, in frame order, for a folder of frames
    /// ([`Document::is_frame_sequence`]); empty otherwise (and in projects saved before it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frame_files: Vec<String>,
    /// Objects in display order.
    pub objects: Vec<Object>,
    /// Next object id to hand out; ids (and so tags) are never reused.
    pub next_object_id: u32,
    /// Chat history about this item.
    #[serde(default)]
    pub chat: Vec<ChatTurn>,
}

impl Item {
    /// An item without objects or chat.
    pub fn new(file: Option<String>, width: u32, height: u32, frame_count: u64, fps: f64) -> Item {
        Item {
            file,
            fingerprint: None,
            width,
            height,
            frame_count,
            fps,
            timestamps_secs: Vec::new(),
            frame_files: Vec::new(),
            objects: Vec::new(),
            next_object_id: 0,
            chat: Vec::new(),
        }
    }

    /// The object with id `id`.
    pub fn object(&self, id: u32) -> Option<&Object> {
        self.objects.iter().find(|o| o.id == id)
    }

    /// Display position of object `id`.
    pub fn object_index(&self, id: u32) -> Option<usize> {
        self.objects.iter().position(|o| o.id == id)
    }

    /// Timestamp of frame `frame` in seconds: its presentation time for a variable-frame-rate
    /// video (`timestamps_secs`), else `frame / fps`; 0 for images or unknown fps.
    pub fn timestamp_secs(&self, frame: u64) -> f64 {
        if let Some(t) = usize::try_from(frame)
            .ok()
            .and_then(|f| self.timestamps_secs.get(f))
        {
            *t
        } else if self.fps > 0.0 && self.fps.is_finite() {
            frame as f64 / self.fps
        } else {
            0.0
        }
    }
}

/// An RGB colour.
pub type Rgb = [u8; 3];

/// A referred object: a tag for chat, a label, display state and masks per frame.
///
/// Reading one refuses a `frames` map that names a frame twice (`"1"` and `"01"` are the same
/// frame) instead of keeping the last, and keys that are not frame numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ObjectRepr")]
pub struct Object {
    /// Stable id; the tag is `<object{id}>`.
    pub id: u32,
    /// Human label ("dog", "left hand").
    #[serde(default)]
    pub label: String,
    /// Overlay colour.
    pub color: Rgb,
    /// Hidden objects are not drawn.
    #[serde(default)]
    pub hidden: bool,
    /// Locked objects cannot be edited by tools.
    #[serde(default)]
    pub locked: bool,
    /// Caption (from "Describe" or typed).
    #[serde(default)]
    pub caption: String,
    /// Per-frame annotation keyed by frame index.
    #[serde(default)]
    pub frames: BTreeMap<u64, FrameAnnotation>,
    /// A crowd region (COCO `iscrowd: 1`), kept from an import for the COCO export.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub crowd: bool,
}

impl Object {
    /// A new object without masks.
    pub fn new(id: u32, label: impl Into<String>, color: Rgb) -> Object {
        Object {
            id,
            label: label.into(),
            color,
            hidden: false,
            locked: false,
            caption: String::new(),
            frames: BTreeMap::new(),
            crowd: false,
        }
    }

    /// Label, colour, hidden, locked, caption and crowd flag.
    pub fn props(&self) -> ObjectProps {
        ObjectProps {
            label: self.label.clone(),
            color: self.color,
            hidden: self.hidden,
            locked: self.locked,
            caption: self.caption.clone(),
            crowd: self.crowd,
        }
    }

    /// The object's masks by frame, in frame order (frames with prompts only are left out).
    pub fn masks(&self) -> Vec<(u64, crate::mask::Rle)> {
        self.frames
            .iter()
            .filter_map(|(&f, a)| Some((f, a.mask.clone()?)))
            .collect()
    }

    /// The chat tag, `<objectN>`.
    pub fn tag(&self) -> String {
        format!("<object{}>", self.id)
    }
}

/// [`Object`] as written in the file, with its frames in file order (keys as written), so a
/// repeated frame can be refused with the object's tag.
#[derive(Deserialize)]
struct ObjectRepr {
    id: u32,
    #[serde(default)]
    label: String,
    color: Rgb,
    #[serde(default)]
    hidden: bool,
    #[serde(default)]
    locked: bool,
    #[serde(default)]
    caption: String,
    #[serde(default)]
    frames: FramesRepr,
    #[serde(default)]
    crowd: bool,
}

/// The entries of a `frames` map in file order, duplicates kept.
#[derive(Default)]
struct FramesRepr(Vec<(String, FrameAnnotation)>);

impl<'de> Deserialize<'de> for FramesRepr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = FramesRepr;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map from frame numbers to annotations")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FramesRepr, A::Error> {
                let mut out = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, FrameAnnotation>()? {
                    out.push((key, value));
                }
                Ok(FramesRepr(out))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

impl TryFrom<ObjectRepr> for Object {
    type Error = String;

    fn try_from(repr: ObjectRepr) -> Result<Object, String> {
        let tag = format!("<object{}>", repr.id);
        let mut frames: BTreeMap<u64, FrameAnnotation> = BTreeMap::new();
        let mut keys: BTreeMap<u64, String> = BTreeMap::new();
        for (key, annotation) in repr.frames.0 {
            let frame = parse_frame_key(&key)
                .ok_or_else(|| format!("{tag}: the frame key {key:?} is not a frame number"))?;
            if let Some(first) = keys.get(&frame) {
                return Err(format!(
                    "{tag}: frame {frame} is given twice in \"frames\" (as {first:?} and \
                     {key:?}); keep one"
                ));
            }
            keys.insert(frame, key);
            frames.insert(frame, annotation);
        }
        Ok(Object {
            id: repr.id,
            label: repr.label,
            color: repr.color,
            hidden: repr.hidden,
            locked: repr.locked,
            caption: repr.caption,
            frames,
            crowd: repr.crowd,
        })
    }
}

/// A frame number written as decimal digits (leading zeros allowed, nothing else).
fn parse_frame_key(key: &str) -> Option<u64> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse().ok()
}

/// How a mask was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskSource {
    /// From clicks/boxes through SAM 2 on this frame.
    Clicked,
    /// Propagated by the SAM 2 video tracker.
    Propagated,
    /// Painted with brush, polygon or fill tools.
    Painted,
    /// Imported from another tool (COCO).
    Imported,
}

impl MaskSource {
    /// Whether the mask was given by the person (painted or imported) rather than computed by
    /// SAM 2: the tracker takes it as input and never replaces it.
    pub fn is_given(self) -> bool {
        matches!(self, MaskSource::Painted | MaskSource::Imported)
    }
}

/// A SAM point prompt in image pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PointPrompt {
    /// Column in image pixels (sub-pixel allowed).
    #[serde(deserialize_with = "wide_f32::one")]
    pub x: f32,
    /// Row in image pixels.
    #[serde(deserialize_with = "wide_f32::one")]
    pub y: f32,
    /// True for a positive (include) click, false for negative.
    pub positive: bool,
}

/// SAM prompts on one object and frame.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prompts {
    /// Clicks in order.
    #[serde(default)]
    pub points: Vec<PointPrompt>,
    /// Box `[x0, y0, x1, y1]` in image pixels.
    #[serde(default, deserialize_with = "wide_f32::bbox")]
    pub bbox: Option<[f32; 4]>,
}

impl Prompts {
    /// True when there are no points and no box.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.bbox.is_none()
    }
}

/// One object's state on one frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameAnnotation {
    /// The mask (None when only prompts exist so far).
    #[serde(default)]
    pub mask: Option<Rle>,
    /// How the mask was made.
    pub source: MaskSource,
    /// Model score (IoU prediction or object score), when a model made it.
    #[serde(default, deserialize_with = "wide_f32::maybe")]
    pub score: Option<f32>,
    /// Prompts placed on this frame.
    #[serde(default)]
    pub prompts: Prompts,
    /// Model that produced the mask (`ModelRecord::id`), if any.
    #[serde(default)]
    pub model: Option<String>,
}

impl FrameAnnotation {
    /// An annotation holding `mask`, made by `source`, without prompts, score or model.
    pub fn from_mask(mask: crate::mask::Rle, source: MaskSource) -> FrameAnnotation {
        FrameAnnotation {
            mask: Some(mask),
            source,
            score: None,
            prompts: Prompts::default(),
            model: None,
        }
    }
}

/// Who said a chat turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person.
    User,
    /// The model.
    Assistant,
}

/// One message in the chat panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTurn {
    /// Speaker.
    pub role: Role,
    /// Text, with `<objectN>` tags as typed.
    pub text: String,
    /// Frame the question was asked on (images: 0).
    #[serde(default)]
    pub frame: u64,
    /// Model that answered (`ModelRecord::id`), for assistant turns.
    #[serde(default)]
    pub model: Option<String>,
}

/// A COCO category kept from an import, so the COCO export gives a label its imported id and
/// supercategory (labels without one get new ids after the largest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// The COCO category id.
    pub id: i64,
    /// The category name, matched against object labels.
    pub name: String,
    /// The COCO supercategory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub supercategory: String,
}

/// A model that produced something in this project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Short id referenced by annotations and chat turns.
    pub id: String,
    /// Manifest kind (`sam2`, `pixelrefer`, `pixelrefer-lite`).
    pub kind: String,
    /// Manifest variant.
    pub variant: String,
    /// sha256 per graph file.
    pub files: BTreeMap<String, String>,
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Schema version, [`PROJECT_VERSION`] when written by this build.
    pub version: u32,
    /// The media.
    pub media: MediaRef,
    /// Items: 1 for an image or video, one per image for a folder.
    pub items: Vec<Item>,
    /// Models used.
    #[serde(default)]
    pub models: Vec<ModelRecord>,
    /// COCO categories from imports, by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<Category>,
}

/// A change to the document. Applying one returns its inverse, so undo is applying the inverse.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Insert `object` into item `item` at display position `index`.
    AddObject {
        /// Item index.
        item: usize,
        /// Display position.
        index: usize,
        /// The object (its id must be unused).
        object: Box<Object>,
    },
    /// Remove object `id` from item `item`.
    RemoveObject {
        /// Item index.
        item: usize,
        /// Object id.
        id: u32,
    },
    /// Replace label, colour, hidden, locked and caption of an object (frames untouched).
    SetObjectProps {
        /// Item index.
        item: usize,
        /// Object id.
        id: u32,
        /// New properties.
        props: ObjectProps,
    },
    /// Move object `id` to display position `index`.
    MoveObject {
        /// Item index.
        item: usize,
        /// Object id.
        id: u32,
        /// New display position.
        index: usize,
    },
    /// Set (Some) or clear (None) the annotation of an object on a frame.
    SetFrame {
        /// Item index.
        item: usize,
        /// Object id.
        id: u32,
        /// Frame index.
        frame: u64,
        /// New annotation.
        annotation: Option<Box<FrameAnnotation>>,
    },
    /// Replace the chat of item `item`.
    SetChat {
        /// Item index.
        item: usize,
        /// The new chat history.
        chat: Vec<ChatTurn>,
    },
    /// Replace the list of models used.
    SetModels(Vec<ModelRecord>),
    /// Replace the COCO categories `from` (what the edit was built against) with `to`. Refused
    /// when the document's list is no longer `from`: an import built from an older snapshot
    /// (two imports at once) would otherwise drop the categories the other one added.
    SetCategories {
        /// The list the edit expects to replace.
        from: Vec<Category>,
        /// The new list.
        to: Vec<Category>,
    },
    /// Set the frame rate of item `item`, a clip whose frames carry no times of their own (a
    /// folder of frames, the pages of a TIFF): frames per second, 0 for unknown.
    SetFrameRate {
        /// Item index.
        item: usize,
        /// Frames per second, 0 to [`crate::media::MAX_FRAMES_FPS`].
        fps: f64,
    },
    /// Several edits applied as one undo step (a propagation, an import). Applied in order; if
    /// one fails, the ones before it are rolled back.
    Batch(Vec<Edit>),
}

/// The editable properties of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectProps {
    /// Label.
    pub label: String,
    /// Colour.
    pub color: Rgb,
    /// Hidden.
    pub hidden: bool,
    /// Locked.
    pub locked: bool,
    /// Caption.
    pub caption: String,
    /// A crowd region (COCO `iscrowd: 1`).
    pub crowd: bool,
}
