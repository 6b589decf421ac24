//! Every call the UI makes into `crate::project` and `crate::mask`, in one place, so the UI
//! code reads the same whatever the exact signatures of those modules.

use crate::mask::{BBox, Mask, Rle};
use crate::project::{Document, Edit, History};

/// Bytes of undo history kept (older steps are dropped first).
pub const HISTORY_BYTES: usize = 256 * 1024 * 1024;

/// An empty undo history.
pub fn new_history() -> History {
    History::new(HISTORY_BYTES)
}

/// Applies an edit, returning its inverse; the error is one sentence.
pub fn apply(doc: &mut Document, edit: Edit) -> Result<Edit, String> {
    doc.apply(edit).map_err(|e| e.to_string())
}

/// Undoes one step; false when there was nothing to undo.
pub fn undo(history: &mut History, doc: &mut Document) -> Result<bool, String> {
    history.undo(doc).map_err(|e| e.to_string())
}

/// Redoes one step; false when there was nothing to redo.
pub fn redo(history: &mut History, doc: &mut Document) -> Result<bool, String> {
    history.redo(doc).map_err(|e| e.to_string())
}

/// COCO RLE of a mask.
pub fn rle_from_mask(mask: &Mask) -> Rle {
    Rle::from_mask(mask)
}

/// Decodes an RLE; the error is one sentence.
pub fn mask_from_rle(rle: &Rle) -> Result<Mask, String> {
    rle.to_mask().map_err(|e| e.to_string())
}

/// Paints (or erases) a round brush segment; returns the touched box.
pub fn paint_stroke(
    mask: &mut Mask,
    from_image: [f32; 2],
    to_image: [f32; 2],
    radius_px: f32,
    value: bool,
) -> Option<BBox> {
    mask.paint_stroke(
        (from_image[0], from_image[1]),
        (to_image[0], to_image[1]),
        radius_px,
        value,
    )
}

/// Fills a polygon (image pixel coordinates); returns the touched box.
pub fn fill_polygon(mask: &mut Mask, points_image: &[[f32; 2]], value: bool) -> Option<BBox> {
    let points: Vec<(f32, f32)> = points_image.iter().map(|p| (p[0], p[1])).collect();
    mask.fill_polygon(&points, value)
}

/// Fills the holes of a mask.
pub fn fill_holes(mask: &mut Mask) {
    mask.fill_holes();
}

// ----- files -------------------------------------------------------------------------------

use crate::project::Fingerprint;
use std::path::{Path, PathBuf};

/// The fingerprint of a media file (size and head/tail hash).
pub fn fingerprint(path: &Path) -> Result<Fingerprint, String> {
    let (size_bytes, sha256_head_tail) =
        crate::media::fingerprint_file(path).map_err(|e| e.to_string())?;
    Ok(Fingerprint {
        size_bytes,
        sha256_head_tail,
    })
}

/// A new document for opened media, one item per image/video.
pub fn new_document(source: &crate::media::MediaSource) -> Result<Document, String> {
    crate::jobs::new_document(source).map_err(|e| e.to_string())
}

/// Saves the project atomically.
pub fn save_project(doc: &Document, path: &Path) -> Result<(), String> {
    crate::project::save_project(doc, path).map_err(|e| e.to_string())
}

/// Loads a project file.
pub fn load_project(path: &Path) -> Result<Document, String> {
    crate::project::load_project(path).map_err(|e| e.to_string())
}

/// Checks that the project's media is where it says and unchanged; the error says what is
/// wrong in one sentence.
pub fn check_media(doc: &Document) -> Result<(), String> {
    use crate::project::MediaStatus;
    let status = crate::project::check_media(doc, |path: &Path| fingerprint(path).ok());
    let path = doc.media.path.display();
    match status {
        MediaStatus::Ok => Ok(()),
        MediaStatus::Missing => Err(format!(
            "The media {path} was moved or deleted; locate it to keep annotating."
        )),
        MediaStatus::Changed => Err(format!(
            "The media {path} has changed since the project was saved; locate the original \
             or accept this file."
        )),
    }
}

