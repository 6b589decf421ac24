//! Headless tests of the chat panel with egui_kittest and the tiny PixelRefer fixtures: an
//! image with a painted object, a question streamed into the chat and the document (equal to
//! `PixelRefer::ask` on the same request), Stop, Describe, Describe all and an unknown tag.

#![allow(clippy::unwrap_used)]

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use pixelrefer_studio::jobs::FrameSource;
use pixelrefer_studio::mask::Mask;
use pixelrefer_studio::media::{Frame, MediaError};
use pixelrefer_studio::project::{Document, Item, MediaKind, MediaRef, Role};
use pixelrefer_studio::refer::{
    CancelToken, FrameMask, GenerationOptions, Media, ObjectMasks, PixelRefer, Request,
};
use pixelrefer_studio::runtime::SessionOptions;
use pixelrefer_studio::ui::StudioApp;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const W: u32 = 160;
const H: u32 = 120;
const MAX_NEW_TOKENS: usize = 8;

#[derive(Clone, Copy)]
struct Synthetic {
    frames: u64,
}

impl FrameSource for Synthetic {
    fn frame(&mut self, _item: usize, index: u64) -> Result<Arc<Frame>, MediaError> {
        let mut rgba = Vec::with_capacity((W * H * 4) as usize);
        for y in 0..H {
            for x in 0..W {
                let inside = (40..100).contains(&x) && (30..90).contains(&y);
                let b = if inside { 220 } else { 30 + 10 * index as u8 };
                rgba.extend_from_slice(&[(x * 255 / W) as u8, (y * 255 / H) as u8, b, 255]);
            }
        }
        Ok(Arc::new(Frame {
            width: W,
            height: H,
            rgba,
        }))
    }

    fn frame_count(&self, _item: usize) -> u64 {
        self.frames
    }
}

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("PIXELREFER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".fixtures/models"));
    assert!(
        dir.join("pixelrefer-tiny").is_dir(),
        "the tiny PixelRefer fixtures are missing in {}: run ./test.sh (or set PIXELREFER_FIXTURES)",
        dir.display()
    );
    dir
}

fn rect_mask(x0: i64, y0: i64, x1: i64, y1: i64) -> Mask {
    let mut mask = Mask::new(W, H);
    for y in y0..y1 {
        for x in x0..x1 {
            mask.set(x, y, true);
        }
    }
    mask
}

/// The app on a synthetic image with `n` painted objects and the full tiny model chosen.
fn harness(n: usize) -> Harness<'static, StudioApp> {
    harness_with(n, 1, false)
}

/// The app on synthetic media of `frames` frames (1 fps when a video) with `n` objects painted
/// on the first and last frames, and the tiny PixelRefer (or Lite) model chosen.
fn harness_with(n: usize, frames: u64, lite: bool) -> Harness<'static, StudioApp> {
    let media = MediaRef {
        kind: if frames > 1 {
            MediaKind::Video
        } else {
            MediaKind::Image
        },
        path: "synthetic.mp4".into(),
        fingerprint: None,
    };
    let fps = if frames > 1 { 1.0 } else { 0.0 };
    let doc = Document::new(media, vec![Item::new(None, W, H, frames, fps)]);
    let models = fixtures();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1200.0, 700.0))
        .wgpu()
        // The tiny random model writes arbitrary Unicode that the test font cannot draw.
        .allow_missing_glyphs()
        .build_eframe(move |cc| {
            let mut app = StudioApp::with_document(cc, doc, Synthetic { frames });
            app.set_models_dir(Some(&models));
            app.chat_mut().set_frame_source(Synthetic { frames });
            app.chat_mut().max_new_tokens = MAX_NEW_TOKENS;
            assert!(app.chat_mut().select_variant(lite), "no PixelRefer model");
            let state = app.state_mut().unwrap();
            for i in 0..n {
                let id = state.add_object().unwrap();
                let x0 = 20 + 40 * i as i64;
                for frame in [0, frames - 1] {
                    state.set_frame(frame);
                    state
                        .commit_painted_mask(id, &rect_mask(x0, 30 + frame as i64, x0 + 40, 90))
                        .unwrap();
                }
            }
            state.set_frame(0);
            app
        });
    harness.run_steps(2);
    harness
}

fn wait_idle(harness: &mut Harness<'static, StudioApp>, timeout: Duration) {
    let start = Instant::now();
    harness.step();
    while harness.state().chat().is_busy() {
        assert!(start.elapsed() < timeout, "the chat job did not finish");
        std::thread::sleep(Duration::from_millis(10));
        harness.step();
    }
    harness.run_steps(2);
}

