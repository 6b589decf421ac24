//! *Models ▸ Tracker* in the app (egui_kittest on wgpu, the tiny SAM 2 and EdgeTAM fixtures):
//! every tracker found is listed by family, the chosen one loads, names itself in the status bar
//! and on its masks, and is loaded again at the next start.

#![allow(clippy::unwrap_used)]

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use pixelrefer_studio::jobs::FrameSource;
use pixelrefer_studio::media::{Frame, MediaError};
use pixelrefer_studio::project::{Document, Item, MediaKind, MediaRef};
use pixelrefer_studio::ui::StudioApp;
use pixelrefer_studio::ui::sam_panel::SamStatus;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/ui_steps.rs"]
mod ui_steps;

use ui_steps::step_until;

/// One frame, served for every index.
struct Still(Arc<Frame>);

impl FrameSource for Still {
    fn frame(&mut self, _item: usize, _index: u64) -> Result<Arc<Frame>, MediaError> {
        Ok(Arc::clone(&self.0))
    }

    fn frame_count(&self, _item: usize) -> u64 {
        1
    }
}

fn app(models: &Path, settings: &Path) -> Harness<'static, StudioApp> {
    let img = image::open(fixtures::fixture("sam2-tiny").join("reference/frames/00000.png"))
        .unwrap()
        .to_rgba8();
    let (width, height) = img.dimensions();
    let still = Still(Arc::new(Frame {
        width,
        height,
        rgba: img.into_raw(),
    }));
    let media = MediaRef {
        kind: MediaKind::Image,
        path: "still.png".into(),
        fingerprint: None,
    };
    let doc = Document::new(media, vec![Item::new(None, width, height, 1, 0.0)]);
    let (models, settings) = (models.to_path_buf(), settings.to_path_buf());
    Harness::builder()
        .with_size(egui::vec2(900.0, 600.0))
        .wgpu()
        .build_eframe(move |cc| {
            let mut app = StudioApp::with_document(cc, doc, still);
            app.set_settings_path(Some(settings));
            app.set_models_dir(Some(&models));
            app
        })
}

fn ready(app: &StudioApp, family: &str) -> bool {
    app.frame_ready()
        && matches!(app.sam().status(), SamStatus::Ready { family: f, .. } if f == family)
}

fn loaded_dir(harness: &Harness<'static, StudioApp>) -> PathBuf {
    harness.state().sam().dir().unwrap().to_path_buf()
}

/// Both families side by side (issue 10's model chooser), one click to switch, and the choice
/// survives a restart; masks record the model that made them.
#[test]
fn the_tracker_menu_lists_sam2_and_edgetam_switches_and_remembers() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    for name in ["edgetam-tiny", "sam2-tiny"] {
        std::os::unix::fs::symlink(fixtures::fixture(name), models.join(name)).unwrap();
    }
    let settings = tmp.path().join("data/settings.json");

    let mut harness = app(&models, &settings);
    // nothing remembered: the first found (folders in name order) loads by itself
    step_until(&mut harness, 20, "EdgeTAM", |app| ready(app, "edgetam"));
    let status = harness.state().sam().status_text();
    assert!(status.starts_with("EdgeTAM: "), "{status}");
    assert!(!settings.exists(), "loading by itself is not a choice");

    harness.get_by_label("Models").click();
    harness.run();
    harness.get_by_label("Tracker").click();
    harness.run();
    harness.get_by_label("EdgeTAM (edgetam-tiny)");
    harness.get_by_label("Other folder…");
    harness.get_by_label("SAM 2 (sam2-tiny)").click();
    harness.run();
    step_until(&mut harness, 20, "SAM 2", |app| ready(app, "sam2"));
    let status = harness.state().sam().status_text();
    assert!(status.starts_with("SAM 2: "), "{status}");
    assert!(
        harness.query_by_label("EdgeTAM (edgetam-tiny)").is_none(),
        "the menu closes once a tracker is chosen"
    );
    assert_eq!(loaded_dir(&harness), models.join("sam2-tiny"));

    let state = harness.state_mut().state_mut().unwrap();
    let id = state.add_object().unwrap();
    state.add_point_prompt(240.0, 135.0, true).unwrap();
    step_until(&mut harness, 20, "the mask of a click", |app| {
        app.state()
            .and_then(|s| s.annotation(id))
            .is_some_and(|a| a.mask.is_some())
    });
    let model = harness
        .state()
        .state()
        .unwrap()
        .annotation(id)
        .unwrap()
        .model
        .clone();
    let SamStatus::Ready { id: loaded, .. } = harness.state().sam().status().clone() else {
        unreachable!("checked above")
    };
    assert_eq!(model.as_deref(), Some(loaded.as_str()));
    assert!(!loaded.contains("edgetam"), "{loaded}");
    drop(harness);

    // the next start loads the chosen tracker, not the first found
    let mut harness = app(&models, &settings);
    step_until(&mut harness, 20, "SAM 2 again", |app| ready(app, "sam2"));
    assert_eq!(loaded_dir(&harness), models.join("sam2-tiny"));
    drop(harness);

    // a remembered tracker that is gone, or outside the --models folder, is passed over
    std::fs::remove_file(models.join("sam2-tiny")).unwrap();
    let mut harness = app(&models, &settings);
    step_until(&mut harness, 20, "EdgeTAM again", |app| {
        ready(app, "edgetam")
    });
    drop(harness);
    std::os::unix::fs::symlink(fixtures::fixture("sam2-tiny"), models.join("sam2-tiny")).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(fixtures::fixture("edgetam-tiny"), elsewhere.join("et")).unwrap();
    let mut harness = app(&elsewhere, &settings);
    step_until(&mut harness, 20, "the --models folder's tracker", |app| {
        ready(app, "edgetam")
    });
    assert_eq!(loaded_dir(&harness), elsewhere.join("et"));
}

/// While a tracker loads (and if it fails) the status bar names its family too.
#[test]
fn a_loading_tracker_is_named_by_its_family() {
    use pixelrefer_studio::jobs::NoRepaint;
    use pixelrefer_studio::ui::sam_panel::SamPanel;
    let tmp = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(fixtures::fixture("edgetam-tiny"), tmp.path().join("et")).unwrap();
    let mut panel = SamPanel::default();
    panel.set_settings_path(None);
    panel.discover(Some(tmp.path()), Arc::new(NoRepaint));
    assert!(matches!(panel.status(), SamStatus::Loading(_)));
    let status = panel.status_text();
    assert!(status.starts_with("EdgeTAM: loading "), "{status}");
}
