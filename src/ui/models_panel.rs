//! Getting models in the app: the Models window (catalogue, installed models, Get / Remove,
//! a progress bar with bytes, rate, time left and Cancel) and the first-run panel that
//! recommends a SAM 2 + PixelRefer pair for this machine when no model is found.
//!
//! Fetches run as background jobs ([`crate::jobs::fetch_model`]); the panel also watches the
//! model folders so a model installed by the CLI while the app runs shows up without a restart.

use crate::jobs::{
    FetchEvent, FetchRequest, FetchStage, JobError, JobRunner, Repaint, fetch_model,
};
use crate::runtime::catalog::{Catalog, CatalogEntry, Pick};
use crate::runtime::hub::{HubConfig, TransferMeter, format_bytes};
use crate::runtime::install::{default_install_root, installed_name, remove_installed};
use crate::runtime::{
    MachineInfo, Manifest, ModelKind, SessionOptions, find_model_dirs, model_search_dirs,
};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the model folders are re-read for models installed elsewhere.
const RESCAN_INTERVAL: Duration = Duration::from_secs(3);

/// What happened that the rest of the app must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelsEvent {
    /// The set of model directories changed (installed here or by the CLI, or removed).
    Changed,
    /// A model was installed by this panel.
    Installed(PathBuf, ModelKind),
}

/// A fetch in progress.
struct Running {
    name: String,
    job: crate::jobs::Job,
    view: Arc<Mutex<FetchView>>,
}

/// The latest progress of a fetch, as shown.
#[derive(Debug, Clone, Default)]
struct FetchView {
    stage: Option<FetchStage>,
    fraction: Option<f32>,
    detail: String,
}

/// The Models window and the first-run panel.
pub struct ModelsPanel {
    /// The Models window is open.
    pub open: bool,
    first_run_enabled: bool,
    first_run_dismissed: bool,
    catalog: Result<Catalog, String>,
    hub: HubConfig,
    models_dir: Option<PathBuf>,
    install_root: Option<PathBuf>,
    session: SessionOptions,
    machine: Option<MachineInfo>,
    installed: Vec<(PathBuf, Manifest)>,
    last_scan: Option<Instant>,
    jobs: JobRunner<(PathBuf, ModelKind)>,
    running: Option<Running>,
    queue: VecDeque<String>,
    error: Option<String>,
    notice: Option<String>,
}

impl ModelsPanel {
    /// A panel using the built-in catalogue (or `$PIXELREFER_CATALOG`) and the hub from the
    /// environment.
    pub fn new(repaint: Arc<dyn Repaint>) -> Self {
        Self {
            open: false,
            first_run_enabled: true,
            first_run_dismissed: false,
            catalog: Catalog::load(None).map_err(|e| e.to_string()),
            hub: HubConfig::from_env(),
            models_dir: None,
            install_root: default_install_root(),
            session: SessionOptions::default(),
            machine: None,
            installed: Vec::new(),
            last_scan: None,
            jobs: JobRunner::new(repaint),
            running: None,
            queue: VecDeque::new(),
            error: None,
            notice: None,
        }
    }

    /// Uses the catalogue in `file` (`--catalog`).
    pub fn set_catalog_file(&mut self, file: Option<&Path>) {
        self.catalog = Catalog::load(file).map_err(|e| e.to_string());
    }

    /// Uses `catalog`.
    pub fn set_catalog(&mut self, catalog: Catalog) {
        self.catalog = Ok(catalog);
    }

    /// Talks to this hub (tests point it at a local one).
    pub fn set_hub(&mut self, hub: HubConfig) {
        self.hub = hub;
    }

    /// Models are searched in `dir` first and installed there (`--models DIR`).
    pub fn set_models_dir(&mut self, dir: Option<&Path>) {
        self.models_dir = dir.map(Path::to_path_buf);
        if let Some(dir) = dir {
            self.install_root = Some(dir.to_path_buf());
        }
        self.last_scan = None;
    }

    /// How the reference check runs a fetched model.
    pub fn set_session_options(&mut self, options: SessionOptions) {
        self.session = options;
    }

    /// Uses these machine facts for the recommendation instead of detecting them.
    pub fn set_machine(&mut self, machine: MachineInfo) {
        self.machine = Some(machine);
    }

    /// The model directories found at the last scan.
    pub fn installed(&self) -> &[(PathBuf, Manifest)] {
        &self.installed
    }

    /// The last error sentence, if the last fetch failed.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether a fetch is running.
    pub fn busy(&self) -> bool {
        self.running.is_some()
    }

