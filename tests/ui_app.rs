//! Headless UI tests of the whole app with egui_kittest on wgpu (Mesa lavapipe in CI): choose
//! tools by their labels, paint on the canvas with simulated pointer events, check the
//! document, undo, and compare snapshots (thresholds in `kittest.toml`).

#![allow(clippy::unwrap_used)]

#[path = "support/media_gen.rs"]
mod media_gen;

use egui::{Event, Key, Modifiers, PointerButton, Pos2, pos2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use pixelrefer_studio::jobs::FrameSource;
use pixelrefer_studio::media::{Frame, MediaError};
use pixelrefer_studio::project::{Document, Item, MediaKind, MediaRef};
use pixelrefer_studio::ui::{AppEvent, StudioApp, Tool};
use std::sync::Arc;
use std::time::Duration;

const W: u32 = 160;
const H: u32 = 120;

/// Deterministic frames: a gradient with a frame-dependent stripe.
struct Synthetic {
    frames: u64,
}

impl FrameSource for Synthetic {
    fn frame(&mut self, _item: usize, index: u64) -> Result<Arc<Frame>, MediaError> {
        let mut rgba = Vec::with_capacity((W * H * 4) as usize);
        for y in 0..H {
            for x in 0..W {
                let stripe = (x / 10) as u64 == index % 16;
                let v = if stripe { 255 } else { 0 };
                rgba.extend_from_slice(&[(x * 255 / W) as u8, (y * 255 / H) as u8, v, 255]);
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

fn document(kind: MediaKind, frames: u64) -> Document {
    let media = MediaRef {
        kind,
        path: "synthetic.mp4".into(),
        fingerprint: None,
    };
    let fps = if frames > 1 { 25.0 } else { 0.0 };
    Document::new(media, vec![Item::new(None, W, H, frames, fps)])
}

fn harness(kind: MediaKind, frames: u64) -> Harness<'static, StudioApp> {
    let doc = document(kind, frames);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(move |cc| {
            // These snapshots show the canvas layout; the chat panel has tests/ui_chat.rs.
            let mut app = StudioApp::with_document(cc, doc, Synthetic { frames });
            app.set_chat_visible(false);
            app
        });
    wait_for_frame(&mut harness);
    harness
}

fn wait_for_frame(harness: &mut Harness<'static, StudioApp>) {
    for _ in 0..400 {
        harness.step();
        if harness.state().frame_ready() {
            harness.run_steps(2);
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the frame never arrived from the media thread");
}

/// Screen position of image pixel centre `(x, y)`.
fn screen_of(harness: &Harness<'static, StudioApp>, x: f32, y: f32) -> Pos2 {
    harness
        .state()
        .canvas()
        .transform()
        .screen_from_image(pos2(x, y))
}

fn drag(harness: &mut Harness<'static, StudioApp>, points: &[Pos2]) {
    let first = points[0];
    harness.event(Event::PointerMoved(first));
    harness.event(Event::PointerButton {
        pos: first,
        button: PointerButton::Primary,
        pressed: true,
        modifiers: Modifiers::NONE,
    });
    for &p in &points[1..] {
        harness.event(Event::PointerMoved(p));
    }
    let last = points[points.len() - 1];
    harness.event(Event::PointerButton {
        pos: last,
        button: PointerButton::Primary,
        pressed: false,
        modifiers: Modifiers::NONE,
    });
    harness.run_steps(2);
}

fn click_at(harness: &mut Harness<'static, StudioApp>, p: Pos2) {
    drag(harness, &[p]);
}

fn selected_area(harness: &Harness<'static, StudioApp>) -> u64 {
    let state = harness.state().state().unwrap();
    let id = state.selected.unwrap();
    state.mask(id).map_or(0, |m| m.area())
}

#[test]
fn paint_with_the_brush_then_undo() {
    let mut harness = harness(MediaKind::Image, 1);
    harness.get_by_label("+ Add object").click();
    harness.run_steps(2);
    harness.get_by_label("Brush").click();
    harness.run_steps(2);
    assert_eq!(harness.state().state().unwrap().tool, Tool::Brush);
    assert_eq!(selected_area(&harness), 0);

    let stroke: Vec<Pos2> = (0..10)
        .map(|i| screen_of(&harness, 40.0 + i as f32 * 8.0, 60.0))
        .collect();
    drag(&mut harness, &stroke);
    let area = selected_area(&harness);
    assert!(area > 500, "the stroke painted {area} px");
    let state = harness.state().state().unwrap();
    let id = state.selected.unwrap();
    let mask = state.mask(id).unwrap();
    assert!(mask.get(60, 60) && !mask.get(10, 10));
    harness.snapshot("brush_stroke");

    // One stroke is one undo step.
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    harness.run_steps(2);
    assert_eq!(selected_area(&harness), 0);
    // Redo brings it back.
    harness.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    harness.run_steps(2);
    assert_eq!(selected_area(&harness), area);
}

#[test]
fn eraser_polygon_and_fill_holes() {
    let mut harness = harness(MediaKind::Image, 1);
    harness.key_press(Key::A);
    harness.run_steps(1);
    harness.get_by_label("Polygon").click();
    harness.run_steps(1);
    for (x, y) in [(20.0, 20.0), (100.0, 20.0), (100.0, 100.0), (20.0, 100.0)] {
        let p = screen_of(&harness, x, y);
        click_at(&mut harness, p);
        // Wait out the double-click delay so these are separate clicks.
        harness.run_steps(25);
    }
    harness.key_press(Key::Enter);
    harness.run_steps(2);
    let filled = selected_area(&harness);
    assert!((6000..=6600).contains(&filled), "polygon area {filled}");

    harness.get_by_label("Eraser").click();
    harness.run_steps(1);
    let p = screen_of(&harness, 60.0, 60.0);
    click_at(&mut harness, p);
    let erased = selected_area(&harness);
    assert!(erased < filled, "{erased} < {filled}");

    harness.get_by_label("Fill holes").click();
    harness.run_steps(2);
    assert_eq!(selected_area(&harness), filled);
}

#[test]
fn point_and_box_prompts_are_stored_and_drawn() {
    let mut harness = harness(MediaKind::Image, 1);
    let events = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = events.clone();
    harness
        .state_mut()
        .set_event_hook(move |event| sink.borrow_mut().push(event.clone()));
    harness.key_press(Key::A);
    harness.run_steps(1);
    harness.get_by_label("Positive point").click();
    harness.run_steps(1);
    let p = screen_of(&harness, 50.5, 40.5);
    click_at(&mut harness, p);
    harness.get_by_label("Negative point").click();
    harness.run_steps(1);
    let p = screen_of(&harness, 90.5, 70.5);
    click_at(&mut harness, p);
    harness.get_by_label("Box").click();
    harness.run_steps(1);
    let a = screen_of(&harness, 30.0, 30.0);
    let b = screen_of(&harness, 120.0, 100.0);
    drag(&mut harness, &[a, pos2((a.x + b.x) / 2.0, a.y), b]);

    let state = harness.state().state().unwrap();
    let id = state.selected.unwrap();
    let prompts = state.annotation(id).unwrap().prompts.clone();
    assert_eq!(prompts.points.len(), 2);
    assert!(prompts.points[0].positive && !prompts.points[1].positive);
    assert!((prompts.points[0].x - 50.5).abs() < 0.2);
    let bbox = prompts.bbox.unwrap();
    assert!((bbox[0] - 30.0).abs() < 0.5 && (bbox[3] - 100.0).abs() < 0.5);
    // Each prompt change is announced to the hook (for SAM 2).
    harness.run_steps(1);
    let expected = AppEvent::PromptsChanged {
        item: 0,
        id,
        frame: 0,
    };
    assert_eq!(*events.borrow(), vec![expected; 3]);
    harness.snapshot("prompts");
}

#[test]
fn locked_objects_refuse_edits_with_a_note() {
    let mut harness = harness(MediaKind::Image, 1);
    harness.key_press(Key::A);
    harness.run_steps(1);
    harness.get_by_label("Lock").click();
    harness.run_steps(1);
    harness.get_by_label("Brush").click();
    harness.run_steps(1);
    let p = screen_of(&harness, 60.0, 60.0);
    click_at(&mut harness, p);
    assert_eq!(selected_area(&harness), 0);
    let toasts = harness.state().toasts();
    assert!(toasts.iter().any(|t| t.contains("is locked")), "{toasts:?}");
    harness.get_by_label_contains("is locked; unlock it");
    harness.snapshot("locked_note");
}

#[test]
fn objects_panel_add_hide_reorder_delete_undo() {
    let mut harness = harness(MediaKind::Image, 1);
    harness.get_by_label("+ Add object").click();
    harness.run_steps(1);
    harness.get_by_label("+ Add object").click();
    harness.run_steps(1);
    let ids: Vec<u32> = harness
        .state()
        .state()
        .unwrap()
        .objects()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(ids.len(), 2);
    // Stable tags are shown (also in the status bar for the selected one).
    assert!(harness.get_all_by_label("<object0>").count() >= 1);
    assert!(harness.get_all_by_label("<object1>").count() >= 1);
    // Marking a crowd region (COCO iscrowd) is one undo step.
    harness.get_all_by_label("crowd").next().unwrap().click();
    harness.run_steps(1);
    assert!(harness.state().state().unwrap().objects()[0].crowd);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    harness.run_steps(1);
    assert!(!harness.state().state().unwrap().objects()[0].crowd);
    harness.get_all_by_label("crowd").next().unwrap().click();
    harness.run_steps(1);
    assert!(harness.state().state().unwrap().objects()[0].crowd);

    harness.get_all_by_label("Hide").next().unwrap().click();
    harness.run_steps(1);
    assert!(harness.state().state().unwrap().objects()[0].hidden);

    harness.get_all_by_label("Down").next().unwrap().click();
    harness.run_steps(1);
    let order: Vec<u32> = harness
        .state()
        .state()
        .unwrap()
        .objects()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(order, vec![ids[1], ids[0]]);

    harness.get_all_by_label("Delete").next().unwrap().click();
    harness.run_steps(1);
    assert_eq!(harness.state().state().unwrap().objects().len(), 1);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    harness.run_steps(1);
    assert_eq!(harness.state().state().unwrap().objects().len(), 2);
    harness.snapshot("objects_panel");
}

#[test]
fn timeline_steps_frames_and_loads_them() {
    let mut harness = harness(MediaKind::Video, 50);
    harness.key_press(Key::ArrowRight);
    harness.key_press(Key::ArrowRight);
    harness.run_steps(1);
    assert_eq!(harness.state().state().unwrap().frame, 2);
    wait_for_frame(&mut harness);
    harness.key_press(Key::End);
    harness.run_steps(1);
    assert_eq!(harness.state().state().unwrap().frame, 49);
    harness.key_press(Key::ArrowLeft);
    harness.run_steps(1);
    assert_eq!(harness.state().state().unwrap().frame, 48);
    wait_for_frame(&mut harness);
    harness.get_by_label_contains("frame 49 / 50");
    harness.snapshot("timeline");
}

#[test]
fn help_overlay_lists_the_shortcuts() {
    let mut harness = harness(MediaKind::Image, 1);
    harness.key_press(Key::F1);
    harness.run_steps(2);
    harness.get_by_label("Keyboard shortcuts");
    harness.get_by_label("Brush radius smaller / larger");
    harness.snapshot("help");
    harness.key_press(Key::Escape);
    harness.run_steps(2);
    assert!(
        harness
            .query_by_label("Brush radius smaller / larger")
            .is_none()
    );
}

#[test]
fn zoom_keys_keep_pixels_exact() {
    let mut harness = harness(MediaKind::Image, 1);
    let fitted = harness.state().canvas().transform();
    harness.key_press(Key::Num1);
    harness.run_steps(1);
    assert_eq!(harness.state().canvas().transform().zoom, 1.0);
    harness.key_press(Key::F);
    harness.run_steps(1);
    assert_eq!(harness.state().canvas().transform(), fitted);
    harness.key_press(Key::Plus);
    harness.run_steps(1);
    let zoomed = harness.state().canvas().transform();
    assert!((zoomed.zoom - fitted.zoom * 1.25).abs() < 1e-4);
}

fn write_png(path: &std::path::Path) {
    let img = image::RgbaImage::from_fn(W, H, |x, y| image::Rgba([x as u8, y as u8, 128, 255]));
    img.save(path).unwrap();
}

fn wait_until(
    harness: &mut Harness<'static, StudioApp>,
    what: &str,
    done: impl Fn(&StudioApp) -> bool,
) {
    for _ in 0..1000 {
        harness.step();
        if done(harness.state()) {
            harness.run_steps(2);
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn opens_a_real_image_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photo.png");
    write_png(&path);
    let open = path.clone();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(move |cc| StudioApp::new(cc, Some(open)));
    wait_until(&mut harness, "the image", |app| app.frame_ready());
    let state = harness.state().state().unwrap();
    assert_eq!(state.image_size_px(), Some((W, H)));
    assert_eq!(state.doc.media.path, path);
}

#[test]
fn a_project_with_moved_media_asks_to_relink() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("gone.png");
    write_png(&media);
    let mut doc = document(MediaKind::Image, 1);
    doc.media.path = media.clone();
    doc.media.fingerprint = None;
    let project = dir.path().join("p.prj.json");
    pixelrefer_studio::project::save_project(&doc, &project).unwrap();
    std::fs::remove_file(&media).unwrap();

    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(move |cc| StudioApp::new(cc, Some(project)));
    for _ in 0..400 {
        harness.step();
        if harness.query_by_label("Media not found").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    harness.get_by_label("Media not found");
    harness.get_by_label("Locate…");
    assert!(harness.state().toasts().is_empty(), "no error, a question");
}

#[test]
fn a_missing_file_is_one_clear_sentence_not_a_panic() {
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(|cc| StudioApp::new(cc, Some("/nonexistent/clip.mp4".into())));
    wait_until(&mut harness, "the error", |app| !app.toasts().is_empty());
    let toasts = harness.state().toasts();
    assert!(toasts[0].contains("/nonexistent/clip.mp4"), "{toasts:?}");
    assert!(harness.state().state().is_none());
    harness.get_by_label("Open media…");
}

#[test]
fn closing_with_unsaved_changes_asks_first() {
    let mut harness = harness(MediaKind::Image, 1);
    harness.key_press(Key::A);
    harness.run_steps(1);
    assert!(harness.state().state().unwrap().is_dirty());
    harness
        .input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(egui::ViewportEvent::Close);
    harness.run_steps(2);
    harness.get_by_label("Unsaved changes");
    harness.get_by_label("Don't save");
    harness.get_by_label("Cancel").click();
    harness.run_steps(2);
    assert!(harness.query_by_label("Unsaved changes").is_none());
}

#[test]
fn folders_page_between_images_each_with_its_own_objects() {
    let media = MediaRef {
        kind: MediaKind::Folder,
        path: "folder".into(),
        fingerprint: None,
    };
    let items = vec![
        Item::new(Some("a.png".into()), W, H, 1, 0.0),
        Item::new(Some("b.png".into()), W, H, 1, 0.0),
    ];
    let doc = Document::new(media, items);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(move |cc| {
            // These snapshots show the canvas layout; the chat panel has tests/ui_chat.rs.
            let mut app = StudioApp::with_document(cc, doc, Synthetic { frames: 1 });
            app.set_chat_visible(false);
            app
        });
    wait_for_frame(&mut harness);
    harness.key_press(Key::A);
    harness.run_steps(1);
    assert_eq!(harness.state().state().unwrap().objects().len(), 1);
    harness.key_press(Key::PageDown);
    harness.run_steps(1);
    wait_for_frame(&mut harness);
    let state = harness.state().state().unwrap();
    assert_eq!(state.item, 1);
    assert!(state.objects().is_empty());
    harness.get_by_label_contains("image 2 / 2");
    harness.get_by_label("< Previous").click();
    harness.run_steps(1);
    assert_eq!(harness.state().state().unwrap().objects().len(), 1);
}

/// Writes a demo project (two painted objects on `$UI_DEMO_MEDIA`, a 640×480 image) to
/// `$UI_DEMO_PROJECT`, for looking at the real app:
/// `UI_DEMO_MEDIA=img.png UI_DEMO_PROJECT=demo.prj.json cargo test --test ui_app write_demo -- --ignored`
#[test]
#[ignore]
fn write_demo_project() {
    use pixelrefer_studio::mask::{Mask, Rle};
    use pixelrefer_studio::project::{Edit, FrameAnnotation, MaskSource, PointPrompt};
    let media = std::path::PathBuf::from(std::env::var("UI_DEMO_MEDIA").unwrap());
    let out = std::path::PathBuf::from(std::env::var("UI_DEMO_PROJECT").unwrap());
    let source = pixelrefer_studio::media::open(&media).unwrap();
    let info = source.item_info(0).unwrap();
    let (w, h) = (info.width, info.height);
    let mut doc = Document::new(
        MediaRef {
            kind: MediaKind::Image,
            path: std::fs::canonicalize(&media).unwrap(),
            fingerprint: None,
        },
        vec![Item::new(None, w, h, 1, 0.0)],
    );
    let disc = |cx: f32, cy: f32, r: f32| {
        let mut m = Mask::new(w, h);
        m.paint_stroke((cx, cy), (cx, cy), r, true);
        m
    };
    let masks = [
        disc(w as f32 * 0.5, h as f32 * 0.5, h as f32 * 0.3),
        disc(w as f32 * 0.3, h as f32 * 0.75, h as f32 * 0.15),
    ];
    for (k, mask) in masks.iter().enumerate() {
        let add = doc.add_object_edit(0).unwrap();
        let Edit::AddObject { object, .. } = &add else {
            unreachable!()
        };
        let id = object.id;
        doc.apply(add).unwrap();
        let mut annotation = FrameAnnotation::from_mask(Rle::from_mask(mask), MaskSource::Painted);
        if k == 0 {
            annotation.prompts.points.push(PointPrompt {
                x: w as f32 * 0.5,
                y: h as f32 * 0.5,
                positive: true,
            });
        }
        doc.apply(Edit::SetFrame {
            item: 0,
            id,
            frame: 0,
            annotation: Some(Box::new(annotation)),
        })
        .unwrap();
    }
    pixelrefer_studio::project::save_project(&doc, &out).unwrap();
}

#[test]
fn select_tool_picks_the_object_under_the_click() {
    let mut harness = harness(MediaKind::Image, 1);
    let (a, b) = {
        let state = harness.state_mut().state_mut().unwrap();
        let a = state.add_object().unwrap();
        let b = state.add_object().unwrap();
        let mut left = pixelrefer_studio::mask::Mask::new(W, H);
        let mut right = pixelrefer_studio::mask::Mask::new(W, H);
        for y in 20..100 {
            for x in 10..60 {
                left.set(x, y, true);
                right.set(x + 80, y, true);
            }
        }
        state.commit_painted_mask(a, &left).unwrap();
        state.commit_painted_mask(b, &right).unwrap();
        (a, b)
    };
    harness.run_steps(2);
    harness.get_by_label("Select").click();
    harness.run_steps(1);
    let p = screen_of(&harness, 30.5, 50.5);
    click_at(&mut harness, p);
    assert_eq!(harness.state().state().unwrap().selected, Some(a));
    let p = screen_of(&harness, 110.5, 50.5);
    click_at(&mut harness, p);
    assert_eq!(harness.state().state().unwrap().selected, Some(b));
    harness.snapshot("select_two_objects");
    let p = screen_of(&harness, 75.5, 50.5);
    click_at(&mut harness, p);
    assert_eq!(harness.state().state().unwrap().selected, None);
}

#[test]
fn unsaved_work_is_autosaved_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("work.prj.json");
    let mut harness = harness(MediaKind::Image, 1);
    harness.state_mut().set_autosave_interval(Duration::ZERO);
    harness.state_mut().state_mut().unwrap().project_path = Some(project.clone());
    harness.key_press(Key::A);
    harness.run_steps(1);
    let autosave =
        pixelrefer_studio::project::autosave_path(Some(&project), "synthetic.mp4".as_ref());
    for _ in 0..400 {
        harness.step();
        if autosave.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let saved = pixelrefer_studio::project::load_project(&autosave).unwrap();
    assert_eq!(saved.items[0].objects.len(), 1);
    // Still dirty: an autosave is not a save.
    assert!(harness.state().state().unwrap().is_dirty());
}

/// Opens `project` in the app and waits until its media shows.
fn open_project(project: std::path::PathBuf) -> Harness<'static, StudioApp> {
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(move |cc| StudioApp::new(cc, Some(project)));
    wait_until(&mut harness, "the project", |app| app.frame_ready());
    harness
}

#[test]
fn a_newer_autosave_is_offered_for_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("photo.png");
    write_png(&media);
    let mut doc = document(MediaKind::Image, 1);
    doc.media.path = media.clone();
    let project = dir.path().join("p.prj.json");
    save_with_a_newer_autosave(&mut doc, &project);

    let mut harness = open_project(project);
    assert!(harness.state().state().unwrap().objects().is_empty());
    harness.get_by_label("Recover unsaved work?");
    recover(&mut harness);
    assert!(harness.state().state().unwrap().is_dirty());
}

/// Saves `doc` to `project`, then writes an autosave of it with one object more.
fn save_with_a_newer_autosave(doc: &mut Document, project: &std::path::Path) {
    pixelrefer_studio::project::save_project(doc, project).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let add = doc.add_object_edit(0).unwrap();
    doc.apply(add).unwrap();
    let autosave = pixelrefer_studio::project::autosave_path(Some(project), &doc.media.path);
    pixelrefer_studio::project::write_autosave(doc, &autosave).unwrap();
}

/// Answers the recovery prompt with Recover and waits for the autosave's object.
fn recover(harness: &mut Harness<'static, StudioApp>) {
    harness.get_by_label("Recover").click();
    wait_until(harness, "the recovery", |app| {
        app.state().is_some_and(|s| s.objects().len() == 1)
    });
}

#[test]
fn a_project_from_before_frame_times_gets_them_and_keeps_them_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    // 4 frames 40 ms apart, then 3 a second apart.
    let times = "if(lt(N,4),N*0.04,0.12+(N-3))";
    let media = media_gen::vfr_video(dir.path(), "vfr.mkv", "64x48", 7, times, &["-c:v", "ffv1"]);
    let source = pixelrefer_studio::media::open(&media).unwrap();
    let mut doc = pixelrefer_studio::jobs::new_document(&source).unwrap();
    let times = doc.items[0].timestamps_secs.clone();
    assert_eq!(times.len(), 7);
    assert!((times[6] - 3.12).abs() < 1e-3, "{times:?}");
    // As an earlier build saved it: no frame times, in the project and in its autosave.
    doc.items[0].timestamps_secs.clear();
    let project = dir.path().join("old.prj.json");
    save_with_a_newer_autosave(&mut doc, &project);

    let mut harness = open_project(project);
    assert_eq!(
        harness.state().state().unwrap().doc.items[0].timestamps_secs,
        times
    );
    recover(&mut harness);
    assert_eq!(
        harness.state().state().unwrap().doc.items[0].timestamps_secs,
        times
    );
}

#[test]
fn an_image_project_of_an_animated_gif_opens_as_a_video_with_its_masks() {
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("anim.gif");
    let mut file = std::fs::File::create(&media).unwrap();
    let mut encoder = image::codecs::gif::GifEncoder::new(&mut file);
    for c in [[200u8, 0, 0, 255], [0, 0, 200, 255], [0, 200, 0, 255]] {
        let buffer = image::RgbaImage::from_pixel(W, H, image::Rgba(c));
        let delay = image::Delay::from_numer_denom_ms(100, 1);
        encoder
            .encode_frame(image::Frame::from_parts(buffer, 0, 0, delay))
            .unwrap();
    }
    drop(encoder);
    // As a build that showed animated GIFs as stills saved it.
    let mut doc = document(MediaKind::Image, 1);
    doc.media.path = media;
    let add = doc.add_object_edit(0).unwrap();
    doc.apply(add).unwrap();
    let mut mask = pixelrefer_studio::mask::Mask::new(W, H);
    mask.set(5, 6, true);
    let rle = pixelrefer_studio::mask::Rle::from_mask(&mask);
    let painted = pixelrefer_studio::project::MaskSource::Painted;
    let edit = doc.set_mask_edit(0, 0, 0, rle.clone(), painted).unwrap();
    doc.apply(edit).unwrap();
    let project = dir.path().join("gif.prj.json");
    pixelrefer_studio::project::save_project(&doc, &project).unwrap();

    let harness = open_project(project);
    let state = harness.state().state().unwrap();
    assert_eq!(state.doc.media.kind, MediaKind::Video);
    assert_eq!(state.frame_count(), 3);
    let object = &state.doc.items[0].objects[0];
    assert_eq!(object.frames.keys().copied().collect::<Vec<_>>(), [0]);
    assert_eq!(object.frames[&0].mask.as_ref(), Some(&rle));
}

#[test]
fn ctrl_s_saves_to_the_project_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("saved.prj.json");
    let mut harness = harness(MediaKind::Image, 1);
    harness.state_mut().state_mut().unwrap().project_path = Some(project.clone());
    harness.key_press(Key::A);
    harness.run_steps(1);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::S);
    wait_until(&mut harness, "the save", |app| {
        app.state().is_some_and(|s| !s.is_dirty())
    });
    let saved = pixelrefer_studio::project::load_project(&project).unwrap();
    assert_eq!(saved.items[0].objects.len(), 1);
    assert!(harness.state().toasts()[0].starts_with("Saved"));
}

fn open_in_app(project: std::path::PathBuf) -> Harness<'static, StudioApp> {
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(move |cc| StudioApp::new(cc, Some(project)));
    wait_until(&mut harness, "the error dialog", |app| {
        app.error_dialog().is_some()
    });
    harness
}

/// The dialog shows `sentence`, and after OK the app is back on its start screen, usable.
fn dialog_shows_then_dismisses(mut harness: Harness<'static, StudioApp>, sentence: &str) {
    assert_eq!(harness.state().error_dialog(), Some(sentence));
    harness.get_by_label(sentence);
    assert!(harness.state().state().is_none(), "no document was opened");
    harness.get_by_label("OK").click();
    harness.run_steps(2);
    assert!(harness.state().error_dialog().is_none());
    harness.get_by_label("Open media…");
}

#[test]
fn a_bad_project_opens_a_dialog_with_the_cli_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("twice.prj.json");
    let mut doc = document(MediaKind::Image, 1);
    doc.media.path = dir.path().join("photo.png");
    write_png(&doc.media.path);
    let add = doc.add_object_edit(0).unwrap();
    doc.apply(add).unwrap();
    let mask = pixelrefer_studio::mask::Rle::empty(H, W);
    let edit = doc
        .set_mask_edit(
            0,
            0,
            0,
            mask,
            pixelrefer_studio::project::MaskSource::Painted,
        )
        .unwrap();
    doc.apply(edit).unwrap();
    pixelrefer_studio::project::save_project(&doc, &project).unwrap();
    // Frame 0 given twice ("0" and "00"): the loader refuses it.
    let text = std::fs::read_to_string(&project).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entry = &value["items"][0]["objects"][0]["frames"]["0"];
    assert!(entry.is_object());
    let twice = text.replacen(
        "\"frames\": {",
        &format!("\"frames\": {{\"00\": {entry},"),
        1,
    );
    std::fs::write(&project, twice).unwrap();
    let sentence = pixelrefer_studio::project::load_project(&project)
        .unwrap_err()
        .to_string();
    assert!(sentence.contains("frame 0 is given twice"), "{sentence}");
    dialog_shows_then_dismisses(open_in_app(project), &sentence);
}

#[test]
fn a_project_that_does_not_fit_its_media_opens_a_dialog() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("wrong-size.prj.json");
    let mut doc = document(MediaKind::Image, 1);
    doc.media.path = dir.path().join("photo.png");
    write_png(&doc.media.path);
    doc.items[0].width = W * 2;
    pixelrefer_studio::project::save_project(&doc, &project).unwrap();
    let mut loaded = pixelrefer_studio::project::load_project(&project).unwrap();
    let sentence = pixelrefer_studio::jobs::check_project_media(&mut loaded, &project)
        .unwrap_err()
        .to_string();
    assert!(
        sentence.contains("is 320x120 in the project but 160x120"),
        "{sentence}"
    );
    dialog_shows_then_dismisses(open_in_app(project), &sentence);
}

