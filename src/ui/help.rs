//! The keyboard-shortcut overlay (`?` or F1).

use super::state::Tool;
use egui::Key;

/// The key that selects a tool.
pub fn tool_key(tool: Tool) -> Key {
    match tool {
        Tool::Select => Key::V,
        Tool::PositivePoint => Key::P,
        Tool::NegativePoint => Key::N,
        Tool::Box => Key::R,
        Tool::Brush => Key::B,
        Tool::Eraser => Key::E,
        Tool::Polygon => Key::G,
    }
}

/// Every shortcut as (keys, what it does), in the order shown.
pub fn shortcuts() -> Vec<(String, &'static str)> {
    let mut rows: Vec<(String, &'static str)> = Tool::ALL
        .into_iter()
        .map(|tool| (tool.shortcut().to_owned(), tool.label()))
        .collect();
    rows.extend(
        [
            ("[ / ]", "Brush radius smaller / larger"),
            ("Enter / double-click", "Close the polygon"),
            ("Esc", "Cancel the polygon, close this help"),
            ("Backspace", "Remove the last polygon point"),
            ("A", "Add an object"),
            ("H", "Fill holes of the selected mask"),
            ("Delete", "Clear the selected object on this frame"),
            ("Wheel / + / -", "Zoom around the cursor / in / out"),
            ("1 / F", "Actual size / fit"),
            ("Middle or right drag, Space+drag", "Pan"),
            ("Left / Right", "Previous / next frame"),
            ("Home / End", "First / last frame"),
            ("K", "Play / pause"),
            ("PageUp / PageDown", "Previous / next image (folders)"),
            ("Ctrl+Z", "Undo"),
            ("Ctrl+Shift+Z / Ctrl+Y", "Redo"),
            ("Ctrl+O", "Open media"),
            ("Ctrl+S / Ctrl+Shift+S", "Save / save as"),
            ("? / F1", "Show or hide this help"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    rows
}

/// The help window.
#[derive(Default)]
pub struct HelpOverlay {
    open: bool,
}

impl HelpOverlay {
    /// Shows or hides it.
    pub fn toggle(&mut self) {
        self.open = !self.open;
    }

    /// Hides it.
    pub fn close(&mut self) {
        self.open = false;
    }

    /// Whether it is shown.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Draws it when open.
    pub fn ui(&mut self, ctx: &egui::Context) {
        let mut open = self.open;
        egui::Window::new("Keyboard shortcuts")
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
            .show(ctx, |ui| {
                egui::Grid::new("shortcuts").striped(true).show(ui, |ui| {
                    for (keys, action) in shortcuts() {
                        ui.monospace(keys);
                        ui.label(action);
                        ui.end_row();
                    }
                });
            });
        self.open = open;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_distinct_key_listed_in_the_help() {
        let keys: std::collections::HashSet<_> = Tool::ALL.iter().map(|t| tool_key(*t)).collect();
        assert_eq!(keys.len(), Tool::ALL.len());
        let rows = shortcuts();
        for tool in Tool::ALL {
            assert!(
                rows.iter()
                    .any(|(k, v)| k == tool.shortcut() && *v == tool.label())
            );
            assert_eq!(tool_key(tool).name(), tool.shortcut());
        }
    }
}
