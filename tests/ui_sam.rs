//! Headless tests of SAM 2 inside the app (egui_kittest on wgpu) with the tiny random-weight
//! model (`$PIXELREFER_FIXTURES/sam2-tiny`, written by ./test.sh): the model loads in the
//! background, a click prompt becomes a mask through the worker thread as one undo step, a
//! refining click replaces it, propagation over a short video (made with the ffmpeg CLI)
//! fills every frame as one undo step, cancel stops it quickly, without a model the prompts
//! are kept with a clear note, and the worker encodes the frames near the shown one ahead.

#![allow(clippy::unwrap_used)]

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use pixelrefer_studio::jobs::{
    FrameSource, PropagateDirection, SegmentMessage, SegmentRequest, SegmentWorker,
};
use pixelrefer_studio::media::{Frame, MediaError};
use pixelrefer_studio::project::{
    Document, FrameAnnotation, Item, MaskSource, MediaKind, MediaRef,
};
use pixelrefer_studio::runtime::SessionOptions;
use pixelrefer_studio::ui::StudioApp;
use pixelrefer_studio::ui::sam_panel::SamStatus;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/ui_steps.rs"]
mod ui_steps;

use ui_steps::step_until;

fn sam2_dir() -> PathBuf {
    fixtures::fixture("sam2-tiny")
}

/// The reference frame of the tiny model, served for every frame index.
struct Still {
    frame: Arc<Frame>,
}

impl Still {
    fn load() -> Self {
        let path = sam2_dir().join("reference/frames/00000.png");
        let img = image::open(&path).unwrap().to_rgba8();
        let (width, height) = img.dimensions();
        Self {
            frame: Arc::new(Frame {
                width,
                height,
                rgba: img.into_raw(),
            }),
        }
    }
}

impl FrameSource for Still {
    fn frame(&mut self, _item: usize, _index: u64) -> Result<Arc<Frame>, MediaError> {
        Ok(Arc::clone(&self.frame))
    }

    fn frame_count(&self, _item: usize) -> u64 {
        1
    }
}

fn harness(models: Option<PathBuf>) -> Harness<'static, StudioApp> {
    let still = Still::load();
    let (w, h) = (still.frame.width, still.frame.height);
    let media = MediaRef {
        kind: MediaKind::Image,
        path: "still.png".into(),
        fingerprint: None,
    };
    let doc = Document::new(media, vec![Item::new(None, w, h, 1, 0.0)]);
    Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(move |cc| {
            let mut app = StudioApp::with_document(cc, doc, still);
            app.set_models_dir(models.as_deref());
            app
        })
}

