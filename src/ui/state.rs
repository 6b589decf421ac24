//! The application state the panels act on: document, history, current item and frame,
//! selection and tool. No egui here, so every action is unit-tested without a window.

use super::doc_api;
use crate::mask::Mask;
use crate::project::{
    Document, Edit, FrameAnnotation, History, Item, MaskSource, Object, ObjectProps, PointPrompt,
    Prompts,
};
use std::path::PathBuf;

/// The canvas tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// Click a mask to select its object.
    Select,
    /// Add a positive SAM point.
    PositivePoint,
    /// Add a negative SAM point.
    NegativePoint,
    /// Drag a SAM box.
    Box,
    /// Paint the selected object's mask.
    Brush,
    /// Erase from the selected object's mask.
    Eraser,
    /// Click polygon vertices; Enter or double-click fills, Esc cancels.
    Polygon,
}

impl Tool {
    /// Every tool, in toolbar order.
    pub const ALL: [Tool; 7] = [
        Tool::Select,
        Tool::PositivePoint,
        Tool::NegativePoint,
        Tool::Box,
        Tool::Brush,
        Tool::Eraser,
        Tool::Polygon,
    ];

    /// Button label.
    pub fn label(self) -> &'static str {
        match self {
            Tool::Select => "Select",
            Tool::PositivePoint => "Positive point",
            Tool::NegativePoint => "Negative point",
            Tool::Box => "Box",
            Tool::Brush => "Brush",
            Tool::Eraser => "Eraser",
            Tool::Polygon => "Polygon",
        }
    }

    /// Keyboard shortcut, as shown in the help overlay.
    pub fn shortcut(self) -> &'static str {
        match self {
            Tool::Select => "V",
            Tool::PositivePoint => "P",
            Tool::NegativePoint => "N",
            Tool::Box => "R",
            Tool::Brush => "B",
            Tool::Eraser => "E",
            Tool::Polygon => "G",
        }
    }

    /// Whether the tool changes the selected object (and so needs one that is not locked).
    pub fn edits_object(self) -> bool {
        !matches!(self, Tool::Select)
    }
}

/// Something that happened which other subsystems react to (the SAM 2 issue turns
/// `PromptsChanged` into a segmentation job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppEvent {
    /// The prompts of an object on a frame changed.
    PromptsChanged {
        /// Item index.
        item: usize,
        /// Object id.
        id: u32,
        /// Frame index.
        frame: u64,
    },
}

/// Why an action did nothing; shown to the user as one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// No object is selected.
    #[error("select an object first (or add one with the + button)")]
    NoSelection,
    /// The selected object is locked.
    #[error("{0} is locked; unlock it in the objects panel to edit it")]
    Locked(String),
    /// Nothing is open.
    #[error("open an image, video or project first")]
    NoMedia,
    /// The document refused the edit.
    #[error("{0}")]
    Edit(String),
}

/// Default brush radius in image pixels.
pub const DEFAULT_BRUSH_RADIUS_PX: f32 = 12.0;

/// Document plus everything the UI is pointing at.
pub struct AppState {
    /// The document.
    pub doc: Document,
    history: History,
    /// Where the project was loaded from or last saved to.
    pub project_path: Option<PathBuf>,
    /// Current item (folders: which image).
    pub item: usize,
    /// Current frame of the item.
    pub frame: u64,
    /// Selected object id.
    pub selected: Option<u32>,
    /// Object under the pointer on the canvas.
    pub hovered: Option<u32>,
    /// Active tool.
    pub tool: Tool,
    /// Brush radius in image pixels.
    pub brush_radius_px: f32,
    /// The media's frame rate is a setting the project keeps (a folder of frames, a TIFF stack,
    /// a clip of unknown rate: [`crate::media::MediaSource::rate_is_settable`]), so the
    /// timeline offers to change it.
    pub frame_rate_settable: bool,
    revision: u64,
    saved_revision: u64,
    events: Vec<AppEvent>,
}

