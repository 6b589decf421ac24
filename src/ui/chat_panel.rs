//! The chat panel: talk to PixelRefer / PixelRefer-Lite about the current item's objects.
//!
//! History of the item's chat (saved in the project through [`Edit::SetChat`], so undoable), a
//! text box with `<objectN>` insertion (object chips and completion after `<`), Send (Enter)
//! starting a background [`ReferJob`] whose answer streams in token by token, Stop, model and
//! execution provider choice, and the quick actions "Describe <objectN>" and "Describe all
//! objects" that write captions through [`Edit::SetObjectProps`]. The UI never waits on the
//! model: events arrive over a bounded channel and are drained once per frame.

use super::state::AppState;
use crate::jobs::refer_job::{
    ModelSlot, ObjectSnapshot, ReferEvent, ReferJob, ReferJobSpec, ReferTask, SharedFrames,
};
use crate::jobs::{FrameSource, Repaint};
use crate::project::{ChatTurn, Edit, ModelRecord, Role};
use crate::refer::Turn;
use crate::runtime::remote::RemoteEndpoint;
use crate::runtime::{ExecutionProvider, ModelKind, find_model_dirs};
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;

/// Default token budget of one answer.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 512;

/// A PixelRefer model directory found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundModel {
    /// The directory.
    pub dir: PathBuf,
    /// PixelRefer-Lite (else PixelRefer).
    pub lite: bool,
    /// Manifest variant (`PixelRefer-2B`, `tiny-random`…).
    pub variant: String,
    /// `int8` / `int4` for an opt-in quantized export (None: full precision).
    pub quantization: Option<String>,
}

impl FoundModel {
    /// Name shown in the model menu.
    pub fn label(&self) -> String {
        let name = if self.lite {
            "PixelRefer-Lite"
        } else {
            "PixelRefer"
        };
        let dir = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match &self.quantization {
            // Quantized answers differ from the full-precision model's: say so where it is chosen.
            Some(q) => format!("{name} ({dir}) · {q} quantized"),
            None => format!("{name} ({dir})"),
        }
    }

    /// Id of the model in the project's model records and chat turns.
    pub fn record_id(&self) -> String {
        let kind = if self.lite {
            "pixelrefer-lite"
        } else {
            "pixelrefer"
        };
        format!("{kind}:{}", self.variant)
    }
}

/// What the running job is doing.
#[derive(Debug, Clone)]
enum Task {
    Chat { question: String, frame: u64 },
    Describe,
}

struct Running {
    job: ReferJob,
    task: Task,
    item: usize,
    model: FoundModel,
    stopping: bool,
}

/// The active model as reported by the last job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActiveModel {
    /// Provider in use ("CPU", "CUDA").
    pub provider: String,
    /// Warnings of the load (CUDA fallback…).
    pub warnings: Vec<String>,
}

/// The chat panel (see the module documentation).
pub struct ChatPanel {
    repaint: Arc<dyn Repaint>,
    models_dir: Option<PathBuf>,
    models: Option<Vec<FoundModel>>,
    selected: usize,
    /// Preferred execution provider.
    pub provider: ExecutionProvider,
    /// The inference server of the app (`--remote`, Models ▸ Server…), if any.
    pub remote: Option<RemoteEndpoint>,
    /// Whether questions go to [`Self::remote`] (when set) rather than a local provider.
    pub use_remote: bool,
    /// Token budget of one answer.
    pub max_new_tokens: usize,
    /// The text box.
    pub input: String,
    slot: ModelSlot,
    frames: Option<SharedFrames>,
    running: Option<Running>,
    streaming: String,
    error: Option<String>,
    status: Option<String>,
    active: Option<ActiveModel>,
    progress: Option<(usize, usize)>,
}

impl ChatPanel {
    /// A panel whose jobs wake the UI with `repaint`.
    pub fn new(repaint: Arc<dyn Repaint>) -> Self {
        Self {
            repaint,
            models_dir: None,
            models: None,
            selected: 0,
            provider: ExecutionProvider::Cpu,
            remote: None,
            use_remote: false,
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            input: String::new(),
            slot: Arc::new(Mutex::new(None)),
            frames: None,
            running: None,
            streaming: String::new(),
            error: None,
            status: None,
            active: None,
            progress: None,
        }
    }

    /// The provider chosen for the next question (the menu can change it).
    pub fn set_provider(&mut self, provider: ExecutionProvider) {
        self.provider = provider;
    }

    /// Looks for models in `dir` (and its subfolders) instead of the default places.
    pub fn set_models_dir(&mut self, dir: impl Into<PathBuf>) {
        self.models_dir = Some(dir.into());
        self.models = None;
        self.selected = 0;
    }

