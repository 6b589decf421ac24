//! The mapping between screen points and image pixels: fit, zoom around a point, pan.
//!
//! Image coordinates are continuous: pixel `(i, j)` covers `[i, i+1) × [j, j+1)`, so its centre
//! is `(i + 0.5, j + 0.5)` (the convention of SAM prompts and of the overlay shader).

use egui::{Pos2, Rect, Vec2, pos2, vec2};

/// Smallest and largest zoom, in screen points per image pixel.
pub const MIN_ZOOM: f32 = 1.0 / 64.0;
/// Largest zoom, in screen points per image pixel.
pub const MAX_ZOOM: f32 = 128.0;

/// Screen ↔ image mapping: `screen = origin + image * zoom`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanvasTransform {
    /// Screen position (points) of the image's top-left corner.
    pub origin_screen: Pos2,
    /// Screen points per image pixel.
    pub zoom: f32,
}

impl Default for CanvasTransform {
    fn default() -> Self {
        Self {
            origin_screen: Pos2::ZERO,
            zoom: 1.0,
        }
    }
}

impl CanvasTransform {
    /// The transform that shows a `image_size_px` image whole and centred in `viewport`.
    pub fn fit(viewport: Rect, image_size_px: Vec2) -> Self {
        if image_size_px.x <= 0.0 || image_size_px.y <= 0.0 || viewport.width() <= 0.0 {
            return Self {
                origin_screen: viewport.min,
                zoom: 1.0,
            };
        }
        let zoom = (viewport.width() / image_size_px.x)
            .min(viewport.height() / image_size_px.y)
            .clamp(MIN_ZOOM, MAX_ZOOM);
        let origin_screen = viewport.center() - image_size_px * zoom * 0.5;
        Self {
            origin_screen,
            zoom,
        }
    }

    /// One image pixel per screen point, with the image point now under `viewport.center()`
    /// kept there.
    pub fn actual_size(self, viewport: Rect) -> Self {
        let anchor_screen = viewport.center();
        let anchor_image = self.image_from_screen(anchor_screen);
        Self {
            origin_screen: anchor_screen - anchor_image.to_vec2(),
            zoom: 1.0,
        }
    }

    /// Image position (pixels, continuous) under a screen position (points).
    pub fn image_from_screen(&self, screen: Pos2) -> Pos2 {
        pos2(
            (screen.x - self.origin_screen.x) / self.zoom,
            (screen.y - self.origin_screen.y) / self.zoom,
        )
    }

    /// Screen position (points) of an image position (pixels, continuous).
    pub fn screen_from_image(&self, image: Pos2) -> Pos2 {
        pos2(
            self.origin_screen.x + image.x * self.zoom,
            self.origin_screen.y + image.y * self.zoom,
        )
    }

    /// The integer pixel under a screen position (may be outside the image).
    pub fn pixel_from_screen(&self, screen: Pos2) -> (i64, i64) {
        let image = self.image_from_screen(screen);
        (image.x.floor() as i64, image.y.floor() as i64)
    }

    /// Screen rectangle covered by an image of `image_size_px`.
    pub fn screen_rect_of_image(&self, image_size_px: Vec2) -> Rect {
        Rect::from_min_max(
            self.origin_screen,
            self.screen_from_image(image_size_px.to_pos2()),
        )
    }

    /// Zooms by `factor` keeping the image point under `anchor_screen` fixed.
    pub fn zoomed_around(self, anchor_screen: Pos2, factor: f32) -> Self {
        let zoom = (self.zoom * factor).clamp(MIN_ZOOM, MAX_ZOOM);
        let anchor_image = self.image_from_screen(anchor_screen);
        Self {
            origin_screen: anchor_screen - anchor_image.to_vec2() * zoom,
            zoom,
        }
    }

    /// Moved by `delta_screen` points.
    pub fn panned(self, delta_screen: Vec2) -> Self {
        Self {
            origin_screen: self.origin_screen + delta_screen,
            zoom: self.zoom,
        }
    }

