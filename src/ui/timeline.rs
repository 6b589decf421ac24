//! The timeline: scrub, play/pause, step, frame number and time, and a strip per object
//! showing on which frames it has a mask. For folders: previous/next image.

use super::state::AppState;
use crate::project::{Edit, MediaKind};
use egui::{Color32, Key, Rect, Sense, Stroke, StrokeKind, pos2, vec2};

/// Height of one object strip in points.
const STRIP_HEIGHT: f32 = 6.0;

/// The bottom panel.
#[derive(Default)]
pub struct Timeline {
    playing: bool,
    /// While playing: the time (egui seconds) at which the shown frame became due, and that
    /// frame.
    play_clock: Option<(f64, u64)>,
    /// *Open as video…* was clicked under a folder of images.
    frames_requested: bool,
    /// While the frame rate is being dragged or typed: the inverse of the first change, pushed
    /// as one undo step when the edit ends.
    rate_undo: Option<Edit>,
}

impl Timeline {
    /// Whether playback is running.
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// Starts or stops playback.
    pub fn toggle_play(&mut self) {
        self.playing = !self.playing;
        self.play_clock = None;
    }

    /// Keyboard: ←/→ step, Home/End, K play/pause, PageUp/PageDown previous/next image.
    pub fn handle_keys(&mut self, ctx: &egui::Context, state: &mut AppState) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let (left, right, home, end, play, page_up, page_down) = ctx.input(|i| {
            (
                i.key_pressed(Key::ArrowLeft),
                i.key_pressed(Key::ArrowRight),
                i.key_pressed(Key::Home),
                i.key_pressed(Key::End),
                i.key_pressed(Key::K),
                i.key_pressed(Key::PageUp),
                i.key_pressed(Key::PageDown),
            )
        });
        if left {
            self.playing = false;
            state.step_frame(-1);
        }
        if right {
            self.playing = false;
            state.step_frame(1);
        }
        if home {
            state.set_frame(0);
        }
        if end {
            state.set_frame(u64::MAX);
        }
        if play && state.frame_count() > 1 {
            self.toggle_play();
        }
        if page_up && state.item > 0 {
            state.set_item(state.item - 1);
        }
        if page_down && state.item + 1 < state.doc.items.len() {
            state.set_item(state.item + 1);
        }
    }

    /// Advances playback according to the clock and the frames' own times (a variable-frame-
    /// rate video plays at its pace); call once per frame.
    pub fn tick(&mut self, ctx: &egui::Context, state: &mut AppState) {
        if !self.playing {
            return;
        }
        let count = state.frame_count();
        let Some(item) = state.current_item() else {
            self.playing = false;
            return;
        };
        let now = ctx.input(|i| i.time);
        // Start, or start again from a frame the person moved to.
        let (clock, frame) = match self.play_clock {
            Some((clock, frame)) if frame == state.frame => (clock, frame),
            _ => (now, state.frame),
        };
        let (next, next_clock, wait) =
            playback_step(|i| play_time(item, i), count, (clock, frame), now);
        if next != frame {
            state.set_frame(next);
        }
        match wait {
            Some(wait) => {
                self.play_clock = Some((next_clock, next));
                ctx.request_repaint_after(std::time::Duration::from_secs_f64(
                    wait.clamp(0.001, 1.0),
                ));
            }
            None => {
                self.playing = false;
                self.play_clock = None;
            }
        }
    }

    /// True once after *Open as video…* was clicked under a folder of images: the app then
    /// asks the frame rate and opens the folder as the frames of one video.
    pub fn take_frames_request(&mut self) -> bool {
        std::mem::take(&mut self.frames_requested)
    }

    /// Draws the timeline.
    pub fn ui(&mut self, ui: &mut egui::Ui, state: &mut AppState) {
        if state.doc.media.kind == MediaKind::Folder && !state.doc.is_frame_sequence() {
            self.folder_ui(ui, state);
            return;
        }
        let count = state.frame_count();
        if count <= 1 {
            ui.label("Still image");
            return;
        }
        let secs = state
            .current_item()
            .map_or(0.0, |i| i.timestamp_secs(state.frame));
        ui.horizontal(|ui| {
            if ui
                .button("<")
                .on_hover_text("Previous frame (Left)")
                .clicked()
            {
                state.step_frame(-1);
            }
            let play = if self.playing { "Pause" } else { "Play" };
            if ui.button(play).on_hover_text("Play / pause (K)").clicked() {
                self.toggle_play();
            }
            if ui.button(">").on_hover_text("Next frame (Right)").clicked() {
                state.step_frame(1);
            }
            let mut frame = state.frame;
            let slider = egui::Slider::new(&mut frame, 0..=count - 1)
                .show_value(false)
                .trailing_fill(true);
            let label = ui.label("Frame");
            // Room after the slider for the frame, the time and a settable rate.
            let after = if state.frame_rate_settable {
                290.0
            } else {
                200.0
            };
            ui.spacing_mut().slider_width = (ui.available_width() - after).max(100.0);
            if ui.add(slider).labelled_by(label.id).changed() {
                self.playing = false;
                state.set_frame(frame);
            }
            ui.monospace(format!(
                "frame {} / {}  {}",
                state.frame + 1,
                count,
                format_time(secs)
            ));
            if state.frame_rate_settable {
                self.frame_rate_ui(ui, state);
            }
        });
        self.strips_ui(ui, state, count);
    }

    /// The frame rate of a clip whose rate is a setting: dragged or typed, one undo step.
    fn frame_rate_ui(&mut self, ui: &mut egui::Ui, state: &mut AppState) {
        let item = state.item;
        let Some(mut fps) = state.current_item().map(|i| i.fps) else {
            return;
        };
        let response = ui
            .add(
                egui::DragValue::new(&mut fps)
                    .range(0.0..=crate::media::MAX_FRAMES_FPS)
                    .speed(0.1)
                    .max_decimals(3)
                    .suffix(" fps")
                    .custom_formatter(|v, _| if v > 0.0 { v.to_string() } else { "?".into() })
                    .custom_parser(|text| match text.trim() {
                        "?" => Some(0.0),
                        number => number.parse().ok(),
                    }),
            )
            .on_hover_text(
                "Frames per second (? = unknown): the timeline and exports show times from it, \
                 and PixelRefer samples one frame per second of video. Drag or type to set it.",
            );
        if response.changed() {
            match state.apply_live(Edit::SetFrameRate { item, fps }) {
                Ok(inverse) => {
                    self.rate_undo.get_or_insert(inverse);
                }
                Err(e) => log::warn!("could not set the frame rate: {e}"),
            }
        }
        if !response.dragged()
            && !response.has_focus()
            && let Some(inverse) = self.rate_undo.take()
        {
            state.push_undo(inverse);
        }
    }

    fn strips_ui(&self, ui: &mut egui::Ui, state: &AppState, count: u64) {
        let objects: Vec<_> = state
            .objects()
            .iter()
            .filter(|o| !o.hidden)
            .map(|o| (o.id, o.color, o.tag()))
            .collect();
        for (id, [r, g, b], tag) in objects {
            ui.horizontal(|ui| {
                ui.add_sized(
                    vec2(80.0, STRIP_HEIGHT),
                    egui::Label::new(egui::RichText::new(tag).monospace().size(9.0)),
                );
                let (rect, _) = ui
                    .allocate_exact_size(vec2(ui.available_width(), STRIP_HEIGHT), Sense::hover());
                let painter = ui.painter_at(rect);
                painter.rect_filled(rect, 0.0, Color32::from_gray(40));
                let colour = Color32::from_rgb(r, g, b);
                let span = (count.max(2) - 1) as f32;
                let tick = (rect.width() / count as f32).max(1.0);
                for frame in state.frames_with_mask(id) {
                    let x = rect.left() + frame as f32 / span * (rect.width() - tick);
                    // SAM 2 scores: dimmer when unsure, red when not visible.
                    let annotation = state.object(id).and_then(|o| o.frames.get(&frame));
                    painter.rect_filled(
                        Rect::from_min_size(pos2(x, rect.top()), vec2(tick, rect.height())),
                        0.0,
                        super::sam_panel::strip_colour(colour, annotation),
                    );
                }
                let x = rect.left() + state.frame as f32 / span * (rect.width() - tick);
                painter.rect_stroke(
                    Rect::from_min_size(pos2(x, rect.top()), vec2(tick, rect.height())),
                    0.0,
                    Stroke::new(1.0, Color32::WHITE),
                    StrokeKind::Outside,
                );
            });
        }
    }

    fn folder_ui(&mut self, ui: &mut egui::Ui, state: &mut AppState) {
        let count = state.doc.items.len();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(state.item > 0, egui::Button::new("< Previous"))
                .on_hover_text("Previous image (PageUp)")
                .clicked()
            {
                state.set_item(state.item - 1);
            }
            if ui
                .add_enabled(state.item + 1 < count, egui::Button::new("Next >"))
                .on_hover_text("Next image (PageDown)")
                .clicked()
            {
                state.set_item(state.item + 1);
            }
            let name = state
                .current_item()
                .and_then(|i| i.file.clone())
                .unwrap_or_default();
            ui.monospace(format!("image {} / {count}  {name}", state.item + 1));
            if count > 1
                && ui
                    .button("Open as video…")
                    .on_hover_text(
                        "These images are the frames of one clip: open them as a video to \
                         track objects through them",
                    )
                    .clicked()
            {
                self.frames_requested = true;
            }
        });
    }
}

