//! COCO run-length encoding (column-major, counts start with a run of zeros), as in
//! pycocotools `maskApi.c`.

use serde::{Deserialize, Serialize};

/// A COCO RLE mask: `size` is `[height, width]`; `counts` are alternating run lengths of 0s and
/// 1s over the pixels in column-major (Fortran) order, starting with 0s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rle {
    /// `[height, width]`, as COCO writes it.
    pub size: [u32; 2],
    /// Run lengths, uncompressed.
    pub counts: Vec<u32>,
}
