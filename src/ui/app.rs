//! The eframe application: menus, toolbar, panels, file dialogs, background jobs, autosave,
//! recovery, relink and close confirmation.

use super::canvas::{BRUSH_RADIUS_RANGE_PX, Canvas};
use super::chat_panel::ChatPanel;
use super::doc_api::{self, ExportKind};
use super::help::{self, HelpOverlay};
use super::models_panel::{ModelsEvent, ModelsPanel};
use super::objects_panel::ObjectsPanel;
use super::sam_panel::SamPanel;
use super::server_panel::{ServerAction, ServerPanel};
use super::state::{AppEvent, AppState, Tool};
use super::timeline::Timeline;
use crate::jobs::{FrameRequest, FrameSource, JobError, JobRunner, MediaWorker, Repaint};
use crate::project::{Document, MediaKind};
use egui::{Key, KeyboardShortcut, Modifiers};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Autosave interval while there are unsaved changes.
pub const AUTOSAVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a toast stays, in seconds.
const TOAST_SECS: f64 = 6.0;
/// The frame rate first offered for a folder of frames: FFmpeg's for an image sequence
/// (libavformat/img2dec.c, `framerate` default "25").
pub const DEFAULT_FRAMES_FPS: f64 = 25.0;
/// What *Open folder as video* is for.
const FRAMES_HOVER: &str = "A folder of frames (SAM 2's video input, DAVIS, SA-V): one video \
    you can track through, its images the frames in name order";

/// Receives [`AppEvent`]s (see [`StudioApp::set_event_hook`]).
pub type EventHook = Box<dyn FnMut(&AppEvent)>;

/// Wakes egui from background threads.
struct EguiRepaint(egui::Context);

impl Repaint for EguiRepaint {
    fn request_repaint(&self) {
        self.0.request_repaint();
    }
}

/// What a file dialog was opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    OpenMedia,
    /// A folder of images, each its own item.
    OpenFolder,
    /// A folder of images as the frames of one video (the frame rate is asked next).
    OpenFrames,
    OpenProject,
    SaveProjectAs,
    Export(ExportKind),
    ImportCoco,
    Relink,
    SamModel,
}

/// A document and its media, ready to show.
struct Opened {
    doc: Document,
    project_path: Option<PathBuf>,
    source: crate::media::MediaSource,
    recovery: Option<PathBuf>,
}

/// Results of background jobs.
enum JobOutput {
    Picked(Pick, Option<PathBuf>),
    Opened(Box<Opened>),
    /// A project whose media is missing or changed: ask the user to locate it.
    NeedsRelink {
        doc: Box<Document>,
        project_path: PathBuf,
        reason: String,
    },
    Recovered(Box<Document>),
    Saved {
        path: PathBuf,
        revision: u64,
    },
    Autosaved {
        revision: u64,
    },
    Exported(PathBuf),
    Imported(Box<crate::project::Edit>),
}

/// A pending question in a modal.
enum Prompt {
    /// Unsaved changes and the window is closing.
    ConfirmClose,
    /// An autosave newer than what was opened exists.
    Recover(PathBuf),
    /// The project's media is missing or changed.
    Relink {
        doc: Box<Document>,
        project_path: PathBuf,
        reason: String,
    },
    /// The frame rate of a folder about to open as the frames of one video.
    FrameRate {
        /// The folder.
        path: PathBuf,
        /// Frames per second, as edited.
        fps: f64,
    },
    /// Opening or importing a file failed: the sentence the CLI prints, until dismissed.
    Error {
        title: &'static str,
        message: String,
    },
}

/// The title of the error dialog for a failed job, for jobs whose failure must not pass as
/// a toast (the document was not opened or not changed); None for the others.
fn error_dialog_title(job: &str) -> Option<&'static str> {
    match job {
        "open project" | "relink media" => Some("Cannot open the project"),
        "recover autosave" => Some("Cannot recover the autosave"),
        "import COCO" => Some("Cannot import the COCO file"),
        "open frames" => Some("Cannot open the folder as a video"),
        _ => None,
    }
}

struct Toast {
    text: String,
    error: bool,
    until: f64,
}

/// The application.
pub struct StudioApp {
    state: Option<AppState>,
    canvas: Canvas,
    objects: ObjectsPanel,
    chat: ChatPanel,
    show_chat: bool,
    timeline: Timeline,
    help: HelpOverlay,
    worker: Option<MediaWorker>,
    requested: Option<FrameRequest>,
    texture: Option<(FrameRequest, egui::TextureHandle)>,
    jobs: JobRunner<JobOutput>,
    repaint: Arc<dyn Repaint>,
    toasts: Vec<Toast>,
    prompt: Option<Prompt>,
    close_confirmed: bool,
    autosaved_revision: u64,
    last_autosave_time: f64,
    saving: bool,
    event_hook: Option<EventHook>,
    autosave_interval: Duration,
    sam: SamPanel,
    models: ModelsPanel,
    server: ServerPanel,
    session: crate::runtime::SessionOptions,
    models_dir: Option<PathBuf>,
}

impl StudioApp {
    /// Changes how often unsaved work is autosaved (default [`AUTOSAVE_INTERVAL`]).
    pub fn set_autosave_interval(&mut self, interval: Duration) {
        self.autosave_interval = interval;
    }

    /// Calls `hook` for every [`AppEvent`] (e.g. prompts changed on an object and frame).
    pub fn set_event_hook(&mut self, hook: impl FnMut(&AppEvent) + 'static) {
        self.event_hook = Some(Box::new(hook));
    }

    /// Creates the app; starts opening `open` (media, folder or `*.prj.json`) in the background.
    pub fn new(cc: &eframe::CreationContext<'_>, open: Option<PathBuf>) -> Self {
        let mut app = Self::bare(cc);
        if let Some(path) = open {
            app.open_path(path);
        }
        app
    }

    /// Creates the app on an in-memory document whose frames come from `source` (tests,
    /// synthetic media). The first-run models panel is off (turn it on with
    /// [`ModelsPanel::set_first_run_enabled`]).
    pub fn with_document(
        cc: &eframe::CreationContext<'_>,
        doc: Document,
        source: impl FrameSource,
    ) -> Self {
        let mut app = Self::bare(cc);
        app.models.set_first_run_enabled(false);
        app.worker = MediaWorker::spawn(source, Arc::clone(&app.repaint))
            .map_err(|e| log::error!("could not start the media thread: {e}"))
            .ok();
        app.state = Some(AppState::new(doc));
        app
    }