fn ask(harness: &mut Harness<'static, StudioApp>, question: &str) {
    harness.state_mut().chat_mut().input = question.to_string();
    harness.run_steps(1);
    harness.get_by_label("Send").click();
    harness.run_steps(1);
}

fn reference_answer(question: &str) -> String {
    let dir = fixtures().join("pixelrefer-tiny");
    let mut model = PixelRefer::load(&dir, &SessionOptions::default()).unwrap();
    let frame = Synthetic { frames: 1 }.frame(0, 0).unwrap();
    let rgb: Vec<u8> = frame
        .rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let image = image::RgbImage::from_raw(W, H, rgb).unwrap();
    let req = Request {
        media: Media::Image(image),
        objects: vec![ObjectMasks {
            tag_id: 0,
            masks: vec![FrameMask {
                frame: 0,
                mask: rect_mask(20, 30, 60, 90),
            }],
        }],
        history: Vec::new(),
        question: question.to_string(),
        options: GenerationOptions {
            max_new_tokens: Some(MAX_NEW_TOKENS),
            ..Default::default()
        },
    };
    model
        .ask(&req, &mut |_| {}, &CancelToken::new())
        .unwrap()
        .text
}

#[test]
fn question_streams_into_chat_and_document() {
    let mut harness = harness(1);
    let question = "What is <object0>?";
    ask(&mut harness, question);
    assert!(harness.state().chat().is_busy(), "Send did not start a job");
    wait_idle(&mut harness, Duration::from_secs(60));
    let app = harness.state();
    assert_eq!(app.chat().error(), None);
    let chat = &app.state().unwrap().current_item().unwrap().chat;
    assert_eq!(chat.len(), 2);
    assert_eq!(chat[0].role, Role::User);
    assert_eq!(chat[0].text, question);
    assert_eq!(chat[1].role, Role::Assistant);
    let expected = reference_answer(question);
    assert_eq!(chat[1].text, expected);
    assert_eq!(app.chat().active_model().unwrap().provider, "CPU");
    // The answer is shown in the panel, and the turn is one undo step.
    if !expected.trim().is_empty() {
        harness.get_by_label(expected.as_str());
    }
    let state = harness.state_mut().state_mut().unwrap();
    assert!(state.undo().unwrap());
    assert!(state.current_item().unwrap().chat.is_empty());
}

#[test]
fn stop_cancels_the_answer() {
    let mut harness = harness(1);
    harness.state_mut().chat_mut().max_new_tokens = 100_000;
    ask(&mut harness, "Describe <object0> at great length.");
    assert!(harness.state().chat().is_busy());
    harness.run_steps(1);
    harness.get_by_label("Stop").click();
    let start = Instant::now();
    wait_idle(&mut harness, Duration::from_secs(20));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let app = harness.state();
    assert_eq!(app.chat().status(), Some("Stopped."));
    assert!(app.state().unwrap().current_item().unwrap().chat.is_empty());
}

#[test]
fn describe_and_describe_all_fill_captions() {
    let mut harness = harness(2);
    harness.get_by_label("Describe <object1>").click();
    harness.run_steps(1);
    wait_idle(&mut harness, Duration::from_secs(60));
    {
        let state = harness.state().state().unwrap();
        assert_eq!(harness.state().chat().error(), None);
        assert!(state.object(0).unwrap().caption.is_empty());
        assert!(!state.object(1).unwrap().caption.is_empty() || MAX_NEW_TOKENS == 0);
    }
    harness.get_by_label("Describe all objects").click();
    harness.run_steps(1);
    wait_idle(&mut harness, Duration::from_secs(60));
    let app = harness.state();
    assert_eq!(app.chat().error(), None);
    assert_eq!(app.chat().progress(), Some((2, 2)));
    let state = app.state().unwrap();
    for id in [0, 1] {
        assert!(
            !state.object(id).unwrap().caption.is_empty(),
            "object {id} has no caption"
        );
    }
}

