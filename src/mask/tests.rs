//! Unit and property tests of masks and RLE. Golden strings come from pycocotools 2.0.x
//! (`mask.encode`, `mask.frPyObjects`) run on the same inputs.
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn mask_from_rows(rows: &[&str]) -> Mask {
    let h = rows.len() as u32;
    let w = rows.first().map(|r| r.len()).unwrap_or(0) as u32;
    let data = rows
        .iter()
        .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
        .collect();
    Mask::from_raw(w, h, data).unwrap()
}

fn brute_bbox(m: &Mask) -> Option<BBox> {
    let mut r: Option<(u32, u32, u32, u32)> = None;
    for y in 0..m.height() {
        for x in 0..m.width() {
            if m.get(x as i64, y as i64) {
                r = Some(match r {
                    None => (x, y, x, y),
                    Some((a, b, c, d)) => (a.min(x), b.min(y), c.max(x), d.max(y)),
                });
            }
        }
    }
    r.map(|(a, b, c, d)| BBox {
        x: a,
        y: b,
        w: c - a + 1,
        h: d - b + 1,
    })
}

fn check_rle_round_trip(m: &Mask) {
    let rle = Rle::from_mask(m);
    rle.validate().unwrap();
    assert_eq!(rle.size, [m.height(), m.width()]);
    assert!(
        rle.counts.iter().skip(1).all(|&c| c > 0),
        "only the first run may be empty"
    );
    assert_eq!(&rle.to_mask().unwrap(), m);
    assert_eq!(rle.area(), m.area());
    assert_eq!(rle.bbox(), m.bbox());
    assert_eq!(m.bbox(), brute_bbox(m));
    let s = rle.to_coco_string();
    assert_eq!(
        Rle::from_coco_string(&s, m.height(), m.width()).unwrap(),
        rle
    );
    let json = serde_json::to_string(&rle).unwrap();
    assert_eq!(serde_json::from_str::<Rle>(&json).unwrap(), rle);
}

