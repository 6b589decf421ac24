//! The objects panel: add, select, label, colour, mark as crowd, hide, lock, reorder and delete
//! objects.

use super::state::{ActionError, AppState};
use egui::{Color32, RichText};

/// The objects side panel.
#[derive(Default)]
pub struct ObjectsPanel {
    /// Label text per object while typing; committed on focus loss or Enter as one step.
    label_buffers: std::collections::HashMap<u32, String>,
}

impl ObjectsPanel {
    /// Draws the list; returns a refused action, if any.
    pub fn ui(&mut self, ui: &mut egui::Ui, state: &mut AppState) -> Option<ActionError> {
        let mut error = None;
        ui.horizontal(|ui| {
            ui.heading("Objects");
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .button("+ Add object")
                    .on_hover_text("Add a new object (A)")
                    .clicked()
                    && let Err(e) = state.add_object()
                {
                    error = Some(e);
                }
            });
        });
        ui.separator();
        if state.objects().is_empty() {
            ui.label("No objects yet. Add one, then paint or click on the image.");
            return error;
        }
        let ids: Vec<u32> = state.objects().iter().map(|o| o.id).collect();
        let count = ids.len();
        egui::ScrollArea::vertical()
            .auto_shrink([false, true])
            .show(ui, |ui| {
                for (index, id) in ids.into_iter().enumerate() {
                    if let Err(e) = self.object_row_ui(ui, state, id, index, count) {
                        error = Some(e);
                    }
                }
            });
        error
    }

    fn object_row_ui(
        &mut self,
        ui: &mut egui::Ui,
        state: &mut AppState,
        id: u32,
        index: usize,
        count: usize,
    ) -> Result<(), ActionError> {
        let Some(object) = state.object(id).cloned() else {
            return Ok(());
        };
        let selected = state.selected == Some(id);
        let frame_fill = if selected {
            ui.visuals().selection.bg_fill.gamma_multiply(0.5)
        } else {
            Color32::TRANSPARENT
        };
        egui::Frame::new()
            .fill(frame_fill)
            .inner_margin(4.0)
            .corner_radius(4.0)
            .show(ui, |ui| -> Result<(), ActionError> {
                ui.horizontal(|ui| -> Result<(), ActionError> {
                    let mut rgb = object.color;
                    if ui
                        .color_edit_button_srgb(&mut rgb)
                        .on_hover_text("Colour")
                        .changed()
                    {
                        state.update_props(id, |p| p.color = rgb)?;
                    }
                    let tag = RichText::new(object.tag()).monospace().strong();
                    if ui
                        .selectable_label(selected, tag)
                        .on_hover_text("Select")
                        .clicked()
                    {
                        state.select(Some(id));
                    }
                    let frames = state.frames_with_mask(id).len();
                    ui.label(RichText::new(format!("{frames} fr")).weak())
                        .on_hover_text("Frames with a mask");
                    let mut crowd = object.crowd;
                    if ui
                        .checkbox(&mut crowd, "crowd")
                        .on_hover_text(
                            "A crowd region: many instances under one mask (COCO iscrowd: 1)",
                        )
                        .changed()
                    {
                        state.update_props(id, |p| p.crowd = crowd)?;
                    }
                    Ok(())
                })
                .inner?;
                ui.horizontal(|ui| -> Result<(), ActionError> {
                    let buffer = self
                        .label_buffers
                        .entry(id)
                        .or_insert_with(|| object.label.clone());
                    let response = ui.add(
                        egui::TextEdit::singleline(buffer)
                            .hint_text("label")
                            .desired_width(110.0),
                    );
                    if response.lost_focus() {
                        let label = buffer.clone();
                        self.label_buffers.remove(&id);
                        state.update_props(id, |p| p.label = label)?;
                    } else if !response.has_focus() {
                        // Follow the document (undo, other panels) while not being edited.
                        buffer.clone_from(&object.label);
                    }
                    let eye = if object.hidden { "Show" } else { "Hide" };
                    if ui
                        .button(eye)
                        .on_hover_text(if object.hidden { "Show" } else { "Hide" })
                        .clicked()
                    {
                        state.update_props(id, |p| p.hidden = !p.hidden)?;
                    }
                    let lock = if object.locked { "Unlock" } else { "Lock" };
                    if ui
                        .button(lock)
                        .on_hover_text(if object.locked { "Unlock" } else { "Lock" })
                        .clicked()
                    {
                        state.update_props(id, |p| p.locked = !p.locked)?;
                    }
                    if ui
                        .add_enabled(index > 0, egui::Button::new("Up"))
                        .on_hover_text("Move up")
                        .clicked()
                    {
                        state.move_object(id, -1)?;
                    }
                    if ui
                        .add_enabled(index + 1 < count, egui::Button::new("Down"))
                        .on_hover_text("Move down")
                        .clicked()
                    {
                        state.move_object(id, 1)?;
                    }
                    if ui.button("Delete").on_hover_text("Delete object").clicked() {
                        state.remove_object(id)?;
                    }
                    Ok(())
                })
                .inner
            })
            .inner
    }
}