    fn bare(cc: &eframe::CreationContext<'_>) -> Self {
        let mut canvas = Canvas::default();
        match &cc.wgpu_render_state {
            Some(render_state) => crate::render::callback::install(render_state),
            None => {
                log::warn!("not running on wgpu; masks are not drawn");
                canvas.gpu_overlay = false;
            }
        }
        let repaint: Arc<dyn Repaint> = Arc::new(EguiRepaint(cc.egui_ctx.clone()));
        let app_repaint = Arc::clone(&repaint);
        let mut app = Self {
            state: None,
            canvas,
            objects: ObjectsPanel::default(),
            chat: ChatPanel::new(Arc::clone(&repaint)),
            show_chat: true,
            timeline: Timeline::default(),
            help: HelpOverlay::default(),
            worker: None,
            requested: None,
            texture: None,
            jobs: JobRunner::new(Arc::clone(&repaint)),
            repaint,
            toasts: Vec::new(),
            prompt: None,
            close_confirmed: false,
            autosaved_revision: 0,
            last_autosave_time: 0.0,
            saving: false,
            event_hook: None,
            autosave_interval: AUTOSAVE_INTERVAL,
            sam: SamPanel::default(),
            models: ModelsPanel::new(Arc::clone(&app_repaint)),
            server: ServerPanel::new(Arc::clone(&app_repaint)),
            session: crate::runtime::SessionOptions::default(),
            models_dir: None,
        };
        app.sam.discover(None, Arc::clone(&app.repaint));
        app
    }

    /// Sets where models run (SAM 2 is reloaded with them; the chat panel takes the provider as
    /// its default choice).
    pub fn set_session_options(&mut self, options: crate::runtime::SessionOptions) {
        self.session = options.clone();
        if let Some(remote) = &options.remote {
            self.server.url = remote.url();
        }
        self.server.active = options.remote.clone();
        self.chat.set_provider(options.provider);
        self.chat.use_remote = options.remote.is_some();
        self.chat.remote = options.remote.clone();
        self.models.set_session_options(options.clone());
        self.sam
            .set_session_options(options, Arc::clone(&self.repaint));
    }

    /// Where the app remembers the person's choices ([`super::settings::Settings`]; None: it
    /// does not). Takes effect at the next [`Self::set_models_dir`].
    pub fn set_settings_path(&mut self, path: Option<PathBuf>) {
        self.sam.set_settings_path(path);
    }

    /// Looks for models in `dir` first (like `--models DIR`): loads the tracker chosen last when
    /// it is there, else the first SAM 2 model found there, and offers its PixelRefer models in
    /// the chat panel.
    pub fn set_models_dir(&mut self, dir: Option<&Path>) {
        self.models_dir = dir.map(Path::to_path_buf);
        self.server.models_dir = self.models_dir.clone();
        self.models.set_models_dir(dir);
        self.sam.discover(dir, Arc::clone(&self.repaint));
        if let Some(dir) = dir {
            self.chat.set_models_dir(dir);
        }
    }

    /// Starts a SAM 2 propagation of every prompted object from the current frame.
    pub fn sam_propagate(
        &mut self,
        direction: crate::jobs::PropagateDirection,
    ) -> Result<(), String> {
        let state = self.state.as_ref().ok_or("no media is open")?;
        self.sam
            .propagate(state, direction, Arc::clone(&self.repaint))
    }

    /// Cancels the running SAM 2 propagation.
    pub fn sam_cancel(&self) {
        self.sam.cancel_propagation();
    }

    /// The Models window and first-run panel (catalogue, fetches).
    pub fn models_panel(&self) -> &ModelsPanel {
        &self.models
    }

    /// The Models window and first-run panel, mutable (catalogue, hub, machine facts).
    pub fn models_panel_mut(&mut self) -> &mut ModelsPanel {
        &mut self.models
    }

    /// The Models ▸ Server… window.
    pub fn server_panel(&self) -> &ServerPanel {
        &self.server
    }

    /// The Models ▸ Server… window (tests).
    pub fn server_panel_mut(&mut self) -> &mut ServerPanel {
        &mut self.server
    }

    /// Where models run now (`--device`, `--threads`, `--remote`, the Server window).
    pub fn session_options(&self) -> &crate::runtime::SessionOptions {
        &self.session
    }

    /// Draws the Server window and applies the choice: the models reload on the server or
    /// locally; a server that fails leaves the local models one click away.
    fn server_ui(&mut self, ctx: &egui::Context) {
        let Some(action) = self.server.ui(ctx) else {
            return;
        };
        let remote = match action {
            ServerAction::Use(endpoint) => Some(endpoint),
            ServerAction::UseLocal => None,
        };
        let options = crate::runtime::SessionOptions {
            remote,
            ..self.session.clone()
        };
        self.set_session_options(options);
    }

    /// Acts on installs and removals: a newly installed SAM 2 model loads when none is
    /// active, and the chat panel looks for PixelRefer models again.
    fn poll_models(&mut self, ctx: &egui::Context) {
        for event in self.models.poll() {
            match event {
                ModelsEvent::Installed(dir, kind) => {
                    self.notify(ctx, format!("Installed {}", dir.display()));
                    self.sam.rescan_trackers();
                    if kind == crate::runtime::ModelKind::Sam2
                        && !matches!(self.sam.status(), super::sam_panel::SamStatus::Ready { .. })
                    {
                        self.sam.load(dir, Arc::clone(&self.repaint));
                    }
                    self.chat.rescan_models();
                }
                ModelsEvent::Changed => {
                    self.sam.rescan_trackers();
                    if matches!(
                        self.sam.status(),
                        super::sam_panel::SamStatus::NoModel
                            | super::sam_panel::SamStatus::Failed(_)
                    ) {
                        let dir = self.models_dir.clone();
                        self.sam.discover(dir.as_deref(), Arc::clone(&self.repaint));
                    }
                    self.chat.rescan_models();
                }
            }
        }
    }

    /// SAM 2 state (model status, whether a mask is being computed).
    pub fn sam(&self) -> &SamPanel {
        &self.sam
    }

    /// The application state (None on the start screen).
    pub fn state(&self) -> Option<&AppState> {
        self.state.as_ref()
    }

    /// Mutable application state.
    pub fn state_mut(&mut self) -> Option<&mut AppState> {
        self.state.as_mut()
    }