/// Frame `i` of a folder of frames: a bright column at x = 10 * i.
fn write_frame(path: &std::path::Path, i: u32) {
    let img = image::RgbImage::from_fn(W, H, |x, _| {
        let v = if x / 10 == i { 250 } else { 20 };
        image::Rgb([v, v, v])
    });
    img.save(path).unwrap();
}

#[test]
fn a_folder_of_frames_opens_as_a_video_and_saves_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("clip");
    std::fs::create_dir(&frames).unwrap();
    // Natural order: f2 before f10.
    for (i, name) in [(0, "f1.png"), (1, "f2.png"), (2, "f10.png")] {
        write_frame(&frames.join(name), i);
    }
    let open = frames.clone();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(move |cc| StudioApp::new(cc, Some(open)));
    wait_until(&mut harness, "the folder", |app| app.frame_ready());
    assert_eq!(harness.state().state().unwrap().doc.items.len(), 3);
    harness.get_by_label_contains("image 1 / 3");

    // Under the folder: Open as video…, the rate, Open.
    harness.get_by_label("Open as video…").click();
    harness.run_steps(2);
    harness.get_by_label("Open a folder as a video");
    harness.get_by_label("Open").click();
    wait_until(&mut harness, "the frames", |app| {
        app.frame_ready() && app.state().is_some_and(|s| s.frame_count() == 3)
    });
    let state = harness.state().state().unwrap();
    assert!(state.doc.is_frame_sequence());
    assert_eq!(state.doc.items[0].fps, 25.0);
    assert_eq!(
        state.doc.items[0].frame_files,
        ["f1.png", "f2.png", "f10.png"]
    );
    assert_eq!(state.image_size_px(), Some((W, H)));
    harness.get_by_label_contains("0:00.000");

    // Frame 2 is shown at 2 / 25 s (tests/media_image.rs checks it is f10, in name order).
    harness.key_press(Key::ArrowRight);
    harness.key_press(Key::ArrowRight);
    wait_until(&mut harness, "frame 2", |app| {
        app.frame_ready() && app.state().is_some_and(|s| s.frame == 2)
    });
    harness.get_by_label_contains("0:00.080");

    // A mask on frame 2, saved; the project reopens as the same video with its mask.
    harness.key_press(Key::A);
    harness.run_steps(1);
    let id = harness.state().state().unwrap().selected.unwrap();
    let mut mask = pixelrefer_studio::mask::Mask::new(W, H);
    mask.set(3, 4, true);
    harness
        .state_mut()
        .state_mut()
        .unwrap()
        .commit_painted_mask(id, &mask)
        .unwrap();
    let project = dir.path().join("clip.prj.json");
    let doc = harness.state().state().unwrap().doc.clone();
    pixelrefer_studio::project::save_project(&doc, &project).unwrap();
    let harness = open_project(project);
    let state = harness.state().state().unwrap();
    assert!(state.doc.is_frame_sequence());
    assert_eq!(state.frame_count(), 3);
    let saved = state.doc.items[0].objects[0].frames.get(&2).unwrap();
    assert!(saved.mask.is_some());
}

