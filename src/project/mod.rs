//! The document: media source, items, objects, per-frame masks with their prompts, captions and
//! chat; edits with undo/redo; save/load; export and import.
//!
//! The document never imports egui/eframe/wgpu. Every change goes through [`Edit`] applied by
//! [`Document::apply`], which returns the inverse edit; [`History`] keeps those for undo/redo.

mod model;

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
    /// A mask error (size mismatch, bad RLE).
    #[error(transparent)]
    Mask(#[from] crate::mask::MaskError),
}