    /// The chat panel.
    pub fn chat(&self) -> &ChatPanel {
        &self.chat
    }

    /// The chat panel, mutable (model folder, frame source, text box).
    pub fn chat_mut(&mut self) -> &mut ChatPanel {
        &mut self.chat
    }

    /// Shows or hides the chat panel.
    pub fn set_chat_visible(&mut self, visible: bool) {
        self.show_chat = visible;
    }

    /// The canvas (its transform maps screen points to image pixels).
    pub fn canvas(&self) -> &Canvas {
        &self.canvas
    }

    /// Whether the current frame's image has arrived from the media thread.
    pub fn frame_ready(&self) -> bool {
        matches!((&self.texture, &self.state), (Some((req, _)), Some(state))
            if req.item == state.item && req.index == state.frame)
    }

    /// Messages currently shown to the user.
    pub fn toasts(&self) -> Vec<String> {
        self.toasts.iter().map(|t| t.text.clone()).collect()
    }

    fn notify(&mut self, ctx: &egui::Context, text: impl Into<String>) {
        self.push_toast(ctx, text.into(), false);
    }

    fn report(&mut self, ctx: &egui::Context, text: impl Into<String>) {
        let text = text.into();
        log::warn!("{text}");
        self.push_toast(ctx, text, true);
    }

    /// Shows an error in a dialog that stays until dismissed (replacing any other question).
    fn show_error(&mut self, title: &'static str, message: String) {
        log::warn!("{title}: {message}");
        self.prompt = Some(Prompt::Error { title, message });
    }

    /// The message of the error dialog on screen, if one is.
    pub fn error_dialog(&self) -> Option<&str> {
        match &self.prompt {
            Some(Prompt::Error { message, .. }) => Some(message),
            _ => None,
        }
    }

    fn push_toast(&mut self, ctx: &egui::Context, text: String, error: bool) {
        let now = ctx.input(|i| i.time);
        self.toasts.retain(|t| t.text != text);
        self.toasts.push(Toast {
            text,
            error,
            until: now + TOAST_SECS,
        });
    }

    // ----- jobs ----------------------------------------------------------------------------

    fn spawn(
        &mut self,
        name: &str,
        body: impl FnOnce() -> Result<JobOutput, String> + Send + 'static,
    ) {
        if let Err(err) = self
            .jobs
            .spawn(name, move |_| body().map_err(JobError::Failed))
        {
            log::error!("{err}");
        }
    }

    fn pick(&mut self, pick: Pick) {
        // A folder project's media is a folder: relinking it picks one.
        let folder = match (&pick, &self.prompt) {
            (Pick::Relink, Some(Prompt::Relink { doc, .. })) => doc.media.kind == MediaKind::Folder,
            (Pick::Relink, _) => false,
            (p, _) => matches!(
                p,
                Pick::Export(ExportKind::Pngs)
                    | Pick::SamModel
                    | Pick::OpenFolder
                    | Pick::OpenFrames
            ),
        };
        let dialog = rfd::AsyncFileDialog::new();
        let dialog = match pick {
            Pick::OpenMedia => dialog.set_title("Open image or video").add_filter(
                "Images and videos",
                &[
                    "png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp", "gif", "mp4", "mov", "mkv",
                    "avi", "webm",
                ],
            ),
            Pick::OpenFolder => dialog.set_title("Open a folder of images"),
            Pick::OpenFrames => dialog.set_title("Open a folder of frames as a video"),
            Pick::OpenProject => dialog
                .set_title("Open project")
                .add_filter("PixelRefer project", &["json"]),
            Pick::SaveProjectAs => dialog
                .set_title("Save project as")
                .set_file_name("untitled.prj.json"),
            Pick::Export(ExportKind::Regions) => dialog
                .set_title("Export regions JSON")
                .set_file_name("regions.regions.json"),
            Pick::Export(ExportKind::Coco) => dialog
                .set_title("Export COCO JSON")
                .set_file_name("instances.json"),
            Pick::Export(ExportKind::Pngs) => dialog.set_title("Export PNG masks into folder"),
            Pick::ImportCoco => dialog
                .set_title("Import COCO JSON")
                .add_filter("COCO JSON", &["json"]),
            Pick::Relink => dialog.set_title("Locate the moved media"),
            Pick::SamModel => dialog.set_title("Tracker model folder (SAM 2 or EdgeTAM)"),
        };
        self.spawn("file dialog", move || {
            let handle = pollster::block_on(async move {
                match pick {
                    Pick::SaveProjectAs | Pick::Export(ExportKind::Regions | ExportKind::Coco) => {
                        dialog.save_file().await
                    }
                    _ if folder => dialog.pick_folder().await,
                    _ => dialog.pick_file().await,
                }
            });
            Ok(JobOutput::Picked(
                pick,
                handle.map(|h| h.path().to_path_buf()),
            ))
        });
    }

    /// Opens folder `path` in the background as the frames of one video at `fps` frames per
    /// second (its images in name order, [`crate::media::open_frames`]).
    pub fn open_frames(&mut self, path: PathBuf, fps: f64) {
        self.spawn("open frames", move || {
            opened_media(crate::media::open_frames(&path, fps).map_err(|e| e.to_string())?)
        });
    }

    /// Asks the frame rate of folder `path` and then opens it as the frames of one video.
    pub fn ask_frame_rate(&mut self, path: PathBuf) {
        self.prompt = Some(Prompt::FrameRate {
            path,
            fps: DEFAULT_FRAMES_FPS,
        });
    }

    /// Autosaves unsaved work now, before other media replace it (the recovery prompt brings
    /// it back when that media is opened again).
    fn keep_work(&mut self, ctx: &egui::Context) {
        if self.state.as_ref().is_some_and(AppState::is_dirty) {
            self.last_autosave_time = f64::NEG_INFINITY;
            self.autosave(ctx);
        }
    }