#[test]
fn a_folder_of_mixed_sizes_does_not_open_as_a_video() {
    let dir = tempfile::tempdir().unwrap();
    write_frame(&dir.path().join("a.png"), 0);
    image::RgbImage::new(W + 1, H)
        .save(dir.path().join("b.png"))
        .unwrap();
    let open = dir.path().to_path_buf();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(move |cc| {
            let mut app = StudioApp::new(cc, None);
            app.open_frames(open, 10.0);
            app
        });
    wait_until(&mut harness, "the error dialog", |app| {
        app.error_dialog().is_some()
    });
    let sentence = harness.state().error_dialog().unwrap().to_string();
    assert!(
        sentence.contains("b.png is 161x120 but a.png is 160x120"),
        "{sentence}"
    );
    dialog_shows_then_dismisses(harness, &sentence);
}

#[test]
fn the_frame_rate_of_a_tiff_stack_is_set_in_the_timeline_as_one_undo_step() {
    use tiff::encoder::{TiffEncoder, colortype};
    let dir = tempfile::tempdir().unwrap();
    // Three pages, no rate in the file (a plain multi-page TIFF).
    let stack = dir.path().join("stack.tif");
    let mut enc = TiffEncoder::new(std::fs::File::create(&stack).unwrap()).unwrap();
    for i in 0..3 {
        let page = image::RgbImage::from_fn(W, H, |x, _| {
            let v = if x / 10 == i { 250 } else { 20 };
            image::Rgb([v, v, v])
        });
        enc.write_image::<colortype::RGB8>(W, H, page.as_raw())
            .unwrap();
    }
    drop(enc);
    let open = stack.clone();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(move |cc| StudioApp::new(cc, Some(open)));
    wait_until(&mut harness, "the stack", |app| {
        app.frame_ready() && app.state().is_some_and(|s| s.frame_count() == 3)
    });
    assert_eq!(harness.state().state().unwrap().doc.items[0].fps, 0.0);
    harness.key_press(Key::End);
    harness.run_steps(2);
    harness.get_by_label_contains("frame 3 / 3  0:00.000");

    // 12.5 frames per second: frame 3 is at 0:00.160, one undo step, kept in the project.
    harness.get_by_label("fps").set_value_accesskit(12.5);
    harness.run_steps(2);
    assert_eq!(harness.state().state().unwrap().doc.items[0].fps, 12.5);
    harness.get_by_label_contains("frame 3 / 3  0:00.160");
    let project = dir.path().join("stack.prj.json");
    let doc = harness.state().state().unwrap().doc.clone();
    pixelrefer_studio::project::save_project(&doc, &project).unwrap();
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    harness.run_steps(2);
    assert_eq!(harness.state().state().unwrap().doc.items[0].fps, 0.0);
    harness.get_by_label_contains("frame 3 / 3  0:00.000");

    let reopened = open_project(project);
    let state = reopened.state().state().unwrap();
    assert_eq!((state.doc.items[0].fps, state.frame_count()), (12.5, 3));
    assert!(state.frame_rate_settable);
}
