//! SAM 2 in the app: the model chooser state, the status-bar line, and click-to-mask.
//!
//! Prompt changes ([`AppEvent::PromptsChanged`]) become requests to the
//! [`SegmentWorker`](crate::jobs::SegmentWorker) thread; its masks come back as messages and
//! are applied here as one undoable [`Edit`] each (the mask, its IoU score, the prompts that
//! made it and the model id, plus the model record in `doc.models` the first time). The UI
//! thread never waits on the model.

use super::settings::Settings;
use super::state::{AppEvent, AppState};
use crate::jobs::{
    PropagateDirection, PropagateMessage, PropagateRequest, PropagationJob, Repaint,
    SegmentMessage, SegmentRequest, SegmentResult, SegmentWorker,
};
use crate::media::Frame;
use crate::project::{Edit, FrameAnnotation, MaskSource, ModelRecord};
use crate::runtime::{ModelKind, SessionOptions};
use crate::segment::{Prompts, TrackInput};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the SAM 2 model stands.
#[derive(Debug, Clone, PartialEq)]
pub enum SamStatus {
    /// No `sam2` model directory was found.
    NoModel,
    /// Loading `dir` in the background.
    Loading(PathBuf),
    /// Ready on `provider` ("CPU", "CUDA"), with load warnings (e.g. a CUDA → CPU fallback).
    Ready {
        /// Model id recorded in the document.
        id: String,
        /// The SAM 2 family member (`sam2`, `edgetam`).
        family: String,
        /// Manifest variant (`sam2.1_hiera_tiny`…), what the status bar shows.
        variant: String,
        /// Execution provider in use.
        provider: String,
        /// The scheme of an opt-in quantized export (`int8`; None: full precision).
        quantization: Option<String>,
        /// Warnings from loading.
        warnings: Vec<String>,
    },
    /// Loading failed (one sentence).
    Failed(String),
}

/// SAM 2 state of the app (owned by [`super::StudioApp`]).
pub struct SamPanel {
    worker: Option<SegmentWorker>,
    status: SamStatus,
    record: Option<ModelRecord>,
    frame: Option<(usize, u64, Arc<Frame>)>,
    pending: Vec<(usize, u32, u64)>,
    in_flight: usize,
    propagation: Option<Propagation>,
    /// The media path the worker was last told about.
    media_sent: Option<(PathBuf, bool)>,
    /// The model directory loaded or loading.
    dir: Option<PathBuf>,
    /// Its family, from its manifest when [`Self::load`] started it.
    family: Option<String>,
    /// Provider and threads the model is loaded with.
    options: SessionOptions,
    /// Where `--models` pointed (searched first for trackers).
    models_dir: Option<PathBuf>,
    /// Trackers found on disk (scanned when first listed, again after installs).
    trackers: Option<Vec<FoundTracker>>,
    /// Where the chosen tracker is remembered ([`Settings`]; None: nowhere).
    settings_path: Option<PathBuf>,
}

/// A running propagation and the inverses of what it applied so far (one undo step).
struct Propagation {
    job: PropagationJob,
    item: usize,
    /// The model that runs it, recorded on its masks (the chosen tracker may change meanwhile).
    record: Option<ModelRecord>,
    inverses: Vec<Edit>,
    /// Still adding the prompted frames (`done`/`total` count those, else frames).
    preparing: bool,
    done: usize,
    total: usize,
}

impl Default for SamPanel {
    fn default() -> Self {
        Self {
            worker: None,
            status: SamStatus::NoModel,
            record: None,
            frame: None,
            pending: Vec::new(),
            in_flight: 0,
            propagation: None,
            media_sent: None,
            dir: None,
            family: None,
            options: SessionOptions::default(),
            models_dir: None,
            trackers: None,
            settings_path: Settings::default_path(),
        }
    }
}

impl std::fmt::Debug for SamPanel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamPanel")
            .field("status", &self.status)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// Colour of one frame in an object's timeline strip: the object's colour for painted or