#[test]
fn rle_edge_cases_round_trip() {
    let mut cases = vec![
        Mask::new(0, 0),
        Mask::new(0, 5),
        Mask::new(5, 0),
        Mask::new(1, 1),
        Mask::new(7, 3),
        Mask::from_raw(1, 1, vec![1]).unwrap(),
        Mask::from_raw(4, 3, vec![1; 12]).unwrap(),
    ];
    for (w, h) in [(1, 9), (9, 1), (13, 7), (2, 2)] {
        for (x, y) in [(0, 0), (w - 1, h - 1), (w / 2, h / 2)] {
            let mut m = Mask::new(w, h);
            m.set(x as i64, y as i64, true);
            cases.push(m);
        }
        // One-pixel-wide lines: a column, a row, a diagonal.
        let mut col = Mask::new(w, h);
        let mut row = Mask::new(w, h);
        let mut diag = Mask::new(w, h);
        for y in 0..h as i64 {
            col.set(w as i64 / 2, y, true);
            diag.set(y, y, true);
        }
        for x in 0..w as i64 {
            row.set(x, h as i64 / 2, true);
        }
        cases.extend([col, row, diag]);
    }
    for m in &cases {
        check_rle_round_trip(m);
    }
    let empty = Rle::from_mask(&Mask::new(4, 3));
    assert_eq!(empty.counts, vec![12]);
    assert_eq!(empty.bbox(), None);
    let full = Rle::from_mask(&Mask::from_raw(4, 3, vec![1; 12]).unwrap());
    assert_eq!(full.counts, vec![0, 12]);
    assert_eq!(
        full.bbox(),
        Some(BBox {
            x: 0,
            y: 0,
            w: 4,
            h: 3
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_masks_round_trip(w in 0u32..24, h in 0u32..24, seed in any::<u64>(), density in 0u32..=100) {
        let mut state = seed | 1;
        let data: Vec<u8> = (0..w * h)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                u8::from((state % 100) < density as u64)
            })
            .collect();
        check_rle_round_trip(&Mask::from_raw(w, h, data).unwrap());
    }

    #[test]
    fn random_counts_compress_round_trip(counts in proptest::collection::vec(0u32..u32::MAX / 64, 1..40)) {
        // Large and wildly varying runs exercise negative deltas and long digit groups.
        let total: u64 = counts.iter().map(|&c| c as u64).sum();
        let rle = Rle { size: [1, total as u32], counts: counts.clone() };
        prop_assume!(total <= u32::MAX as u64);
        let s = rle.to_coco_string();
        prop_assert_eq!(Rle::from_coco_string(&s, 1, total as u32).unwrap().counts, counts);
    }
}

#[test]
fn compressed_strings_match_pycocotools() {
    // np.zeros((5, 7)); m[1:4, 2:5] = 1; m[0, 6] = 1 → mask.encode
    let mut m = Mask::new(7, 5);
    for y in 1..4 {
        for x in 2..5 {
            m.set(x, y, true);
        }
    }
    m.set(6, 0, true);
    let rle = Rle::from_mask(&m);
    assert_eq!(rle.to_coco_string(), ";320004NN");
    assert_eq!(rle.area(), 10);
    assert_eq!(
        rle.bbox(),
        Some(BBox {
            x: 2,
            y: 0,
            w: 5,
            h: 4
        })
    );

    // np.zeros((300, 300)); m[150:, 100:] = 1; m[0:3, 0] = 1
    let mut m = Mask::new(300, 300);
    for y in 150..300 {
        for x in 100..300 {
            m.set(x, y, true);
        }
    }
    for y in 0..3 {
        m.set(0, y, true);
    }
    let expected = format!("03S^m0c4cfRO{}", "0".repeat(397));
    assert_eq!(Rle::from_mask(&m).to_coco_string(), expected);
    assert_eq!(
        Rle::from_coco_string(&expected, 300, 300)
            .unwrap()
            .to_mask()
            .unwrap(),
        m
    );

    // np.zeros((1, 70000)); m[0, 5] = 1; m[0, 69000:] = 1
    let mut m = Mask::new(70000, 1);
    m.set(5, 0, true);
    for x in 69000..70000 {
        m.set(x, 0, true);
    }
    assert_eq!(Rle::from_mask(&m).to_coco_string(), "51R\\S2Wo0");
}

#[test]
fn bad_rles_are_rejected() {
    assert!(
        Rle::from_coco_string(";320004NN", 5, 6).is_err(),
        "wrong size"
    );
    assert!(
        Rle::from_coco_string(";32000 4NN", 5, 7).is_err(),
        "bad character"
    );
    assert!(
        Rle::from_coco_string("3S", 300, 300).is_err(),
        "truncated number"
    );
    assert!(
        Rle::from_coco_string("o", 1, 1).is_err(),
        "ends while more digits follow"
    );
    let bad = Rle {
        size: [2, 2],
        counts: vec![1, 2],
    };
    assert!(bad.validate().is_err());
    assert!(bad.to_mask().is_err());
    assert!(serde_json::from_str::<Rle>(r#"{"size":[2,2],"counts":[1,2]}"#).is_err());
    assert!(serde_json::from_str::<Rle>(r#"{"size":[2,2],"counts":[1,2,1]}"#).is_ok());
    // A decoded run below zero.
    assert!(Rle::from_coco_string("00000P", 1, 1).is_err());
}

#[test]
fn polygon_matches_pycocotools() {
    // mask.frPyObjects([[1.2, 1.7, 8.9, 2.1, 6.3, 7.8, 0.4, 5.5]], 10, 12)
    let poly = vec![vec![1.2, 1.7, 8.9, 2.1, 6.3, 7.8, 0.4, 5.5]];
    let rle = Rle::from_polygon(&poly[0], 10, 12).unwrap();
    assert_eq!(rle.to_coco_string(), "51630001O000000N2Nn0");
    let expected = mask_from_rows(&[
        "............",
        "............",
        ".########...",
        ".#######....",
        ".#######....",
        "#######.....",
        "...####.....",
        "............",
        "............",
        "............",
    ]);
    assert_eq!(
        Rle::from_polygons(&poly, 10, 12)
            .unwrap()
            .to_mask()
            .unwrap(),
        expected
    );
    // Degenerate and hostile inputs do not panic.
    assert!(Rle::from_polygon(&[], 4, 4).unwrap().is_empty());
    assert!(Rle::from_polygon(&[1.0, 1.0], 4, 4).unwrap().is_empty());
    assert!(
        Rle::from_polygon(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 4, 4)
            .unwrap()
            .is_empty()
    );
    assert!(Rle::from_polygon(&[f64::NAN, 0.0, 1.0, 1.0, 2.0, 0.0], 4, 4).is_err());
    assert!(Rle::from_polygon(&[0.0, 0.0, 1e9, 0.0, 1e9, 1e9], 4, 4).is_err());
    let outside =
        Rle::from_polygon(&[-5.0, -5.0, 50.0, -5.0, 50.0, 50.0, -5.0, 50.0], 4, 6).unwrap();
    assert_eq!(outside.area(), 24, "a polygon covering the image fills it");
}

#[test]
fn bbox_area_and_resize() {
    let m = mask_from_rows(&["....", ".##.", ".#..", "...."]);
    assert_eq!(
        m.bbox(),
        Some(BBox {
            x: 1,
            y: 1,
            w: 2,
            h: 2
        })
    );
    assert_eq!(Mask::new(3, 3).bbox(), None);
    let up = m.resize_nearest(8, 8);
    assert_eq!(up.area(), 12);
    assert_eq!(
        up.bbox(),
        Some(BBox {
            x: 2,
            y: 2,
            w: 4,
            h: 4
        })
    );
    assert_eq!(up.resize_nearest(4, 4), m);
    assert_eq!(m.resize_nearest(0, 5).area(), 0);
    let odd = m.resize_nearest(3, 5);
    assert_eq!((odd.width(), odd.height()), (3, 5));
}

#[test]
fn brush_covers_the_capsule_and_reports_the_dirty_rect() {
    let mut m = Mask::new(20, 12);
    let dirty = m.paint_stroke((4.0, 6.0), (14.0, 6.0), 2.0, true).unwrap();
    for y in 0..12 {
        for x in 0..20 {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            let cx = px.clamp(4.0, 14.0);
            let inside = (px - cx).powi(2) + (py - 6.0).powi(2) <= 4.0;
            assert_eq!(m.get(x, y), inside, "pixel ({x}, {y})");
        }
    }
    assert_eq!(Some(dirty), m.bbox());
    assert_eq!(
        dirty,
        BBox {
            x: 2,
            y: 4,
            w: 14,
            h: 4
        }
    );
    // Erasing a dot in the middle.
    let erased = m.paint_stroke((9.0, 6.0), (9.0, 6.0), 1.0, false).unwrap();
    assert!(!m.get(8, 5) && !m.get(9, 5) && !m.get(8, 6) && !m.get(9, 6));
    assert_eq!(
        erased,
        BBox {
            x: 8,
            y: 5,
            w: 2,
            h: 2
        }
    );
    // A tiny brush still paints the pixel under the cursor; a stroke outside paints nothing.
    let mut m = Mask::new(5, 5);
    assert_eq!(
        m.paint_stroke((2.2, 3.9), (2.2, 3.9), 0.1, true),
        Some(BBox {
            x: 2,
            y: 3,
            w: 1,
            h: 1
        })
    );
    assert_eq!(m.area(), 1);
    assert_eq!(
        m.paint_stroke((-20.0, -20.0), (-10.0, -30.0), 2.0, true),
        None
    );
    assert!(
        m.paint_stroke((f32::NAN, 1.0), (1.0, 1.0), f32::INFINITY, true)
            .is_some()
    );
    // Clipped at the border.
    let mut m = Mask::new(5, 5);
    let d = m.paint_stroke((0.0, 0.0), (0.0, 0.0), 3.0, true).unwrap();
    assert_eq!((d.x, d.y), (0, 0));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn polygon_fill_matches_brute_force_even_odd(
        pts in proptest::collection::vec((-3.0f32..23.0, -3.0f32..19.0), 3..9)
    ) {
        let mut m = Mask::new(20, 16);
        let dirty = m.fill_polygon(&pts, true);
        for y in 0..16 {
            for x in 0..20 {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                let mut inside = false;
                for i in 0..pts.len() {
                    let (x0, y0) = (pts[i].0 as f64, pts[i].1 as f64);
                    let (x1, y1) = (pts[(i + 1) % pts.len()].0 as f64, pts[(i + 1) % pts.len()].1 as f64);
                    if ((y0 <= py && py < y1) || (y1 <= py && py < y0))
                        && px < x0 + (py - y0) * (x1 - x0) / (y1 - y0)
                    {
                        inside = !inside;
                    }
                }
                prop_assert_eq!(m.get(x, y), inside, "pixel ({}, {})", x, y);
            }
        }
        prop_assert_eq!(dirty, m.bbox());
    }
}

#[test]
fn polygon_fill_examples() {
    let mut m = Mask::new(8, 6);
    let d = m.fill_polygon(&[(1.0, 1.0), (5.0, 1.0), (5.0, 4.0), (1.0, 4.0)], true);
    assert_eq!(
        d,
        Some(BBox {
            x: 1,
            y: 1,
            w: 4,
            h: 3
        })
    );
    assert_eq!(m.area(), 12);
    // A bow tie (self-intersecting) fills both triangles.
    let mut m = Mask::new(10, 10);
    m.fill_polygon(&[(0.0, 0.0), (10.0, 10.0), (10.0, 0.0), (0.0, 10.0)], true);
    assert!(m.get(1, 5) && m.get(8, 5) && !m.get(5, 1) && !m.get(5, 8));
    // A pentagram's centre is a hole under the even-odd rule.
    let star: Vec<(f32, f32)> = (0..5)
        .map(|i| {
            let a = std::f32::consts::FRAC_PI_2 + i as f32 * 4.0 * std::f32::consts::PI / 5.0;
            (50.0 + 45.0 * a.cos(), 50.0 - 45.0 * a.sin())
        })
        .collect();
    let mut m = Mask::new(100, 100);
    m.fill_polygon(&star, true);
    assert!(!m.get(50, 50) && m.get(50, 10));
    m.fill_polygon(&star, false);
    assert!(m.is_empty());
    assert_eq!(m.fill_polygon(&[(0.0, 0.0), (3.0, 3.0)], true), None);
}

#[test]
fn fill_holes_fills_only_enclosed_background() {
    let mut ring = mask_from_rows(&[
        ".......", ".#####.", ".#...#.", ".#.#.#.", ".#...#.", ".#####.", ".......",
    ]);
    ring.fill_holes();
    assert_eq!(ring.area(), 25);
    let mut open = mask_from_rows(&["#####", "#...#", "#...#", "##.##"]);
    let before = open.clone();
    open.fill_holes();
    assert_eq!(open, before, "a gap to the border is not a hole");
    // A diagonal gap does not leak under 4-connectivity of the background.
    let mut diag = mask_from_rows(&[".#...", "#.#..", ".#...", "....."]);
    diag.fill_holes();
    assert!(diag.get(1, 1));
    let mut empty = Mask::new(0, 3);
    empty.fill_holes();
}

#[test]
fn boolean_ops() {
    let a = mask_from_rows(&["##..", "##.."]);
    let b = mask_from_rows(&[".##.", ".##."]);
    let mut u = a.clone();
    u.union(&b).unwrap();
    assert_eq!(u, mask_from_rows(&["###.", "###."]));
    let mut i = a.clone();
    i.intersect(&b).unwrap();
    assert_eq!(i, mask_from_rows(&[".#..", ".#.."]));
    let mut s = a.clone();
    s.subtract(&b).unwrap();
    assert_eq!(s, mask_from_rows(&["#...", "#..."]));
    let mut a2 = a.clone();
    assert!(matches!(
        a2.union(&Mask::new(4, 3)),
        Err(MaskError::SizeMismatch { .. })
    ));
    assert_eq!(a2, a, "a failed op changes nothing");
}

#[test]
fn png_round_trip_and_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let m = mask_from_rows(&["#..#.", ".##..", "....#"]);
    let path = dir.path().join("m.png");
    m.to_png(&path).unwrap();
    let raw = image::open(&path).unwrap().to_luma8();
    assert!(raw.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    assert_eq!(Mask::from_png(&path, 127).unwrap(), m);
    // A gray image read with a threshold.
    let gray = image::GrayImage::from_raw(3, 1, vec![10, 128, 250]).unwrap();
    let gpath = dir.path().join("g.png");
    gray.save(&gpath).unwrap();
    assert_eq!(Mask::from_png(&gpath, 100).unwrap().data(), &[0, 1, 1]);
    assert_eq!(Mask::from_png(&gpath, 200).unwrap().data(), &[0, 0, 1]);
    let err = Mask::from_png(&dir.path().join("missing.png"), 0).unwrap_err();
    assert!(err.to_string().contains("missing.png"));
    std::fs::write(dir.path().join("bad.png"), b"not a png").unwrap();
    assert!(Mask::from_png(&dir.path().join("bad.png"), 0).is_err());
}

#[test]
fn bbox_union_and_clipping() {
    let b = |x, y, w, h| BBox { x, y, w, h };
    assert_eq!(b(2, 3, 4, 1).union(b(0, 5, 1, 2)), b(0, 3, 6, 4));
    assert_eq!(b(2, 2, 10, 2).clipped(8, 8), Some(b(2, 2, 6, 2)));
    assert_eq!(b(1, 1, 2, 2).clipped(8, 8), Some(b(1, 1, 2, 2)));
    assert_eq!(
        b(8, 0, 3, 3).clipped(8, 8),
        None,
        "starts past the right edge"
    );
    assert_eq!(b(0, 0, 0, 5).clipped(8, 8), None, "empty");
    assert_eq!(BBox::whole(8, 5), b(0, 0, 8, 5));
    assert_eq!(BBox::whole(8, 5).clipped(8, 5), Some(BBox::whole(8, 5)));
    assert_eq!(
        b(u32::MAX - 1, 0, 5, 5).clipped(u32::MAX, 8),
        Some(b(u32::MAX - 1, 0, 1, 5)),
        "no overflow at the far edge"
    );
}