    /// Opens a media file, folder or project in the background.
    pub fn open_path(&mut self, path: PathBuf) {
        let is_project = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".prj.json"));
        if is_project {
            self.spawn("open project", move || open_project(&path));
        } else {
            self.spawn("open media", move || {
                opened_media(crate::media::open(&path).map_err(|e| e.to_string())?)
            });
        }
    }

    fn save(&mut self, path: Option<PathBuf>) {
        let Some(state) = &self.state else {
            return;
        };
        let Some(path) = path.or_else(|| state.project_path.clone()) else {
            self.pick(Pick::SaveProjectAs);
            return;
        };
        let doc = state.doc.clone();
        let revision = state.revision();
        let project = state.project_path.clone();
        self.saving = true;
        self.spawn("save project", move || {
            doc_api::save_project(&doc, &path)?;
            doc_api::discard_autosave(&doc_api::autosave_path(project.as_deref(), &doc));
            Ok(JobOutput::Saved { path, revision })
        });
    }

    fn autosave(&mut self, ctx: &egui::Context) {
        let now = ctx.input(|i| i.time);
        let Some(state) = &self.state else {
            return;
        };
        if !state.is_dirty() || state.revision() == self.autosaved_revision {
            return;
        }
        if now - self.last_autosave_time < self.autosave_interval.as_secs_f64() {
            ctx.request_repaint_after(self.autosave_interval);
            return;
        }
        self.last_autosave_time = now;
        let doc = state.doc.clone();
        let revision = state.revision();
        let path = doc_api::autosave_path(state.project_path.as_deref(), &state.doc);
        self.spawn("autosave", move || {
            doc_api::write_autosave(&doc, &path)?;
            Ok(JobOutput::Autosaved { revision })
        });
    }

    fn poll_jobs(&mut self, ctx: &egui::Context) {
        for message in self.jobs.poll() {
            match message.result {
                Ok(output) => self.on_job_output(ctx, output),
                Err(JobError::Cancelled) => {}
                Err(err) => {
                    if message.name == "save project" {
                        self.saving = false;
                        self.close_confirmed = false;
                    }
                    match error_dialog_title(&message.name) {
                        Some(title) => self.show_error(title, err.to_string()),
                        None => self.report(ctx, format!("{} failed: {err}", message.name)),
                    }
                }
            }
        }
    }

    fn on_job_output(&mut self, ctx: &egui::Context, output: JobOutput) {
        match output {
            JobOutput::Picked(pick, None) => {
                if pick == Pick::SaveProjectAs {
                    // "Save" before closing was cancelled: ask again next time.
                    self.close_confirmed = false;
                }
            }
            JobOutput::Picked(pick, Some(path)) => self.on_picked(ctx, pick, path),
            JobOutput::Opened(opened) => {
                let Opened {
                    doc,
                    project_path,
                    source,
                    recovery,
                } = *opened;
                let frame_rate_settable = source.rate_is_settable();
                self.worker = MediaWorker::spawn(source, Arc::clone(&self.repaint))
                    .map_err(|e| log::error!("could not start the media thread: {e}"))
                    .ok();
                let mut state = AppState::new(doc);
                state.project_path = project_path;
                state.frame_rate_settable = frame_rate_settable;
                self.texture = None;
                self.requested = None;
                self.canvas.reset();
                let title = state
                    .project_path
                    .clone()
                    .unwrap_or_else(|| state.doc.media.path.clone());
                ctx.send_viewport_cmd(egui::ViewportCommand::Title(format!(
                    "PixelRefer Studio — {}",
                    title.display()
                )));
                self.state = Some(state);
                self.autosaved_revision = 0;
                if let Some(path) = recovery {
                    self.prompt = Some(Prompt::Recover(path));
                }
            }
            JobOutput::NeedsRelink {
                doc,
                project_path,
                reason,
            } => {
                self.prompt = Some(Prompt::Relink {
                    doc,
                    project_path,
                    reason,
                });
            }
            JobOutput::Recovered(doc) => {
                if let Some(state) = &self.state
                    && let Err(reason) = same_items(&state.doc, &doc)
                {
                    self.show_error(
                        "Cannot recover the autosave",
                        format!("The autosave does not fit the open media: {reason}."),
                    );
                    return;
                }
                if let Some(state) = &mut self.state {
                    let project_path = state.project_path.clone();
                    let mut recovered = AppState::new(*doc);
                    recovered.project_path = project_path;
                    // Recovered work is unsaved until the user saves it.
                    recovered.mark_saved(u64::MAX);
                    *state = recovered;
                    self.notify(ctx, "Recovered the autosaved work; save to keep it.");
                }
            }
            JobOutput::Saved { path, revision } => {
                self.saving = false;
                if let Some(state) = &mut self.state {
                    state.mark_saved(revision);
                    state.project_path = Some(path.clone());
                }
                self.notify(ctx, format!("Saved {}", path.display()));
            }
            JobOutput::Autosaved { revision } => {
                self.autosaved_revision = revision;
            }
            JobOutput::Exported(path) => {
                self.notify(ctx, format!("Exported {}", path.display()));
            }
            JobOutput::Imported(edit) => {
                if let Some(state) = &mut self.state {
                    match state.apply(*edit) {
                        Ok(()) => self.notify(ctx, "Imported the COCO annotations."),
                        Err(err) => self.show_error("Cannot import the COCO file", err.to_string()),
                    }
                }
            }
        }
    }

    fn on_picked(&mut self, ctx: &egui::Context, pick: Pick, path: PathBuf) {
        match pick {
            Pick::SamModel => self.sam.choose(path, Arc::clone(&self.repaint)),
            Pick::OpenMedia | Pick::OpenProject | Pick::OpenFolder => {
                self.keep_work(ctx);
                self.open_path(path);
            }
            Pick::OpenFrames => self.ask_frame_rate(path),
            Pick::SaveProjectAs => {
                let path = if path.to_string_lossy().ends_with(".prj.json") {
                    path
                } else {
                    path.with_extension("prj.json")
                };
                self.save(Some(path));
            }
            Pick::Export(kind) => {
                if let Some(state) = &self.state {
                    let doc = state.doc.clone();
                    self.spawn("export", move || {
                        doc_api::export(&doc, kind, &path)?;
                        Ok(JobOutput::Exported(path))
                    });
                }
            }
            Pick::ImportCoco => {
                if let Some(state) = &self.state {
                    let doc = state.doc.clone();
                    self.spawn("import COCO", move || {
                        Ok(JobOutput::Imported(Box::new(doc_api::import_coco(
                            &doc, &path,
                        )?)))
                    });
                }
            }
            Pick::Relink => {
                if let Some(Prompt::Relink {
                    doc, project_path, ..
                }) = self.prompt.take()
                {
                    self.spawn("relink media", move || {
                        let mut doc = *doc;
                        doc_api::relink_media(&mut doc, &path);
                        if let Err(reason) = doc_api::check_media(&doc) {
                            return Ok(JobOutput::NeedsRelink {
                                doc: Box::new(doc),
                                project_path,
                                reason,
                            });
                        }
                        open_loaded_project(doc, project_path)
                    });
                }
            }
        }
    }

    // ----- frames --------------------------------------------------------------------------

    fn poll_frames(&mut self, ctx: &egui::Context) {
        let Some(worker) = &self.worker else {
            return;
        };
        let Some(state) = &self.state else {
            return;
        };
        let wanted = FrameRequest {
            item: state.item,
            index: state.frame,
        };
        if self.requested != Some(wanted) {
            worker.request(wanted);
            self.requested = Some(wanted);
        }
        let mut newest = None;
        let mut error = None;
        for message in worker.poll() {
            match message.result {
                Ok(frame) => newest = Some((message.request, frame)),
                Err(err) => error = Some(err.to_string()),
            }
        }
        if let Some((request, frame)) = newest {
            let media = state.media_path();
            let frames = state.doc.is_frame_sequence();
            self.sam.on_frame(
                (&media, frames),
                request.item,
                request.index,
                Arc::clone(&frame),
            );
            let max_side = ctx.input(|i| i.max_texture_side);
            let image = color_image(&frame, max_side);
            let options = egui::TextureOptions {
                magnification: egui::TextureFilter::Nearest,
                minification: egui::TextureFilter::Linear,
                ..Default::default()
            };
            match &mut self.texture {
                Some((shown, handle)) => {
                    handle.set(image, options);
                    *shown = request;
                }
                None => self.texture = Some((request, ctx.load_texture("frame", image, options))),
            }
        }
        if let Some(err) = error {
            self.report(ctx, err);
        }
    }

    // ----- input ---------------------------------------------------------------------------

    fn shortcuts(&mut self, ctx: &egui::Context) {
        let command = |key| KeyboardShortcut::new(Modifiers::COMMAND, key);
        let command_shift = |key| KeyboardShortcut::new(Modifiers::COMMAND | Modifiers::SHIFT, key);
        let (redo, undo, save, save_as, open) = ctx.input_mut(|i| {
            let redo =
                i.consume_shortcut(&command_shift(Key::Z)) || i.consume_shortcut(&command(Key::Y));
            let undo = i.consume_shortcut(&command(Key::Z));
            let save_as = i.consume_shortcut(&command_shift(Key::S));
            let save = i.consume_shortcut(&command(Key::S));
            let open = i.consume_shortcut(&command(Key::O));
            (redo, undo, save, save_as, open)
        });
        if open {
            self.pick(Pick::OpenMedia);
        }
        if save {
            self.save(None);
        }
        if save_as {
            self.pick(Pick::SaveProjectAs);
        }
        if undo {
            self.undo(ctx);
        }
        if redo {
            self.redo(ctx);
        }
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let (help, escape, modifiers) = ctx.input(|i| {
            (
                i.key_pressed(Key::Questionmark) || i.key_pressed(Key::F1),
                i.key_pressed(Key::Escape),
                i.modifiers,
            )
        });
        if help {
            self.help.toggle();
        }
        if escape && self.help.is_open() {
            self.help.close();
        }
        if modifiers.command || modifiers.alt {
            return;
        }
        let Some(state) = &mut self.state else {
            return;
        };
        let keys = ctx.input(|i| {
            Tool::ALL
                .into_iter()
                .find(|tool| i.key_pressed(help::tool_key(*tool)))
        });
        if let Some(tool) = keys {
            state.tool = tool;
            self.canvas.cancel_gestures();
        }
        let (smaller, bigger, add, fill, clear) = ctx.input(|i| {
            (
                i.key_pressed(Key::OpenBracket),
                i.key_pressed(Key::CloseBracket),
                i.key_pressed(Key::A),
                i.key_pressed(Key::H),
                i.key_pressed(Key::Delete),
            )
        });
        let (lo, hi) = BRUSH_RADIUS_RANGE_PX;
        if smaller {
            state.brush_radius_px = (state.brush_radius_px / 1.25).clamp(lo, hi);
        }
        if bigger {
            state.brush_radius_px = (state.brush_radius_px * 1.25).clamp(lo, hi);
        }
        let result = if add {
            state.add_object().map(|_| ())
        } else if fill {
            state.fill_holes()
        } else if clear {
            state.clear_frame()
        } else {
            Ok(())
        };
        self.timeline.handle_keys(ctx, state);
        if let Err(err) = result {
            self.report(ctx, err.to_string());
        }
    }

    fn undo(&mut self, ctx: &egui::Context) {
        self.canvas.cancel_gestures();
        if let Some(state) = &mut self.state
            && let Err(err) = state.undo()
        {
            self.report(ctx, format!("Undo failed: {err}"));
        }
    }

    fn redo(&mut self, ctx: &egui::Context) {
        self.canvas.cancel_gestures();
        if let Some(state) = &mut self.state
            && let Err(err) = state.redo()
        {
            self.report(ctx, format!("Redo failed: {err}"));
        }
    }

    // ----- ui ------------------------------------------------------------------------------

    fn menu_bar_ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        let has_doc = self.state.is_some();
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                self.open_buttons(ui);
                ui.separator();
                if ui.add_enabled(has_doc, egui::Button::new("Save")).clicked() {
                    self.save(None);
                }
                if ui
                    .add_enabled(has_doc, egui::Button::new("Save as…"))
                    .clicked()
                {
                    self.pick(Pick::SaveProjectAs);
                }
                ui.separator();
                for (label, kind) in [
                    ("Export regions JSON…", ExportKind::Regions),
                    ("Export COCO…", ExportKind::Coco),
                    ("Export PNG masks…", ExportKind::Pngs),
                ] {
                    if ui.add_enabled(has_doc, egui::Button::new(label)).clicked() {
                        self.pick(Pick::Export(kind));
                    }
                }
                if ui
                    .add_enabled(has_doc, egui::Button::new("Import COCO…"))
                    .clicked()
                {
                    self.pick(Pick::ImportCoco);
                }
                ui.separator();
                if ui.button("Quit").clicked() {
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            ui.menu_button("Edit", |ui| {
                let (can_undo, can_redo) = self
                    .state
                    .as_ref()
                    .map_or((false, false), |s| (s.can_undo(), s.can_redo()));
                if ui
                    .add_enabled(can_undo, egui::Button::new("Undo").shortcut_text("Ctrl+Z"))
                    .clicked()
                {
                    self.undo(&ctx);
                }
                if ui
                    .add_enabled(
                        can_redo,
                        egui::Button::new("Redo").shortcut_text("Ctrl+Shift+Z"),
                    )
                    .clicked()
                {
                    self.redo(&ctx);
                }
            });
            ui.menu_button("View", |ui| {
                ui.checkbox(&mut self.show_chat, "Chat panel");
                if ui
                    .add_enabled(has_doc, egui::Button::new("Fit").shortcut_text("F"))
                    .clicked()
                {
                    self.canvas.request_fit();
                }
                if ui
                    .add_enabled(has_doc, egui::Button::new("Actual size").shortcut_text("1"))
                    .clicked()
                {
                    self.canvas.actual_size();
                }
                if ui
                    .add_enabled(has_doc, egui::Button::new("Zoom in").shortcut_text("+"))
                    .clicked()
                {
                    self.canvas.zoom_by(1.25);
                }
                if ui
                    .add_enabled(has_doc, egui::Button::new("Zoom out").shortcut_text("-"))
                    .clicked()
                {
                    self.canvas.zoom_by(0.8);
                }
            });
            ui.menu_button("Models", |ui| {
                if ui.button("Get models…").clicked() {
                    self.models.open = true;
                }
                if ui
                    .button("Server…")
                    .on_hover_text("Run the models on a team's inference server")
                    .clicked()
                {
                    self.server.open = true;
                }
                let mut other = false;
                ui.menu_button("Tracker", |ui| {
                    other = self.sam.tracker_menu_ui(ui, &self.repaint);
                });
                if other {
                    self.pick(Pick::SamModel);
                }
            });
            ui.menu_button("Help", |ui| {
                if ui
                    .add(egui::Button::new("Keyboard shortcuts").shortcut_text("?"))
                    .clicked()
                {
                    self.help.toggle();
                }
            });
        });
    }

    fn toolbar_ui(&mut self, ui: &mut egui::Ui) -> Option<String> {
        let state = self.state.as_mut()?;
        let mut error = None;
        ui.horizontal_wrapped(|ui| {
            for tool in Tool::ALL {
                let response = ui
                    .selectable_label(state.tool == tool, tool.label())
                    .on_hover_text(format!("{} ({})", tool.label(), tool.shortcut()));
                if response.clicked() {
                    state.tool = tool;
                    self.canvas.cancel_gestures();
                }
            }
            ui.separator();
            let (lo, hi) = BRUSH_RADIUS_RANGE_PX;
            ui.add(
                egui::Slider::new(&mut state.brush_radius_px, lo..=hi)
                    .logarithmic(true)
                    .text("radius px"),
            )
            .on_hover_text("Brush radius ([ and ])");
            ui.separator();
            if ui.button("Fill holes").on_hover_text("H").clicked()
                && let Err(err) = state.fill_holes()
            {
                error = Some(err.to_string());
            }
            if ui
                .button("Clear frame")
                .on_hover_text(
                    "Remove the selected object's mask and prompts on this frame (Delete)",
                )
                .clicked()
                && let Err(err) = state.clear_frame()
            {
                error = Some(err.to_string());
            }
            if ui.button("Clear prompts").clicked()
                && let Err(err) = state.clear_prompts()
            {
                error = Some(err.to_string());
            }
            ui.separator();
            if ui
                .add_enabled(state.can_undo(), egui::Button::new("Undo"))
                .clicked()
            {
                self.canvas.cancel_gestures();
                if let Err(err) = state.undo() {
                    error = Some(err.to_string());
                }
            }
            if ui
                .add_enabled(state.can_redo(), egui::Button::new("Redo"))
                .clicked()
            {
                self.canvas.cancel_gestures();
                if let Err(err) = state.redo() {
                    error = Some(err.to_string());
                }
            }
            if self.canvas.polygon_vertices() > 0 {
                ui.label(format!(
                    "polygon: {} points - Enter closes, Esc cancels",
                    self.canvas.polygon_vertices()
                ));
            }
        });
        error
    }

    fn status_bar_ui(&mut self, ui: &mut egui::Ui) {
        // Wrapped: on a narrow window the propagation controls go to a second line, not off it.
        ui.horizontal_wrapped(|ui| {
            if let Some(state) = &self.state {
                let dirty = if state.is_dirty() {
                    "* unsaved"
                } else {
                    "saved"
                };
                ui.label(dirty);
                ui.separator();
                let name = state
                    .project_path
                    .as_ref()
                    .unwrap_or(&state.doc.media.path)
                    .display()
                    .to_string();
                ui.label(name);
                if let Some(object) = state.selected_object() {
                    ui.separator();
                    ui.monospace(object.tag());
                }
                ui.separator();
                ui.label(format!("zoom {:.0}%", self.canvas.transform().zoom * 100.0));
                ui.separator();
                ui.label(self.sam.status_text());
            }
            let sam_err = match &self.state {
                Some(state) => self.sam.controls_ui(ui, state, &self.repaint),
                None => None,
            };
            if let Some(err) = sam_err {
                let ctx = ui.ctx().clone();
                self.report(&ctx, err);
            }
            for job in self.jobs.running() {
                let progress = job.progress();
                if job.name == "file dialog" {
                    continue;
                }
                ui.separator();
                ui.add(egui::Spinner::new());
                let text = if progress.text.is_empty() {
                    job.name.clone()
                } else {
                    progress.text
                };
                ui.label(text);
            }
        });
    }

    fn toasts_ui(&mut self, ctx: &egui::Context) {
        let now = ctx.input(|i| i.time);
        self.toasts.retain(|t| t.until > now);
        if let Some(next) = self.toasts.iter().map(|t| t.until).reduce(f64::min) {
            ctx.request_repaint_after(Duration::from_secs_f64((next - now).max(0.05)));
        }
        if self.toasts.is_empty() {
            return;
        }
        egui::Area::new(egui::Id::unique("toasts"))
            .anchor(egui::Align2::RIGHT_BOTTOM, egui::vec2(-12.0, -48.0))
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                for toast in &self.toasts {
                    let colour = if toast.error {
                        egui::Color32::from_rgb(120, 30, 30)
                    } else {
                        egui::Color32::from_rgb(30, 70, 40)
                    };
                    egui::Frame::popup(ui.style()).fill(colour).show(ui, |ui| {
                        ui.label(egui::RichText::new(&toast.text).color(egui::Color32::WHITE));
                    });
                }
            });
    }

    /// Open media, a folder, a folder as a video, or a project (File menu and start screen).
    fn open_buttons(&mut self, ui: &mut egui::Ui) {
        for (label, pick) in [
            ("Open media…", Pick::OpenMedia),
            ("Open folder…", Pick::OpenFolder),
            ("Open folder as video…", Pick::OpenFrames),
            ("Open project…", Pick::OpenProject),
        ] {
            let mut button = ui.button(label);
            if matches!(pick, Pick::OpenFrames) {
                button = button.on_hover_text(FRAMES_HOVER);
            }
            if button.clicked() {
                self.pick(pick);
            }
        }
    }

    fn start_screen_ui(&mut self, ui: &mut egui::Ui) {
        ui.vertical_centered(|ui| {
            ui.add_space(ui.available_height() * 0.3);
            ui.heading("PixelRefer Studio");
            ui.label("Annotate regions of images and videos.");
            ui.add_space(16.0);
            self.open_buttons(ui);
            ui.add_space(8.0);
            ui.label(egui::RichText::new("or drop a file on this window").weak());
        });
    }

    fn prompt_ui(&mut self, ctx: &egui::Context) {
        let Some(prompt) = &mut self.prompt else {
            return;
        };
        enum Choice {
            None,
            OpenFrames,
            SaveAndClose,
            DiscardAndClose,
            Cancel,
            Recover,
            DiscardRecovery,
            Locate,
            OpenAnyway,
        }
        let mut choice = Choice::None;
        egui::Modal::new(egui::Id::unique("prompt")).show(ctx, |ui| match prompt {
            Prompt::ConfirmClose => {
                ui.heading("Unsaved changes");
                ui.label("Save your changes before closing?");
                ui.horizontal(|ui| {
                    if ui.button("Save").clicked() {
                        choice = Choice::SaveAndClose;
                    }
                    if ui.button("Don't save").clicked() {
                        choice = Choice::DiscardAndClose;
                    }
                    if ui.button("Cancel").clicked() {
                        choice = Choice::Cancel;
                    }
                });
            }
            Prompt::Recover(path) => {
                ui.heading("Recover unsaved work?");
                ui.label(format!(
                    "An autosave newer than what you opened was found:\n{}",
                    path.display()
                ));
                ui.horizontal(|ui| {
                    if ui.button("Recover").clicked() {
                        choice = Choice::Recover;
                    }
                    if ui.button("Discard autosave").clicked() {
                        choice = Choice::DiscardRecovery;
                    }
                });
            }
            Prompt::FrameRate { path, fps } => {
                ui.heading("Open a folder as a video");
                ui.label(format!(
                    "The images of {} become the frames of one video, in name order \
                     (img2 before img10). They must all have one size.",
                    path.display()
                ));
                ui.horizontal(|ui| {
                    ui.label("Frames per second:");
                    ui.add(
                        egui::DragValue::new(fps)
                            .range(0.01..=crate::media::MAX_FRAMES_FPS)
                            .speed(0.1),
                    )
                    .on_hover_text(
                        "The rate the frames were taken at: the timeline and exports show times \
                         from it, and PixelRefer samples one frame per second of video.",
                    );
                });
                ui.horizontal(|ui| {
                    if ui.button("Open").clicked() {
                        choice = Choice::OpenFrames;
                    }
                    if ui.button("Cancel").clicked() {
                        choice = Choice::Cancel;
                    }
                });
            }
            Prompt::Error { title, message } => {
                ui.heading(*title);
                ui.label(message.as_str());
                if ui.button("OK").clicked() {
                    choice = Choice::Cancel;
                }
            }
            Prompt::Relink { reason, doc, .. } => {
                ui.heading("Media not found");
                ui.label(reason.as_str());
                ui.horizontal(|ui| {
                    if ui.button("Locate…").clicked() {
                        choice = Choice::Locate;
                    }
                    if path_exists(doc) && ui.button("Open anyway").clicked() {
                        choice = Choice::OpenAnyway;
                    }
                    if ui.button("Cancel").clicked() {
                        choice = Choice::Cancel;
                    }
                });
            }
        });
        match choice {
            Choice::None => {}
            Choice::OpenFrames => {
                if let Some(Prompt::FrameRate { path, fps }) = self.prompt.take() {
                    self.keep_work(ctx);
                    self.open_frames(path, fps);
                }
            }
            Choice::Cancel => self.prompt = None,
            Choice::SaveAndClose => {
                self.prompt = None;
                self.save(None);
                self.close_confirmed = true;
            }
            Choice::DiscardAndClose => {
                self.prompt = None;
                self.close_confirmed = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            Choice::Recover => {
                if let Some(Prompt::Recover(path)) = self.prompt.take() {
                    self.spawn("recover autosave", move || {
                        let mut doc = doc_api::load_project(&path)?;
                        // An autosave by an earlier build is brought up to date as a project
                        // is on open (frame times, animated images, FFmpeg-only pictures).
                        if let Ok(source) = crate::jobs::open_media(&doc) {
                            crate::jobs::complete_from_media(&mut doc, &source);
                        }
                        Ok(JobOutput::Recovered(Box::new(doc)))
                    });
                }
            }
            Choice::DiscardRecovery => {
                if let Some(Prompt::Recover(path)) = self.prompt.take() {
                    std::thread::Builder::new()
                        .name("discard-autosave".to_owned())
                        .spawn(move || doc_api::discard_autosave(&path))
                        .map_err(|e| log::warn!("{e}"))
                        .ok();
                }
            }
            Choice::Locate => self.pick(Pick::Relink),
            Choice::OpenAnyway => {
                if let Some(Prompt::Relink {
                    doc, project_path, ..
                }) = self.prompt.take()
                {
                    self.spawn("open project", move || {
                        open_loaded_project(*doc, project_path)
                    });
                }
            }
        }
    }

    fn handle_close(&mut self, ctx: &egui::Context) {
        if self.saving && self.close_confirmed {
            // "Save" was chosen: close once the save lands.
            ctx.request_repaint_after(Duration::from_millis(50));
            return;
        }
        if self.close_confirmed && !self.saving && self.prompt.is_none() {
            let dirty = self.state.as_ref().is_some_and(AppState::is_dirty);
            if !dirty {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                return;
            }
        }
        if ctx.input(|i| i.viewport().close_requested()) {
            let dirty = self.state.as_ref().is_some_and(AppState::is_dirty);
            if dirty && !self.close_confirmed {
                ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
                self.prompt = Some(Prompt::ConfirmClose);
            } else {
                self.jobs.cancel_all();
            }
        }
    }

    fn dropped_files(&mut self, ctx: &egui::Context) {
        let dropped = ctx.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        if let Some(path) = dropped {
            self.open_path(path);
        }
    }
}

