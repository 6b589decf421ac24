//! The canvas: the frame image, the mask overlay (wgpu paint callback), prompt markers and the
//! tools' pointer handling, with fit, zoom and pan.

use super::doc_api;
use super::state::{ActionError, AppState, Tool};
use super::transform::{CanvasTransform, size_vec};
use crate::mask::{BBox, Mask, Rle};
use crate::render::callback::{ImagePlacement, OverlayCallback};
use crate::render::{
    FLAG_HOVERED, FLAG_SELECTED, FLAG_VISIBLE, OverlayFrame, OverlayMasks, OverlayUniforms,
    SLOTS_PER_LAYER, SlotStyle,
};
use egui::{Color32, Key, PointerButton, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2, pos2, vec2};
use std::collections::HashMap;
use std::sync::Arc;

/// Fill alpha of masks.
pub const FILL_ALPHA: f32 = 0.45;
/// Outline width in physical pixels.
pub const OUTLINE_WIDTH_PX: f32 = 1.5;
/// Smallest and largest brush radius in image pixels.
pub const BRUSH_RADIUS_RANGE_PX: (f32, f32) = (1.0, 500.0);

/// A stroke being painted: shown live through the overlay, applied as one edit on release.
struct StrokeInProgress {
    id: u32,
    slot: usize,
    mask: Mask,
    erase: bool,
    last_image: Pos2,
}

/// Mask overlay contents for one (item, frame, revision), with the slot → object map.
struct OverlayCache {
    key: (usize, u64, u64, Vec<u32>),
    masks: Arc<OverlayMasks>,
    slot_ids: Vec<u32>,
    submitted: bool,
}

/// What the canvas did this frame that the app shows.
#[derive(Debug, Default)]
pub struct CanvasOutput {
    /// An action was refused (locked object, nothing selected…).
    pub error: Option<ActionError>,
}

/// The canvas panel.
pub struct Canvas {
    transform: CanvasTransform,
    fitted_size: Option<(u32, u32)>,
    fit_requested: bool,
    /// Keep fitting (on resizes) until the user zooms or pans.
    fit_mode: bool,
    viewport: Rect,
    stroke: Option<StrokeInProgress>,
    box_start_image: Option<Pos2>,
    polygon_image: Vec<Pos2>,
    overlay: Option<OverlayCache>,
    /// Decoded masks of the shown (item, frame), with the RLE they were decoded from.
    decoded: HashMap<u32, (Rle, Arc<Mask>)>,
    decoded_frame: (usize, u64),
    /// Draw the overlay with the wgpu callback (false when the renderer is not wgpu).
    pub gpu_overlay: bool,
}

impl Default for Canvas {
    fn default() -> Self {
        Self {
            transform: CanvasTransform::default(),
            fitted_size: None,
            fit_requested: true,
            fit_mode: true,
            viewport: Rect::NOTHING,
            stroke: None,
            box_start_image: None,
            polygon_image: Vec::new(),
            overlay: None,
            decoded: HashMap::new(),
            decoded_frame: (usize::MAX, u64::MAX),
            gpu_overlay: true,
        }
    }
}

impl Canvas {
    /// The current screen ↔ image mapping.
    pub fn transform(&self) -> CanvasTransform {
        self.transform
    }

    /// Forgets the view and any gesture (a new document was opened).
    pub fn reset(&mut self) {
        *self = Self {
            gpu_overlay: self.gpu_overlay,
            ..Self::default()
        };
    }

    /// Fits the image on the next frame.
    pub fn request_fit(&mut self) {
        self.fit_requested = true;
    }

    /// Shows image pixels 1:1 around the canvas centre.
    pub fn actual_size(&mut self) {
        self.fit_mode = false;
        self.transform = self.transform.actual_size(self.viewport);
    }

    /// Zooms around the canvas centre.
    pub fn zoom_by(&mut self, factor: f32) {
        self.fit_mode = false;
        self.transform = self.transform.zoomed_around(self.viewport.center(), factor);
    }

    /// Vertices of the polygon being drawn (image pixels).
    pub fn polygon_vertices(&self) -> usize {
        self.polygon_image.len()
    }

    /// Drops any gesture in progress (tool or frame changed).
    pub fn cancel_gestures(&mut self) {
        self.stroke = None;
        self.box_start_image = None;
        self.polygon_image.clear();
    }

