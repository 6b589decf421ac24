//! The document: media source, items, objects, per-frame masks with their prompts, captions and
//! chat; edits with undo/redo; save/load; export and import.
//!
//! The document never imports egui/eframe/wgpu. Every change goes through [`Edit`] applied by
//! [`Document::apply`], which returns the inverse edit; [`History`] keeps those for undo/redo.

mod edit;
mod export;
mod file;
mod import;
mod model;

pub use edit::History;
pub use export::{
    REGIONS_FORMAT, REGIONS_VERSION, coco_file_name, coco_json, export_coco, export_pngs,
    export_regions, item_name, png_item_dir, qa_turns, regions_json,
};
pub use file::{
    MediaStatus, autosave_path, check_media, check_output_path, discard_autosave, find_recovery,
    load_project, migrate, relative_path, relink_media, same_file, save_project, write_atomic,
    write_autosave,
};
pub use import::{import_coco, import_project, parse_segmentation, read_coco};
pub use model::*;

/// Errors from the document, project files, export and import.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A project file that is not valid JSON of a known schema version.
    #[error("{path} is not a readable project file: {reason}")]
    Format {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An edit that names an item, object or frame that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An edit (or a loaded document) that would break an invariant: a used object id, a mask
    /// whose size is not the item's, a frame outside the item.
    #[error("{0}")]
    InvalidEdit(String),
    /// A COCO file that cannot be imported into this project.
    #[error("COCO import: {0}")]
    Import(String),
    /// An output path that names one of the command's inputs.
    #[error("refusing to write {out}: it is one of the inputs; choose another output path")]
    OutputIsInput {
        /// The output path given.
        out: std::path::PathBuf,
    },
    /// A mask error (size mismatch, bad RLE).
    #[error(transparent)]
    Mask(#[from] crate::mask::MaskError),
}

#[cfg(test)]
mod tests;