impl eframe::App for StudioApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        if let Some(state) = &mut self.state {
            // Prompt changes go to the hook (the SAM 2 issue turns them into segmentation
            // jobs); the queue is drained every frame so it never grows.
            for event in state.take_events() {
                log::debug!("{event:?}");
                self.sam.on_event(&event);
                if let Some(hook) = &mut self.event_hook {
                    hook(&event);
                }
            }
            let sam_errors = self.sam.poll(state);
            for err in sam_errors {
                self.report(ctx, err);
            }
        }
        self.poll_jobs(ctx);
        self.poll_models(ctx);
        self.poll_frames(ctx);
        self.autosave(ctx);
        self.handle_close(ctx);
        self.dropped_files(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.shortcuts(&ctx);
        if let Some(state) = &mut self.state {
            self.timeline.tick(&ctx, state);
        }
        egui::Panel::top("menu").show(ui, |ui| self.menu_bar_ui(ui));
        if self.state.is_none() {
            egui::CentralPanel::default().show(ui, |ui| self.start_screen_ui(ui));
            self.models.ui(&ctx);
            self.server_ui(&ctx);
            self.toasts_ui(&ctx);
            self.prompt_ui(&ctx);
            return;
        }
        let toolbar = egui::Panel::top("toolbar").show(ui, |ui| self.toolbar_ui(ui));
        if let Some(err) = toolbar.inner {
            self.report(&ctx, err);
        }
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar_ui(ui));
        let texture = self.texture.as_ref().map(|(_, handle)| handle.clone());
        let mut errors = Vec::new();
        if let Some(state) = &mut self.state {
            egui::Panel::bottom("timeline").show(ui, |ui| self.timeline.ui(ui, state));
            let objects = egui::Panel::right("objects")
                .default_size(260.0)
                .show(ui, |ui| self.objects.ui(ui, state));
            errors.extend(objects.inner);
            if self.show_chat {
                egui::Panel::right("chat")
                    .default_size(280.0)
                    .show(ui, |ui| self.chat.ui(ui, state));
            } else {
                self.chat.poll(state);
            }
            let out = egui::CentralPanel::default()
                .frame(egui::Frame::NONE)
                .show(ui, |ui| self.canvas.ui(ui, state, texture.as_ref()))
                .inner;
            errors.extend(out.error);
        }
        for err in errors {
            self.report(&ctx, err.to_string());
        }
        if self.timeline.take_frames_request()
            && let Some(state) = &self.state
        {
            self.ask_frame_rate(state.media_path());
        }
        self.help.ui(&ctx);
        self.models.ui(&ctx);
        self.server_ui(&ctx);
        self.toasts_ui(&ctx);
        self.prompt_ui(&ctx);
    }
}