/// imported masks; for SAM 2 masks dimmed by the model's confidence (the IoU of a clicked mask,
/// the sigmoid of a propagated mask's object score), and red where the object is not visible
/// (object score ≤ 0) so drift and disappearance are easy to find.
pub fn strip_colour(base: egui::Color32, annotation: Option<&FrameAnnotation>) -> egui::Color32 {
    let Some(a) = annotation else {
        return base;
    };
    let Some(score) = a.score else {
        return base;
    };
    let confidence = match a.source {
        MaskSource::Propagated => {
            if score <= 0.0 {
                return egui::Color32::from_rgb(220, 40, 40);
            }
            1.0 / (1.0 + (-score).exp())
        }
        _ => score.clamp(0.0, 1.0),
    };
    base.gamma_multiply(0.35 + 0.65 * confidence)
}

/// Why the tracker menu is disabled while a propagation runs (its masks keep their model).
const WAIT_FOR_PROPAGATION: &str = "switch trackers once the propagation ends (or cancel it)";

/// The name a person knows a SAM 2 family member by (manifest `family`).
pub fn family_name(family: &str) -> &str {
    match family {
        "sam2" => "SAM 2",
        "edgetam" => "EdgeTAM",
        other => other,
    }
}

/// A tracker found on disk: a `sam2`-kind model directory (SAM 2 or EdgeTAM).
#[derive(Debug, Clone, PartialEq)]
pub struct FoundTracker {
    /// The directory.
    pub dir: PathBuf,
    /// The family member (`sam2`, `edgetam`).
    pub family: String,
    /// Manifest variant (`sam2.1_hiera_tiny`, `edgetam`…).
    pub variant: String,
    /// `int8` for an opt-in quantized export (None: full precision).
    pub quantization: Option<String>,
}

impl FoundTracker {
    /// Name shown in the tracker menu: family, folder, and the quantization when there is one.
    pub fn label(&self) -> String {
        let dir = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = family_name(&self.family);
        match &self.quantization {
            // Quantized masks differ from the full-precision model's: say so where it is chosen.
            Some(q) => format!("{name} ({dir}) · {q} quantized"),
            None => format!("{name} ({dir})"),
        }
    }

    /// What choosing it means, for the menu's hover text.
    pub fn hint(&self) -> &'static str {
        match self.family.as_str() {
            // measured: `cargo bench --bench sam2 -- --a rust:EDGETAM --b rust:SAM2` (issue 10)
            "edgetam" => {
                "EdgeTAM: the tracker for CPUs, about 4x faster per tracked frame than SAM 2.1-tiny on 2 cores; less accurate (Models > Get models… lists both papers' scores)"
            }
            _ => "SAM 2: the most accurate tracker; on a CPU each tracked frame takes seconds",
        }
    }
}

/// Every tracker in `models_dir`, `$PIXELREFER_MODELS`, `./models` and the user data directory,
/// in that order.
pub fn find_trackers(models_dir: Option<&Path>) -> Vec<FoundTracker> {
    crate::runtime::find_model_dirs(models_dir)
        .into_iter()
        .filter(|(_, m)| m.kind == ModelKind::Sam2)
        .map(|(dir, m)| FoundTracker {
            family: manifest_family(&m),
            variant: m.variant,
            quantization: m.quantization.map(|q| q.scheme),
            dir,
        })
        .collect()
}

/// The family member a `sam2`-kind manifest names (`sam2` when it names none).
fn manifest_family(m: &crate::runtime::Manifest) -> String {
    m.constants
        .get("family")
        .and_then(|f| f.as_str())
        .unwrap_or("sam2")
        .to_string()
}

/// The first tracker found (see [`find_trackers`]).
pub fn find_sam2_dir(models_dir: Option<&Path>) -> Option<PathBuf> {
    find_trackers(models_dir).into_iter().next().map(|t| t.dir)
}