/// Playback from `frame`, due at clock reading `clock`, at clock reading `now`, with frame `i`
/// shown at `time(i)` seconds: the frame now due, the clock reading at which it became due
/// (so later frames keep the video's pace however late this call is), and the seconds until
/// the one after it (`None` at the last frame).
fn playback_step(
    time: impl Fn(u64) -> f64,
    count: u64,
    (clock, frame): (f64, u64),
    now: f64,
) -> (u64, f64, Option<f64>) {
    let due = time(frame) + (now - clock);
    let mut next = frame;
    while next + 1 < count && time(next + 1) <= due {
        next += 1;
    }
    let next_clock = clock + (time(next) - time(frame));
    let wait = (next + 1 < count).then(|| time(next + 1) - time(next) - (now - next_clock));
    (next, next_clock, wait)
}

/// When frame `index` of `item` plays, in seconds: its timestamp, or `index / 25` for an
/// item without a frame rate.
fn play_time(item: &crate::project::Item, index: u64) -> f64 {
    if item.fps > 0.0 || !item.timestamps_secs.is_empty() {
        item.timestamp_secs(index)
    } else {
        index as f64 / 25.0
    }
}

/// `m:ss.mmm`.
pub fn format_time(secs: f64) -> String {
    let millis = (secs.max(0.0) * 1000.0).round() as u64;
    format!(
        "{}:{:02}.{:03}",
        millis / 60_000,
        (millis / 1000) % 60,
        millis % 1000
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{format_time, play_time, playback_step};
    use crate::project::Item;

    #[test]
    fn formats_time() {
        assert_eq!(format_time(0.0), "0:00.000");
        assert_eq!(format_time(61.5), "1:01.500");
    }

    /// Plays `item` from frame 0 with the UI calling every `tick` seconds; the clock reading at
    /// which each frame first shows.
    fn play(item: &Item, tick: f64) -> Vec<(u64, f64)> {
        let count = item.frame_count;
        let (mut clock, mut frame) = (0.0, 0);
        let mut shown = vec![(0, 0.0)];
        let mut now = 0.0;
        for _ in 0..100_000 {
            now += tick;
            let (next, next_clock, wait) =
                playback_step(|i| play_time(item, i), count, (clock, frame), now);
            if next != frame {
                shown.push((next, now));
            }
            (clock, frame) = (next_clock, next);
            if wait.is_none() {
                return shown;
            }
        }
        panic!("playback never reached the last frame");
    }

    #[test]
    fn playback_follows_the_frames_own_times() {
        // Evenly spaced: 10 fps, each frame a tenth of a second after the last.
        let even = Item::new(None, 4, 4, 5, 10.0);
        let shown = play(&even, 0.01);
        assert_eq!(
            shown.iter().map(|s| s.0).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        for (i, (_, at)) in shown.iter().enumerate() {
            assert!((at - i as f64 * 0.1).abs() < 0.011, "{shown:?}");
        }
        // Variable frame rate: the long gap before frame 3 is held, not played at `fps`.
        let mut vfr = Item::new(None, 4, 4, 5, 10.0);
        vfr.timestamps_secs = vec![0.0, 0.1, 0.2, 2.2, 2.3];
        let shown = play(&vfr, 0.01);
        assert_eq!(
            shown.iter().map(|s| s.0).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        for ((_, at), want) in shown.iter().zip(&vfr.timestamps_secs) {
            assert!((at - want).abs() < 0.011, "{shown:?}");
        }
        // A slow UI (a tick every 0.25 s) skips frames but keeps the pace: no drift.
        let shown = play(&even, 0.25);
        assert_eq!(shown.last().unwrap().0, 4);
        assert!((shown.last().unwrap().1 - 0.5).abs() < 1e-9, "{shown:?}");
    }
}
