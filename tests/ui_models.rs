//! The first-run panel in the app (egui_kittest on wgpu) against a local hub on 127.0.0.1
//! (tests/support/fake_hub.rs): with no model anywhere it recommends SAM 2.1 Hiera-Tiny and
//! PixelRefer-Lite-2B for a CPU machine, with EdgeTAM offered as the faster tracker; a server error shows one sentence in the panel and the
//! app stays usable; then "Get … only" downloads, exports (a copy of the fixture exported from
//! the same weights), verifies and installs SAM 2 in the background and the app's SAM 2 becomes
//! active without a restart, and a click gives a mask from it.
#![allow(clippy::unwrap_used)]

#[path = "support/fake_hub.rs"]
mod fake_hub;
#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/ui_steps.rs"]
mod ui_steps;

use ui_steps::step_until;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;
use fake_hub::{FakeHub, Faults, hub_fixtures};
use pixelrefer_studio::runtime::MachineInfo;
use pixelrefer_studio::runtime::catalog::{BUILTIN_CATALOG, Catalog};
use pixelrefer_studio::runtime::hub::HubConfig;
use pixelrefer_studio::ui::StudioApp;
use pixelrefer_studio::ui::sam_panel::SamStatus;
use std::time::Duration;

#[test]
fn first_run_panel_gets_sam2_and_it_becomes_active() {
    let tmp = tempfile::tempdir().unwrap();
    // Only this test runs in this binary: keep the user's own models folder out of the search.
    // The exporter copies the fixture exported from the same weights (see
    // `fake_hub::write_copy_exporter`); tests/models_fetch.rs runs the real one end to end.
    let exporters = fake_hub::write_copy_exporter(&tmp.path().join("exporters"));
    unsafe {
        std::env::set_var("XDG_DATA_HOME", tmp.path().join("data"));
        std::env::set_var("PIXELREFER_EXPORTERS", &exporters);
        std::env::remove_var("PIXELREFER_MODELS");
    }
    let hub = FakeHub::start(&hub_fixtures());
    let models = tmp.path().join("models");
    let mut catalog = Catalog::parse(BUILTIN_CATALOG, "built-in").unwrap();
    for m in &mut catalog.models {
        m.approx_disk_bytes = 50_000_000;
    }
    let hub_config = HubConfig {
        endpoint: hub.endpoint(),
        token: None,
        cache_dir: tmp.path().join("hf/hub"),
        chunk_bytes: 1 << 20,
        parallel_requests: 2,
        stall_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(10),
    };
    let png = fixtures::fixture("sam2-tiny").join("reference/frames/00000.png");
    let (doc, still) = ui_steps::still_document(&png);
    let models_for_app = models.clone();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1100.0, 700.0))
        .wgpu()
        .build_eframe(move |cc| {
            let mut app = StudioApp::with_document(cc, doc, still);
            app.set_models_dir(Some(&models_for_app));
            let panel = app.models_panel_mut();
            panel.set_first_run_enabled(true);
            panel.set_catalog(catalog);
            panel.set_hub(hub_config);
            panel.set_machine(MachineInfo {
                cuda: false,
                memory_bytes: 16 << 30,
            });
            app
        });
    step_until(&mut harness, 20, "the first-run panel", |app| {
        app.models_panel().wants_first_run()
    });
    harness.run_steps(3);
    assert!(matches!(harness.state().sam().status(), SamStatus::NoModel));
    // The recommendation for a CPU machine.
    harness.get_by_label_contains("SAM 2.1 Hiera-Tiny — download");
    harness.get_by_label_contains("PixelRefer-Lite-2B — download");
    // ... and EdgeTAM next to it for video, with what it trades.
    harness.get_by_label_contains("Faster for video: EdgeTAM — roughly 5x faster tracking");
    harness.get_by_label_contains("less accurate (SA-V test J&F 71.7 vs 76.5); download ~56 MB");
    harness.get_by_label("Get EdgeTAM and PixelRefer-Lite-2B");

    // A server error: one sentence in the panel, nothing installed, the app still works.
    hub.set_faults(Faults {
        status: [("/api/models/".to_string(), 503)].into_iter().collect(),
        ..Faults::default()
    });
    harness.get_by_label("Get SAM 2.1 Hiera-Tiny only").click();
    step_until(&mut harness, 30, "the error", |app| {
        app.models_panel().error().is_some()
    });
    let error = harness.state().models_panel().error().unwrap().to_string();
    assert!(error.contains("HTTP 503"), "{error}");
    harness.run_steps(2);
    harness.get_by_label_contains("HTTP 503");
    assert!(!models.join("sam2.1-hiera-tiny").exists());
    let state = harness.state_mut().state_mut().unwrap();
    let id = state.add_object().unwrap();
    state.add_point_prompt(240.0, 135.0, true).unwrap();

    // The real thing.
    hub.set_faults(Faults::default());
    harness.get_by_label("Get SAM 2.1 Hiera-Tiny only").click();
    let mut saw_progress = false;
    step_until(
        &mut harness,
        900,
        "SAM 2 to be installed and active",
        |app| {
            saw_progress |= app.models_panel().busy();
            // a failed fetch or load ends the wait at once, with its sentence
            if let Some(e) = app.models_panel().error() {
                panic!("the fetch failed: {e}");
            }
            if let SamStatus::Failed(e) = app.sam().status() {
                panic!("the fetched model did not load: {e}");
            }
            matches!(app.sam().status(), SamStatus::Ready { .. })
        },
    );
    assert!(saw_progress);
    assert!(models.join("sam2.1-hiera-tiny/manifest.json").is_file());
    assert!(models.join("sam2.1-hiera-tiny/install.json").is_file());
    let SamStatus::Ready { id: model_id, .. } = harness.state().sam().status().clone() else {
        unreachable!()
    };
    step_until(&mut harness, 10, "the first-run panel to go", |app| {
        !app.models_panel().wants_first_run()
    });
    // The prompt placed before the model existed now becomes a mask when clicked again.
    let state = harness.state_mut().state_mut().unwrap();
    state.add_point_prompt(250.0, 140.0, true).unwrap();
    step_until(&mut harness, 60, "a mask from the fetched model", |app| {
        app.state()
            .and_then(|s| s.annotation(id))
            .is_some_and(|a| a.mask.is_some() && a.model.as_deref() == Some(model_id.as_str()))
    });
}