/// RGBA frame → egui image, shrunk (nearest) when a side exceeds the GPU's texture limit.
fn color_image(frame: &crate::media::Frame, max_side: usize) -> egui::ColorImage {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let step = w.max(h).div_ceil(max_side.max(1)).max(1);
    if step == 1 && frame.rgba.len() == w * h * 4 {
        return egui::ColorImage::from_rgba_unmultiplied([w, h], &frame.rgba);
    }
    let (sw, sh) = (w.div_ceil(step), h.div_ceil(step));
    let mut pixels = Vec::with_capacity(sw * sh);
    for y in 0..sh {
        for x in 0..sw {
            let i = ((y * step) * w + x * step) * 4;
            let px = frame.rgba.get(i..i + 4).unwrap_or(&[0, 0, 0, 255]);
            pixels.push(egui::Color32::from_rgba_unmultiplied(
                px[0], px[1], px[2], px[3],
            ));
        }
    }
    egui::ColorImage::new([sw, sh], pixels)
}

fn path_exists(doc: &Document) -> bool {
    doc.media.path.exists()
}

/// Opened media not yet saved as a project: a new document for it, and any autosave of
/// unsaved work on it to offer for recovery.
fn opened_media(source: crate::media::MediaSource) -> Result<JobOutput, String> {
    let doc = doc_api::new_document(&source)?;
    let recovery = doc_api::find_recovery(None, &doc);
    Ok(JobOutput::Opened(Box::new(Opened {
        doc,
        project_path: None,
        source,
        recovery,
    })))
}

