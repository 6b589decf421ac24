//! PixelRefer / PixelRefer-Lite region question answering (DESIGN.md §1).
//!
//! Not built yet: it arrives with the PixelRefer issue.
