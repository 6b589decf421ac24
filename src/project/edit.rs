//! Applying edits (each returns its inverse) and the memory-bounded undo/redo history.

use super::ProjectError;
use super::model::{
    Document, Edit, FrameAnnotation, Item, MAX_ITEM_FRAMES, MAX_ITEM_PIXELS, MAX_ITEM_SIDE,
    MediaKind, MediaRef, Object, ObjectProps, PALETTE, PROJECT_VERSION,
};
use std::collections::VecDeque;

impl Document {
    /// A new document for `media` with `items` (one for an image or video, one per image of a
    /// folder).
    pub fn new(media: MediaRef, items: Vec<Item>) -> Document {
        Document {
            version: PROJECT_VERSION,
            media,
            items,
            models: Vec::new(),
            categories: Vec::new(),
        }
    }

    /// True when the media is a folder whose images are the frames of one video: one item,
    /// without a file name, with a frame per image (the app's *Open folder as video*, `track`
    /// on a folder).
    pub fn is_frame_sequence(&self) -> bool {
        self.media.kind == MediaKind::Folder
            && matches!(self.items.as_slice(), [item] if item.file.is_none())
    }

    /// True for a video, or a folder of frames ([`Document::is_frame_sequence`]): one item whose
    /// frames are a clip, exported and imported by frame index.
    pub fn is_video(&self) -> bool {
        self.media.kind == MediaKind::Video || self.is_frame_sequence()
    }

    /// Item `item`, or a not-found error naming it.
    pub fn item(&self, item: usize) -> Result<&Item, ProjectError> {
        self.items.get(item).ok_or_else(|| {
            ProjectError::NotFound(format!(
                "item {item} does not exist (the project has {})",
                self.items.len()
            ))
        })
    }

    fn item_mut(&mut self, item: usize) -> Result<&mut Item, ProjectError> {
        let count = self.items.len();
        self.items.get_mut(item).ok_or_else(|| {
            ProjectError::NotFound(format!(
                "item {item} does not exist (the project has {count})"
            ))
        })
    }

    /// Object `id` of item `item`, or a not-found error naming it.
    pub fn object(&self, item: usize, id: u32) -> Result<&Object, ProjectError> {
        self.item(item)?
            .object(id)
            .ok_or_else(|| missing_object(item, id))
    }

    /// An [`Edit::AddObject`] appending a new, empty object to item `item`: the next unused id
    /// and the first palette colour no object of the item uses yet.
    pub fn add_object_edit(&self, item: usize) -> Result<Edit, ProjectError> {
        let it = self.item(item)?;
        let id = it
            .next_object_id
            .max(it.objects.iter().map(|o| o.id + 1).max().unwrap_or(0));
        let color = PALETTE
            .iter()
            .find(|c| !it.objects.iter().any(|o| &o.color == *c))
            .copied()
            .unwrap_or(PALETTE[id as usize % PALETTE.len()]);
        Ok(Edit::AddObject {
            item,
            index: it.objects.len(),
            object: Box::new(Object::new(id, String::new(), color)),
        })
    }

    /// An [`Edit::SetFrame`] replacing the mask of object `id` on `frame` (after a brush stroke,
    /// a polygon, a fill), keeping the prompts already placed on that frame; score and model
    /// are cleared. (Model results carry their own prompts, score and model: build the
    /// [`Edit::SetFrame`] directly.)
    pub fn set_mask_edit(
        &self,
        item: usize,
        id: u32,
        frame: u64,
        mask: crate::mask::Rle,
        source: super::model::MaskSource,
    ) -> Result<Edit, ProjectError> {
        let object = self.object(item, id)?;
        let prompts = object
            .frames
            .get(&frame)
            .map(|a| a.prompts.clone())
            .unwrap_or_default();
        Ok(Edit::SetFrame {
            item,
            id,
            frame,
            annotation: Some(Box::new(FrameAnnotation {
                mask: Some(mask),
                source,
                score: None,
                prompts,
                model: None,
            })),
        })
    }

