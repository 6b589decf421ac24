//! Models ▸ Server…: connect the app to a team's inference server (Triton or any Open Inference
//! Protocol server), test the connection off the UI thread, see what the server has and which
//! local models it can run, and switch between the server and the local models.

use crate::jobs::Repaint;
use crate::runtime::remote::{RemoteEndpoint, ServerReport, probe};
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;

/// What the person chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAction {
    /// Run the models on this server.
    Use(RemoteEndpoint),
    /// Run the models locally again.
    UseLocal,
}

type Probe = Arc<Mutex<Option<Result<ServerReport, String>>>>;

/// The Server window.
pub struct ServerPanel {
    /// Whether the window is shown.
    pub open: bool,
    /// The address being edited.
    pub url: String,
    /// The server the app uses now, if any.
    pub active: Option<RemoteEndpoint>,
    /// Where to look for local models first (as `--models`).
    pub models_dir: Option<PathBuf>,
    checking: Option<Probe>,
    report: Option<Result<ServerReport, String>>,
    repaint: Arc<dyn Repaint>,
}

impl ServerPanel {
    /// A closed panel whose probes wake the UI with `repaint`.
    pub fn new(repaint: Arc<dyn Repaint>) -> Self {
        Self {
            open: false,
            url: "grpc://127.0.0.1:8001".into(),
            active: None,
            models_dir: None,
            checking: None,
            report: None,
            repaint,
        }
    }

    /// Whether a connection test is running.
    pub fn busy(&self) -> bool {
        self.checking.is_some()
    }

    /// The last test's result: the report, or the error sentence.
    pub fn report(&self) -> Option<&Result<ServerReport, String>> {
        self.report.as_ref()
    }

    /// Tests the server at [`Self::url`] in the background, checking the local model
    /// directories against it.
    pub fn test(&mut self) {
        let endpoint = match RemoteEndpoint::parse(&self.url) {
            Ok(e) => e,
            Err(e) => {
                self.report = Some(Err(e.to_string()));
                return;
            }
        };
        let slot: Probe = Arc::new(Mutex::new(None));
        let out = Arc::clone(&slot);
        let repaint = Arc::clone(&self.repaint);
        let models_dir = self.models_dir.clone();
        let spawned = std::thread::Builder::new()
            .name("server-probe".into())
            .spawn(move || {
                let dirs: Vec<PathBuf> = crate::runtime::find_model_dirs(models_dir.as_deref())
                    .into_iter()
                    .map(|(d, _)| d)
                    .collect();
                let result = probe(&endpoint, &dirs).map_err(|e| e.to_string());
                *out.lock() = Some(result);
                repaint.request_repaint();
            });
        match spawned {
            Ok(_) => {
                self.report = None;
                self.checking = Some(slot);
            }
            Err(e) => self.report = Some(Err(format!("could not start the test: {e}"))),
        }
    }

    /// Picks up a finished test.
    pub fn poll(&mut self) {
        let done = self.checking.as_ref().and_then(|slot| slot.lock().take());
        if let Some(result) = done {
            self.report = Some(result);
            self.checking = None;
        }
    }

    /// Draws the window; returns what the person chose.
    pub fn ui(&mut self, ctx: &egui::Context) -> Option<ServerAction> {
        self.poll();
        if !self.open {
            return None;
        }
        let mut open = self.open;
        let mut action = None;
        egui::Window::new("Inference server")
            .open(&mut open)
            .default_width(460.0)
            .show(ctx, |ui| action = self.contents(ui));
        self.open = open;
        action
    }

    /// The window's contents.
    pub fn contents(&mut self, ui: &mut egui::Ui) -> Option<ServerAction> {
        let mut action = None;
        ui.label(
            "Run SAM 2 and PixelRefer on a team's GPU server (NVIDIA Triton or another Open \
             Inference Protocol server; write its model repository with \
             `pixelrefer-studio serve triton-repo`).",
        );
        ui.horizontal(|ui| {
            ui.label("Address");
            ui.add(egui::TextEdit::singleline(&mut self.url).desired_width(260.0));
            let test = ui.add_enabled(!self.busy(), egui::Button::new("Test connection"));
            if test.clicked() {
                self.test();
            }
        });
        ui.horizontal(|ui| {
            match &self.active {
                Some(e) => ui.label(format!("Models run on {e}.")),
                None => ui.label("Models run on this computer."),
            };
        });
        if self.busy() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Connecting…");
            });
        }
        match &self.report {
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            Some(Ok(report)) => {
                ui.label(report.summary());
                for l in &report.local {
                    ui.label(l.summary());
                }
                match &report.models {
                    Some(models) => {
                        egui::CollapsingHeader::new(format!(
                            "{} models on the server",
                            models.len()
                        ))
                        .show(ui, |ui| {
                            egui::ScrollArea::vertical()
                                .max_height(160.0)
                                .show(ui, |ui| {
                                    for m in models {
                                        ui.monospace(format!("{} {}", m.name, m.state));
                                    }
                                });
                        });
                    }
                    None => {
                        ui.label("The server does not list its models.");
                    }
                }
            }
            None => {}
        }
        ui.separator();
        ui.horizontal(|ui| {
            let usable =
                matches!(&self.report, Some(Ok(r)) if r.local.iter().any(|l| l.missing.is_empty()));
            if ui
                .add_enabled(usable, egui::Button::new("Use this server"))
                .on_disabled_hover_text(
                    "Test the connection first; the server must run one of your models",
                )
                .clicked()
                && let Ok(endpoint) = RemoteEndpoint::parse(&self.url)
            {
                action = Some(ServerAction::Use(endpoint));
            }
            if ui
                .add_enabled(self.active.is_some(), egui::Button::new("Use local models"))
                .clicked()
            {
                action = Some(ServerAction::UseLocal);
            }
        });
        action
    }
}
