//! Models ▸ Server… in the app (egui_kittest on wgpu) against a real OIP server on 127.0.0.1
//! (MLServer, tests/support/oip_server.rs) serving the tiny SAM 2 graphs: a server that is not
//! there gives one sentence and SAM 2 stays local; a good one is tested off the UI thread, lists
//! what it runs, and "Use this server" moves SAM 2 there (the status bar says where), a click
//! gives a mask computed on the server, and "Use local models" brings it back.
#![allow(clippy::unwrap_used)]

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/oip_server.rs"]
mod oip_server;
#[path = "support/ui_steps.rs"]
mod ui_steps;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;
use oip_server::{Engine, OipServer, ServerOpts};
use pixelrefer_studio::runtime::remote::triton_repo::{RepoOptions, write_repo};
use pixelrefer_studio::ui::StudioApp;
use pixelrefer_studio::ui::sam_panel::SamStatus;
use ui_steps::step_until;

fn provider(app: &StudioApp) -> Option<String> {
    match app.sam().status() {
        SamStatus::Ready { provider, .. } => Some(provider.clone()),
        _ => None,
    }
}

#[test]
fn server_window_moves_sam2_to_the_server_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let sam = fixtures::fixture("sam2-tiny");
    let models = tmp.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    // The models folder holds a link to the fixture only (no other model is found).
    std::os::unix::fs::symlink(&sam, models.join("sam2-tiny")).unwrap();
    unsafe {
        std::env::set_var("XDG_DATA_HOME", tmp.path().join("data"));
        std::env::remove_var("PIXELREFER_MODELS");
    }
    let repo = tmp.path().join("repo");
    write_repo(std::slice::from_ref(&sam), &repo, &RepoOptions::default()).unwrap();
    let server = OipServer::start(Engine::Mlserver, &repo, &ServerOpts::default()).unwrap();

    let png = sam.join("reference/frames/00000.png");
    let (doc, still) = ui_steps::still_document(&png);
    let models_for_app = models.clone();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1100.0, 700.0))
        .wgpu()
        .build_eframe(move |cc| {
            let mut app = StudioApp::with_document(cc, doc, still);
            app.set_models_dir(Some(&models_for_app));
            app
        });
    step_until(&mut harness, 60, "SAM 2 on the CPU", |app| {
        provider(app).as_deref() == Some("CPU")
    });

    // Nobody listens on this port: one sentence, SAM 2 stays local.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let panel = harness.state_mut().server_panel_mut();
    panel.open = true;
    panel.url = format!("grpc://127.0.0.1:{closed}");
    harness.run_steps(2);
    harness.get_by_label("Test connection").click();
    step_until(&mut harness, 30, "the connection error", |app| {
        matches!(app.server_panel().report(), Some(Err(_)))
    });
    harness.run_steps(2);
    harness.get_by_label_contains("cannot be reached");
    assert_eq!(provider(harness.state()).as_deref(), Some("CPU"));

    // The real server.
    harness.state_mut().server_panel_mut().url = server.url();
    harness.run_steps(2);
    harness.get_by_label("Test connection").click();
    step_until(&mut harness, 30, "the server report", |app| {
        matches!(app.server_panel().report(), Some(Ok(_)))
    });
    harness.run_steps(2);
    harness.get_by_label_contains("Runs on the server: sam2-tiny (sam2");
    harness.get_by_label("Use this server").click();
    let at = format!("mlserver@127.0.0.1:{}", server.port());
    step_until(&mut harness, 60, "SAM 2 on the server", |app| {
        provider(app).as_deref() == Some(at.as_str())
    });
    assert!(harness.state().sam().status_text().contains(&at));

    // A click: the mask is computed on the server.
    let state = harness.state_mut().state_mut().unwrap();
    let id = state.add_object().unwrap();
    state.add_point_prompt(240.0, 135.0, true).unwrap();
    step_until(&mut harness, 180, "a mask from the server", |app| {
        app.state()
            .and_then(|s| s.annotation(id))
            .is_some_and(|a| a.mask.is_some())
    });

    // Back to the local models.
    harness.get_by_label("Use local models").click();
    step_until(&mut harness, 60, "SAM 2 local again", |app| {
        provider(app).as_deref() == Some("CPU")
    });
}