impl SamPanel {
    /// Loads the tracker chosen last ([`Self::choose`]) when it is still a tracker folder (and,
    /// with `--models DIR`, inside DIR), else the first found ([`find_sam2_dir`]), in the
    /// background.
    pub fn discover(&mut self, models_dir: Option<&Path>, repaint: Arc<dyn Repaint>) {
        self.models_dir = models_dir.map(Path::to_path_buf);
        let found = find_trackers(models_dir);
        let first = found.first().map(|t| t.dir.clone());
        self.trackers = Some(found);
        match self.remembered(models_dir).or(first) {
            Some(dir) => self.load(dir, repaint),
            None => {
                self.worker = None;
                self.status = SamStatus::NoModel;
            }
        }
    }

    /// Sets the provider and threads, reloading a loaded model with them.
    pub fn set_session_options(&mut self, options: SessionOptions, repaint: Arc<dyn Repaint>) {
        self.options = options;
        if let Some(dir) = self.dir.clone()
            && self.worker.is_some()
        {
            self.load(dir, repaint);
        }
    }

    /// Loads the model directory `dir` on the worker thread (replacing any current model).
    pub fn load(&mut self, dir: PathBuf, repaint: Arc<dyn Repaint>) {
        self.worker = None;
        self.media_sent = None;
        self.record = None;
        self.in_flight = 0;
        self.family = crate::runtime::Manifest::load(&dir)
            .ok()
            .map(|m| manifest_family(&m));
        self.dir = Some(dir.clone());
        match SegmentWorker::spawn(dir.clone(), self.options.clone(), repaint) {
            Ok(worker) => {
                self.worker = Some(worker);
                self.status = SamStatus::Loading(dir);
            }
            Err(e) => self.status = SamStatus::Failed(format!("could not start SAM 2: {e}")),
        }
    }

    /// The trackers found on disk (scanned on first use and after [`Self::rescan_trackers`]).
    pub fn trackers(&mut self) -> &[FoundTracker] {
        let dir = self.models_dir.clone();
        self.trackers
            .get_or_insert_with(|| find_trackers(dir.as_deref()))
    }

    /// Loads `dir` and remembers it as the person's tracker for the next start.
    pub fn choose(&mut self, dir: PathBuf, repaint: Arc<dyn Repaint>) {
        if let Some(path) = &self.settings_path {
            let mut settings = Settings::load(path);
            settings.tracker = Some(std::path::absolute(&dir).unwrap_or_else(|_| dir.clone()));
            if let Err(e) = settings.save(path) {
                log::warn!("the chosen tracker will not be remembered: {e}");
            }
        }
        self.load(dir, repaint);
    }

    /// Where the chosen tracker is remembered (None: not remembered; tests use a folder of
    /// their own).
    pub fn set_settings_path(&mut self, path: Option<PathBuf>) {
        self.settings_path = path;
    }

    /// The remembered tracker, when it is still a tracker folder and, with `--models DIR`,
    /// inside DIR (that flag asks for the models there).
    fn remembered(&self, models_dir: Option<&Path>) -> Option<PathBuf> {
        let dir = Settings::load(self.settings_path.as_deref()?).tracker?;
        if let Some(m) = models_dir {
            let m = std::path::absolute(m).unwrap_or_else(|_| m.to_path_buf());
            if !dir.starts_with(&m) {
                return None;
            }
        }
        crate::runtime::Manifest::load(&dir)
            .is_ok_and(|m| m.kind == ModelKind::Sam2)
            .then_some(dir)
    }

    /// Looks for trackers again when next listed (after an install or a removal).
    pub fn rescan_trackers(&mut self) {
        self.trackers = None;
    }

    /// The model directory loaded or loading.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether a propagation is running (the tracker cannot change meanwhile).
    pub fn propagating(&self) -> bool {
        self.propagation.is_some()
    }