    /// Scans the model folders again (a model was installed or removed), keeping the chosen
    /// model when it is still there.
    pub fn rescan_models(&mut self) {
        let keep = self
            .models
            .as_ref()
            .and_then(|m| m.get(self.selected))
            .map(|m| m.dir.clone());
        self.models = None;
        self.selected = 0;
        if let Some(dir) = keep
            && let Some(i) = self.models().iter().position(|m| m.dir == dir)
        {
            self.selected = i;
        }
    }

    /// Frames for the model (otherwise the document's media is opened by the job).
    pub fn set_frame_source(&mut self, source: impl FrameSource) {
        self.frames = Some(Arc::new(Mutex::new(Box::new(source))));
    }

    /// PixelRefer model directories found (scanned on first use).
    pub fn models(&mut self) -> &[FoundModel] {
        let dir = self.models_dir.clone();
        self.models.get_or_insert_with(|| {
            find_model_dirs(dir.as_deref())
                .into_iter()
                .filter_map(|(dir, manifest)| {
                    let lite = match manifest.kind {
                        ModelKind::PixelRefer => false,
                        ModelKind::PixelReferLite => true,
                        _ => return None,
                    };
                    Some(FoundModel {
                        dir,
                        lite,
                        variant: manifest.variant,
                        quantization: manifest.quantization.map(|q| q.scheme),
                    })
                })
                .collect()
        })
    }

    /// Chooses the first model of the given framework; false when none was found.
    pub fn select_variant(&mut self, lite: bool) -> bool {
        match self.models().iter().position(|m| m.lite == lite) {
            Some(i) => {
                self.selected = i;
                true
            }
            None => false,
        }
    }

    /// The chosen model, if any was found.
    pub fn selected_model(&mut self) -> Option<FoundModel> {
        let i = self.selected;
        self.models().get(i).cloned()
    }

    /// Whether a job is running.
    pub fn is_busy(&self) -> bool {
        self.running.is_some()
    }

    /// The answer being generated so far.
    pub fn streaming_text(&self) -> &str {
        &self.streaming
    }

