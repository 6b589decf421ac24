//! COCO run-length encoding (column-major, counts start with a run of zeros), as in
//! pycocotools `common/maskApi.c` (cocodataset/cocoapi): `rleEncode`, `rleDecode`, `rleArea`,
//! `rleToBbox`, `rleToString`, `rleFrString` and `rleFrPoly`.

use super::{BBox, Mask, MaskError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest polygon outline, in 5× upsampled pixel steps, that [`Rle::from_polygon`] walks.
pub const MAX_POLYGON_STEPS: u64 = 10_000_000;

/// A COCO RLE mask: `size` is `[height, width]`; `counts` are alternating run lengths of 0s and
/// 1s over the pixels in column-major (Fortran) order, starting with 0s.
///
/// Serialised as COCO writes compressed RLE: `{"size": [h, w], "counts": "<string>"}`;
/// deserialising also accepts the uncompressed form with `counts` as a list of numbers. Either
/// way the run lengths must add up to `h × w`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rle {
    /// `[height, width]`, as COCO writes it.
    pub size: [u32; 2],
    /// Run lengths, uncompressed.
    pub counts: Vec<u32>,
}

impl Rle {
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.size[0]
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.size[1]
    }

    /// An RLE of `h × w` background pixels (sizes over `u32::MAX` pixels do not validate).
    pub fn empty(height: u32, width: u32) -> Rle {
        Rle {
            size: [height, width],
            counts: vec![height.saturating_mul(width)],
        }
    }

    /// Checks that the run lengths add up to height × width.
    pub fn validate(&self) -> Result<(), MaskError> {
        let total: u64 = self.counts.iter().map(|&c| c as u64).sum();
        let expected = self.size[0] as u64 * self.size[1] as u64;
        if total != expected {
            return Err(MaskError::InvalidRle(format!(
                "run lengths add up to {total} pixels but the size {}x{} (h x w) has {expected}",
                self.size[0], self.size[1]
            )));
        }
        Ok(())
    }

    /// Encodes a mask, as `rleEncode` does: column-major runs, the first run counts zeros
    /// (and is 0 when the first pixel is set); no other run is empty.
    pub fn from_mask(mask: &Mask) -> Rle {
        let (w, h) = (mask.width() as usize, mask.height() as usize);
        let data = mask.data();
        let mut counts = Vec::new();
        let mut prev = 0u8;
        let mut run = 0u32;
        for x in 0..w {
            for y in 0..h {
                let v = data[y * w + x];
                if v != prev {
                    counts.push(run);
                    run = 0;
                    prev = v;
                }
                run += 1;
            }
        }
        counts.push(run);
        Rle {
            size: [mask.height(), mask.width()],
            counts,
        }
    }

    /// Decodes to a bitmap (after checking the run lengths add up to h × w).
    pub fn to_mask(&self) -> Result<Mask, MaskError> {
        self.validate()?;
        let (h, w) = (self.size[0] as usize, self.size[1] as usize);
        let mut data = vec![0u8; h * w];
        let mut pos = 0usize;
        let mut value = 0u8;
        for &c in &self.counts {
            let c = c as usize;
            if value == 1 {
                for i in pos..pos + c {
                    // Column-major index i is pixel (x = i / h, y = i % h).
                    data[(i % h) * w + i / h] = 1;
                }
            }
            pos += c;
            value ^= 1;
        }
        Mask::from_raw(self.size[1], self.size[0], data)
    }

    /// Number of set pixels (`rleArea`: the sum of the odd-indexed runs).
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| c as u64)
            .sum()
    }

    /// True when no pixel is set.
    pub fn is_empty(&self) -> bool {
        self.area() == 0
    }

    /// The tight bounding box of the set pixels, computed on the runs (as `rleToBbox`: a run of
    /// ones that crosses a column boundary spans the full height). None for an empty mask.
    pub fn bbox(&self) -> Option<BBox> {
        let h = self.size[0] as u64;
        if h == 0 {
            return None;
        }
        let mut pos = 0u64;
        let mut range: Option<(u64, u64, u64, u64)> = None;
        for (j, &c) in self.counts.iter().enumerate() {
            let c = c as u64;
            if j % 2 == 1 && c > 0 {
                let (start, end) = (pos, pos + c - 1);
                let (xs, xe) = (start / h, end / h);
                let (ys, ye) = if xs != xe {
                    (0, h - 1)
                } else {
                    (start % h, end % h)
                };
                range = Some(match range {
                    None => (xs, ys, xe, ye),
                    Some((a, b, cc, d)) => (a.min(xs), b.min(ys), cc.max(xe), d.max(ye)),
                });
            }
            pos += c;
        }
        range.map(|(x0, y0, x1, y1)| BBox {
            x: x0 as u32,
            y: y0 as u32,
            w: (x1 - x0 + 1) as u32,
            h: (y1 - y0 + 1) as u32,
        })
    }

    /// The compressed COCO string of the counts (`rleToString` in maskApi.c): each count,
    /// minus the count two places before it for indices > 2, is written 5 bits at a time, least
    /// significant first, in characters `48 + (bits | 0x20 when more follow)`; the last
    /// character's bit 0x10 is the sign.
    pub fn to_coco_string(&self) -> String {
        let mut s = String::with_capacity(self.counts.len() * 2);
        for (i, &c) in self.counts.iter().enumerate() {
            let mut x = c as i64;
            if i > 2 {
                x -= self.counts[i - 2] as i64;
            }
            loop {
                let mut ch = (x & 0x1f) as u8;
                x >>= 5;
                let more = if ch & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    ch |= 0x20;
                }
                s.push(char::from(ch + 48));
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// Parses a compressed COCO string (`rleFrString` in maskApi.c) for an `h × w` mask and
    /// checks the result.
    pub fn from_coco_string(s: &str, height: u32, width: u32) -> Result<Rle, MaskError> {
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::with_capacity(bytes.len());
        let mut p = 0usize;
        while p < bytes.len() {
            let mut x: i64 = 0;
            let mut k = 0u32;
            loop {
                let Some(&b) = bytes.get(p) else {
                    return Err(MaskError::InvalidRle(
                        "the compressed counts string ends in the middle of a number".into(),
                    ));
                };
                if !(48..48 + 64).contains(&b) {
                    return Err(MaskError::InvalidRle(format!(
                        "character {:?} at {p} is not a compressed RLE digit",
                        char::from(b)
                    )));
                }
                if k >= 12 {
                    return Err(MaskError::InvalidRle(format!(
                        "a number at {p} in the compressed counts is too long"
                    )));
                }
                let c = (b - 48) as i64;
                x |= (c & 0x1f) << (5 * k);
                p += 1;
                k += 1;
                if c & 0x20 == 0 {
                    if c & 0x10 != 0 {
                        x |= -1i64 << (5 * k);
                    }
                    break;
                }
            }
            let m = counts.len();
            if m > 2 {
                x += counts[m - 2] as i64;
            }
            let c = u32::try_from(x).map_err(|_| {
                MaskError::InvalidRle(format!("run {m} decodes to {x}, not a run length"))
            })?;
            counts.push(c);
        }
        let rle = Rle {
            size: [height, width],
            counts,
        };
        rle.validate()?;
        Ok(rle)
    }

    /// One polygon `[x0, y0, x1, y1, …]` (pixel coordinates, pixel centres at integer + 0.5)
    /// rasterised exactly as pycocotools `rleFrPoly` in maskApi.c does: the vertices are
    /// upsampled by 5 and rounded, the boundary is walked densely, and a pixel is set when its
    /// centre is inside. Odd trailing coordinates are ignored, as `int(len(p)/2)` does in
    /// `_mask.pyx`.
    ///
    /// Fails on a non-finite coordinate or a boundary longer than [`MAX_POLYGON_STEPS`]
    /// upsampled steps (where pycocotools would allocate without bound).
    pub fn from_polygon(poly: &[f64], height: u32, width: u32) -> Result<Rle, MaskError> {
        if let Some(bad) = poly.iter().find(|v| !v.is_finite()) {
            return Err(MaskError::InvalidPolygon(format!(
                "coordinate {bad} is not finite"
            )));
        }
        let k = poly.len() / 2;
        let (h, w) = (height as i64, width as i64);
        let scale = 5.0f64;
        // C's `(int)(v + .5)` truncates toward zero; Rust's `as` does too (and saturates).
        let mut x: Vec<i64> = (0..k)
            .map(|j| (scale * poly[2 * j] + 0.5) as i32 as i64)
            .collect();
        let mut y: Vec<i64> = (0..k)
            .map(|j| (scale * poly[2 * j + 1] + 0.5) as i32 as i64)
            .collect();
        if k == 0 {
            return Ok(Rle::empty(height, width));
        }
        x.push(x[0]);
        y.push(y[0]);
        let steps: u64 = (0..k)
            .map(|j| {
                (x[j] - x[j + 1])
                    .unsigned_abs()
                    .max((y[j] - y[j + 1]).unsigned_abs())
                    + 1
            })
            .sum();
        if steps > MAX_POLYGON_STEPS {
            return Err(MaskError::InvalidPolygon(format!(
                "the outline is {steps} upsampled steps long, more than {MAX_POLYGON_STEPS}; \
                 are the coordinates in pixels?"
            )));
        }
        let mut u: Vec<i64> = Vec::new();
        let mut v: Vec<i64> = Vec::new();
        for j in 0..k {
            let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
            let dx = (xe - xs).abs();
            let dy = (ys - ye).abs();
            let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
            if flip {
                std::mem::swap(&mut xs, &mut xe);
                std::mem::swap(&mut ys, &mut ye);
            }
            // A repeated vertex (dx = dy = 0) divides 0 by 0 in C; its single point never
            // becomes a boundary point because its neighbours share its x, so use 0.
            let s = if dx >= dy {
                if dx == 0 {
                    0.0
                } else {
                    (ye - ys) as f64 / dx as f64
                }
            } else {
                (xe - xs) as f64 / dy as f64
            };
            if dx >= dy {
                for d in 0..=dx {
                    let t = if flip { dx - d } else { d };
                    u.push(t + xs);
                    v.push((ys as f64 + s * t as f64 + 0.5) as i32 as i64);
                }
            } else {
                for d in 0..=dy {
                    let t = if flip { dy - d } else { d };
                    v.push(t + ys);
                    u.push((xs as f64 + s * t as f64 + 0.5) as i32 as i64);
                }
            }
        }
        // Points along the y-boundary, downsampled.
        let mut a: Vec<u64> = Vec::new();
        for j in 1..u.len() {
            if u[j] == u[j - 1] {
                continue;
            }
            let xd = (if u[j] < u[j - 1] { u[j] } else { u[j] - 1 }) as f64;
            let xd = (xd + 0.5) / scale - 0.5;
            if xd.floor() != xd || xd < 0.0 || xd > (w - 1) as f64 {
                continue;
            }
            let yd = (if v[j] < v[j - 1] { v[j] } else { v[j - 1] }) as f64;
            let mut yd = (yd + 0.5) / scale - 0.5;
            if yd < 0.0 {
                yd = 0.0;
            } else if yd > h as f64 {
                yd = h as f64;
            }
            let yd = yd.ceil();
            a.push((xd as i64 * h + yd as i64) as u64);
        }
        a.push((h * w) as u64);
        a.sort_unstable();
        let mut p = 0u64;
        for e in a.iter_mut() {
            let t = *e;
            *e -= p;
            p = t;
        }
        // Merge empty runs: a zero-length run joins its neighbours.
        let mut b: Vec<u64> = vec![a[0]];
        let mut j = 1;
        while j < a.len() {
            if a[j] > 0 {
                b.push(a[j]);
                j += 1;
            } else {
                j += 1;
                if j < a.len() {
                    if let Some(last) = b.last_mut() {
                        *last += a[j];
                    }
                    j += 1;
                }
            }
        }
        Ok(Rle {
            size: [height, width],
            counts: b.into_iter().map(|c| c as u32).collect(),
        })
    }

    /// Several polygons merged into one mask, as pycocotools `frPyObjects` on a list of
    /// polygons followed by `merge` (what `COCO.annToRLE` does for a polygon segmentation).
    /// Every list is read as a polygon (pycocotools 2.0 rejects 4-number lists given as Python
    /// lists, so there is no box form to match). The result is canonical (as
    /// [`Rle::from_mask`] would encode it).
    pub fn from_polygons(polys: &[Vec<f64>], height: u32, width: u32) -> Result<Rle, MaskError> {
        let mut mask = Mask::new(width, height);
        for poly in polys {
            mask.union(&Rle::from_polygon(poly, height, width)?.to_mask()?)?;
        }
        Ok(Rle::from_mask(&mask))
    }
}

impl Serialize for Rle {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = serializer.serialize_struct("Rle", 2)?;
        st.serialize_field("size", &self.size)?;
        st.serialize_field("counts", &self.to_coco_string())?;
        st.end()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CountsRepr {
    Compressed(String),
    Uncompressed(Vec<u32>),
}

#[derive(Deserialize)]
struct RleRepr {
    size: [u32; 2],
    counts: CountsRepr,
}

impl<'de> Deserialize<'de> for Rle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = RleRepr::deserialize(deserializer)?;
        let rle = match repr.counts {
            CountsRepr::Compressed(s) => Rle::from_coco_string(&s, repr.size[0], repr.size[1]),
            CountsRepr::Uncompressed(counts) => {
                let rle = Rle {
                    size: repr.size,
                    counts,
                };
                rle.validate().map(|()| rle)
            }
        };
        rle.map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod proptests {
    //! Property tests of the RLE decoder: arbitrary strings and counts never panic, anything
    //! that decodes re-encodes to itself, and the runs agree with the bitmap they decode to.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    /// Largest mask decoded to a bitmap in these tests (sizes above are checked on the runs).
    const SMALL: u64 = 4096;

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    fn check_bitmap(rle: &Rle) -> Result<(), TestCaseError> {
        if rle.size[0] as u64 * rle.size[1] as u64 > SMALL {
            return Ok(());
        }
        let mask = rle.to_mask().unwrap();
        let set = mask.data().iter().filter(|&&v| v != 0).count() as u64;
        prop_assert_eq!(set, rle.area());
        let again = Rle::from_mask(&mask);
        let decoded = again.to_mask().unwrap();
        prop_assert_eq!(decoded.data(), mask.data());
        prop_assert_eq!(again.area(), rle.area());
        prop_assert_eq!(again.bbox(), rle.bbox());
        Ok(())
    }

    proptest! {
        #![proptest_config(config())]

        /// Any string, any size: an error or a mask whose runs fill the size exactly.
        #[test]
        fn any_compressed_string_decodes_or_is_refused(
            s in "[0-9A-Za-z\\[\\]^_`\\\\@?>=<;:]{0,40}|.{0,20}",
            h in prop_oneof![0u32..64, any::<u32>()],
            w in prop_oneof![0u32..64, any::<u32>()],
        ) {
            if let Ok(rle) = Rle::from_coco_string(&s, h, w) {
                prop_assert!(rle.validate().is_ok());
                prop_assert!(rle.counts.len() <= s.len());
                let back = Rle::from_coco_string(&rle.to_coco_string(), h, w).unwrap();
                prop_assert_eq!(&back, &rle);
                check_bitmap(&rle)?;
            }
        }

        /// Any counts: refused unless they add up to h × w; then the compressed string and the
        /// JSON form round-trip and the runs match the bitmap.
        #[test]
        fn any_counts_round_trip_or_are_refused(
            counts in proptest::collection::vec(prop_oneof![0u32..20, any::<u32>()], 0..24),
            h in 0u32..40,
            fit in any::<bool>(),
        ) {
            let total: u64 = counts.iter().map(|&c| c as u64).sum();
            // Half the cases get a width that makes the counts fit, when one does.
            let h64 = u64::from(h);
            let fits = fit && h > 0 && total.is_multiple_of(h64) && total / h64 <= u64::from(u32::MAX);
            let w = if fits { (total / h64) as u32 } else { 7 };
            let rle = Rle { size: [h, w], counts };
            let json = serde_json::to_value(&rle).unwrap();
            let parsed: Result<Rle, _> = serde_json::from_value(json);
            match rle.validate() {
                Err(_) => prop_assert!(parsed.is_err()),
                Ok(()) => {
                    prop_assert_eq!(&parsed.unwrap(), &rle);
                    let uncompressed = serde_json::json!({ "size": rle.size, "counts": rle.counts });
                    let parsed: Rle = serde_json::from_value(uncompressed).unwrap();
                    prop_assert_eq!(&parsed, &rle);
                    check_bitmap(&rle)?;
                }
            }
        }
    }
}