    /// The tracker entries of the Models menu: every tracker found (the loaded one marked),
    /// then a folder picker. Returns true when "Other folder…" was chosen (the caller opens the
    /// dialog). Switching waits for a running propagation, whose masks keep the model that made
    /// them.
    pub fn tracker_menu_ui(&mut self, ui: &mut egui::Ui, repaint: &Arc<dyn Repaint>) -> bool {
        let idle = !self.propagating();
        let current = self.dir.clone();
        let mut chosen = None;
        let found = self.trackers().to_vec();
        if found.is_empty() {
            ui.label("none found (Models > Get models…)");
        }
        for t in &found {
            let selected = current.as_deref() == Some(t.dir.as_path());
            let response = ui
                .add_enabled(idle, egui::Button::selectable(selected, t.label()))
                .on_hover_text(t.hint())
                .on_disabled_hover_text(WAIT_FOR_PROPAGATION);
            if response.clicked() && !selected {
                chosen = Some(t.dir.clone());
            }
        }
        let other = ui
            .add_enabled(idle, egui::Button::new("Other folder…"))
            .on_hover_text("A SAM 2 or EdgeTAM model folder")
            .on_disabled_hover_text(WAIT_FOR_PROPAGATION)
            .clicked();
        let close = chosen.is_some() || other;
        if let Some(dir) = chosen {
            self.choose(dir, Arc::clone(repaint));
        }
        if close {
            ui.close();
        }
        other
    }

    /// Where the model stands.
    pub fn status(&self) -> &SamStatus {
        &self.status
    }

    /// Whether a mask request is running.
    pub fn busy(&self) -> bool {
        self.in_flight > 0
    }

    /// One line for the status bar.
    pub fn status_text(&self) -> String {
        match &self.status {
            SamStatus::NoModel => {
                "No tracker (prompts are kept; masks need SAM 2 or EdgeTAM: Models > Get models…)"
                    .into()
            }
            SamStatus::Loading(dir) => {
                format!("{}: loading {}…", self.loading_name(), dir.display())
            }
            SamStatus::Ready {
                family,
                variant,
                provider,
                quantization,
                warnings,
                ..
            } => {
                let mut s = format!("{}: {variant} on {provider}", family_name(family));
                if let Some(q) = quantization {
                    s.push_str(&format!(" ({q} quantized: masks differ from fp32)"));
                }
                if let Some(w) = warnings.first() {
                    s.push_str(&format!(" (warning: {w})"));
                }
                if self.busy() {
                    s.push_str(", segmenting…");
                }
                s
            }
            SamStatus::Failed(e) => format!("{}: {e}", self.loading_name()),
        }
    }

    /// The family name of the folder loaded or loading ("SAM 2" when its manifest names none
    /// or cannot be read).
    fn loading_name(&self) -> &str {
        family_name(self.family.as_deref().unwrap_or("sam2"))
    }

    /// Handles an app event (prompt changes queue a mask request).
    pub fn on_event(&mut self, event: &AppEvent) {
        match event {
            AppEvent::PromptsChanged { item, id, frame } => {
                let key = (*item, *id, *frame);
                if !self.pending.contains(&key) {
                    self.pending.push(key);
                }
            }
        }
    }

    /// The frame now shown, from the media at `media` (a folder annotated as the frames of one
    /// video when `frames`); pre-encodes it so the first click is fast (the worker then encodes
    /// its neighbours while idle).
    pub fn on_frame(
        &mut self,
        (media, frames): (&Path, bool),
        item: usize,
        frame: u64,
        image: Arc<Frame>,
    ) {
        if let Some(worker) = &self.worker {
            let sent = (media.to_path_buf(), frames);
            if self.media_sent.as_ref() != Some(&sent) {
                worker.request(SegmentRequest::Media {
                    path: sent.0.clone(),
                    frames,
                });
                self.media_sent = Some(sent);
            }
            worker.request(SegmentRequest::Preencode {
                item,
                frame,
                image: Arc::clone(&image),
            });
        }
        self.frame = Some((item, frame, image));
    }