#[test]
fn click_gives_a_mask_and_undo_removes_it() {
    let dir = sam2_dir();
    let mut harness = harness(Some(dir));
    step_until(&mut harness, 20, "the model and the frame", |app| {
        app.frame_ready() && matches!(app.sam().status(), SamStatus::Ready { .. })
    });
    let SamStatus::Ready { id: model_id, .. } = app_status(&harness) else {
        unreachable!()
    };
    let state = harness.state_mut().state_mut().unwrap();
    let id = state.add_object().unwrap();
    state.add_point_prompt(240.0, 135.0, true).unwrap();
    let started = Instant::now();
    step_until(&mut harness, 20, "the mask of a click", |app| {
        app.state()
            .and_then(|s| s.annotation(id))
            .is_some_and(|a| a.mask.is_some())
    });
    eprintln!("click → mask in {:?}", started.elapsed());
    let state = harness.state().state().unwrap();
    let a = state.annotation(id).unwrap();
    assert_eq!(a.source, MaskSource::Clicked);
    assert!(a.score.is_some());
    assert_eq!(a.prompts.points.len(), 1);
    assert_eq!(a.model.as_deref(), Some(model_id.as_str()));
    assert!(state.doc.models.iter().any(|m| m.id == model_id));
    let mask = state.mask(id).unwrap();
    assert_eq!((mask.width(), mask.height()), (480, 270));
    assert!(
        harness.state().toasts().is_empty(),
        "{:?}",
        harness.state().toasts()
    );

    let first = state.annotation(id).unwrap().mask.clone();

    // A second (negative) click refines: a new mask for the two prompts (one more undo step).
    let state = harness.state_mut().state_mut().unwrap();
    state.add_point_prompt(20.0, 20.0, false).unwrap();
    let revision = state.revision();
    step_until(&mut harness, 20, "the refined mask", |app| {
        app.state().is_some_and(|s| s.revision() > revision)
    });
    let state = harness.state_mut().state_mut().unwrap();
    assert_eq!(state.annotation(id).unwrap().prompts.points.len(), 2);

    // Undo: the refined mask, the second click, then the first mask (prompts kept).
    assert!(state.undo().unwrap());
    assert_eq!(state.annotation(id).unwrap().prompts.points.len(), 2);
    assert_eq!(state.annotation(id).unwrap().mask, first);
    assert!(state.undo().unwrap());
    assert_eq!(state.annotation(id).unwrap().prompts.points.len(), 1);
    assert!(state.undo().unwrap());
    let a = state.annotation(id).unwrap();
    assert!(a.mask.is_none(), "undo removes the mask");
    assert_eq!(a.prompts.points.len(), 1, "the prompts are kept");
    assert!(state.doc.models.is_empty(), "the model record goes with it");
    // Undoing does not trigger new predictions (no PromptsChanged).
    harness.run_steps(5);
    assert!(
        harness
            .state()
            .state()
            .unwrap()
            .annotation(id)
            .unwrap()
            .mask
            .is_none()
    );
}

fn app_status(harness: &Harness<'static, StudioApp>) -> SamStatus {
    harness.state().sam().status().clone()
}

#[test]
fn without_a_model_prompts_are_kept_with_a_note() {
    let empty = tempfile::tempdir().unwrap();
    let mut harness = harness(Some(empty.path().to_path_buf()));
    step_until(&mut harness, 10, "the frame", StudioApp::frame_ready);
    if !matches!(app_status(&harness), SamStatus::NoModel) {
        // A model was found in $PIXELREFER_MODELS, ./models or the user data directory.
        return;
    }
    assert!(
        harness
            .state()
            .sam()
            .status_text()
            .contains("masks need SAM 2 or EdgeTAM")
    );
    let state = harness.state_mut().state_mut().unwrap();
    let id = state.add_object().unwrap();
    state.add_point_prompt(10.0, 10.0, true).unwrap();
    harness.run_steps(5);
    let a = harness
        .state()
        .state()
        .unwrap()
        .annotation(id)
        .unwrap()
        .clone();
    assert_eq!(a.prompts.points.len(), 1);
    assert!(a.mask.is_none());
}

/// A short video of the tiny model's reference frames (the first `frames` of them).
fn video(frames: usize) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("clip.mp4");
    let pattern = sam2_dir().join("reference/frames/%05d.png");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-framerate",
            "10",
            "-i",
        ])
        .arg(&pattern)
        .args(["-frames:v", &frames.to_string()])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "1"])
        .arg(&out)
        .status()
        .expect("the ffmpeg CLI is needed for this test");
    assert!(status.success(), "ffmpeg failed");
    (tmp, out)
}

fn video_harness(path: PathBuf) -> Harness<'static, StudioApp> {
    video_harness_sized(path, egui::vec2(900.0, 600.0))
}

fn video_harness_sized(path: PathBuf, size: egui::Vec2) -> Harness<'static, StudioApp> {
    video_harness_with(path, size, sam2_dir())
}

fn video_harness_with(
    path: PathBuf,
    size: egui::Vec2,
    dir: PathBuf,
) -> Harness<'static, StudioApp> {
    let mut harness = Harness::builder()
        .with_size(size)
        .wgpu()
        .build_eframe(move |cc| {
            let mut app = StudioApp::new(cc, Some(path));
            app.set_models_dir(Some(&dir));
            app
        });
    step_until(&mut harness, 20, "the video and the model", |app| {
        app.frame_ready() && matches!(app.sam().status(), SamStatus::Ready { .. })
    });
    harness
}

