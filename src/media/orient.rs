//! Display orientation: the eight flips and quarter turns (the dihedral group D4) that EXIF
//! orientation and video display matrices describe, and their application to RGBA buffers.

/// One of the eight axis-aligned orientations of a raster, as an operation from stored
/// pixels to displayed pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Orientation {
    /// Shown as stored.
    #[default]
    Identity,
    /// Turned 90° clockwise.
    Rotate90,
    /// Turned 180°.
    Rotate180,
    /// Turned 270° clockwise (90° counter-clockwise).
    Rotate270,
    /// Mirrored left-right.
    FlipHorizontal,
    /// Mirrored top-bottom.
    FlipVertical,
    /// Mirrored about the main diagonal (`out(x, y) = in(y, x)`).
    Transpose,
    /// Mirrored about the anti-diagonal.
    Transverse,
}

impl Orientation {
    /// Whether displayed width and height are the stored height and width.
    pub fn swaps_axes(self) -> bool {
        matches!(
            self,
            Self::Rotate90 | Self::Rotate270 | Self::Transpose | Self::Transverse
        )
    }

    /// The clockwise quarter-turn part of the orientation in degrees (0, 90, 180 or 270),
    /// as reported in [`super::ItemInfo::rotation_degrees`].
    pub fn rotation_degrees(self) -> u32 {
        match self {
            Self::Identity | Self::FlipHorizontal | Self::FlipVertical => 0,
            Self::Rotate90 | Self::Transpose => 90,
            Self::Rotate180 => 180,
            Self::Rotate270 | Self::Transverse => 270,
        }
    }

    /// Displayed size of a stored `width` × `height` raster.
    pub fn display_size(self, width: u32, height: u32) -> (u32, u32) {
        if self.swaps_axes() {
            (height, width)
        } else {
            (width, height)
        }
    }

    /// Orientation described by an FFmpeg display matrix (nine 16.16/2.30 fixed-point
    /// values, `AV_PKT_DATA_DISPLAYMATRIX`), following the rules of the `ffmpeg` tool's
    /// autorotation (FFmpeg 7 `fftools`): the angle from `av_display_rotation_get`, rounded
    /// and negated into a clockwise angle, plus flips read from the matrix signs.
    /// Angles that are not a multiple of 90° (±1°) are ignored.
    pub fn from_display_matrix(matrix: &[i32; 9], ccw_degrees: f64) -> Self {
        let mut theta = -ccw_degrees.round();
        theta -= 360.0 * (theta / 360.0 + 0.9 / 360.0).floor();
        let near = |a: f64| (theta - a).abs() < 1.0;
        if near(90.0) {
            if matrix[3] > 0 {
                Self::Transpose
            } else {
                Self::Rotate90
            }
        } else if near(180.0) {
            match (matrix[0] < 0, matrix[4] < 0) {
                (true, true) => Self::Rotate180,
                (true, false) => Self::FlipHorizontal,
                (false, true) => Self::FlipVertical,
                (false, false) => Self::Identity,
            }
        } else if near(270.0) {
            if matrix[3] < 0 {
                Self::Transverse
            } else {
                Self::Rotate270
            }
        } else if near(0.0) || near(360.0) {
            if matrix[4] < 0 {
                Self::FlipVertical
            } else {
                Self::Identity
            }
        } else {
            Self::Identity
        }
    }

    /// Source pixel of displayed pixel (`x`, `y`) for a stored `width` × `height` raster.
    fn source(self, x: u32, y: u32, width: u32, height: u32) -> (u32, u32) {
        match self {
            Self::Identity => (x, y),
            Self::Rotate90 => (y, height - 1 - x),
            Self::Rotate180 => (width - 1 - x, height - 1 - y),
            Self::Rotate270 => (width - 1 - y, x),
            Self::FlipHorizontal => (width - 1 - x, y),
            Self::FlipVertical => (x, height - 1 - y),
            Self::Transpose => (y, x),
            Self::Transverse => (width - 1 - y, height - 1 - x),
        }
    }