    /// Checks invariants a loaded or imported document must hold: a media path, one item for
    /// an image or a video (at least one for a folder), item sizes of at least 1×1 and within
    /// [`MAX_ITEM_SIDE`] and [`MAX_ITEM_PIXELS`], 1 to [`MAX_ITEM_FRAMES`] frames, a finite
    /// fps of 0 or more, unique object ids below `next_object_id`, frames inside the item,
    /// masks of the item's size with valid runs, finite scores and prompt coordinates.
    pub fn validate(&self) -> Result<(), ProjectError> {
        let invalid = |m: String| Err(ProjectError::InvalidEdit(m));
        if self.media.path.as_os_str().is_empty() {
            return invalid("the media path is empty".into());
        }
        match (self.media.kind, self.items.len()) {
            (_, 0) => return invalid("the project has no items".into()),
            (MediaKind::Image | MediaKind::Video, n) if n != 1 => {
                return invalid(format!(
                    "a project of one {} has {n} items instead of 1",
                    if self.media.kind == MediaKind::Image {
                        "image"
                    } else {
                        "video"
                    }
                ));
            }
            _ => {}
        }
        for (i, item) in self.items.iter().enumerate() {
            check_item(item, i)?;
            let mut seen = std::collections::BTreeSet::new();
            for object in &item.objects {
                if !seen.insert(object.id) {
                    return Err(ProjectError::InvalidEdit(format!(
                        "item {i} has two objects with id {}",
                        object.id
                    )));
                }
                if object.id >= item.next_object_id {
                    return Err(ProjectError::InvalidEdit(format!(
                        "item {i}: object id {} is not below next_object_id {}",
                        object.id, item.next_object_id
                    )));
                }
                check_object(item, i, object)?;
                for (&frame, annotation) in &object.frames {
                    check_numbers(i, object.id, frame, annotation)?;
                }
            }
        }
        check_categories(&self.categories)
    }

    /// Applies `edit` and returns its inverse. On error the document is unchanged.
    pub fn apply(&mut self, edit: Edit) -> Result<Edit, ProjectError> {
        match edit {
            Edit::AddObject {
                item,
                index,
                object,
            } => {
                let it = self.item_mut(item)?;
                // Every id in use is below next_object_id (load and this edit keep it so): a
                // fresh id needs no scan, which keeps a batch of many additions linear.
                if object.id < it.next_object_id && it.object(object.id).is_some() {
                    return Err(ProjectError::InvalidEdit(format!(
                        "item {item} already has an object with id {}",
                        object.id
                    )));
                }
                if index > it.objects.len() {
                    return Err(ProjectError::InvalidEdit(format!(
                        "cannot insert an object at position {index} of {}",
                        it.objects.len()
                    )));
                }
                check_object(it, item, &object)?;
                let id = object.id;
                // Ids are never reused: undoing an AddObject leaves next_object_id as it is.
                it.next_object_id = it.next_object_id.max(id.saturating_add(1));
                it.objects.insert(index, *object);
                Ok(Edit::RemoveObject { item, id })
            }
            Edit::RemoveObject { item, id } => {
                let it = self.item_mut(item)?;
                let index = it
                    .object_index(id)
                    .ok_or_else(|| missing_object(item, id))?;
                let object = it.objects.remove(index);
                Ok(Edit::AddObject {
                    item,
                    index,
                    object: Box::new(object),
                })
            }
            Edit::SetObjectProps { item, id, props } => {
                let it = self.item_mut(item)?;
                let object = it
                    .objects
                    .iter_mut()
                    .find(|o| o.id == id)
                    .ok_or_else(|| missing_object(item, id))?;
                let old = object.props();
                let ObjectProps {
                    label,
                    color,
                    hidden,
                    locked,
                    caption,
                    crowd,
                } = props;
                object.label = label;
                object.color = color;
                object.hidden = hidden;
                object.locked = locked;
                object.caption = caption;
                object.crowd = crowd;
                Ok(Edit::SetObjectProps {
                    item,
                    id,
                    props: old,
                })
            }
            Edit::MoveObject { item, id, index } => {
                let it = self.item_mut(item)?;
                let old = it
                    .object_index(id)
                    .ok_or_else(|| missing_object(item, id))?;
                if index >= it.objects.len() {
                    return Err(ProjectError::InvalidEdit(format!(
                        "cannot move an object to position {index} of {}",
                        it.objects.len()
                    )));
                }
                let object = it.objects.remove(old);
                it.objects.insert(index, object);
                Ok(Edit::MoveObject {
                    item,
                    id,
                    index: old,
                })
            }
            Edit::SetFrame {
                item,
                id,
                frame,
                annotation,
            } => {
                let it = self.item_mut(item)?;
                match &annotation {
                    Some(a) => check_frame(it, item, id, frame, a)?,
                    None => check_frame_index(it, item, id, frame)?,
                }
                let object = it
                    .objects
                    .iter_mut()
                    .find(|o| o.id == id)
                    .ok_or_else(|| missing_object(item, id))?;
                let old = match annotation {
                    Some(a) => object.frames.insert(frame, *a),
                    None => object.frames.remove(&frame),
                };
                Ok(Edit::SetFrame {
                    item,
                    id,
                    frame,
                    annotation: old.map(Box::new),
                })
            }
            Edit::SetChat { item, chat } => {
                let it = self.item_mut(item)?;
                let old = std::mem::replace(&mut it.chat, chat);
                Ok(Edit::SetChat { item, chat: old })
            }
            Edit::SetModels(models) => {
                let old = std::mem::replace(&mut self.models, models);
                Ok(Edit::SetModels(old))
            }
            Edit::SetCategories { from, to } => {
                if self.categories != from {
                    return Err(ProjectError::InvalidEdit(
                        "the project's categories changed after this change was prepared \
                         (another import?); do it again"
                            .into(),
                    ));
                }
                check_categories(&to)?;
                let old = std::mem::replace(&mut self.categories, to.clone());
                Ok(Edit::SetCategories { from: to, to: old })
            }
            Edit::SetFrameRate { item, fps } => {
                crate::media::check_frame_rate(fps).map_err(ProjectError::InvalidEdit)?;
                let it = self.item_mut(item)?;
                if !it.timestamps_secs.is_empty() {
                    return Err(ProjectError::InvalidEdit(format!(
                        "the frames of item {item} carry their own times, which give its rate"
                    )));
                }
                let old = std::mem::replace(&mut it.fps, fps);
                Ok(Edit::SetFrameRate { item, fps: old })
            }
            Edit::Batch(edits) => {
                let mut inverses: Vec<Edit> = Vec::with_capacity(edits.len());
                for (n, edit) in edits.into_iter().enumerate() {
                    match self.apply(edit) {
                        Ok(inverse) => inverses.push(inverse),
                        Err(err) => {
                            // Roll back so a failed batch leaves the document unchanged.
                            for inverse in inverses.into_iter().rev() {
                                if let Err(rollback) = self.apply(inverse) {
                                    log::error!("rolling back a failed batch: {rollback}");
                                }
                            }
                            return Err(match err {
                                ProjectError::InvalidEdit(m) => {
                                    ProjectError::InvalidEdit(format!("edit {n} of a batch: {m}"))
                                }
                                other => other,
                            });
                        }
                    }
                }
                inverses.reverse();
                Ok(Edit::Batch(inverses))
            }
        }
    }
}