impl AppState {
    /// The media file or folder, resolved against the project's folder when stored relative.
    pub fn media_path(&self) -> PathBuf {
        let path = &self.doc.media.path;
        match self
            .project_path
            .as_deref()
            .and_then(std::path::Path::parent)
        {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.clone(),
        }
    }

    /// State for a freshly opened or loaded document (not dirty).
    pub fn new(doc: Document) -> Self {
        let selected = doc
            .items
            .first()
            .and_then(|item| item.objects.first())
            .map(|o| o.id);
        Self {
            doc,
            history: doc_api::new_history(),
            project_path: None,
            item: 0,
            frame: 0,
            selected,
            hovered: None,
            tool: Tool::Brush,
            brush_radius_px: DEFAULT_BRUSH_RADIUS_PX,
            frame_rate_settable: false,
            revision: 0,
            saved_revision: 0,
            events: Vec::new(),
        }
    }

    // ----- queries -------------------------------------------------------------------------

    /// The current item.
    pub fn current_item(&self) -> Option<&Item> {
        self.doc.items.get(self.item)
    }

    /// Objects of the current item, in display order.
    pub fn objects(&self) -> &[Object] {
        self.current_item().map_or(&[], |item| &item.objects)
    }

    /// Object `id` of the current item.
    pub fn object(&self, id: u32) -> Option<&Object> {
        self.objects().iter().find(|o| o.id == id)
    }

    /// The selected object.
    pub fn selected_object(&self) -> Option<&Object> {
        self.selected.and_then(|id| self.object(id))
    }

    /// Frames of the current item.
    pub fn frame_count(&self) -> u64 {
        self.current_item()
            .map_or(1, |item| item.frame_count.max(1))
    }

    /// Image size of the current item.
    pub fn image_size_px(&self) -> Option<(u32, u32)> {
        self.current_item().map(|item| (item.width, item.height))
    }

    /// The annotation of object `id` on the current frame.
    pub fn annotation(&self, id: u32) -> Option<&FrameAnnotation> {
        self.object(id).and_then(|o| o.frames.get(&self.frame))
    }

    /// The decoded mask of object `id` on the current frame (None when it has none).
    pub fn mask(&self, id: u32) -> Option<Mask> {
        let rle = self.annotation(id)?.mask.as_ref()?;
        doc_api::mask_from_rle(rle).ok()
    }

    /// Frames on which object `id` has a mask (for the timeline strip).
    pub fn frames_with_mask(&self, id: u32) -> Vec<u64> {
        self.object(id).map_or_else(Vec::new, |o| {
            o.frames
                .iter()
                .filter(|(_, a)| a.mask.is_some())
                .map(|(&f, _)| f)
                .collect()
        })
    }

    /// Counts changes to the document (undo and redo included); the overlay rebuilds when it
    /// moves.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Unsaved changes?
    pub fn is_dirty(&self) -> bool {
        self.revision != self.saved_revision
    }

    /// Call after a successful save of the revision `revision`.
    pub fn mark_saved(&mut self, revision: u64) {
        self.saved_revision = revision;
    }

    /// Whether undo/redo would do something.
    pub fn can_undo(&self) -> bool {
        self.history.can_undo()
    }

