//! The egui application: canvas, tools, objects panel, timeline, menus.
//!
//! * [`state::AppState`]: document, history, current item/frame, selection and tool, with the
//!   actions the panels call (testable without a window).
//! * [`transform::CanvasTransform`]: screen ↔ image mapping.
//! * Panels as structs with `ui(&mut self, ui, …)`: [`canvas::Canvas`],
//!   [`objects_panel::ObjectsPanel`], [`timeline::Timeline`], [`help::HelpOverlay`],
//!   [`chat_panel::ChatPanel`].
//! * [`app::StudioApp`]: the eframe app tying them to jobs, files and the media thread.

pub mod app;
pub mod canvas;
pub mod chat_panel;
pub mod doc_api;
pub mod help;
pub mod models_panel;
pub mod objects_panel;
pub mod sam_panel;
pub mod server_panel;
pub mod settings;
pub mod state;
pub mod timeline;
pub mod transform;

pub use app::StudioApp;
pub use state::{AppEvent, AppState, Tool};

use crate::runtime::SessionOptions;
use std::path::PathBuf;

/// How the app starts (the binary's `--models`, `--device` and `--threads`).
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// Where to look for model directories first.
    pub models_dir: Option<PathBuf>,
    /// Model catalogue replacing the built-in one (`--catalog`).
    pub catalog: Option<PathBuf>,
    /// Provider and threads of SAM 2, and the chat panel's default provider.
    pub session: SessionOptions,
    /// Open the folder given as the frames of one video at this rate (`--fps`).
    pub frames_fps: Option<f64>,
}

/// Opens the main window, optionally on a media file, folder or project file.
pub fn run(open: Option<PathBuf>, app_options: AppOptions) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("PixelRefer Studio")
            .with_inner_size([1280.0, 800.0])
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        // Text egui's own fonts lack (Chinese, Japanese and Korean questions and answers: the
        // PixelRefer LLM answers in the language it is asked in) comes from a system font
        // (eframe's `system_fonts` provider; scripts/setup.sh installs WenQuanYi Micro Hei).
        system_font_fallback: true,
        ..Default::default()
    };
    eframe::run_native(
        "PixelRefer Studio",
        options,
        Box::new(move |cc| {
            let mut app = StudioApp::new(cc, None);
            match (open, app_options.frames_fps) {
                (Some(path), Some(fps)) => app.open_frames(path, fps),
                (Some(path), None) => app.open_path(path),
                (None, _) => {}
            }
            app.set_session_options(app_options.session);
            if app_options.models_dir.is_some() {
                app.set_models_dir(app_options.models_dir.as_deref());
            }
            if app_options.catalog.is_some() {
                app.models_panel_mut()
                    .set_catalog_file(app_options.catalog.as_deref());
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("could not open the window: {e}"))
}
