//! Binary masks: bitmaps, COCO RLE, bounding boxes, resizing, brush and polygon rasterising,
//! hole filling and boolean operations. Pure data; no I/O beyond PNG encode/decode helpers.

mod bitmap;
mod rle;
mod rle_rows;

pub use bitmap::{BBox, Mask};
pub use rle::{MAX_POLYGON_STEPS, Rle};
pub use rle_rows::{MAX_PNG_SIDE, RleRows};

#[cfg(test)]
mod tests;

/// Errors from mask operations.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    /// Two masks (or a mask and an image) that must have the same size do not.
    #[error(
        "mask size {actual_w}x{actual_h} does not match the expected {expected_w}x{expected_h}"
    )]
    SizeMismatch {
        /// Expected width in pixels.
        expected_w: u32,
        /// Expected height in pixels.
        expected_h: u32,
        /// Actual width in pixels.
        actual_w: u32,
        /// Actual height in pixels.
        actual_h: u32,
    },
    /// An RLE whose run lengths do not add up to height × width, or a malformed count string.
    #[error("invalid RLE: {0}")]
    InvalidRle(String),
    /// A polygon that cannot be rasterised (non-finite or absurdly large coordinates).
    #[error("invalid polygon: {0}")]
    InvalidPolygon(String),
    /// A PNG that could not be read or written as a mask.
    #[error("mask image: {0}")]
    Image(String),
}
