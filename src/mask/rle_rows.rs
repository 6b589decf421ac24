//! Work on a COCO RLE without decoding its bitmap: rows top to bottom (memory O(width)), run
//! level union and canonical form (memory O(runs)), and a PNG encoder that streams rows, so a
//! large mask never costs width × height bytes.

use super::{MaskError, Rle};
use std::io::Write;

/// Largest width or height a PNG can have (the PNG specification's 2³¹ − 1).
pub const MAX_PNG_SIDE: u32 = i32::MAX as u32;

/// The rows of an [`Rle`], top to bottom, decoded one at a time from the column-major runs.
///
/// Keeps one cursor per column (16 bytes each); each pixel costs O(1) amortised.
pub struct RleRows<'a> {
    counts: &'a [u32],
    height: u64,
    /// Per column: the index of the run holding the column's next pixel, and where (in
    /// column-major pixel positions) that run ends.
    cursors: Vec<(usize, u64)>,
    /// Columns and rows that may hold set pixels (inclusive), None for an empty mask: rows and
    /// columns outside are written as zeros without looking at the runs.
    span: Option<(usize, usize, u64, u64)>,
    y: u64,
}

impl<'a> RleRows<'a> {
    /// Starts at the top row of `rle` (after checking its runs add up to height × width).
    pub fn new(rle: &'a Rle) -> Result<RleRows<'a>, MaskError> {
        rle.validate()?;
        let height = rle.height() as u64;
        let width = rle.width() as usize;
        let counts = rle.counts.as_slice();
        let mut cursors = Vec::with_capacity(if height == 0 { 0 } else { width });
        if height > 0 {
            // Walk the runs once, recording the run that holds the top pixel of each column.
            let (mut run, mut end) = (0usize, counts.first().map_or(0, |&c| c as u64));
            for x in 0..width as u64 {
                let start = x * height;
                while end <= start && run + 1 < counts.len() {
                    run += 1;
                    end += counts[run] as u64;
                }
                cursors.push((run, end));
            }
        }
        let span = rle.bbox().map(|b| {
            (
                b.x as usize,
                (b.x + b.w - 1) as usize,
                b.y as u64,
                (b.y + b.h - 1) as u64,
            )
        });
        Ok(RleRows {
            counts,
            height,
            cursors,
            span,
            y: 0,
        })
    }

    /// Width in pixels (the length of every row).
    pub fn width(&self) -> usize {
        self.cursors.len()
    }

    /// Writes the next row into `row` (which must be [`RleRows::width`] long): `on` for set
    /// pixels, 0 for the others. Returns false, writing nothing, after the last row.
    pub fn next_row(&mut self, row: &mut [u8], on: u8) -> bool {
        if self.y >= self.height {
            return false;
        }
        let (h, y) = (self.height, self.y);
        self.y += 1;
        let width = self.cursors.len().min(row.len());
        let row = &mut row[..width];
        let Some((x0, x1, _, _)) = self.span.filter(|s| s.2 <= y && y <= s.3 && s.1 < width) else {
            row.fill(0);
            return true;
        };
        row[..x0].fill(0);
        row[x1 + 1..].fill(0);
        for (x, (cursor, px)) in self.cursors[x0..=x1]
            .iter_mut()
            .zip(row[x0..=x1].iter_mut())
            .enumerate()
        {
            let pos = (x0 + x) as u64 * h + y;
            let (mut run, mut end) = *cursor;
            while end <= pos && run + 1 < self.counts.len() {
                run += 1;
                end += self.counts[run] as u64;
            }
            *cursor = (run, end);
            *px = if run % 2 == 1 { on } else { 0 };
        }
        true
    }
}

/// Builds canonical run lengths (as [`Rle::from_mask`] encodes: the first run counts zeros and
/// may be empty, no other run is), splitting runs longer than `u32::MAX`.
struct RunBuilder {
    counts: Vec<u32>,
    /// Value of the last run in `counts`.
    value: bool,
}

impl RunBuilder {
    fn new() -> RunBuilder {
        RunBuilder {
            counts: vec![0],
            value: false,
        }
    }

