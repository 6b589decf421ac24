//! Decoding images, image folders and videos (FFmpeg) into displayed RGBA frames, with
//! frame-accurate seeking and a byte-bounded frame cache.
//!
//! Frames are always in *display* orientation: EXIF orientation and video rotation metadata are
//! applied, and anamorphic video is scaled to square pixels.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors from opening or decoding media. Messages are one clear sentence naming the file.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The path does not exist or cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not an image or video format this build can decode.
    #[error("{path} is not a supported image or video ({reason})")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Details.
        reason: String,
    },
    /// The file is damaged, truncated or empty.
    #[error("{path} is damaged or truncated: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Details.
        reason: String,
    },
    /// A frame index or item index outside the media.
    #[error("frame {index} is outside {path} ({count} frames)")]
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// Requested index.
        index: u64,
        /// Number of frames (or items).
        count: u64,
    },
    /// A folder without any supported image.
    #[error("{path} contains no supported images")]
    EmptyFolder {
        /// The folder.
        path: PathBuf,
    },
}

/// What was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A still image.
    Image,
    /// A video file.
    Video,
    /// A folder of still images.
    Folder,
}

/// One decoded frame in display orientation, RGBA8, row-major, premultiplied = false.
#[derive(Clone)]
pub struct Frame {
    /// Displayed width.
    pub width: u32,
    /// Displayed height.
    pub height: u32,
    /// `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({}x{})", self.width, self.height)
    }
}

/// Facts about one item (the image, the video, or one image of a folder).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ItemInfo {
    /// File name (folders) or the file's own name.
    pub name: String,
    /// Displayed width after rotation and aspect correction.
    pub width: u32,
    /// Displayed height.
    pub height: u32,
    /// Frame count (1 for images).
    pub frame_count: u64,
    /// Average frames per second (0 for images).
    pub fps: f64,
    /// Duration in seconds (0 for images).
    pub duration_secs: f64,
    /// Codec or image format name (`h264`, `vp9`, `png`…).
    pub codec: String,
    /// Clockwise rotation applied for display, degrees (0, 90, 180, 270).
    pub rotation_degrees: u32,
}
