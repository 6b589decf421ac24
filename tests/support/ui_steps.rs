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

/// A one-frame media source showing one image (the app's frames come from it, no decoding).
pub struct Still {
    /// The frame.
    pub frame: std::sync::Arc<pixelrefer_studio::media::Frame>,
}

impl pixelrefer_studio::jobs::FrameSource for Still {
    fn frame(
        &mut self,
        _item: usize,
        _index: u64,
    ) -> Result<std::sync::Arc<pixelrefer_studio::media::Frame>, pixelrefer_studio::media::MediaError>
    {
        Ok(std::sync::Arc::clone(&self.frame))
    }

    fn frame_count(&self, _item: usize) -> u64 {
        1
    }
}

/// A document of one image item and its [`Still`] source, from a PNG.
pub fn still_document(png: &std::path::Path) -> (pixelrefer_studio::project::Document, Still) {
    use pixelrefer_studio::project::{Document, Item, MediaKind, MediaRef};
    let img = image::open(png).expect("read the PNG").to_rgba8();
    let (w, h) = img.dimensions();
    let still = Still {
        frame: std::sync::Arc::new(pixelrefer_studio::media::Frame {
            width: w,
            height: h,
            rgba: img.into_raw(),
        }),
    };
    let doc = Document::new(
        MediaRef {
            kind: MediaKind::Image,
            path: "still.png".into(),
            fingerprint: None,
        },
        vec![Item::new(None, w, h, 1, 0.0)],
    );
    (doc, still)
}