/// Starts a propagation in `direction` and waits at most `secs` seconds for it to end.
fn propagate_to_end(
    harness: &mut Harness<'static, StudioApp>,
    direction: PropagateDirection,
    secs: u64,
) {
    harness.state_mut().sam_propagate(direction).unwrap();
    step_until(harness, secs, "the propagation", |app| {
        app.sam().propagation_progress().is_none()
    });
}

/// Adds an object with a click on the current frame and waits for its mask.
fn click_object(harness: &mut Harness<'static, StudioApp>) -> u32 {
    let state = harness.state_mut().state_mut().unwrap();
    let id = state.add_object().unwrap();
    state.add_point_prompt(240.0, 135.0, true).unwrap();
    step_until(harness, 20, "the clicked mask", |app| {
        app.state()
            .and_then(|s| s.annotation(id))
            .is_some_and(|a| a.mask.is_some())
    });
    id
}

#[test]
fn propagation_fills_every_frame_and_one_undo_reverts_it() {
    let (_tmp, path) = video(4);
    let mut harness = video_harness(path);
    assert_eq!(harness.state().state().unwrap().frame_count(), 4);
    let id = click_object(&mut harness);
    let started = Instant::now();
    harness
        .state_mut()
        .sam_propagate(PropagateDirection::Both)
        .unwrap();
    assert!(harness.state().sam().propagation_progress().is_some());
    step_until(&mut harness, 20, "the propagation", |app| {
        app.sam().propagation_progress().is_none()
    });
    eprintln!("propagation over 4 frames in {:?}", started.elapsed());
    assert!(
        harness.state().toasts().is_empty(),
        "{:?}",
        harness.state().toasts()
    );
    let state = harness.state_mut().state_mut().unwrap();
    let object = state.object(id).unwrap().clone();
    for frame in 0..4u64 {
        let a = object.frames.get(&frame).unwrap();
        assert!(a.mask.is_some(), "frame {frame} has a mask");
        assert!(a.score.is_some(), "frame {frame} has a score");
        let expected = if frame == 0 {
            MaskSource::Clicked
        } else {
            MaskSource::Propagated
        };
        assert_eq!(a.source, expected, "frame {frame}");
    }
    assert!(state.undo().unwrap());
    let object = state.object(id).unwrap();
    assert_eq!(
        object.frames.keys().copied().collect::<Vec<_>>(),
        vec![0],
        "one undo reverts the whole propagation"
    );
    assert_eq!(object.frames[&0].source, MaskSource::Clicked);
    assert!(state.redo().unwrap());
    assert_eq!(state.object(id).unwrap().frames.len(), 4);
}

/// A folder of frames opened as a video (*Open folder as video*) is tracked like a video file.
#[test]
fn a_folder_of_frames_is_tracked_like_a_video() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..3 {
        std::fs::copy(
            sam2_dir().join(format!("reference/frames/{i:05}.png")),
            tmp.path().join(format!("frame{i}.png")),
        )
        .unwrap();
    }
    let (folder, models) = (tmp.path().to_path_buf(), sam2_dir());
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(move |cc| {
            let mut app = StudioApp::new(cc, None);
            app.set_models_dir(Some(&models));
            app.open_frames(folder, 10.0);
            app
        });
    step_until(&mut harness, 20, "the frames and the model", |app| {
        app.frame_ready() && matches!(app.sam().status(), SamStatus::Ready { .. })
    });
    assert!(harness.state().state().unwrap().doc.is_frame_sequence());
    let id = click_object(&mut harness);
    propagate_to_end(&mut harness, PropagateDirection::Forward, 20);
    assert!(
        harness.state().toasts().is_empty(),
        "{:?}",
        harness.state().toasts()
    );
    let object = harness.state().state().unwrap().object(id).unwrap().clone();
    for frame in 0..3u64 {
        let a = object.frames.get(&frame).unwrap();
        assert!(a.mask.is_some(), "frame {frame} has a mask");
    }
    assert_eq!(object.frames[&2].source, MaskSource::Propagated);
}