fn missing_object(item: usize, id: u32) -> ProjectError {
    ProjectError::NotFound(format!("item {item} has no object <object{id}>"))
}

fn check_object(item: &Item, index: usize, object: &Object) -> Result<(), ProjectError> {
    for (&frame, annotation) in &object.frames {
        check_frame(item, index, object.id, frame, annotation)?;
    }
    Ok(())
}

/// The item's size, frame count and fps are ones real media can have (see [`MAX_ITEM_SIDE`]),
/// and its frame timestamps and frame file names, if any, are one per frame (timestamps finite
/// and in order).
fn check_item(item: &Item, index: usize) -> Result<(), ProjectError> {
    let (w, h) = (item.width, item.height);
    let invalid = |m: String| Err(ProjectError::InvalidEdit(m));
    if w == 0 || h == 0 {
        return invalid(format!(
            "item {index} is {w}x{h} pixels (w x h); an item is at least 1x1"
        ));
    }
    if w > MAX_ITEM_SIDE || h > MAX_ITEM_SIDE || w as u64 * h as u64 > MAX_ITEM_PIXELS {
        return invalid(format!(
            "item {index} claims {w}x{h} pixels (w x h), more than the largest media this \
             program opens ({MAX_ITEM_SIDE} pixels a side, {MAX_ITEM_PIXELS} pixels in all)"
        ));
    }
    if item.frame_count == 0 || item.frame_count > MAX_ITEM_FRAMES {
        return invalid(format!(
            "item {index} claims {} frames; an item has 1 to {MAX_ITEM_FRAMES}",
            item.frame_count
        ));
    }
    if !item.fps.is_finite() || item.fps < 0.0 {
        return invalid(format!(
            "item {index} has {} frames per second; it must be a finite number, 0 or more",
            item.fps
        ));
    }
    let times = &item.timestamps_secs;
    if !times.is_empty() && times.len() as u64 != item.frame_count {
        return invalid(format!(
            "item {index} has {} frame timestamps for {} frames",
            times.len(),
            item.frame_count
        ));
    }
    if let Some(bad) = times.iter().find(|t| !t.is_finite() || **t < 0.0) {
        return invalid(format!(
            "item {index} has a frame timestamp of {bad} seconds; timestamps are finite, 0 or more"
        ));
    }
    if times.windows(2).any(|w| w[1] < w[0]) {
        return invalid(format!(
            "item {index} has frame timestamps that go back in time"
        ));
    }
    let files = &item.frame_files;
    if !files.is_empty() && files.len() as u64 != item.frame_count {
        return invalid(format!(
            "item {index} has {} frame file names for {} frames",
            files.len(),
            item.frame_count
        ));
    }
    Ok(())
}

