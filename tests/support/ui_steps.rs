//! Stepping a headless app until something holds, with a time limit.
#![allow(dead_code)]

use egui_kittest::Harness;
use pixelrefer_studio::ui::StudioApp;
use std::time::{Duration, Instant};

/// Steps the harness until `done` holds, at most `secs` seconds; the panic names `what` and
/// where SAM 2 and the models panel stand.
pub fn step_until(
    harness: &mut Harness<'static, StudioApp>,
    secs: u64,
    what: &str,
    mut done: impl FnMut(&StudioApp) -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        harness.step();
        if done(harness.state()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "timed out waiting for {what}; SAM 2: {:?}; models panel: {:?}",
        harness.state().sam().status(),
        harness.state().models_panel().error()
    );
}