    /// Sends pending requests and applies finished masks to `state`. Returns messages for the
    /// user (errors, one sentence each).
    pub fn poll(&mut self, state: &mut AppState) -> Vec<String> {
        let mut errors = Vec::new();
        if let Some(worker) = &self.worker {
            for message in worker.poll() {
                match message {
                    SegmentMessage::Loaded {
                        record,
                        family,
                        provider,
                        quantization,
                        warnings,
                    } => {
                        self.status = SamStatus::Ready {
                            id: record.id.clone(),
                            family,
                            variant: record.variant.clone(),
                            provider,
                            quantization,
                            warnings,
                        };
                        self.record = Some(record);
                    }
                    SegmentMessage::LoadFailed(e) => {
                        self.status = SamStatus::Failed(e.clone());
                        errors.push(format!("SAM 2 model: {e}"));
                    }
                    SegmentMessage::Mask(result) => {
                        self.in_flight = self.in_flight.saturating_sub(1);
                        if let Err(e) = self.apply(state, &result) {
                            errors.push(e);
                        }
                    }
                    SegmentMessage::Failed(e) => {
                        self.in_flight = self.in_flight.saturating_sub(1);
                        errors.push(format!("SAM 2: {e}"));
                    }
                    SegmentMessage::Encoded { item, frame } => {
                        log::debug!("SAM 2 encoded item {item} frame {frame}");
                    }
                }
            }
        }
        if matches!(self.status, SamStatus::Failed(_)) {
            self.worker = None;
        }
        errors.extend(self.poll_propagation(state));
        self.send_pending(state);
        errors
    }

    fn send_pending(&mut self, state: &AppState) {
        if self.worker.is_none() || self.record.is_none() {
            // Prompts stay in the document; masks come once a model is ready. Without a model
            // the requests are dropped (the status bar says why).
            if self.worker.is_none() {
                self.pending.clear();
            }
            return;
        }
        let Some((f_item, f_frame, image)) = self.frame.clone() else {
            return;
        };
        let mut keep = Vec::new();
        for (item, id, frame) in std::mem::take(&mut self.pending) {
            if (item, frame) != (f_item, f_frame) {
                if (item, frame) == (state.item, state.frame) {
                    keep.push((item, id, frame)); // its image is on its way
                }
                continue;
            }
            let prompts = state
                .doc
                .items
                .get(item)
                .and_then(|it| it.object(id))
                .and_then(|o| o.frames.get(&frame))
                .map(|a| a.prompts.clone())
                .unwrap_or_default();
            if prompts.is_empty() {
                continue;
            }
            let sent = self.worker.as_ref().is_some_and(|w| {
                w.request(SegmentRequest::Predict {
                    item,
                    id,
                    frame,
                    image: Arc::clone(&image),
                    prompts,
                })
            });
            if sent {
                self.in_flight += 1;
            } else {
                keep.push((item, id, frame));
            }
        }
        self.pending = keep;
    }

    /// Starts propagating every object with prompts on the current item from the current
    /// frame. The masks appear frame by frame; the whole run is one undo step.
    pub fn propagate(
        &mut self,
        state: &AppState,
        direction: PropagateDirection,
        repaint: Arc<dyn Repaint>,
    ) -> Result<(), String> {
        if self.propagation.is_some() {
            return Err("a propagation is already running".into());
        }
        let model = self
            .worker
            .as_ref()
            .and_then(SegmentWorker::model)
            .ok_or("propagation needs a SAM 2 model (Models > Get models…)")?;
        if state.frame_count() < 2 {
            return Err("propagation needs a video".into());
        }
        let item = state.item;
        let (width, height) = state.image_size_px().ok_or("propagation needs a video")?;
        // A painted or imported mask is the object's input on its frame (it replaces that
        // frame's clicks, as in SAM 2's add_new_mask) when the model can take one.
        let masks_unsupported = model.mask_prompt().err().map(|e| e.to_string());
        let mut prompts = Vec::new();
        let mut given_but_unused = false;
        for o in state.objects().iter().filter(|o| !o.locked) {
            for (f, a) in &o.frames {
                if a.source.is_given() {
                    if masks_unsupported.is_none() {
                        let mask = match &a.mask {
                            Some(rle) => super::doc_api::mask_from_rle(rle).map_err(|e| {
                                format!("the mask of {} on frame {f} is unreadable: {e}", o.tag())
                            })?,
                            None => crate::mask::Mask::new(width, height),
                        };
                        prompts.push((o.id, *f, TrackInput::Mask(mask)));
                        continue;
                    }
                    given_but_unused = true;
                }
                if !a.prompts.is_empty() {
                    prompts.push((
                        o.id,
                        *f,
                        TrackInput::Clicks(Prompts::from_project(&a.prompts)),
                    ));
                }
            }
        }
        if prompts.is_empty() {
            return Err(match masks_unsupported.filter(|_| given_but_unused) {
                Some(why) => format!("{why}; or click on the object"),
                None => "click on an object first, draw a box on it, or paint it".into(),
            });
        }
        let request = PropagateRequest {
            media_path: state.media_path(),
            item,
            prompts,
            start: state.frame,
            direction,
        };
        let job = PropagationJob::spawn(model, request, repaint)?;
        self.propagation = Some(Propagation {
            job,
            item,
            record: self.record.clone(),
            inverses: Vec::new(),
            preparing: true,
            done: 0,
            total: 0,
        });
        Ok(())
    }