fn check_frame_index(item: &Item, index: usize, id: u32, frame: u64) -> Result<(), ProjectError> {
    if frame >= item.frame_count.max(1) {
        return Err(ProjectError::InvalidEdit(format!(
            "<object{id}> of item {index}: frame {frame} is outside the item ({} frames)",
            item.frame_count
        )));
    }
    Ok(())
}

fn check_frame(
    item: &Item,
    index: usize,
    id: u32,
    frame: u64,
    annotation: &FrameAnnotation,
) -> Result<(), ProjectError> {
    check_frame_index(item, index, id, frame)?;
    if let Some(mask) = &annotation.mask {
        if mask.size != [item.height, item.width] {
            return Err(ProjectError::InvalidEdit(format!(
                "<object{id}> of item {index}, frame {frame}: the mask is {}x{} but the item is \
                 {}x{} (w x h)",
                mask.size[1], mask.size[0], item.width, item.height
            )));
        }
        mask.validate()?;
    }
    Ok(())
}

/// Scores and prompt coordinates are finite (JSON has no infinity: one would be saved as
/// `null`; a number beyond the f32 range is read as infinity). Checked on load, not on edits.
fn check_numbers(
    index: usize,
    id: u32,
    frame: u64,
    annotation: &FrameAnnotation,
) -> Result<(), ProjectError> {
    let at = || format!("<object{id}> of item {index}, frame {frame}");
    if let Some(score) = annotation.score
        && !score.is_finite()
    {
        return Err(ProjectError::InvalidEdit(format!(
            "{}: the score {score} is not a finite 32-bit number",
            at()
        )));
    }
    let prompts = &annotation.prompts;
    let coords = prompts
        .points
        .iter()
        .flat_map(|p| [p.x, p.y])
        .chain(prompts.bbox.into_iter().flatten());
    for v in coords {
        if !v.is_finite() {
            return Err(ProjectError::InvalidEdit(format!(
                "{}: a prompt coordinate ({v}) is not a finite 32-bit number",
                at()
            )));
        }
    }
    Ok(())
}

/// Refuses two categories with one id or one name: a COCO export would give two labels one id,
/// or one label two.
fn check_categories(categories: &[super::model::Category]) -> Result<(), ProjectError> {
    let mut ids = std::collections::BTreeSet::new();
    let mut names = std::collections::BTreeSet::new();
    for c in categories {
        if !ids.insert(c.id) {
            return Err(ProjectError::InvalidEdit(format!(
                "two categories have the id {}",
                c.id
            )));
        }
        if !names.insert(c.name.as_str()) {
            return Err(ProjectError::InvalidEdit(format!(
                "two categories are named {:?}",
                c.name
            )));
        }
    }
    Ok(())
}

impl Edit {
    /// A rough count of the heap and inline bytes this edit holds, for bounding the history.
    pub fn estimated_bytes(&self) -> usize {
        let base = std::mem::size_of::<Edit>();
        match self {
            Edit::AddObject { object, .. } => base + object_bytes(object),
            Edit::RemoveObject { .. } | Edit::MoveObject { .. } | Edit::SetFrameRate { .. } => base,
            Edit::SetObjectProps { props, .. } => base + props.label.len() + props.caption.len(),
            Edit::SetFrame { annotation, .. } => {
                base + annotation.as_deref().map(annotation_bytes).unwrap_or(0)
            }
            Edit::SetChat { chat, .. } => {
                base + chat
                    .iter()
                    .map(|t| std::mem::size_of_val(t) + t.text.len())
                    .sum::<usize>()
            }
            Edit::SetModels(models) => {
                base + models
                    .iter()
                    .map(|m| {
                        std::mem::size_of_val(m)
                            + m.files
                                .iter()
                                .map(|(k, v)| k.len() + v.len() + 48)
                                .sum::<usize>()
                    })
                    .sum::<usize>()
            }
            Edit::SetCategories { from, to } => {
                base + from
                    .iter()
                    .chain(to)
                    .map(|c| std::mem::size_of_val(c) + c.name.len() + c.supercategory.len())
                    .sum::<usize>()
            }
            Edit::Batch(edits) => base + edits.iter().map(Edit::estimated_bytes).sum::<usize>(),
        }
    }
}