    fn push(&mut self, value: bool, mut len: u64) {
        if len == 0 {
            return;
        }
        if value != self.value {
            self.counts.push(0);
            self.value = value;
        }
        while len > 0 {
            let Some(last) = self.counts.last_mut() else {
                return;
            };
            let room = (u32::MAX - *last) as u64;
            if room == 0 {
                // A run longer than u32::MAX: continue it after an empty run of the other value.
                self.counts.push(0);
                self.counts.push(0);
                continue;
            }
            let take = room.min(len);
            *last += take as u32;
            len -= take;
        }
    }
}

/// Reads runs as (value, remaining length), skipping empty runs.
struct RunReader<'a> {
    counts: &'a [u32],
    index: usize,
    left: u64,
}

impl<'a> RunReader<'a> {
    fn new(counts: &'a [u32]) -> RunReader<'a> {
        RunReader {
            counts,
            index: 0,
            left: counts.first().map_or(0, |&c| c as u64),
        }
    }

    /// The current run's value and remaining length (0 when the runs are exhausted).
    fn current(&mut self) -> (bool, u64) {
        while self.left == 0 && self.index + 1 < self.counts.len() {
            self.index += 1;
            self.left = self.counts[self.index] as u64;
        }
        (self.index % 2 == 1, self.left)
    }

    fn advance(&mut self, n: u64) {
        self.left -= n;
    }
}

impl Rle {
    /// The union of two masks of one size, computed on the runs (O(runs), no bitmap). The
    /// result is canonical, exactly as [`Rle::from_mask`] of the union would encode it.
    pub fn union_rle(&self, other: &Rle) -> Result<Rle, MaskError> {
        if self.size != other.size {
            return Err(MaskError::SizeMismatch {
                expected_w: self.width(),
                expected_h: self.height(),
                actual_w: other.width(),
                actual_h: other.height(),
            });
        }
        self.validate()?;
        other.validate()?;
        let total = self.height() as u64 * self.width() as u64;
        let (mut a, mut b) = (RunReader::new(&self.counts), RunReader::new(&other.counts));
        let mut out = RunBuilder::new();
        let mut pos = 0u64;
        while pos < total {
            let ((va, la), (vb, lb)) = (a.current(), b.current());
            let n = la.min(lb);
            if n == 0 {
                break; // unreachable for validated runs; never loop forever
            }
            out.push(va || vb, n);
            a.advance(n);
            b.advance(n);
            pos += n;
        }
        Ok(Rle {
            size: self.size,
            counts: out.counts,
        })
    }

    /// The same mask in canonical form (empty runs after the first removed, neighbouring runs
    /// of one value merged), as [`Rle::from_mask`] encodes it.
    pub fn canonical(&self) -> Result<Rle, MaskError> {
        self.validate()?;
        let mut out = RunBuilder::new();
        for (i, &c) in self.counts.iter().enumerate() {
            out.push(i % 2 == 1, c as u64);
        }
        Ok(Rle {
            size: self.size,
            counts: out.counts,
        })
    }

    /// Writes the mask as an 8-bit grayscale PNG (0 and 255), encoding it row by row from the
    /// runs: memory is O(width) whatever the height. Fails on an invalid RLE, an empty side
    /// (PNG has no 0-pixel images) or a side over [`MAX_PNG_SIDE`].
    pub fn write_png<W: Write>(&self, out: W) -> Result<(), MaskError> {
        let (w, h) = (self.width(), self.height());
        if w == 0 || h == 0 || w > MAX_PNG_SIDE || h > MAX_PNG_SIDE {
            return Err(MaskError::Image(format!(
                "cannot write a {w}x{h} mask as PNG (each side must be 1 to {MAX_PNG_SIDE} pixels)"
            )));
        }
        let image =
            |e: &dyn std::fmt::Display| MaskError::Image(format!("cannot encode a PNG mask: {e}"));
        let mut rows = RleRows::new(self)?;
        let mut encoder = png::Encoder::new(out, w, h);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        // Mask rows mostly repeat the row above: "Up" turns them into zeros, cheaply.
        encoder.set_filter(png::Filter::Up);
        let mut writer = encoder.write_header().map_err(|e| image(&e))?;
        {
            let mut stream = writer.stream_writer().map_err(|e| image(&e))?;
            let mut row = vec![0u8; w as usize];
            while rows.next_row(&mut row, 255) {
                stream.write_all(&row).map_err(|e| image(&e))?;
            }
            stream.finish().map_err(|e| image(&e))?;
        }
        writer.finish().map_err(|e| image(&e))?;
        Ok(())
    }