    /// Stops the running propagation (what it finished stays, as one undo step).
    pub fn cancel_propagation(&self) {
        if let Some(p) = &self.propagation {
            p.job.cancel();
        }
    }

    /// `(done, total)` of the running propagation: prompted frames added while it prepares,
    /// then frames of the running pass.
    pub fn propagation_progress(&self) -> Option<(usize, usize)> {
        self.propagation.as_ref().map(|p| (p.done, p.total))
    }

    /// Propagation buttons, or progress and Cancel while one runs.
    pub fn controls_ui(
        &mut self,
        ui: &mut egui::Ui,
        state: &AppState,
        repaint: &Arc<dyn Repaint>,
    ) -> Option<String> {
        if let Some(p) = &self.propagation {
            let (done, total) = (p.done, p.total);
            let fraction = if total > 0 {
                done as f32 / total as f32
            } else {
                0.0
            };
            // each prompted frame is encoded before tracking starts
            let text = if p.preparing {
                format!("prompted frame {done}/{total}")
            } else {
                format!("frame {done}/{total}")
            };
            ui.add(
                egui::ProgressBar::new(fraction)
                    .desired_width(140.0)
                    .text(text),
            );
            if ui.button("Cancel").clicked() {
                self.cancel_propagation();
            }
            return None;
        }
        if self.record.is_none() || state.frame_count() < 2 {
            return None;
        }
        let mut chosen = None;
        for (label, key, direction) in [
            (
                "Propagate backward",
                egui::Key::ArrowLeft,
                PropagateDirection::Backward,
            ),
            (
                "Propagate forward",
                egui::Key::ArrowRight,
                PropagateDirection::Forward,
            ),
            ("Propagate both", egui::Key::P, PropagateDirection::Both),
        ] {
            let shortcut = egui::KeyboardShortcut::new(egui::Modifiers::ALT, key);
            let button = ui
                .small_button(label)
                .on_hover_text(ui.ctx().format_shortcut(&shortcut));
            if button.clicked() || ui.input_mut(|i| i.consume_shortcut(&shortcut)) {
                chosen = Some(direction);
            }
        }
        chosen.and_then(|d| self.propagate(state, d, Arc::clone(repaint)).err())
    }