    /// Converts a length in screen points to image pixels.
    pub fn image_len_from_screen(&self, len_screen: f32) -> f32 {
        len_screen / self.zoom
    }
}

/// Convenience for `Vec2` image sizes from integer pixels.
pub fn size_vec(width_px: u32, height_px: u32) -> Vec2 {
    vec2(width_px as f32, height_px as f32)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fit_centres_and_scales() {
        let viewport = Rect::from_min_size(pos2(10.0, 20.0), vec2(800.0, 600.0));
        let t = CanvasTransform::fit(viewport, vec2(400.0, 100.0));
        assert_eq!(t.zoom, 2.0);
        let rect = t.screen_rect_of_image(vec2(400.0, 100.0));
        assert_eq!(rect.center(), viewport.center());
        assert_eq!(rect.width(), 800.0);
    }

    #[test]
    fn pixel_edges_are_exact_at_many_zooms_and_pans() {
        for &zoom in &[0.25f32, 0.5, 1.0, 2.0, 3.0, 7.0, 16.0, 100.0] {
            for &pan in &[0.0f32, 0.5, 13.25, -77.0] {
                let t = CanvasTransform {
                    origin_screen: pos2(pan, -pan),
                    zoom,
                };
                for &(i, j) in &[(0i64, 0i64), (1, 2), (37, 5), (3839, 2159)] {
                    let centre = t.screen_from_image(pos2(i as f32 + 0.5, j as f32 + 0.5));
                    assert_eq!(t.pixel_from_screen(centre), (i, j), "zoom {zoom} pan {pan}");
                    // Just inside the pixel's top-left corner and just before the next one.
                    let eps = 1e-3 * zoom;
                    let corner = t.screen_from_image(pos2(i as f32, j as f32));
                    assert_eq!(t.pixel_from_screen(corner + vec2(eps, eps)), (i, j));
                    let next = t.screen_from_image(pos2(i as f32 + 1.0, j as f32 + 1.0));
                    assert_eq!(t.pixel_from_screen(next - vec2(eps, eps)), (i, j));
                }
            }
        }
    }

    #[test]
    fn round_trip() {
        let t = CanvasTransform {
            origin_screen: pos2(12.5, -40.0),
            zoom: 3.7,
        };
        let p = pos2(123.25, 77.5);
        let back = t.image_from_screen(t.screen_from_image(p));
        assert!((back - p).length() < 1e-3);
    }

    #[test]
    fn zoom_keeps_the_point_under_the_cursor() {
        let t = CanvasTransform {
            origin_screen: pos2(5.0, 7.0),
            zoom: 1.5,
        };
        let cursor = pos2(300.0, 200.0);
        let before = t.image_from_screen(cursor);
        let z = t.zoomed_around(cursor, 2.0);
        assert_eq!(z.zoom, 3.0);
        let after = z.image_from_screen(cursor);
        assert!((after - before).length() < 1e-3);
    }

    #[test]
    fn zoom_is_clamped() {
        let t = CanvasTransform::default().zoomed_around(Pos2::ZERO, 1e9);
        assert_eq!(t.zoom, MAX_ZOOM);
        let t = CanvasTransform::default().zoomed_around(Pos2::ZERO, 1e-9);
        assert_eq!(t.zoom, MIN_ZOOM);
    }

    #[test]
    fn actual_size_is_one_to_one() {
        let viewport = Rect::from_min_size(Pos2::ZERO, vec2(100.0, 100.0));
        let t = CanvasTransform::fit(viewport, vec2(1000.0, 1000.0)).actual_size(viewport);
        assert_eq!(t.zoom, 1.0);
        let centre_image = t.image_from_screen(viewport.center());
        assert!((centre_image - pos2(500.0, 500.0)).length() < 1e-3);
    }

    #[test]
    fn pan_moves_the_origin() {
        let t = CanvasTransform::default().panned(vec2(3.0, -4.0));
        assert_eq!(t.origin_screen, pos2(3.0, -4.0));
        assert_eq!(t.pixel_from_screen(pos2(3.5, -3.5)), (0, 0));
    }
}