    /// [`Rle::write_png`] into memory.
    pub fn to_png_bytes(&self) -> Result<Vec<u8>, MaskError> {
        let mut out = Vec::new();
        self.write_png(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::mask::Mask;
    use proptest::prelude::*;

    fn mask_strategy() -> impl Strategy<Value = Mask> {
        (0u32..9, 0u32..9).prop_flat_map(|(w, h)| {
            proptest::collection::vec(0u8..2, (w * h) as usize)
                .prop_map(move |data| Mask::from_raw(w, h, data).unwrap())
        })
    }

    fn rows_of(rle: &Rle) -> Vec<u8> {
        let mut rows = RleRows::new(rle).unwrap();
        let mut row = vec![0u8; rows.width()];
        let mut out = Vec::new();
        while rows.next_row(&mut row, 1) {
            out.extend_from_slice(&row);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn rows_match_the_decoded_bitmap(mask in mask_strategy()) {
            let rle = Rle::from_mask(&mask);
            prop_assert_eq!(rows_of(&rle), mask.data().to_vec());
        }

        #[test]
        fn union_on_runs_matches_the_bitmap_union(
            (a, b) in (1u32..9, 1u32..9).prop_flat_map(|(w, h)| {
                let n = (w * h) as usize;
                (proptest::collection::vec(0u8..2, n), proptest::collection::vec(0u8..2, n))
                    .prop_map(move |(a, b)| {
                        (Mask::from_raw(w, h, a).unwrap(), Mask::from_raw(w, h, b).unwrap())
                    })
            })
        ) {
            let mut both = a.clone();
            both.union(&b).unwrap();
            let ours = Rle::from_mask(&a).union_rle(&Rle::from_mask(&b)).unwrap();
            prop_assert_eq!(ours, Rle::from_mask(&both));
        }
    }

    #[test]
    fn rows_and_canonical_accept_empty_runs_in_the_middle() {
        // 2x3 (h x w) with non-canonical zero-length runs: 0s: 1, 1s: 0, 0s: 2, 1s: 3.
        let rle = Rle {
            size: [2, 3],
            counts: vec![1, 0, 2, 3],
        };
        // Column-major: pixels 0..3 off, 3..6 on -> columns x=0 (0,0), x=1 (0,1), x=2 (1,1).
        assert_eq!(rows_of(&rle), vec![0, 0, 1, 0, 1, 1]);
        let canonical = rle.canonical().unwrap();
        assert_eq!(canonical.counts, vec![3, 3]);
        assert_eq!(canonical, Rle::from_mask(&rle.to_mask().unwrap()));
    }

    #[test]
    fn png_from_runs_decodes_to_the_same_mask() {
        let mut mask = Mask::new(13, 7);
        for (x, y) in [(0, 0), (12, 6), (5, 3), (5, 4), (6, 3)] {
            mask.set(x, y, true);
        }
        let bytes = Rle::from_mask(&mask).to_png_bytes().unwrap();
        assert_eq!(Mask::from_png_bytes(&bytes, 127).unwrap(), mask);
    }

    #[test]
    fn png_refuses_sizes_a_png_cannot_have() {
        assert!(Rle::empty(0, 5).to_png_bytes().is_err());
        assert!(Rle::empty(5, 0).to_png_bytes().is_err());
        let huge = Rle {
            size: [1, u32::MAX],
            counts: vec![u32::MAX],
        };
        assert!(huge.to_png_bytes().is_err(), "wider than PNG allows");
    }
}