    /// Starts fetching `name` (queued behind a running fetch).
    pub fn fetch(&mut self, name: &str) {
        if self.running.as_ref().is_some_and(|r| r.name == name)
            || self.queue.iter().any(|q| q == name)
        {
            return;
        }
        self.queue.push_back(name.to_string());
        self.error = None;
        self.start_next();
    }

    /// Cancels the running fetch and clears the queue.
    pub fn cancel(&mut self) {
        self.queue.clear();
        if let Some(r) = &self.running {
            r.job.cancel();
        }
    }

    fn start_next(&mut self) {
        if self.running.is_some() {
            return;
        }
        let Some(name) = self.queue.pop_front() else {
            return;
        };
        let entry = match self
            .catalog
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|c| c.get(&name).cloned().map_err(|e| e.to_string()))
        {
            Ok(entry) => entry,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        let Some(root) = self.install_root.clone() else {
            self.error =
                Some("this system has no user data folder; start the app with --models DIR".into());
            return;
        };
        let request = FetchRequest {
            entry: entry.clone(),
            root,
            hub: self.hub.clone(),
            session: SessionOptions {
                provider: crate::runtime::ExecutionProvider::Cpu,
                intra_threads: self.session.intra_threads,
                remote: None,
            },
        };
        let view = Arc::new(Mutex::new(FetchView::default()));
        let job_view = Arc::clone(&view);
        let kind = entry.kind;
        let spawned = self.jobs.spawn(format!("get {}", entry.name), move |ctx| {
            let mut meter = TransferMeter::default();
            let cancel = ctx.cancel_flag();
            let result = fetch_model(
                &request,
                &mut |event| {
                    let mut v = job_view.lock();
                    match event {
                        FetchEvent::Stage(stage) => {
                            v.stage = Some(stage);
                            v.fraction = None;
                            v.detail.clear();
                        }
                        FetchEvent::Download(p) => {
                            meter.update(p.done);
                            v.fraction = Some(if p.total > 0 {
                                p.done as f32 / p.total as f32
                            } else {
                                0.0
                            });
                            v.detail = format!(
                                "{} ({}/{}): {}",
                                p.file,
                                p.index,
                                p.files,
                                meter.describe(p.done, p.total)
                            );
                        }
                        FetchEvent::Export {
                            stage,
                            index,
                            total,
                            name,
                        } => {
                            v.fraction = (total > 0).then(|| index as f32 / total as f32);
                            v.detail = format!("{stage} {index}/{total}: {name}");
                        }
                        FetchEvent::Line(line) => {
                            if v.stage == Some(FetchStage::Verifying) {
                                v.detail = line.chars().take(120).collect();
                            }
                        }
                    }
                    let text = format!(
                        "{} {}",
                        v.stage.map(FetchStage::label).unwrap_or("Starting"),
                        v.detail
                    );
                    drop(v);
                    ctx.set_progress(0.0, text);
                },
                &cancel,
            );
            match result {
                Ok(dir) => Ok((dir, kind)),
                Err(e) if e.is_cancelled() => Err(JobError::Cancelled),
                Err(e) => Err(JobError::failed(e)),
            }
        });
        match spawned {
            Ok(job) => {
                self.running = Some(Running { name, job, view });
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// Collects finished fetches and re-reads the model folders now and then. Call once per
    /// frame.
    pub fn poll(&mut self) -> Vec<ModelsEvent> {
        let mut events = Vec::new();
        for message in self.jobs.poll() {
            let name = self.running.take().map(|r| r.name).unwrap_or_default();
            match message.result {
                Ok((dir, kind)) => {
                    self.notice = Some(format!("Installed {name} in {}", dir.display()));
                    events.push(ModelsEvent::Installed(dir, kind));
                    self.last_scan = None;
                }
                Err(JobError::Cancelled) => {
                    self.notice = Some(format!(
                        "Cancelled {name}; nothing was installed (Get resumes the download)"
                    ));
                }
                Err(e) => {
                    self.queue.clear();
                    self.error = Some(e.to_string());
                }
            }
            self.start_next();
        }
        let due = self
            .last_scan
            .is_none_or(|t| t.elapsed() >= RESCAN_INTERVAL);
        if due {
            self.last_scan = Some(Instant::now());
            let found = find_model_dirs(self.models_dir.as_deref());
            let changed = found.len() != self.installed.len()
                || found
                    .iter()
                    .zip(&self.installed)
                    .any(|(a, b)| a.0 != b.0 || a.1 != b.1);
            if changed {
                self.installed = found;
                events.push(ModelsEvent::Changed);
            }
        }
        events
    }

    fn machine(&mut self) -> MachineInfo {
        *self.machine.get_or_insert_with(MachineInfo::detect)
    }

    fn is_installed(&self, name: &str) -> bool {
        self.installed
            .iter()
            .any(|(d, _)| installed_name(d).as_deref() == Some(name))
    }

    /// Turns the first-run panel on or off (on by default; off for apps built on a synthetic
    /// document, see [`super::StudioApp::with_document`]).
    pub fn set_first_run_enabled(&mut self, enabled: bool) {
        self.first_run_enabled = enabled;
    }

    /// Whether the first-run panel shows: enabled, no SAM 2 and no PixelRefer model, and not
    /// dismissed.
    pub fn wants_first_run(&self) -> bool {
        self.first_run_enabled
            && !self.first_run_dismissed
            && self.last_scan.is_some()
            && !self.installed.iter().any(|(_, m)| {
                matches!(
                    m.kind,
                    ModelKind::Sam2 | ModelKind::PixelRefer | ModelKind::PixelReferLite
                )
            })
    }

    /// Draws the Models window (when open) and the first-run panel (when wanted).
    pub fn ui(&mut self, ctx: &egui::Context) {
        if self.wants_first_run() && !self.open {
            self.first_run_ui(ctx);
        }
        if self.open {
            let mut open = true;
            egui::Window::new("Models")
                .open(&mut open)
                .default_width(640.0)
                .collapsible(false)
                .show(ctx, |ui| self.window_ui(ui));
            self.open = open;
        }
    }

    fn first_run_ui(&mut self, ctx: &egui::Context) {
        let machine = self.machine();
        let (sam, faster, refer, class) = match &self.catalog {
            Ok(c) => {
                let r = c.recommend(machine.cuda, machine.memory_bytes);
                (
                    r.sam2.cloned(),
                    r.faster_sam2.cloned(),
                    r.refer.cloned(),
                    r.class,
                )
            }
            Err(_) => (None, None, None, "cpu"),
        };
        egui::Window::new("Get models")
            .id(egui::Id::unique("first-run-models"))
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_CENTER, egui::vec2(0.0, 0.0))
            .show(ctx, |ui| {
                ui.label("No SAM 2 or PixelRefer model was found. SAM 2 turns clicks into masks and tracks them; PixelRefer answers questions about the objects.");
                ui.label(format!(
                    "Recommended for this machine ({}, {} memory):",
                    if class == "cuda" { "CUDA GPU" } else { "CPU only" },
                    format_bytes(machine.memory_bytes)
                ));
                for entry in [&sam, &refer].into_iter().flatten() {
                    ui.label(format!(
                        "• {} — download ~{}, needs ~{} memory; {}",
                        entry.display_name,
                        format_bytes(entry.approx_download_bytes),
                        format_bytes(entry.approx_memory_bytes),
                        entry.license
                    ));
                }
                ui.add_space(6.0);
                self.progress_ui(ui);
                ui.horizontal(|ui| {
                    let idle = self.running.is_none();
                    if let (Some(s), Some(r)) = (&sam, &refer)
                        && ui
                            .add_enabled(idle, egui::Button::new("Get both"))
                            .clicked()
                    {
                        self.fetch(&s.name.clone());
                        self.fetch(&r.name.clone());
                    }
                    if let Some(s) = &sam
                        && ui
                            .add_enabled(idle, egui::Button::new(format!("Get {} only", s.display_name)))
                            .clicked()
                    {
                        self.fetch(&s.name.clone());
                    }
                    if ui.button("All models…").clicked() {
                        self.open = true;
                    }
                    if ui.button("Not now").clicked() {
                        self.first_run_dismissed = true;
                    }
                });
                if let Some(f) = &faster {
                    ui.add_space(6.0);
                    ui.label(format!(
                        "Faster for video: {} — {}; download ~{}, needs ~{} memory; {}",
                        f.display_name,
                        f.tradeoff,
                        format_bytes(f.approx_download_bytes),
                        format_bytes(f.approx_memory_bytes),
                        f.license
                    ));
                    let idle = self.running.is_none();
                    let label = match &refer {
                        Some(r) => format!("Get {} and {}", f.display_name, r.display_name),
                        None => format!("Get {}", f.display_name),
                    };
                    if ui.add_enabled(idle, egui::Button::new(label)).clicked() {
                        self.fetch(&f.name.clone());
                        if let Some(r) = &refer {
                            self.fetch(&r.name.clone());
                        }
                    }
                }
                ui.label(
                    egui::RichText::new(
                        "Models are downloaded from Hugging Face, exported and checked on this machine; manual annotation works meanwhile.",
                    )
                    .weak(),
                );
            });
    }

    fn progress_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(r) = &self.running {
            let v = r.view.lock().clone();
            ui.horizontal(|ui| {
                ui.label(format!(
                    "{} {}",
                    v.stage.map(FetchStage::label).unwrap_or("Starting"),
                    r.name
                ));
                if ui.button("Cancel").clicked() {
                    r.job.cancel();
                    self.queue.clear();
                }
            });
            let bar = match v.fraction {
                Some(f) => egui::ProgressBar::new(f).show_percentage(),
                None => egui::ProgressBar::new(0.0).animate(true),
            };
            ui.add(bar.text(v.detail.clone()));
            if !self.queue.is_empty() {
                ui.label(format!(
                    "then: {}",
                    self.queue.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        if let Some(e) = &self.error {
            ui.colored_label(egui::Color32::from_rgb(220, 60, 60), e);
        }
        if let Some(n) = &self.notice {
            ui.label(n);
        }
    }

    fn window_ui(&mut self, ui: &mut egui::Ui) {
        self.progress_ui(ui);
        ui.separator();
        let catalog = match &self.catalog {
            Ok(c) => c.clone(),
            Err(e) => {
                ui.colored_label(egui::Color32::from_rgb(220, 60, 60), e);
                return;
            }
        };
        let machine = self.machine();
        let rec = catalog.recommend(machine.cuda, machine.memory_bytes);
        ui.label(format!(
            "Catalogue: {} · installs into {} · hub {}",
            catalog.source,
            self.install_root
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(no folder)".into()),
            self.hub.endpoint
        ));
        let mut action: Option<(bool, String)> = None;
        egui::ScrollArea::vertical()
            .max_height(420.0)
            .show(ui, |ui| {
                egui::Grid::new("catalogue")
                    .striped(true)
                    .num_columns(5)
                    .show(ui, |ui| {
                        for entry in &catalog.models {
                            self.entry_row(ui, entry, rec.pick(entry), &mut action);
                            ui.end_row();
                        }
                    });
                let others: Vec<_> = self
                    .installed
                    .iter()
                    .filter(|(d, _)| installed_name(d).is_none_or(|n| catalog.get(&n).is_err()))
                    .collect();
                if !others.is_empty() {
                    ui.separator();
                    ui.label("Other model folders found:");
                    for (dir, m) in others {
                        ui.label(match &m.quantization {
                            Some(q) => format!(
                                "{} ({}, {}, {q} quantized)",
                                dir.display(),
                                m.kind,
                                m.variant
                            ),
                            None => format!("{} ({}, {})", dir.display(), m.kind, m.variant),
                        });
                    }
                }
            });
        match action {
            Some((true, name)) => self.fetch(&name),
            Some((false, name)) => {
                let mut roots = model_search_dirs(self.models_dir.as_deref());
                roots.dedup();
                match remove_installed(&roots, &name) {
                    Ok(dir) => self.notice = Some(format!("Removed {}", dir.display())),
                    Err(e) => self.error = Some(e.to_string()),
                }
                self.last_scan = None;
            }
            None => {}
        }
    }

    fn entry_row(
        &self,
        ui: &mut egui::Ui,
        entry: &CatalogEntry,
        pick: Option<Pick>,
        action: &mut Option<(bool, String)>,
    ) {
        let title = match pick {
            Some(Pick::Recommended) => {
                egui::RichText::new(format!("{} (recommended)", entry.display_name)).strong()
            }
            Some(Pick::Faster) => egui::RichText::new(format!("{} (faster)", entry.display_name)),
            None => egui::RichText::new(&entry.display_name),
        };
        let hover = match pick {
            Some(Pick::Faster) => format!(
                "{}\n\nNext to the recommended model: {}.",
                entry.summary, entry.tradeoff
            ),
            _ => entry.summary.clone(),
        };
        ui.label(title).on_hover_text(hover);
        ui.label(entry.kind.to_string());
        ui.label(format!(
            "~{} download · ~{} memory",
            format_bytes(entry.approx_download_bytes),
            format_bytes(entry.approx_memory_bytes)
        ));
        ui.label(&entry.license);
        let installed = self.is_installed(&entry.name);
        let running = self.running.as_ref().is_some_and(|r| r.name == entry.name)
            || self.queue.iter().any(|q| q == &entry.name);
        if installed {
            if ui.button("Remove").clicked() {
                *action = Some((false, entry.name.clone()));
            }
        } else if running {
            ui.label("…");
        } else if ui.button("Get").clicked() {
            *action = Some((true, entry.name.clone()));
        }
    }
}