/// Points the project at moved media.
pub fn relink_media(doc: &mut Document, path: &Path) {
    crate::project::relink_media(doc, path);
}

/// The media key of `doc`'s unsaved autosave: its media path, with `#frames` appended for a
/// folder opened as the frames of one video, so the folder's images and its frames never share
/// (and never offer each other) an autosave.
fn autosave_key(doc: &Document) -> PathBuf {
    if doc.is_frame_sequence() {
        PathBuf::from(format!("{}#frames", doc.media.path.display()))
    } else {
        doc.media.path.clone()
    }
}

/// Where autosaves of `doc` go: beside its project file, or keyed by its media when unsaved.
pub fn autosave_path(project: Option<&Path>, doc: &Document) -> PathBuf {
    crate::project::autosave_path(project, &autosave_key(doc))
}

/// Writes an autosave.
pub fn write_autosave(doc: &Document, path: &Path) -> Result<(), String> {
    crate::project::write_autosave(doc, path).map_err(|e| e.to_string())
}

/// An autosave of `doc` newer than the project (or for unsaved media), if one exists.
pub fn find_recovery(project: Option<&Path>, doc: &Document) -> Option<PathBuf> {
    crate::project::find_recovery(project, &autosave_key(doc))
}

/// Deletes an autosave (after a save, or when the user declines recovery).
pub fn discard_autosave(path: &Path) {
    if let Err(err) = crate::project::discard_autosave(path) {
        log::warn!("could not remove the autosave {}: {err}", path.display());
    }
}

/// Which export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    /// `*.regions.json`.
    Regions,
    /// COCO instances JSON.
    Coco,
    /// One PNG per object and frame, into a folder.
    Pngs,
}

/// Runs an export.
/// Refuses to write over the media (PNG export: into the media folder or over a frame).
pub fn export(doc: &Document, kind: ExportKind, path: &Path) -> Result<(), String> {
    let inputs = [doc.media.path.as_path()];
    let result = match kind {
        ExportKind::Regions => crate::project::check_output_path(path, &inputs)
            .and_then(|()| crate::project::export_regions(doc, path)),
        ExportKind::Coco => crate::project::check_output_path(path, &inputs)
            .and_then(|()| crate::project::export_coco(doc, path)),
        ExportKind::Pngs => crate::project::write_pngs(doc, path, &inputs, |_| {}).map(|_| ()),
    };
    result.map_err(|e| e.to_string())
}

/// Imports COCO annotations into the document as one edit (to apply, so it can be undone).
pub fn import_coco(doc: &Document, path: &Path) -> Result<Edit, String> {
    let coco = crate::project::read_coco(path).map_err(|e| e.to_string())?;
    crate::project::import_coco(doc, &coco).map_err(|e| e.to_string())
}

/// The edit adding a new object (next id, an unused palette colour) to item `item`.
pub fn add_object_edit(doc: &Document, item: usize) -> Result<Edit, String> {
    doc.add_object_edit(item).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::project::{Item, MediaKind, MediaRef};

    #[test]
    fn a_folder_and_its_frames_never_share_an_unsaved_autosave() {
        let media = MediaRef {
            kind: MediaKind::Folder,
            path: "/data/clip".into(),
            fingerprint: None,
        };
        let images = Document::new(
            media.clone(),
            vec![
                Item::new(Some("a.png".into()), 4, 4, 1, 0.0),
                Item::new(Some("b.png".into()), 4, 4, 1, 0.0),
            ],
        );
        let frames = Document::new(media, vec![Item::new(None, 4, 4, 2, 25.0)]);
        assert!(frames.is_frame_sequence() && !images.is_frame_sequence());
        let (a, b) = (autosave_path(None, &images), autosave_path(None, &frames));
        assert_ne!(a, b);
        assert_eq!(b, autosave_path(None, &frames.clone()), "a stable key");
        // A saved project's autosave sits beside it, whatever the media.
        let project = Path::new("/work/clip.prj.json");
        assert_eq!(
            autosave_path(Some(project), &frames),
            autosave_path(Some(project), &images)
        );
    }
}