    /// Applies the orientation to a tightly packed RGBA8 raster; returns the displayed
    /// raster and its size.
    pub fn apply_rgba(self, rgba: Vec<u8>, width: u32, height: u32) -> (Vec<u8>, u32, u32) {
        if self == Self::Identity || width == 0 || height == 0 {
            return (rgba, width, height);
        }
        let (out_w, out_h) = self.display_size(width, height);
        let src: &[[u8; 4]] = rgba.as_chunks::<4>().0;
        let mut out = vec![0u8; rgba.len()];
        for (y, row) in out.chunks_exact_mut(out_w as usize * 4).enumerate() {
            for (x, px) in row.as_chunks_mut::<4>().0.iter_mut().enumerate() {
                let (sx, sy) = self.source(x as u32, y as u32, width, height);
                *px = src[sy as usize * width as usize + sx as usize];
            }
        }
        (out, out_w, out_h)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 3×2 raster whose pixels are numbered 0..6 in the red channel.
    fn numbered() -> Vec<u8> {
        (0u8..6).flat_map(|i| [i, 0, 0, 255]).collect()
    }

    fn reds(v: &[u8]) -> Vec<u8> {
        v.chunks_exact(4).map(|p| p[0]).collect()
    }

    #[test]
    fn quarter_turns_and_flips_move_pixels_as_expected() {
        // Stored:   0 1 2
        //           3 4 5
        let cases = [
            (Orientation::Identity, (3, 2), vec![0, 1, 2, 3, 4, 5]),
            (Orientation::Rotate90, (2, 3), vec![3, 0, 4, 1, 5, 2]),
            (Orientation::Rotate180, (3, 2), vec![5, 4, 3, 2, 1, 0]),
            (Orientation::Rotate270, (2, 3), vec![2, 5, 1, 4, 0, 3]),
            (Orientation::FlipHorizontal, (3, 2), vec![2, 1, 0, 5, 4, 3]),
            (Orientation::FlipVertical, (3, 2), vec![3, 4, 5, 0, 1, 2]),
            (Orientation::Transpose, (2, 3), vec![0, 3, 1, 4, 2, 5]),
            (Orientation::Transverse, (2, 3), vec![5, 2, 4, 1, 3, 0]),
        ];
        for (o, (w, h), want) in cases {
            let (out, ow, oh) = o.apply_rgba(numbered(), 3, 2);
            assert_eq!((ow, oh), (w, h), "{o:?}");
            assert_eq!(reds(&out), want, "{o:?}");
        }
    }

    /// A display matrix that `av_display_rotation_get` reads as `ccw` degrees, then flipped
    /// like `av_display_matrix_flip` does. `ccw = 90` is what `-metadata:s:v:0 rotate=90`
    /// writes in FFmpeg 5.1 (the CLI turns such video 90° counter-clockwise).
    fn matrix(ccw: f64, hflip: bool, vflip: bool) -> [i32; 9] {
        let r = ccw.to_radians();
        let c = r.cos();
        let s = r.sin();
        let fix = |v: f64| (v * 65536.0).round() as i32;
        let mut m = [fix(c), fix(-s), 0, fix(s), fix(c), 0, 0, 0, 1 << 30];
        let flip = [if hflip { -1 } else { 1 }, if vflip { -1 } else { 1 }, 1];
        for (i, v) in m.iter_mut().enumerate() {
            *v *= flip[i % 3];
        }
        m
    }

    /// `av_display_rotation_get` reimplemented for the test.
    fn rotation_get(m: &[i32; 9]) -> f64 {
        let f = |v: i32| f64::from(v) / 65536.0;
        let s0 = f(m[0]).hypot(f(m[3]));
        let s1 = f(m[1]).hypot(f(m[4]));
        -(f(m[1]) / s1).atan2(f(m[0]) / s0).to_degrees()
    }

    #[test]
    fn display_matrix_maps_to_the_autorotate_orientation() {
        let cases = [
            (0.0, false, false, Orientation::Identity),
            (-90.0, false, false, Orientation::Rotate90),
            (90.0, false, false, Orientation::Rotate270),
            (180.0, false, false, Orientation::Rotate180),
            (-180.0, false, false, Orientation::Rotate180),
            (0.0, true, false, Orientation::FlipHorizontal),
            (0.0, false, true, Orientation::FlipVertical),
            (-90.0, true, false, Orientation::Transpose),
            (90.0, true, false, Orientation::Transverse),
            (45.0, false, false, Orientation::Identity),
        ];
        for (ccw, h, v, want) in cases {
            let m = matrix(ccw, h, v);
            if !h && !v {
                let back = rotation_get(&m);
                assert!(
                    (back - ccw).abs() < 1e-3 || (back - ccw).abs() > 359.9,
                    "{ccw} {back}"
                );
            }
            let got = Orientation::from_display_matrix(&m, rotation_get(&m));
            assert_eq!(got, want, "ccw {ccw} hflip {h} vflip {v}: {m:?}");
        }
        assert_eq!(Orientation::Rotate90.rotation_degrees(), 90);
        assert_eq!(Orientation::Rotate90.display_size(640, 360), (360, 640));
    }
}