/// Frames the person painted or imported keep their masks through a propagation (the tracker
/// takes them as input), whether painted over the clicked frame or on a frame ahead of it.
#[test]
fn propagation_keeps_painted_masks() {
    let (_tmp, path) = video(6);
    let mut harness = video_harness(path);
    let id = click_object(&mut harness);
    let state = harness.state_mut().state_mut().unwrap();
    let (w, h) = state.image_size_px().unwrap();
    let painted = |x0: u32| block(w, h, x0, 10, 25, 20);
    // The clicked frame refined by painting, and frame 2 painted.
    let refined = painted(5);
    state.commit_painted_mask(id, &refined).unwrap();
    state.set_frame(2);
    let ahead = painted(60);
    state.commit_painted_mask(id, &ahead).unwrap();
    // Frame 4 imported (e.g. from COCO).
    let imported = painted(120);
    state
        .apply(pixelrefer_studio::project::Edit::SetFrame {
            item: 0,
            id,
            frame: 4,
            annotation: Some(Box::new(FrameAnnotation::from_mask(
                pixelrefer_studio::mask::Rle::from_mask(&imported),
                MaskSource::Imported,
            ))),
        })
        .unwrap();
    state.set_frame(0);
    propagate_to_end(&mut harness, PropagateDirection::Forward, 20);
    let state = harness.state_mut().state_mut().unwrap();
    let object = state.object(id).unwrap().clone();
    let mask_of = |frame: u64| {
        let a = &object.frames[&frame];
        (a.source, a.mask.as_ref().map(|r| r.to_mask().unwrap()))
    };
    assert_eq!(mask_of(0), (MaskSource::Painted, Some(refined)));
    assert_eq!(mask_of(2), (MaskSource::Painted, Some(ahead)));
    assert_eq!(mask_of(4), (MaskSource::Imported, Some(imported)));
    for frame in [1, 3, 5] {
        assert_eq!(mask_of(frame).0, MaskSource::Propagated, "frame {frame}");
    }
    assert!(!object.frames[&0].prompts.is_empty(), "the clicks stay");
}

/// On a narrow window the status bar wraps instead of cutting off the propagation buttons.
#[test]
fn propagation_buttons_stay_on_a_narrow_window() {
    let (_tmp, path) = video(2);
    let width = 640.0;
    let mut harness = video_harness_sized(path, egui::vec2(width, 600.0));
    harness.run_steps(2);
    for label in ["Propagate backward", "Propagate forward", "Propagate both"] {
        let rect = harness.get_by_label(label).rect();
        assert!(rect.max.x <= width, "{label} is cut off: {rect:?}");
    }
}

/// A mask of the frame's size holding one `width × height` rectangle at `(x0, y0)`.
fn block(
    w: u32,
    h: u32,
    x0: u32,
    y0: u32,
    width: u32,
    height: u32,
) -> pixelrefer_studio::mask::Mask {
    let mut m = pixelrefer_studio::mask::Mask::new(w, h);
    for y in y0..y0 + height {
        for x in x0..x0 + width {
            m.set(i64::from(x), i64::from(y), true);
        }
    }
    m
}