    /// The error shown in the panel, one sentence.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The last status line ("Stopped.", "Described 3 objects.").
    pub fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }

    /// The provider and warnings of the loaded model.
    pub fn active_model(&self) -> Option<&ActiveModel> {
        self.active.as_ref()
    }

    /// Describe-all progress: objects done and in all.
    pub fn progress(&self) -> Option<(usize, usize)> {
        self.progress
    }

    /// Appends `<object{id}>` to the text box (with a space when needed).
    pub fn insert_tag(&mut self, id: u32) {
        if !self.input.is_empty() && !self.input.ends_with(' ') && !self.input.ends_with('<') {
            self.input.push(' ');
        }
        if self.input.ends_with('<') {
            self.input.pop();
        }
        self.input.push_str(&format!("<object{id}> "));
    }

    /// Sends the text box as a question about the current item.
    pub fn send(&mut self, state: &AppState) {
        let question = self.input.trim().to_string();
        if question.is_empty() {
            self.error = Some("Type a question first.".into());
            return;
        }
        let Some(item) = state.current_item() else {
            self.error = Some("Open an image or a video first.".into());
            return;
        };
        let history = history_of(&item.chat);
        let task = ReferTask::Chat {
            history,
            question: question.clone(),
        };
        if self.start(
            state,
            task,
            Task::Chat {
                question,
                frame: state.frame,
            },
        ) {
            self.input.clear();
        }
    }

    /// Describes object `id` into its caption.
    pub fn describe(&mut self, state: &AppState, id: u32) {
        self.start(state, ReferTask::Describe { ids: vec![id] }, Task::Describe);
    }

    /// Describes every object of the current item, one by one.
    pub fn describe_all(&mut self, state: &AppState) {
        let ids: Vec<u32> = state.objects().iter().map(|o| o.id).collect();
        if ids.is_empty() {
            self.error = Some("There are no objects to describe: add one first.".into());
            return;
        }
        self.start(state, ReferTask::Describe { ids }, Task::Describe);
    }

    /// Stops the running job (the answer so far is dropped).
    pub fn stop(&mut self) {
        if let Some(running) = &mut self.running {
            running.job.cancel();
            running.stopping = true;
        }
    }

    fn start(&mut self, state: &AppState, task: ReferTask, kind: Task) -> bool {
        if self.running.is_some() {
            self.error = Some("Wait for the current answer or press Stop.".into());
            return false;
        }
        let Some(model) = self.selected_model() else {
            self.error = Some(
                "No PixelRefer model was found: set the models folder or run ./test.sh to fetch them."
                    .into(),
            );
            return false;
        };
        let Some(item) = state.current_item() else {
            self.error = Some("Open an image or a video first.".into());
            return false;
        };
        let objects = item
            .objects
            .iter()
            .map(|o| ObjectSnapshot {
                id: o.id,
                masks: o.masks(),
            })
            .collect();
        let spec = ReferJobSpec {
            model_dir: model.dir.clone(),
            provider: self.provider,
            remote: self.remote.clone().filter(|_| self.use_remote),
            item: state.item,
            frame_count: item.frame_count,
            fps: item.fps,
            frame: state.frame,
            objects,
            max_new_tokens: self.max_new_tokens,
            task,
        };
        let job = match ReferJob::spawn(
            spec,
            Arc::clone(&self.slot),
            self.frames.clone(),
            state.media_path(),
            Arc::clone(&self.repaint),
        ) {
            Ok(job) => job,
            Err(e) => {
                self.error = Some(format!("Could not start a background thread: {e}."));
                return false;
            }
        };
        self.error = None;
        self.status = None;
        self.streaming.clear();
        self.progress = None;
        self.running = Some(Running {
            job,
            task: kind,
            item: state.item,
            model,
            stopping: false,
        });
        true
    }

    /// Drains the job's events into the panel and the document (call once per frame).
    pub fn poll(&mut self, state: &mut AppState) {
        let Some(running) = &self.running else {
            return;
        };
        let events = running.job.poll();
        for event in events {
            match event {
                ReferEvent::Loaded {
                    provider, warnings, ..
                } => {
                    self.active = Some(ActiveModel { provider, warnings });
                }
                ReferEvent::Token(piece) => self.streaming.push_str(&piece),
                ReferEvent::Progress { done, total } => self.progress = Some((done, total)),
                ReferEvent::Caption { id, text } => self.write_caption(state, id, text),
                ReferEvent::Answer(text) => self.write_answer(state, text),
                ReferEvent::Cancelled => self.status = Some("Stopped.".into()),
                ReferEvent::Failed(e) => self.error = Some(sentence(&e)),
                ReferEvent::Finished => {
                    if let Some(running) = self.running.take()
                        && let Task::Chat { question, .. } = running.task
                        && self.error.is_some()
                        && self.input.is_empty()
                    {
                        // Give the question back so it can be fixed and sent again.
                        self.input = question;
                    }
                    if let Some((done, total)) = self.progress
                        && self.error.is_none()
                        && self.status.is_none()
                    {
                        self.status = Some(format!("Described {done} of {total} objects."));
                    }
                    self.streaming.clear();
                    return;
                }
            }
        }
    }

    fn ensure_model_record(&self, state: &AppState, model: &FoundModel) -> Option<Edit> {
        let id = model.record_id();
        if state.doc.models.iter().any(|m| m.id == id) {
            return None;
        }
        let mut models = state.doc.models.clone();
        models.push(ModelRecord {
            id,
            kind: if model.lite {
                "pixelrefer-lite".into()
            } else {
                "pixelrefer".into()
            },
            variant: model.variant.clone(),
            files: Default::default(),
        });
        Some(Edit::SetModels(models))
    }

    fn write_answer(&mut self, state: &mut AppState, text: String) {
        let Some(running) = &self.running else {
            return;
        };
        let Task::Chat { question, frame } = &running.task else {
            return;
        };
        let Some(item) = state.doc.items.get(running.item) else {
            return;
        };
        let mut chat = item.chat.clone();
        chat.push(ChatTurn {
            role: Role::User,
            text: question.clone(),
            frame: *frame,
            model: None,
        });
        chat.push(ChatTurn {
            role: Role::Assistant,
            text,
            frame: *frame,
            model: Some(running.model.record_id()),
        });
        let mut edits: Vec<Edit> = self
            .ensure_model_record(state, &running.model)
            .into_iter()
            .collect();
        edits.push(Edit::SetChat {
            item: running.item,
            chat,
        });
        let edit = if edits.len() == 1 {
            edits.remove(0)
        } else {
            Edit::Batch(edits)
        };
        if let Err(e) = state.apply(edit) {
            self.error = Some(sentence(&e.to_string()));
        }
    }

    fn write_caption(&mut self, state: &mut AppState, id: u32, text: String) {
        let Some(running) = &self.running else {
            return;
        };
        let item = running.item;
        let Some(object) = state
            .doc
            .items
            .get(item)
            .and_then(|it| it.objects.iter().find(|o| o.id == id))
        else {
            return;
        };
        let mut props = object.props();
        props.caption = text;
        if let Err(e) = state.apply(Edit::SetObjectProps { item, id, props }) {
            self.error = Some(sentence(&e.to_string()));
        }
    }

    /// Draws the panel and handles its input.
    pub fn ui(&mut self, ui: &mut egui::Ui, state: &mut AppState) {
        self.poll(state);
        ui.heading("Chat");
        self.model_ui(ui);
        ui.separator();
        self.objects_ui(ui, state);
        ui.separator();
        let input_height = 90.0;
        egui::ScrollArea::vertical()
            .max_height((ui.available_height() - input_height).max(60.0))
            .stick_to_bottom(true)
            .auto_shrink([false, false])
            .show(ui, |ui| self.history_ui(ui, state));
        if let Some(err) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, err);
        } else if let Some(status) = &self.status {
            ui.label(status);
        }
        self.input_ui(ui, state);
    }

    fn model_ui(&mut self, ui: &mut egui::Ui) {
        let models = self.models().to_vec();
        ui.horizontal(|ui| {
            let current = models
                .get(self.selected)
                .map(FoundModel::label)
                .unwrap_or_else(|| "none found (Models > Get models…)".into());
            egui::ComboBox::from_label("Model")
                .selected_text(current)
                .show_ui(ui, |ui| {
                    for (i, m) in models.iter().enumerate() {
                        ui.selectable_value(&mut self.selected, i, m.label());
                    }
                });
            if ui
                .small_button("Rescan")
                .on_hover_text("Look for models again")
                .clicked()
            {
                self.models = None;
            }
        });
        ui.horizontal(|ui| {
            ui.label("Provider");
            let local = !(self.use_remote && self.remote.is_some());
            if ui
                .selectable_label(local && self.provider == ExecutionProvider::Cpu, "CPU")
                .clicked()
            {
                self.provider = ExecutionProvider::Cpu;
                self.use_remote = false;
            }
            if ui
                .selectable_label(local && self.provider == ExecutionProvider::Cuda, "CUDA")
                .clicked()
            {
                self.provider = ExecutionProvider::Cuda;
                self.use_remote = false;
            }
            if let Some(remote) = &self.remote
                && ui
                    .selectable_label(!local, "Server")
                    .on_hover_text(format!("Run PixelRefer on {remote}"))
                    .clicked()
            {
                self.use_remote = true;
            }
            if let Some(active) = &self.active {
                ui.label(format!("active: {}", active.provider));
            }
        });
        if let Some(active) = &self.active {
            for w in &active.warnings {
                ui.colored_label(ui.visuals().warn_fg_color, w);
            }
        }
    }

    fn objects_ui(&mut self, ui: &mut egui::Ui, state: &mut AppState) {
        let busy = self.is_busy();
        let ids: Vec<(u32, String)> = state
            .objects()
            .iter()
            .map(|o| (o.id, o.caption.clone()))
            .collect();
        let mut describe = None;
        for (id, caption) in &ids {
            ui.horizontal(|ui| {
                let tag = format!("<object{id}>");
                if ui
                    .button(&tag)
                    .on_hover_text("Insert this tag in the question")
                    .clicked()
                {
                    self.insert_tag(*id);
                }
                if ui
                    .add_enabled(!busy, egui::Button::new(format!("Describe {tag}")))
                    .clicked()
                {
                    describe = Some(*id);
                }
                if !caption.is_empty() {
                    // One line, cut to the panel's width (a row does not wrap, and an uncut
                    // caption would widen the panel past the window); the whole on hover.
                    ui.add(egui::Label::new(egui::RichText::new(caption).weak()).truncate())
                        .on_hover_text(caption);
                }
            });
        }
        ui.horizontal(|ui| {
            if ui
                .add_enabled(
                    !busy && !ids.is_empty(),
                    egui::Button::new("Describe all objects"),
                )
                .clicked()
            {
                self.describe_all(state);
            }
            if let (Some((done, total)), Some(running)) = (self.progress, &self.running)
                && matches!(running.task, Task::Describe)
            {
                ui.add(
                    egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                        .text(format!("{done}/{total}"))
                        .desired_width(100.0),
                );
            }
        });
        if let Some(id) = describe {
            self.describe(state, id);
        }
    }

    fn history_ui(&self, ui: &mut egui::Ui, state: &AppState) {
        let Some(item) = state.current_item() else {
            return;
        };
        for turn in &item.chat {
            let who = match turn.role {
                Role::User => "You",
                Role::Assistant => "PixelRefer",
            };
            ui.label(egui::RichText::new(who).strong());
            ui.label(&turn.text);
            ui.add_space(4.0);
        }
        if let Some(running) = &self.running
            && let Task::Chat { question, .. } = &running.task
            && running.item == state.item
        {
            ui.label(egui::RichText::new("You").strong());
            ui.label(question);
            ui.label(egui::RichText::new("PixelRefer").strong());
            if self.streaming.is_empty() {
                ui.spinner();
            } else {
                ui.label(&self.streaming);
            }
        }
    }

    fn input_ui(&mut self, ui: &mut egui::Ui, state: &mut AppState) {
        let response = ui.add(
            egui::TextEdit::singleline(&mut self.input)
                .hint_text("Ask about <object0>...")
                .desired_width(f32::INFINITY)
                .id_salt("chat_input"),
        );
        let enter = response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        // Completion of a tag being typed: `<`, `<obj`, `<object1`…
        let partial = tag_prefix(&self.input);
        if let Some(prefix) = partial {
            let matches: Vec<u32> = state
                .objects()
                .iter()
                .map(|o| o.id)
                .filter(|id| format!("object{id}").starts_with(prefix.as_str()))
                .collect();
            if !matches.is_empty() {
                ui.horizontal_wrapped(|ui| {
                    for id in matches {
                        if ui.small_button(format!("object{id}>")).clicked() {
                            let cut = self.input.len() - prefix.len();
                            self.input.truncate(cut);
                            self.input.push_str(&format!("object{id}> "));
                            response.request_focus();
                        }
                    }
                });
            }
        }
        ui.horizontal(|ui| {
            if self.is_busy() {
                let stopping = self.running.as_ref().is_some_and(|r| r.stopping);
                if ui
                    .add_enabled(!stopping, egui::Button::new("Stop"))
                    .clicked()
                {
                    self.stop();
                }
                ui.spinner();
            } else if ui.button("Send").clicked() || enter {
                self.send(state);
            }
        });
    }
}