/// A long caption (a real model's description is a sentence or more) stays inside the chat
/// panel: the side panels keep their width and stay on screen.
#[test]
fn long_captions_keep_the_side_panels_on_screen() {
    let mut harness = harness(2);
    let before = (
        harness.get_by_label("Send").rect(),
        harness.get_by_label("+ Add object").rect(),
    );
    let caption = "a red motorcycle parked in a garage beside a wooden bench, with shelves of \
                   tools behind it and a framed portrait on the wall; "
        .repeat(4)
        + &"x".repeat(300);
    let state = harness.state_mut().state_mut().unwrap();
    state
        .update_props(1, |p| p.caption = caption.clone())
        .unwrap();
    // Chat turns too, one of them a single 600-character word (a URL, a path, a model's noise).
    let turn = |role, text: String| pixelrefer_studio::project::ChatTurn {
        role,
        text,
        frame: 0,
        model: None,
    };
    let chat = vec![
        turn(Role::User, caption.clone()),
        turn(Role::Assistant, "y".repeat(600)),
    ];
    state
        .apply(pixelrefer_studio::project::Edit::SetChat { item: 0, chat })
        .unwrap();
    harness.run_steps(3);
    let after = (
        harness.get_by_label("Send").rect(),
        harness.get_by_label("+ Add object").rect(),
    );
    assert_eq!(before, after, "the panels moved");
    assert!(
        after.1.max.x <= 1200.0,
        "the objects panel is off screen: {:?}",
        after.1
    );
}

#[test]
fn unknown_tag_is_one_clear_sentence() {
    let mut harness = harness(1);
    ask(&mut harness, "What is <object7> doing?");
    wait_idle(&mut harness, Duration::from_secs(60));
    let error = harness.state().chat().error().unwrap().to_string();
    assert!(error.contains("<object7>"), "{error}");
    assert!(error.ends_with('.'), "{error}");
    harness.get_by_label(error.as_str());
    assert!(
        harness
            .state()
            .state()
            .unwrap()
            .current_item()
            .unwrap()
            .chat
            .is_empty()
    );
    // The question is given back to be fixed.
    assert_eq!(harness.state().chat().input, "What is <object7> doing?");
}

#[test]
fn video_questions_use_masks_on_several_frames_with_lite_and_full() {
    for lite in [true, false] {
        let mut harness = harness_with(1, 3, lite);
        {
            let state = harness.state().state().unwrap();
            assert_eq!(state.frames_with_mask(0), vec![0, 2]);
        }
        ask(&mut harness, "What does <object0> do?");
        wait_idle(&mut harness, Duration::from_secs(60));
        let app = harness.state();
        assert_eq!(app.chat().error(), None, "lite: {lite}");
        let chat = &app.state().unwrap().current_item().unwrap().chat;
        assert_eq!(chat.len(), 2);
        // A follow-up goes in with the first turn as history.
        ask(&mut harness, "And <object0> later?");
        wait_idle(&mut harness, Duration::from_secs(60));
        let app = harness.state();
        assert_eq!(app.chat().error(), None, "lite: {lite}");
        assert_eq!(app.state().unwrap().current_item().unwrap().chat.len(), 4);
    }
}

/// A folder of frames opened as a video (*Open folder as video*): the chat job reads the frames
/// from the folder itself, the way the app runs it (no frame source handed over).
#[test]
fn questions_about_a_folder_of_frames_read_its_frames() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3u32 {
        image::RgbImage::from_fn(W, H, |x, y| {
            image::Rgb([(x * 255 / W) as u8, y as u8, 40 * i as u8])
        })
        .save(dir.path().join(format!("{i:03}.jpg")))
        .unwrap();
    }
    let (folder, models) = (dir.path().to_path_buf(), fixtures());
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1200.0, 700.0))
        .wgpu()
        .allow_missing_glyphs()
        .build_eframe(move |cc| {
            let mut app = StudioApp::new(cc, None);
            app.set_models_dir(Some(&models));
            app.chat_mut().max_new_tokens = MAX_NEW_TOKENS;
            assert!(app.chat_mut().select_variant(true), "no PixelRefer model");
            app.open_frames(folder, 1.0);
            app
        });
    let start = Instant::now();
    while !harness.state().frame_ready() {
        assert!(start.elapsed() < Duration::from_secs(30), "the frames");
        std::thread::sleep(Duration::from_millis(10));
        harness.step();
    }
    let state = harness.state_mut().state_mut().unwrap();
    assert!(state.doc.is_frame_sequence());
    let id = state.add_object().unwrap();
    for frame in [0, 2] {
        state.set_frame(frame);
        state
            .commit_painted_mask(id, &rect_mask(20, 30, 60, 90))
            .unwrap();
    }
    state.set_frame(0);
    harness.run_steps(2);
    ask(&mut harness, "What does <object0> do?");
    wait_idle(&mut harness, Duration::from_secs(60));
    let app = harness.state();
    assert_eq!(app.chat().error(), None);
    assert_eq!(app.state().unwrap().current_item().unwrap().chat.len(), 2);
}
