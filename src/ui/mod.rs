//! The egui application: canvas, tools, objects panel, timeline, menus.

use std::path::PathBuf;

/// Opens the main window, optionally on a media file, folder or project file.
pub fn run(_open: Option<PathBuf>) -> anyhow::Result<()> {
    anyhow::bail!("the GUI is not built yet")
}