    /// Draws the canvas into the remaining space and handles the tools.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        state: &mut AppState,
        image: Option<&egui::TextureHandle>,
    ) -> CanvasOutput {
        let mut out = CanvasOutput::default();
        let (rect, response) = ui.allocate_exact_size(ui.available_size(), Sense::click_and_drag());
        let resized = self.viewport != rect;
        self.viewport = rect;
        let painter = ui.painter_at(rect);
        painter.rect_filled(rect, 0.0, Color32::from_gray(24));

        let Some((width, height)) = state.image_size_px() else {
            return out;
        };
        let image_size = size_vec(width, height);
        if self.fit_requested
            || self.fitted_size != Some((width, height))
            || (self.fit_mode && resized)
        {
            self.transform = CanvasTransform::fit(rect.shrink(8.0), image_size);
            self.fitted_size = Some((width, height));
            self.fit_requested = false;
            self.fit_mode = true;
        }

        self.view_input(ui, &response, rect);

        let image_rect = self.transform.screen_rect_of_image(image_size);
        match image {
            Some(texture) => {
                painter.image(
                    texture.id(),
                    image_rect,
                    Rect::from_min_max(Pos2::ZERO, pos2(1.0, 1.0)),
                    Color32::WHITE,
                );
            }
            None => {
                painter.rect_filled(image_rect, 0.0, Color32::from_gray(40));
                painter.text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    "Loading frame…",
                    egui::FontId::proportional(16.0),
                    Color32::from_gray(200),
                );
            }
        }

        self.refresh_overlay(state, width, height);
        self.update_hover(ui, state, &response);
        if let Err(err) = self.tool_input(ui, state, &response) {
            out.error = Some(err);
        }
        self.paint_overlay(&painter, state, rect);
        self.paint_prompts(&painter, state);
        self.paint_tool_feedback(ui, &painter, state, &response);
        out
    }

    fn view_input(&mut self, ui: &egui::Ui, response: &egui::Response, rect: Rect) {
        let typing = ui.ctx().egui_wants_keyboard_input();
        if response.hovered() {
            let (scroll, zoom_delta, hover) = ui.input(|i| {
                (
                    i.smooth_scroll_delta.y,
                    i.zoom_delta(),
                    i.pointer.hover_pos(),
                )
            });
            let anchor = hover.unwrap_or(rect.center());
            if scroll != 0.0 || zoom_delta != 1.0 {
                self.fit_mode = false;
            }
            if scroll != 0.0 {
                self.transform = self
                    .transform
                    .zoomed_around(anchor, (scroll * 0.0025).exp());
            }
            if zoom_delta != 1.0 {
                self.transform = self.transform.zoomed_around(anchor, zoom_delta);
            }
        }
        if !typing {
            let (plus, minus, one, fit) = ui.input(|i| {
                (
                    i.key_pressed(Key::Plus) || i.key_pressed(Key::Equals),
                    i.key_pressed(Key::Minus),
                    i.key_pressed(Key::Num1),
                    i.key_pressed(Key::F),
                )
            });
            if plus {
                self.zoom_by(1.25);
            }
            if minus {
                self.zoom_by(1.0 / 1.25);
            }
            if one {
                self.actual_size();
            }
            if fit {
                self.request_fit();
            }
        }
        let space_held = !typing && ui.input(|i| i.key_down(Key::Space));
        let panning = response.dragged_by(PointerButton::Middle)
            || response.dragged_by(PointerButton::Secondary)
            || (space_held && response.dragged_by(PointerButton::Primary));
        if panning {
            self.fit_mode = false;
            self.transform = self.transform.panned(response.drag_delta());
        }
    }

    fn refresh_overlay(&mut self, state: &AppState, width: u32, height: u32) {
        let ids: Vec<u32> = state.objects().iter().map(|o| o.id).collect();
        let key = (state.item, state.frame, state.revision(), ids);
        let fresh = self.overlay.as_ref().is_some_and(|cache| cache.key == key);
        if fresh {
            if let Some(cache) = &mut self.overlay
                && cache.submitted
                && let Some(masks) = Arc::get_mut(&mut cache.masks)
            {
                masks.mark_submitted();
                cache.submitted = false;
            }
            return;
        }
        // Decoding a 4K RLE costs milliseconds: keep the decoded masks of this frame and only
        // decode objects whose RLE changed (after a stroke, one object).
        if self.decoded_frame != (state.item, state.frame) {
            self.decoded.clear();
            self.decoded_frame = (state.item, state.frame);
        }
        let mut decoded: Vec<Option<Arc<Mask>>> = Vec::with_capacity(key.3.len());
        for &id in &key.3 {
            let rle = state.annotation(id).and_then(|a| a.mask.as_ref());
            let mask = match rle {
                None => None,
                Some(rle) => match self.decoded.get(&id) {
                    Some((cached, mask)) if cached == rle => Some(Arc::clone(mask)),
                    _ => match doc_api::mask_from_rle(rle) {
                        Ok(mask) => {
                            let mask = Arc::new(mask);
                            self.decoded.insert(id, (rle.clone(), Arc::clone(&mask)));
                            Some(mask)
                        }
                        Err(err) => {
                            log::warn!("the mask of object {id} cannot be decoded: {err}");
                            None
                        }
                    },
                },
            };
            decoded.push(mask);
        }
        self.decoded.retain(|id, _| key.3.contains(id));
        let refs: Vec<Option<&Mask>> = decoded.iter().map(|m| m.as_deref()).collect();
        let (masks, skipped) = OverlayMasks::pack(width, height, &refs);
        for slot in skipped {
            log::warn!("mask of slot {slot} does not match the {width}x{height} frame; not drawn");
        }
        self.overlay = Some(OverlayCache {
            slot_ids: key.3.clone(),
            key,
            masks: Arc::new(masks),
            submitted: false,
        });
        // A live stroke keeps showing over the rebuilt overlay.
        if let (Some(stroke), Some(cache)) = (&self.stroke, &mut self.overlay) {
            let all = BBox::whole(width, height);
            Arc::make_mut(&mut cache.masks).update_slot_rect(stroke.slot, &stroke.mask, all);
        }
    }

    /// The topmost visible object at image pixel `(x, y)`, from the packed overlay.
    fn object_at(&self, state: &AppState, x: i64, y: i64) -> Option<u32> {
        let cache = self.overlay.as_ref()?;
        if x < 0 || y < 0 {
            return None;
        }
        let (x, y) = (x as u32, y as u32);
        cache
            .slot_ids
            .iter()
            .enumerate()
            .rev()
            .find(|&(slot, &id)| {
                let layer = (slot / SLOTS_PER_LAYER) as u32;
                let bit = 1u32 << (slot % SLOTS_PER_LAYER);
                cache.masks.texel(layer, x, y) & bit != 0
                    && state.object(id).is_some_and(|o| !o.hidden)
            })
            .map(|(_, &id)| id)
    }

    fn update_hover(&self, ui: &egui::Ui, state: &mut AppState, response: &egui::Response) {
        state.hovered = if response.hovered() {
            ui.input(|i| i.pointer.hover_pos()).and_then(|pos| {
                let (x, y) = self.transform.pixel_from_screen(pos);
                self.object_at(state, x, y)
            })
        } else {
            None
        };
    }

    fn tool_input(
        &mut self,
        ui: &egui::Ui,
        state: &mut AppState,
        response: &egui::Response,
    ) -> Result<(), ActionError> {
        let typing = ui.ctx().egui_wants_keyboard_input();
        let space_held = !typing && ui.input(|i| i.key_down(Key::Space));
        let (pressed, down, released, pos, double) = ui.input(|i| {
            (
                i.pointer.button_pressed(PointerButton::Primary),
                i.pointer.button_down(PointerButton::Primary),
                i.pointer.button_released(PointerButton::Primary),
                i.pointer.interact_pos(),
                i.pointer.button_double_clicked(PointerButton::Primary),
            )
        });
        let pressed_here = pressed && response.hovered() && !space_held;
        let image_pos = pos.map(|p| self.transform.image_from_screen(p));

        match state.tool {
            Tool::Select => {
                if response.clicked()
                    && let Some(p) = image_pos
                {
                    let id = self.object_at(state, p.x.floor() as i64, p.y.floor() as i64);
                    state.select(id);
                }
            }
            Tool::PositivePoint | Tool::NegativePoint => {
                if pressed_here && let Some(p) = image_pos {
                    if !in_image(state, p) {
                        return Ok(());
                    }
                    state.add_point_prompt(p.x, p.y, state.tool == Tool::PositivePoint)?;
                }
            }
            Tool::Box => {
                if pressed_here && let Some(p) = image_pos {
                    state.editable_selected()?;
                    self.box_start_image = Some(clamp_to_image(state, p));
                }
                if released && let (Some(start), Some(p)) = (self.box_start_image.take(), image_pos)
                {
                    let end = clamp_to_image(state, p);
                    if (end - start).abs().min_elem() >= 1.0 {
                        state.set_box_prompt([start.x, start.y, end.x, end.y])?;
                    }
                }
            }
            Tool::Brush | Tool::Eraser => {
                if pressed_here && let Some(p) = image_pos {
                    let (id, mask) = state.selected_mask_or_empty()?;
                    let slot = state.objects().iter().position(|o| o.id == id).unwrap_or(0);
                    self.stroke = Some(StrokeInProgress {
                        id,
                        slot,
                        mask,
                        erase: state.tool == Tool::Eraser,
                        last_image: p,
                    });
                    self.extend_stroke(p, state.brush_radius_px);
                } else if down && let (Some(p), Some(_)) = (image_pos, &self.stroke) {
                    self.extend_stroke(p, state.brush_radius_px);
                }
                if released && let Some(stroke) = self.stroke.take() {
                    state.commit_painted_mask(stroke.id, &stroke.mask)?;
                }
            }
            Tool::Polygon => {
                let (enter, escape, backspace) = ui.input(|i| {
                    (
                        i.key_pressed(Key::Enter),
                        i.key_pressed(Key::Escape),
                        i.key_pressed(Key::Backspace),
                    )
                });
                if escape {
                    self.polygon_image.clear();
                }
                if backspace && !typing {
                    self.polygon_image.pop();
                }
                if double && self.polygon_image.len() >= 3 {
                    return self.close_polygon(state);
                }
                if pressed_here && let Some(p) = image_pos {
                    state.editable_selected()?;
                    let p = clamp_to_image(state, p);
                    // The second click of a double-click lands on the last vertex: skip it.
                    if self.polygon_image.last() != Some(&p) {
                        self.polygon_image.push(p);
                    }
                }
                if enter && !typing && self.polygon_image.len() >= 3 {
                    return self.close_polygon(state);
                }
            }
        }
        Ok(())
    }

    fn close_polygon(&mut self, state: &mut AppState) -> Result<(), ActionError> {
        let points: Vec<[f32; 2]> = self.polygon_image.drain(..).map(|p| [p.x, p.y]).collect();
        state.fill_polygon(&points)
    }

    fn extend_stroke(&mut self, to_image: Pos2, radius_px: f32) {
        let Some(stroke) = &mut self.stroke else {
            return;
        };
        let from = stroke.last_image;
        let bbox = doc_api::paint_stroke(
            &mut stroke.mask,
            [from.x, from.y],
            [to_image.x, to_image.y],
            radius_px,
            !stroke.erase,
        );
        stroke.last_image = to_image;
        if let (Some(bbox), Some(cache)) = (bbox, &mut self.overlay) {
            Arc::make_mut(&mut cache.masks).update_slot_rect(stroke.slot, &stroke.mask, bbox);
        }
    }

    fn paint_overlay(&mut self, painter: &egui::Painter, state: &AppState, rect: Rect) {
        let Some(cache) = &mut self.overlay else {
            return;
        };
        if !self.gpu_overlay {
            return;
        }
        let styles: Vec<SlotStyle> = cache
            .slot_ids
            .iter()
            .map(|&id| match state.object(id) {
                Some(object) => {
                    let mut flags = 0;
                    if !object.hidden {
                        flags |= FLAG_VISIBLE;
                    }
                    if state.selected == Some(id) {
                        flags |= FLAG_SELECTED;
                    }
                    if state.hovered == Some(id) {
                        flags |= FLAG_HOVERED;
                    }
                    SlotStyle::new(object.color, FILL_ALPHA, flags)
                }
                None => SlotStyle::new([0, 0, 0], 0.0, 0),
            })
            .collect();
        let frame = OverlayFrame {
            masks: Arc::clone(&cache.masks),
            styles,
            uniforms: OverlayUniforms {
                image_origin_px: [0.0; 2],
                image_px_per_screen_px: [1.0; 2],
                image_size_px: [0; 2],
                layer_count: 0,
                slot_count: 0,
                outline_width_px: OUTLINE_WIDTH_PX,
                fill_opacity: 1.0,
                _pad: [0.0; 2],
            },
        };
        let placement = ImagePlacement {
            origin_pt: [
                self.transform.origin_screen.x,
                self.transform.origin_screen.y,
            ],
            points_per_image_px: self.transform.zoom,
        };
        painter.add(egui_wgpu::Callback::new_paint_callback(
            rect,
            OverlayCallback::new(frame, placement),
        ));
        cache.submitted = true;
    }

    fn paint_prompts(&self, painter: &egui::Painter, state: &AppState) {
        for object in state.objects() {
            if object.hidden {
                continue;
            }
            let Some(annotation) = object.frames.get(&state.frame) else {
                continue;
            };
            let [r, g, b] = object.color;
            let colour = Color32::from_rgb(r, g, b);
            let selected = state.selected == Some(object.id);
            if let Some([x0, y0, x1, y1]) = annotation.prompts.bbox {
                let screen = Rect::from_two_pos(
                    self.transform.screen_from_image(pos2(x0, y0)),
                    self.transform.screen_from_image(pos2(x1, y1)),
                );
                let width = if selected { 2.5 } else { 1.5 };
                painter.rect_stroke(screen, 0.0, Stroke::new(width, colour), StrokeKind::Middle);
            }
            for point in &annotation.prompts.points {
                let centre = self.transform.screen_from_image(pos2(point.x, point.y));
                let fill = if point.positive {
                    Color32::from_rgb(40, 200, 80)
                } else {
                    Color32::from_rgb(220, 50, 50)
                };
                painter.circle(centre, 6.0, fill, Stroke::new(1.5, Color32::WHITE));
                let sign = if point.positive { "+" } else { "-" };
                painter.text(
                    centre,
                    egui::Align2::CENTER_CENTER,
                    sign,
                    egui::FontId::monospace(11.0),
                    Color32::WHITE,
                );
            }
        }
    }

    fn paint_tool_feedback(
        &self,
        ui: &egui::Ui,
        painter: &egui::Painter,
        state: &AppState,
        response: &egui::Response,
    ) {
        let hover = ui.input(|i| i.pointer.hover_pos());
        if let (Some(start), Some(p)) = (self.box_start_image, hover) {
            let screen = Rect::from_two_pos(
                self.transform.screen_from_image(start),
                self.transform
                    .screen_from_image(clamp_to_image(state, self.transform.image_from_screen(p))),
            );
            painter.rect_stroke(
                screen,
                0.0,
                Stroke::new(1.5, Color32::WHITE),
                StrokeKind::Middle,
            );
        }
        if !self.polygon_image.is_empty() {
            let mut points: Vec<Pos2> = self
                .polygon_image
                .iter()
                .map(|&p| self.transform.screen_from_image(p))
                .collect();
            if let Some(p) = hover {
                points.push(p);
            }
            painter.add(egui::Shape::line(
                points.clone(),
                Stroke::new(1.5, Color32::WHITE),
            ));
            for p in &points[..self.polygon_image.len()] {
                painter.circle_filled(*p, 3.0, Color32::WHITE);
            }
        }
        if matches!(state.tool, Tool::Brush | Tool::Eraser)
            && response.hovered()
            && let Some(p) = hover
        {
            let radius = state.brush_radius_px * self.transform.zoom;
            painter.circle_stroke(p, radius, Stroke::new(1.5, Color32::BLACK));
            painter.circle_stroke(p, radius, Stroke::new(1.0, Color32::WHITE));
        }
        if state.tool.edits_object()
            && let Some(object) = state.selected_object()
            && object.locked
        {
            let note = format!("{} is locked - unlock it to edit", object.tag());
            let pos = self.viewport.center_top() + vec2(0.0, 12.0);
            let galley = painter.layout_no_wrap(
                note,
                egui::FontId::proportional(14.0),
                Color32::from_rgb(255, 220, 120),
            );
            let bg = Rect::from_center_size(
                pos + vec2(0.0, galley.size().y / 2.0),
                galley.size() + Vec2::splat(10.0),
            );
            painter.rect_filled(bg, 4.0, Color32::from_black_alpha(180));
            painter.galley(bg.min + Vec2::splat(5.0), galley, Color32::WHITE);
        }
    }
}

fn in_image(state: &AppState, p: Pos2) -> bool {
    state
        .image_size_px()
        .is_some_and(|(w, h)| p.x >= 0.0 && p.y >= 0.0 && p.x < w as f32 && p.y < h as f32)
}

fn clamp_to_image(state: &AppState, p: Pos2) -> Pos2 {
    let (w, h) = state.image_size_px().unwrap_or((0, 0));
    pos2(p.x.clamp(0.0, w as f32), p.y.clamp(0.0, h as f32))
}