    /// Whether redo would do something.
    pub fn can_redo(&self) -> bool {
        self.history.can_redo()
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<AppEvent> {
        std::mem::take(&mut self.events)
    }

    /// The selected object, if the active tool may edit it.
    pub fn editable_selected(&self) -> Result<&Object, ActionError> {
        let object = self.selected_object().ok_or(ActionError::NoSelection)?;
        if object.locked {
            return Err(ActionError::Locked(object.tag()));
        }
        Ok(object)
    }

    // ----- navigation ----------------------------------------------------------------------

    /// Goes to a frame (clamped).
    pub fn set_frame(&mut self, frame: u64) {
        self.frame = frame.min(self.frame_count().saturating_sub(1));
    }

    /// Moves by `delta` frames (clamped).
    pub fn step_frame(&mut self, delta: i64) {
        let target = (self.frame as i64 + delta).max(0) as u64;
        self.set_frame(target);
    }

    /// Goes to an item (clamped), frame 0, selecting its first object.
    pub fn set_item(&mut self, item: usize) {
        let last = self.doc.items.len().saturating_sub(1);
        self.item = item.min(last);
        self.frame = 0;
        self.hovered = None;
        self.selected = self.objects().first().map(|o| o.id);
    }

    /// Selects an object (or nothing).
    pub fn select(&mut self, id: Option<u32>) {
        self.selected = id.filter(|&id| self.object(id).is_some());
    }

    // ----- edits ---------------------------------------------------------------------------

    /// Applies an edit as one undo step.
    pub fn apply(&mut self, edit: Edit) -> Result<(), ActionError> {
        let inverse = doc_api::apply(&mut self.doc, edit).map_err(ActionError::Edit)?;
        self.history.push(inverse);
        self.revision += 1;
        Ok(())
    }

    /// Applies an edit live without an undo step and returns its inverse; the caller records
    /// the inverses of a run with [`Self::push_undo`] (a propagation is one undo step).
    pub fn apply_live(&mut self, edit: Edit) -> Result<Edit, ActionError> {
        let inverse = doc_api::apply(&mut self.doc, edit).map_err(ActionError::Edit)?;
        self.revision += 1;
        Ok(inverse)
    }

    /// Records `inverse` (of edits already applied with [`Self::apply_live`]) as one undo step.
    pub fn push_undo(&mut self, inverse: Edit) {
        self.history.push(inverse);
    }

    /// Undoes the last step; false when there was none.
    pub fn undo(&mut self) -> Result<bool, ActionError> {
        let done = doc_api::undo(&mut self.history, &mut self.doc).map_err(ActionError::Edit)?;
        if done {
            self.after_history_move();
        }
        Ok(done)
    }

    /// Redoes the last undone step; false when there was none.
    pub fn redo(&mut self) -> Result<bool, ActionError> {
        let done = doc_api::redo(&mut self.history, &mut self.doc).map_err(ActionError::Edit)?;
        if done {
            self.after_history_move();
        }
        Ok(done)
    }

    fn after_history_move(&mut self) {
        self.revision += 1;
        if self.selected.is_some_and(|id| self.object(id).is_none()) {
            self.selected = self.objects().last().map(|o| o.id);
        }
    }

    /// Adds a new object at the end of the current item and selects it; returns its id.
    pub fn add_object(&mut self) -> Result<u32, ActionError> {
        self.current_item().ok_or(ActionError::NoMedia)?;
        let edit = doc_api::add_object_edit(&self.doc, self.item).map_err(ActionError::Edit)?;
        let id = match &edit {
            Edit::AddObject { object, .. } => object.id,
            _ => return Err(ActionError::Edit("unexpected edit for a new object".into())),
        };
        self.apply(edit)?;
        self.selected = Some(id);
        Ok(id)
    }

    /// Deletes object `id` (undoable).
    pub fn remove_object(&mut self, id: u32) -> Result<(), ActionError> {
        self.apply(Edit::RemoveObject {
            item: self.item,
            id,
        })?;
        if self.selected == Some(id) {
            self.selected = self.objects().last().map(|o| o.id);
        }
        Ok(())
    }

    /// The editable properties of object `id`.
    pub fn props(&self, id: u32) -> Option<ObjectProps> {
        self.object(id).map(Object::props)
    }

    /// Changes object properties with `change` as one undo step (no-op when nothing changed).
    pub fn update_props(
        &mut self,
        id: u32,
        change: impl FnOnce(&mut ObjectProps),
    ) -> Result<(), ActionError> {
        let Some(before) = self.props(id) else {
            return Ok(());
        };
        let mut props = before.clone();
        change(&mut props);
        if props == before {
            return Ok(());
        }
        self.apply(Edit::SetObjectProps {
            item: self.item,
            id,
            props,
        })
    }

    /// Moves object `id` by `delta` positions in the display order.
    pub fn move_object(&mut self, id: u32, delta: isize) -> Result<(), ActionError> {
        let objects = self.objects();
        let Some(from) = objects.iter().position(|o| o.id == id) else {
            return Ok(());
        };
        let to = (from as isize + delta).clamp(0, objects.len() as isize - 1) as usize;
        if to == from {
            return Ok(());
        }
        self.apply(Edit::MoveObject {
            item: self.item,
            id,
            index: to,
        })
    }

    fn set_annotation(
        &mut self,
        id: u32,
        annotation: Option<FrameAnnotation>,
    ) -> Result<(), ActionError> {
        self.apply(Edit::SetFrame {
            item: self.item,
            id,
            frame: self.frame,
            annotation: annotation.map(Box::new),
        })
    }

    /// Adds a SAM point prompt (image pixels) to the selected object on this frame.
    pub fn add_point_prompt(&mut self, x: f32, y: f32, positive: bool) -> Result<(), ActionError> {
        self.change_prompts(|prompts| prompts.points.push(PointPrompt { x, y, positive }))
    }

    /// Sets the SAM box prompt `[x0, y0, x1, y1]` (image pixels, any corner order).
    pub fn set_box_prompt(&mut self, corners: [f32; 4]) -> Result<(), ActionError> {
        let [ax, ay, bx, by] = corners;
        let bbox = [ax.min(bx), ay.min(by), ax.max(bx), ay.max(by)];
        self.change_prompts(|prompts| prompts.bbox = Some(bbox))
    }

    /// Removes all prompts of the selected object on this frame (keeps its mask).
    pub fn clear_prompts(&mut self) -> Result<(), ActionError> {
        self.change_prompts(|prompts| *prompts = Prompts::default())
    }

    fn change_prompts(&mut self, change: impl FnOnce(&mut Prompts)) -> Result<(), ActionError> {
        let id = self.editable_selected()?.id;
        let mut annotation = self
            .annotation(id)
            .cloned()
            .unwrap_or_else(|| FrameAnnotation {
                mask: None,
                source: MaskSource::Clicked,
                score: None,
                prompts: Prompts::default(),
                model: None,
            });
        let before = annotation.prompts.clone();
        change(&mut annotation.prompts);
        if annotation.prompts == before {
            return Ok(());
        }
        let annotation =
            (annotation.mask.is_some() || !annotation.prompts.is_empty()).then_some(annotation);
        self.set_annotation(id, annotation)?;
        self.events.push(AppEvent::PromptsChanged {
            item: self.item,
            id,
            frame: self.frame,
        });
        Ok(())
    }

    /// Replaces object `id`'s mask on this frame with a painted one, as one undo step. An
    /// empty mask with no prompts removes the frame's annotation.
    pub fn commit_painted_mask(&mut self, id: u32, mask: &Mask) -> Result<(), ActionError> {
        let object = self.object(id).ok_or(ActionError::NoSelection)?;
        if object.locked {
            return Err(ActionError::Locked(object.tag()));
        }
        let prompts = self
            .annotation(id)
            .map(|a| a.prompts.clone())
            .unwrap_or_default();
        let annotation = if mask.is_empty() && prompts.is_empty() {
            None
        } else {
            Some(FrameAnnotation {
                mask: (!mask.is_empty()).then(|| doc_api::rle_from_mask(mask)),
                source: MaskSource::Painted,
                score: None,
                prompts,
                model: None,
            })
        };
        if self.annotation(id).cloned() == annotation {
            return Ok(());
        }
        self.set_annotation(id, annotation)
    }

    /// The selected object's mask on this frame, or an empty one of the image size.
    pub fn selected_mask_or_empty(&self) -> Result<(u32, Mask), ActionError> {
        let id = self.editable_selected()?.id;
        let (w, h) = self.image_size_px().ok_or(ActionError::NoMedia)?;
        let mask = self
            .mask(id)
            .filter(|m| m.width() == w && m.height() == h)
            .unwrap_or_else(|| Mask::new(w, h));
        Ok((id, mask))
    }

    /// Fills a polygon (image pixels) into the selected object's mask.
    pub fn fill_polygon(&mut self, points_image: &[[f32; 2]]) -> Result<(), ActionError> {
        let (id, mut mask) = self.selected_mask_or_empty()?;
        doc_api::fill_polygon(&mut mask, points_image, true);
        self.commit_painted_mask(id, &mask)
    }

    /// Fills the holes of the selected object's mask on this frame.
    pub fn fill_holes(&mut self) -> Result<(), ActionError> {
        let (id, mut mask) = self.selected_mask_or_empty()?;
        doc_api::fill_holes(&mut mask);
        self.commit_painted_mask(id, &mask)
    }

    /// Removes the selected object's mask and prompts on this frame.
    pub fn clear_frame(&mut self) -> Result<(), ActionError> {
        let id = self.editable_selected()?.id;
        if self.annotation(id).is_none() {
            return Ok(());
        }
        self.set_annotation(id, None)
    }

    /// The topmost visible object whose mask covers image pixel `(x, y)` on this frame.
    pub fn object_at_pixel(&self, x: i64, y: i64) -> Option<u32> {
        self.objects()
            .iter()
            .rev()
            .filter(|o| !o.hidden)
            .find(|o| self.mask(o.id).is_some_and(|m| m.get(x, y)))
            .map(|o| o.id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::project::{MediaKind, MediaRef};

    fn state(frames: u64) -> AppState {
        let media = MediaRef {
            kind: if frames > 1 {
                MediaKind::Video
            } else {
                MediaKind::Image
            },
            path: "x.png".into(),
            fingerprint: None,
        };
        AppState::new(Document::new(
            media,
            vec![Item::new(None, 32, 24, frames, 25.0)],
        ))
    }

    fn square(x0: i64, y0: i64, side: i64) -> Mask {
        let mut mask = Mask::new(32, 24);
        for y in y0..y0 + side {
            for x in x0..x0 + side {
                mask.set(x, y, true);
            }
        }
        mask
    }

    #[test]
    fn add_select_undo_redo() {
        let mut s = state(1);
        assert!(!s.is_dirty());
        let a = s.add_object().unwrap();
        let b = s.add_object().unwrap();
        assert_ne!(a, b);
        assert_eq!(s.selected, Some(b));
        assert!(s.is_dirty());
        assert_eq!(s.object(a).unwrap().tag(), format!("<object{a}>"));
        assert!(s.undo().unwrap());
        assert_eq!(s.objects().len(), 1);
        assert_eq!(s.selected, Some(a), "selection leaves the removed object");
        assert!(s.redo().unwrap());
        assert_eq!(s.objects().len(), 2);
        assert!(!s.redo().unwrap());
    }

    #[test]
    fn painted_mask_is_one_step_and_undoes() {
        let mut s = state(1);
        let id = s.add_object().unwrap();
        s.commit_painted_mask(id, &square(2, 2, 4)).unwrap();
        assert_eq!(s.mask(id).unwrap().area(), 16);
        assert_eq!(s.frames_with_mask(id), vec![0]);
        s.undo().unwrap();
        assert!(s.mask(id).is_none());
        assert!(s.annotation(id).is_none());
    }

    #[test]
    fn locked_objects_refuse_edits() {
        let mut s = state(1);
        let id = s.add_object().unwrap();
        s.update_props(id, |p| p.locked = true).unwrap();
        let err = s.commit_painted_mask(id, &square(0, 0, 2)).unwrap_err();
        assert_eq!(err, ActionError::Locked(format!("<object{id}>")));
        assert!(err.to_string().contains("is locked"));
        assert!(s.add_point_prompt(1.0, 1.0, true).is_err());
        assert!(s.fill_holes().is_err());
        assert!(s.clear_frame().is_err());
        assert!(s.mask(id).is_none());
    }

    #[test]
    fn prompts_are_stored_and_announced() {
        let mut s = state(5);
        let id = s.add_object().unwrap();
        s.set_frame(3);
        s.add_point_prompt(4.5, 5.5, true).unwrap();
        s.add_point_prompt(8.5, 9.5, false).unwrap();
        s.set_box_prompt([10.0, 12.0, 2.0, 3.0]).unwrap();
        let a = s.annotation(id).unwrap();
        assert_eq!(a.prompts.points.len(), 2);
        assert_eq!(a.prompts.bbox, Some([2.0, 3.0, 10.0, 12.0]));
        assert!(a.mask.is_none());
        let events = s.take_events();
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[0],
            AppEvent::PromptsChanged {
                item: 0,
                id,
                frame: 3
            }
        );
        s.clear_prompts().unwrap();
        assert!(s.annotation(id).is_none());
    }

    #[test]
    fn polygon_fill_holes_and_clear() {
        let mut s = state(1);
        let id = s.add_object().unwrap();
        s.fill_polygon(&[[2.0, 2.0], [12.0, 2.0], [12.0, 12.0], [2.0, 12.0]])
            .unwrap();
        let area = s.mask(id).unwrap().area();
        assert!((90..=121).contains(&area), "{area}");
        let mut holed = s.mask(id).unwrap();
        holed.set(6, 6, false);
        s.commit_painted_mask(id, &holed).unwrap();
        s.fill_holes().unwrap();
        assert_eq!(s.mask(id).unwrap().area(), area);
        s.clear_frame().unwrap();
        assert!(s.annotation(id).is_none());
        s.undo().unwrap();
        assert_eq!(s.mask(id).unwrap().area(), area);
    }

    #[test]
    fn props_move_remove() {
        let mut s = state(1);
        let a = s.add_object().unwrap();
        let b = s.add_object().unwrap();
        s.update_props(a, |p| p.label = "dog".into()).unwrap();
        assert_eq!(s.object(a).unwrap().label, "dog");
        // No-op changes make no undo step.
        let rev = s.revision();
        s.update_props(a, |p| p.label = "dog".into()).unwrap();
        assert_eq!(s.revision(), rev);
        s.move_object(b, -1).unwrap();
        assert_eq!(s.objects()[0].id, b);
        s.move_object(b, -1).unwrap();
        assert_eq!(s.revision(), rev + 1, "moving past the top is a no-op");
        s.remove_object(b).unwrap();
        assert_eq!(s.objects().len(), 1);
        s.undo().unwrap();
        assert_eq!(s.objects()[0].id, b);
    }

    #[test]
    fn frames_and_items_are_clamped() {
        let mut s = state(10);
        s.set_frame(100);
        assert_eq!(s.frame, 9);
        s.step_frame(-20);
        assert_eq!(s.frame, 0);
        s.set_item(5);
        assert_eq!(s.item, 0);
    }

    #[test]
    fn saved_revision_tracks_dirtiness() {
        let mut s = state(1);
        s.add_object().unwrap();
        s.mark_saved(s.revision());
        assert!(!s.is_dirty());
        s.undo().unwrap();
        assert!(s.is_dirty());
    }

    #[test]
    fn hit_test_finds_the_topmost_visible_object() {
        let mut s = state(1);
        let a = s.add_object().unwrap();
        let b = s.add_object().unwrap();
        s.commit_painted_mask(a, &square(0, 0, 10)).unwrap();
        s.commit_painted_mask(b, &square(5, 5, 10)).unwrap();
        assert_eq!(s.object_at_pixel(7, 7), Some(b));
        assert_eq!(s.object_at_pixel(1, 1), Some(a));
        s.update_props(b, |p| p.hidden = true).unwrap();
        assert_eq!(s.object_at_pixel(7, 7), Some(a));
        assert_eq!(s.object_at_pixel(30, 20), None);
    }
}