/// An object given only by a painted mask is tracked from it (SAM 2's add_new_mask): the app's
/// propagated masks are the tracker's for that painted mask, and the painted frame stays as
/// painted.
#[test]
fn propagation_tracks_an_object_given_by_a_painted_mask() {
    use pixelrefer_studio::jobs::MediaFrames;
    use pixelrefer_studio::segment::{Direction, Sam2Model, TrackerOptions, VideoTracker};
    let (_tmp, path) = video(3);
    let mut harness = video_harness(path.clone());
    let state = harness.state_mut().state_mut().unwrap();
    let (w, h) = state.image_size_px().unwrap();
    let id = state.add_object().unwrap();
    let painted = block(w, h, 80, 60, 70, 70);
    state.commit_painted_mask(id, &painted).unwrap();
    propagate_to_end(&mut harness, PropagateDirection::Forward, 30);
    assert!(
        harness.state().toasts().is_empty(),
        "{:?}",
        harness.state().toasts()
    );
    let state = harness.state().state().unwrap();
    let object = state.object(id).unwrap().clone();
    let a0 = &object.frames[&0];
    assert_eq!(a0.source, MaskSource::Painted);
    assert_eq!(a0.mask.as_ref().unwrap().to_mask().unwrap(), painted);

    // The same painted mask given to the tracker directly.
    let model = Arc::new(Sam2Model::load(&sam2_dir(), &Default::default()).unwrap());
    let mut frames = MediaFrames::open(&path).unwrap();
    let options = TrackerOptions {
        add_all_frames_to_correct_as_cond: Some(true),
        ..TrackerOptions::default()
    };
    let mut tracker = VideoTracker::new(model, 3, w, h, options).unwrap();
    tracker
        .add_mask(&mut frames, 0, id, &painted, None)
        .unwrap();
    let mut expected = Vec::new();
    tracker
        .propagate(
            &mut frames,
            Some(0),
            Direction::Forward,
            None,
            None,
            &mut |p, r| expected.push((p.frame, r)),
        )
        .unwrap();
    for (frame, objs) in expected.into_iter().filter(|(f, _)| *f > 0) {
        let a = &object.frames[&(frame as u64)];
        assert_eq!(a.source, MaskSource::Propagated, "frame {frame}");
        assert_eq!(a.score, Some(objs[0].score), "frame {frame}");
        let got = a.mask.as_ref().map(|r| r.to_mask().unwrap());
        let want = objs[0].mask.clone();
        assert_eq!(
            got.unwrap_or_else(|| pixelrefer_studio::mask::Mask::new(w, h)),
            want,
            "frame {frame}"
        );
    }
}