fn annotation_bytes(a: &FrameAnnotation) -> usize {
    std::mem::size_of::<FrameAnnotation>()
        + a.mask.as_ref().map(|m| m.counts.len() * 4).unwrap_or(0)
        + a.prompts.points.len() * 12
}

fn object_bytes(o: &Object) -> usize {
    std::mem::size_of::<Object>()
        + o.label.len()
        + o.caption.len()
        + o.frames
            .values()
            .map(|a| annotation_bytes(a) + 16)
            .sum::<usize>()
}

/// Undo/redo stacks of inverse edits, bounded by an estimate of the bytes they hold.
///
/// Usage: `let inverse = doc.apply(edit)?; history.push(inverse);` — one call per user action
/// (a whole brush stroke or drag is one [`Edit::SetFrame`], a propagation one [`Edit::Batch`]).
/// The history is never written to the project file.
#[derive(Debug, Default)]
pub struct History {
    undo: VecDeque<Edit>,
    redo: Vec<Edit>,
    max_bytes: usize,
    bytes: usize,
}

impl History {
    /// An empty history holding at most about `max_bytes` (the newest step is always kept).
    pub fn new(max_bytes: usize) -> History {
        History {
            max_bytes,
            ..History::default()
        }
    }

    /// Records the inverse of an edit just applied; clears the redo stack and drops the oldest
    /// steps while the estimate exceeds the bound.
    pub fn push(&mut self, inverse: Edit) {
        for edit in self.redo.drain(..) {
            self.bytes -= edit.estimated_bytes();
        }
        self.bytes += inverse.estimated_bytes();
        self.undo.push_back(inverse);
        self.trim();
    }

    fn trim(&mut self) {
        while self.bytes > self.max_bytes && self.undo.len() + self.redo.len() > 1 {
            let dropped = if self.undo.len() > 1 || self.redo.is_empty() {
                self.undo.pop_front()
            } else {
                // Only the newest undo step is left: give up the farthest redo step instead.
                Some(self.redo.remove(0))
            };
            match dropped {
                Some(edit) => self.bytes -= edit.estimated_bytes(),
                None => break,
            }
        }
    }

    /// Undoes the newest step. Ok(false) when there is nothing to undo. If the step cannot be
    /// applied (the document was changed behind the history's back) it is dropped, the document
    /// is left unchanged and the error returned.
    pub fn undo(&mut self, doc: &mut Document) -> Result<bool, ProjectError> {
        let Some(edit) = self.undo.pop_back() else {
            return Ok(false);
        };
        self.bytes -= edit.estimated_bytes();
        let inverse = doc.apply(edit)?;
        self.bytes += inverse.estimated_bytes();
        self.redo.push(inverse);
        self.trim();
        Ok(true)
    }

    /// Redoes the newest undone step. Ok(false) when there is nothing to redo; errors as
    /// [`History::undo`].
    pub fn redo(&mut self, doc: &mut Document) -> Result<bool, ProjectError> {
        let Some(edit) = self.redo.pop() else {
            return Ok(false);
        };
        self.bytes -= edit.estimated_bytes();
        let inverse = doc.apply(edit)?;
        self.bytes += inverse.estimated_bytes();
        self.undo.push_back(inverse);
        self.trim();
        Ok(true)
    }

    /// Whether there is a step to undo.
    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    /// Whether there is a step to redo.
    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Number of undo steps held.
    pub fn undo_len(&self) -> usize {
        self.undo.len()
    }

    /// Number of redo steps held.
    pub fn redo_len(&self) -> usize {
        self.redo.len()
    }

    /// The current estimate of bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets every step (after loading another project, say).
    pub fn clear(&mut self) {
        self.undo.clear();
        self.redo.clear();
        self.bytes = 0;
    }
}
