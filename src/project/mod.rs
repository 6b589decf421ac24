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
    export_regions, item_name, png_item_dirs, qa_turns, regions_json, write_pngs,
};
pub use file::{
    MAX_PROJECT_BYTES, MediaStatus, autosave_path, check_media, check_output_path,
    discard_autosave, find_recovery, load_project, migrate, read_bounded, read_json_file,
    relative_path, relink_media, remove_stale_temp_files, same_file, save_project, write_atomic,
    write_atomic_with, write_autosave,
};
pub use import::{
    MAX_COCO_BYTES, check_import_output, import_coco, import_project, merged_categories,
    parse_segmentation, read_coco,
};
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
    /// A path that names a FIFO, a device, a directory or a socket where a file is read.
    #[error("{path} is {what}, not a regular file; give the path of a file")]
    NotAFile {
        /// The path.
        path: std::path::PathBuf,
        /// What it is instead ("a directory", "a FIFO (named pipe)", …).
        what: &'static str,
    },
    /// A file that should hold JSON but does not parse.
    #[error("{path} is not valid JSON: {reason}")]
    Json {
        /// The file.
        path: std::path::PathBuf,
        /// The parser's message (with line and column).
        reason: String,
    },
    /// A file larger than the program reads for its kind.
    #[error("{path} is larger than {} MiB, the most this program reads from such a file", limit_bytes >> 20)]
    TooLarge {
        /// The file.
        path: std::path::PathBuf,
        /// The limit in bytes.
        limit_bytes: u64,
    },
    /// A mask error (size mismatch, bad RLE).
    #[error(transparent)]
    Mask(#[from] crate::mask::MaskError),
}

#[cfg(test)]
mod tests;