fn open_project(path: &Path) -> Result<JobOutput, String> {
    let doc = doc_api::load_project(path)?;
    if let Err(reason) = doc_api::check_media(&doc) {
        return Ok(JobOutput::NeedsRelink {
            doc: Box::new(doc),
            project_path: path.to_path_buf(),
            reason,
        });
    }
    open_loaded_project(doc, path.to_path_buf())
}

fn open_loaded_project(mut doc: Document, project_path: PathBuf) -> Result<JobOutput, String> {
    let source = crate::jobs::open_media(&doc).map_err(|e| e.to_string())?;
    if crate::jobs::complete_from_media(&mut doc, &source) {
        log::info!(
            "{}: brought up to date with how this build reads its media (kind or frame times)",
            project_path.display()
        );
    }
    // Masks of another size or frame count than the media would be drawn wrong: refuse.
    crate::jobs::compare_with_media(&doc, &source, &project_path).map_err(|e| e.to_string())?;
    let recovery = doc_api::find_recovery(Some(&project_path), &doc);
    Ok(JobOutput::Opened(Box::new(Opened {
        doc,
        project_path: Some(project_path),
        source,
        recovery,
    })))
}

/// Whether a recovered document has the same items (file, size, frames) as the open one.
fn same_items(open: &Document, recovered: &Document) -> Result<(), String> {
    if open.items.len() != recovered.items.len() {
        return Err(format!(
            "it has {} items, the media {}",
            recovered.items.len(),
            open.items.len()
        ));
    }
    for (i, (a, b)) in open.items.iter().zip(&recovered.items).enumerate() {
        if (&a.file, a.width, a.height, a.frame_count)
            != (&b.file, b.width, b.height, b.frame_count)
        {
            return Err(format!(
                "item {i} is {}x{} with {} frames in it but {}x{} with {} frames in the media",
                b.width, b.height, b.frame_count, a.width, a.height, a.frame_count
            ));
        }
    }
    Ok(())
}