/// The job reports each prompted frame as it is added (each costs an encoder pass, so many
/// painted frames take a while before the first tracked frame), then the frames.
#[test]
fn propagation_reports_its_prompted_frames_before_tracking() {
    use pixelrefer_studio::jobs::{NoRepaint, PropagateMessage, PropagateRequest};
    use pixelrefer_studio::segment::Sam2Model;
    use pixelrefer_studio::segment::TrackInput;
    let (_tmp, path) = video(3);
    let model = Arc::new(Sam2Model::load(&sam2_dir(), &Default::default()).unwrap());
    let prompts = (0..3)
        .map(|f| {
            (
                1,
                f,
                TrackInput::Mask(block(480, 270, 60 + 10 * f as u32, 40, 50, 50)),
            )
        })
        .collect();
    let request = PropagateRequest {
        media_path: path,
        item: 0,
        prompts,
        start: 0,
        direction: PropagateDirection::Forward,
    };
    let job = pixelrefer_studio::jobs::PropagationJob::spawn(model, request, Arc::new(NoRepaint))
        .unwrap();
    let mut seen = Vec::new();
    let started = Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        let batch = job.poll();
        let end = batch.iter().any(|m| {
            matches!(
                m,
                PropagateMessage::Finished
                    | PropagateMessage::Failed(_)
                    | PropagateMessage::Cancelled
            )
        });
        seen.extend(batch);
        if end {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kinds: Vec<String> = seen
        .iter()
        .map(|m| match m {
            PropagateMessage::Prompted { done, total } => format!("prompted {done}/{total}"),
            PropagateMessage::Frame { done, total, .. } => format!("frame {done}/{total}"),
            PropagateMessage::Finished => "finished".into(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "prompted 0/3",
            "prompted 1/3",
            "prompted 2/3",
            "frame 1/3",
            "frame 2/3",
            "frame 3/3",
            "finished"
        ]
    );
}

/// A model directory exported before mask prompts (no `fixed_no_obj_ptr` constant, no
/// `mask_downsample` weights) cannot track a painted object: the refusal says to get it again.
#[test]
fn painted_objects_with_an_older_model_export_say_to_get_it_again() {
    let old = tempfile::tempdir().unwrap();
    fixtures::copy_model_without_constant(&sam2_dir(), old.path(), "fixed_no_obj_ptr");

    let (_tmp, path) = video(2);
    let mut harness = video_harness_with(path, egui::vec2(900.0, 600.0), old.path().into());
    let state = harness.state_mut().state_mut().unwrap();
    let (w, h) = state.image_size_px().unwrap();
    let id = state.add_object().unwrap();
    state
        .commit_painted_mask(id, &block(w, h, 3, 3, 5, 5))
        .unwrap();
    let err = harness
        .state_mut()
        .sam_propagate(PropagateDirection::Forward)
        .unwrap_err();
    assert!(
        err.starts_with("this SAM 2 model directory was exported before painted masks"),
        "{err}"
    );
    assert!(err.contains("click on the object"), "{err}");
    assert!(harness.state().sam().propagation_progress().is_none());
}

#[test]
fn cancel_stops_propagation_quickly() {
    let (_tmp, path) = video(10);
    let mut harness = video_harness(path);
    let id = click_object(&mut harness);
    harness
        .state_mut()
        .sam_propagate(PropagateDirection::Forward)
        .unwrap();
    harness.step();
    let cancelled = Instant::now();
    harness.state().sam_cancel();
    step_until(&mut harness, 5, "the cancelled propagation to end", |app| {
        app.sam().propagation_progress().is_none()
    });
    let took = cancelled.elapsed();
    eprintln!("cancel took {took:?}");
    assert!(took < Duration::from_secs(2), "cancel took {took:?}");
    // Whatever was finished stays, as one undo step; undo leaves the clicked frame.
    let state = harness.state_mut().state_mut().unwrap();
    if state.object(id).unwrap().frames.len() > 1 {
        assert!(state.undo().unwrap());
    }
    assert_eq!(state.object(id).unwrap().frames.len(), 1);
}

/// Collects worker messages until `done` holds, at most `secs` seconds.
fn worker_until(
    worker: &SegmentWorker,
    secs: u64,
    what: &str,
    seen: &mut Vec<SegmentMessage>,
    mut done: impl FnMut(&[SegmentMessage]) -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        seen.extend(worker.poll());
        if done(seen) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}; messages so far: {seen:?}");
}

fn encoded_frames(seen: &[SegmentMessage]) -> Vec<(usize, u64)> {
    seen.iter()
        .filter_map(|m| match m {
            SegmentMessage::Encoded { item, frame } => Some((*item, *frame)),
            _ => None,
        })
        .collect()
}

/// Shows `(item, frame)` of `media` (a folder as the frames of one video when `frames`) to a
/// fresh worker and waits until the shown frame and its neighbours are encoded; returns the
/// worker, the messages and the shown image.
fn shown_and_neighbours(
    (media, frames): (&std::path::Path, bool),
    item: usize,
    frame: u64,
    expect: &[(usize, u64)],
) -> (SegmentWorker, Vec<SegmentMessage>, Arc<Frame>) {
    let worker = SegmentWorker::spawn(
        sam2_dir(),
        SessionOptions::default(),
        Arc::new(pixelrefer_studio::jobs::NoRepaint),
    )
    .unwrap();
    let mut seen = Vec::new();
    worker_until(&worker, 30, "the model", &mut seen, |m| {
        m.iter().any(|m| matches!(m, SegmentMessage::Loaded { .. }))
    });
    let mut source = if frames {
        pixelrefer_studio::media::open_frames(media, 10.0).unwrap()
    } else {
        pixelrefer_studio::media::open(media).unwrap()
    };
    let image = source.frame(item, frame).unwrap();
    assert!(worker.request(SegmentRequest::Media {
        path: media.to_path_buf(),
        frames,
    }));
    assert!(worker.request(SegmentRequest::Preencode {
        item,
        frame,
        image: Arc::clone(&image),
    }));
    worker_until(&worker, 60, "the frames ahead", &mut seen, |m| {
        let got = encoded_frames(m);
        expect.iter().all(|k| got.contains(k))
    });
    (worker, seen, image)
}

#[test]
fn neighbours_of_the_shown_frame_are_encoded_ahead() {
    let (_tmp, clip) = video(7);
    // Frame 3 shown: frames 1..=5 get encoded, nearest first, and nothing further away.
    let expect = [(0, 3), (0, 4), (0, 2), (0, 5), (0, 1)];
    let (worker, mut seen, _) = shown_and_neighbours((&clip, false), 0, 3, &expect);
    std::thread::sleep(Duration::from_millis(300));
    seen.extend(worker.poll());
    assert_eq!(
        encoded_frames(&seen),
        expect,
        "order and extent of the look-ahead"
    );

    // A click on a neighbour is served from the cache: no further encoder run.
    let mut source = pixelrefer_studio::media::open(&clip).unwrap();
    let image = source.frame(0, 4).unwrap();
    let prompts = pixelrefer_studio::project::Prompts {
        points: vec![pixelrefer_studio::project::PointPrompt {
            x: 240.0,
            y: 135.0,
            positive: true,
        }],
        bbox: None,
    };
    assert!(worker.request(SegmentRequest::Predict {
        item: 0,
        id: 1,
        frame: 4,
        image,
        prompts,
    }));
    let before = seen.len();
    worker_until(&worker, 30, "the mask", &mut seen, |m| {
        m.iter().any(|m| matches!(m, SegmentMessage::Mask(_)))
    });
    assert_eq!(encoded_frames(&seen[before..]), []);
}

#[test]
fn a_folder_looks_ahead_over_its_images() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..4 {
        std::fs::copy(
            sam2_dir().join(format!("reference/frames/{i:05}.png")),
            tmp.path().join(format!("img{i}.png")),
        )
        .unwrap();
    }
    // Image 0 shown: images 1 and 2 follow; each image is frame 0 of its own item.
    let expect = [(0, 0), (1, 0), (2, 0)];
    let (worker, mut seen, _) = shown_and_neighbours((tmp.path(), false), 0, 0, &expect);
    std::thread::sleep(Duration::from_millis(300));
    seen.extend(worker.poll());
    assert_eq!(encoded_frames(&seen), expect);

    // The same folder as the frames of one video: frame 1 shown, its neighbours are frames of
    // item 0, nearest first.
    let expect = [(0, 1), (0, 2), (0, 0), (0, 3)];
    let (worker, mut seen, _) = shown_and_neighbours((tmp.path(), true), 0, 1, &expect);
    std::thread::sleep(Duration::from_millis(300));
    seen.extend(worker.poll());
    assert_eq!(encoded_frames(&seen), expect);
}

#[test]
fn an_int8_model_is_labelled_in_the_status_bar_and_on_its_masks() {
    let mut harness = harness(Some(fixtures::model_fixture("sam2-tiny-int8")));
    step_until(&mut harness, 20, "the int8 model and the frame", |app| {
        app.frame_ready() && matches!(app.sam().status(), SamStatus::Ready { .. })
    });
    let status = harness.state().sam().status_text();
    assert!(
        status.contains("-int8") && status.contains("(int8 quantized: masks differ from fp32)"),
        "{status}"
    );
    let id = click_object(&mut harness);
    // The project records that the int8 model made the mask.
    let state = harness.state().state().unwrap();
    let model = state.annotation(id).unwrap().model.clone().unwrap();
    assert!(model.ends_with("-int8"), "{model}");
    assert!(state.doc.models.iter().any(|m| m.id == model));
}
