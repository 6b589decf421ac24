//! Document data types. Serialised as the project file (`*.prj.json`, DESIGN.md §5).

use crate::mask::Rle;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Current project schema version. Older versions must keep loading (tests/fixtures/projects).
pub const PROJECT_VERSION: u32 = 1;

/// What kind of media a project annotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// One still image: one item with one frame.
    Image,
    /// A video: one item with many frames.
    Video,
    /// A folder of images: one item per image, each with its own objects.
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
    /// Objects in display order.
    pub objects: Vec<Object>,
    /// Next object id to hand out; ids (and so tags) are never reused.
    pub next_object_id: u32,
    /// Chat history about this item.
    #[serde(default)]
    pub chat: Vec<ChatTurn>,
}

/// An RGB colour.
pub type Rgb = [u8; 3];

/// A referred object: a tag for chat, a label, display state and masks per frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

impl Object {
    /// The chat tag, `<objectN>`.
    pub fn tag(&self) -> String {
        format!("<object{}>", self.id)
    }
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

/// A SAM point prompt in image pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PointPrompt {
    /// Column in image pixels (sub-pixel allowed).
    pub x: f32,
    /// Row in image pixels.
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
    #[serde(default)]
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
    #[serde(default)]
    pub score: Option<f32>,
    /// Prompts placed on this frame.
    #[serde(default)]
    pub prompts: Prompts,
    /// Model that produced the mask (`ModelRecord::id`), if any.
    #[serde(default)]
    pub model: Option<String>,
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
    /// Several edits applied as one undo step (a propagation, an import).
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
}