/// Earlier turns of a chat as question/answer pairs (unanswered questions are skipped).
pub fn history_of(chat: &[ChatTurn]) -> Vec<Turn> {
    let mut out = Vec::new();
    let mut question: Option<&str> = None;
    for turn in chat {
        match turn.role {
            Role::User => question = Some(&turn.text),
            Role::Assistant => {
                if let Some(q) = question.take() {
                    out.push(Turn {
                        question: q.to_string(),
                        answer: turn.text.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The `object…` text after a trailing unfinished `<`, if the text box ends with one.
fn tag_prefix(input: &str) -> Option<String> {
    let start = input.rfind('<')?;
    let tail = &input[start + 1..];
    if tail.contains('>') || tail.contains(' ') {
        return None;
    }
    ("object".starts_with(tail) || tail.starts_with("object")).then(|| tail.to_string())
}

/// An error message as one sentence: capitalised, ending with a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.trim().chars();
    let mut out: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => return "Something went wrong.".into(),
    };
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_models_say_so_in_the_model_menu() {
        let model = |quantization: Option<&str>| FoundModel {
            dir: PathBuf::from("/m/pixelrefer-lite-2b-int4"),
            lite: true,
            variant: "PixelRefer-Lite-2B-fp32-int4".into(),
            quantization: quantization.map(str::to_string),
        };
        assert_eq!(
            model(Some("int4")).label(),
            "PixelRefer-Lite (pixelrefer-lite-2b-int4) · int4 quantized"
        );
        assert_eq!(
            model(None).label(),
            "PixelRefer-Lite (pixelrefer-lite-2b-int4)"
        );
    }

    #[test]
    fn tag_completion_prefix() {
        assert_eq!(tag_prefix("what is <").as_deref(), Some(""));
        assert_eq!(tag_prefix("what is <obj").as_deref(), Some("obj"));
        assert_eq!(tag_prefix("what is <object1").as_deref(), Some("object1"));
        assert_eq!(tag_prefix("what is <object1> doing"), None);
        assert_eq!(tag_prefix("a < b"), None);
    }

    #[test]
    fn history_pairs_questions_and_answers() {
        let turn = |role, text: &str| ChatTurn {
            role,
            text: text.into(),
            frame: 0,
            model: None,
        };
        let chat = vec![
            turn(Role::User, "q1"),
            turn(Role::Assistant, "a1"),
            turn(Role::User, "q2"),
        ];
        assert_eq!(
            history_of(&chat),
            vec![Turn {
                question: "q1".into(),
                answer: "a1".into()
            }]
        );
        assert_eq!(sentence("the mask is empty"), "The mask is empty.");
    }
}