    fn poll_propagation(&mut self, state: &mut AppState) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(p) = &mut self.propagation else {
            return errors;
        };
        let mut ended = false;
        for message in p.job.poll() {
            match message {
                PropagateMessage::Prompted { done, total } => {
                    p.preparing = true;
                    p.done = done;
                    p.total = total;
                }
                PropagateMessage::Frame {
                    done,
                    total,
                    objects,
                } => {
                    p.preparing = false;
                    p.done = done;
                    p.total = total;
                    for o in objects {
                        let Some(object) =
                            state.doc.items.get(p.item).and_then(|it| it.object(o.id))
                        else {
                            continue;
                        };
                        let current = object.frames.get(&o.frame);
                        // A mask the person painted or imported is their answer for that frame
                        // (the tracker's result there is that mask at low resolution).
                        if object.locked || current.is_some_and(|a| a.source.is_given()) {
                            continue;
                        }
                        let prompts = current.map(|a| a.prompts.clone()).unwrap_or_default();
                        let annotation = FrameAnnotation {
                            mask: Some(super::doc_api::rle_from_mask(&o.mask)),
                            source: if o.conditioning {
                                MaskSource::Clicked
                            } else {
                                MaskSource::Propagated
                            },
                            score: Some(o.score),
                            prompts,
                            model: p.record.as_ref().map(|r| r.id.clone()),
                        };
                        let mut edits = Vec::new();
                        if let Some(record) = &p.record
                            && !state.doc.models.iter().any(|m| m.id == record.id)
                        {
                            let mut models = state.doc.models.clone();
                            models.push(record.clone());
                            edits.push(Edit::SetModels(models));
                        }
                        edits.push(Edit::SetFrame {
                            item: p.item,
                            id: o.id,
                            frame: o.frame,
                            annotation: Some(Box::new(annotation)),
                        });
                        for edit in edits {
                            match state.apply_live(edit) {
                                Ok(inverse) => p.inverses.push(inverse),
                                Err(e) => errors.push(e.to_string()),
                            }
                        }
                    }
                }
                PropagateMessage::Finished | PropagateMessage::Cancelled => ended = true,
                PropagateMessage::Failed(e) => {
                    errors.push(format!("SAM 2: {e}"));
                    ended = true;
                }
            }
        }
        if ended
            && let Some(mut p) = self.propagation.take()
            && !p.inverses.is_empty()
        {
            p.inverses.reverse();
            state.push_undo(Edit::Batch(p.inverses));
        }
        errors
    }

    /// Applies one mask as one undo step; results whose prompts changed since are dropped.
    fn apply(&self, state: &mut AppState, result: &SegmentResult) -> Result<(), String> {
        let Some(record) = &self.record else {
            return Ok(());
        };
        let Some(object) = state
            .doc
            .items
            .get(result.item)
            .and_then(|it| it.object(result.id))
        else {
            return Ok(()); // the object was removed meanwhile
        };
        if object.locked {
            return Ok(());
        }
        let current = object.frames.get(&result.frame);
        if current.map(|a| &a.prompts) != Some(&result.prompts) {
            return Ok(()); // stale: a newer request follows
        }
        let annotation = FrameAnnotation {
            mask: Some(super::doc_api::rle_from_mask(&result.mask)),
            source: MaskSource::Clicked,
            score: Some(result.iou),
            prompts: result.prompts.clone(),
            model: Some(record.id.clone()),
        };
        let set = Edit::SetFrame {
            item: result.item,
            id: result.id,
            frame: result.frame,
            annotation: Some(Box::new(annotation)),
        };
        let edit = if state.doc.models.iter().any(|m| m.id == record.id) {
            set
        } else {
            let mut models = state.doc.models.clone();
            models.push(record.clone());
            Edit::Batch(vec![Edit::SetModels(models), set])
        };
        state.apply(edit).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(source: MaskSource, score: Option<f32>) -> FrameAnnotation {
        FrameAnnotation {
            mask: None,
            source,
            score,
            prompts: Default::default(),
            model: None,
        }
    }

    #[test]
    fn strip_colour_shows_confidence_and_disappearance() {
        let base = egui::Color32::from_rgb(0, 200, 0);
        assert_eq!(strip_colour(base, None), base);
        assert_eq!(
            strip_colour(base, Some(&scored(MaskSource::Painted, None))),
            base
        );
        let lost = strip_colour(base, Some(&scored(MaskSource::Propagated, Some(-3.0))));
        assert_eq!(lost, egui::Color32::from_rgb(220, 40, 40));
        let sure = strip_colour(base, Some(&scored(MaskSource::Propagated, Some(8.0))));
        let unsure = strip_colour(base, Some(&scored(MaskSource::Propagated, Some(0.1))));
        assert!(sure.g() > unsure.g());
        let clicked = strip_colour(base, Some(&scored(MaskSource::Clicked, Some(0.9))));
        assert!(clicked.g() > unsure.g());
    }
}
