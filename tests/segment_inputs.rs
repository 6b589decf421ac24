//! Bad input, edge cases, caching, memory bounds and cancellation of the SAM 2 engine, on the
//! tiny random-weight model (`$PIXELREFER_FIXTURES/sam2-tiny`, written by ./test.sh).

#![allow(clippy::unwrap_used)]

use image::RgbImage;
use pixelrefer_studio::runtime::{RuntimeError, SessionOptions};
use pixelrefer_studio::segment::reference::load_rgb;
use pixelrefer_studio::segment::{
    CancelToken, Direction, FrameKey, ImagePredictor, LowResLogits, Point, Prompts, Sam2Model,
    SegmentError, TrackerOptions, VideoTracker,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

#[path = "support/fixtures.rs"]
mod fixtures;

fn fixture() -> PathBuf {
    fixtures::fixture("sam2-tiny")
}

fn opts() -> SessionOptions {
    SessionOptions {
        intra_threads: 2,
        ..SessionOptions::default()
    }
}

fn model() -> Arc<Sam2Model> {
    static M: OnceLock<Arc<Sam2Model>> = OnceLock::new();
    Arc::clone(M.get_or_init(|| Arc::new(Sam2Model::load(&fixture(), &opts()).unwrap())))
}

fn frames(n: usize) -> Vec<RgbImage> {
    (0..n)
        .map(|i| load_rgb(&fixture().join(format!("reference/frames/{i:05}.png"))).unwrap())
        .collect()
}

fn click(x: f32, y: f32) -> Prompts {
    Prompts {
        points: vec![Point {
            x,
            y,
            positive: true,
        }],
        bbox: None,
    }
}

/// A copy of the fixture (without the reference data) that a test may damage.
/// Rewrites the manifest of the model directory `dir` through `f`.
fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

/// The manifest entry of `graph`'s input `name`.
fn graph_input<'a>(
    v: &'a mut serde_json::Value,
    graph: &str,
    name: &str,
) -> &'a mut serde_json::Value {
    v["graphs"][graph]["inputs"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["name"] == name)
        .unwrap()
}

fn copy_model(to: &Path) {
    for entry in std::fs::read_dir(fixture()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn a_cuda_fallback_is_reported_once_per_model_not_once_per_graph() {
    let options = SessionOptions {
        provider: pixelrefer_studio::runtime::ExecutionProvider::Cuda,
        ..opts()
    };
    let m = Sam2Model::load(&fixture(), &options).unwrap();
    // Where CUDA runs (a GPU machine) there is nothing to report.
    if m.provider()
        == pixelrefer_studio::runtime::Placement::Local(
            pixelrefer_studio::runtime::ExecutionProvider::Cpu,
        )
    {
        let cuda: Vec<_> = m.warnings().iter().filter(|w| w.contains("CUDA")).collect();
        assert_eq!(cuda.len(), 1, "{:?}", m.warnings());
    }
}

#[test]
fn loads_and_reports_provider() {
    let m = model();
    assert_eq!(
        m.provider(),
        pixelrefer_studio::runtime::Placement::Local(
            pixelrefer_studio::runtime::ExecutionProvider::Cpu
        )
    );
    assert!(m.warnings().is_empty());
    assert_eq!(m.config().image_size, 1024);
}

#[test]
fn rejects_missing_or_incomplete_model_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Sam2Model::load(tmp.path(), &opts()).unwrap_err();
    assert!(
        matches!(err, SegmentError::Runtime(RuntimeError::Manifest { .. })),
        "{err}"
    );

    copy_model(tmp.path());
    std::fs::remove_file(tmp.path().join("memory_attention.onnx")).unwrap();
    let err = Sam2Model::load(tmp.path(), &opts())
        .unwrap_err()
        .to_string();
    assert!(err.contains("memory_attention.onnx"), "{err}");
}

#[test]
fn rejects_a_model_of_another_kind() {
    let tmp = tempfile::tempdir().unwrap();
    copy_model(tmp.path());
    edit_manifest(tmp.path(), |v| v["kind"] = "pixelrefer".into());
    let err = Sam2Model::load(tmp.path(), &opts()).unwrap_err();
    assert!(
        matches!(err, SegmentError::Runtime(RuntimeError::WrongKind { .. })),
        "{err}"
    );
}

#[test]
fn rejects_a_graph_that_does_not_match_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    copy_model(tmp.path());
    edit_manifest(tmp.path(), |v| {
        // the graph takes int32
        graph_input(v, "prompt_decoder", "point_labels")["dtype"] = "float32".into();
    });
    let err = Sam2Model::load(tmp.path(), &opts()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, SegmentError::Runtime(RuntimeError::Interface { .. })),
        "{msg}"
    );
    assert!(
        msg.contains("prompt_decoder.onnx") && msg.contains("point_labels"),
        "{msg}"
    );
}

#[test]
fn image_prompts_outside_the_image_are_errors() {
    let img = load_rgb(&fixture().join("reference/image.png")).unwrap();
    let mut p = ImagePredictor::new(model(), ImagePredictor::DEFAULT_CACHE_BYTES);
    let emb = p
        .encode(FrameKey { item: 0, frame: 0 }, &img, None)
        .unwrap();
    for prompts in [
        click(-1.0, 10.0),
        click(10.0, img.height() as f32 + 0.5),
        click(f32::NAN, 3.0),
        Prompts {
            points: vec![],
            bbox: Some([10.0, 10.0, img.width() as f32 + 20.0, 50.0]),
        },
        Prompts {
            points: vec![],
            bbox: Some([50.0, 50.0, 10.0, 10.0]),
        },
        Prompts::default(),
    ] {
        let err = p.predict(&emb, &prompts, None).unwrap_err();
        assert!(matches!(err, SegmentError::Prompt(_)), "{prompts:?}: {err}");
    }
    // the edges themselves are inside
    let ok = p
        .predict(&emb, &click(img.width() as f32, 0.0), None)
        .unwrap();
    assert_eq!(
        (ok.mask.width(), ok.mask.height()),
        (img.width(), img.height())
    );
}

#[test]
fn image_embedding_is_cached_and_predictions_follow_the_reference_choice() {
    let img = load_rgb(&fixture().join("reference/image.png")).unwrap();
    let mut p = ImagePredictor::new(model(), ImagePredictor::DEFAULT_CACHE_BYTES);
    let key = FrameKey { item: 0, frame: 0 };
    let e1 = p.encode(key, &img, None).unwrap();
    let e2 = p.encode(key, &img, None).unwrap();
    assert!(Arc::ptr_eq(&e1, &e2));
    assert_eq!(p.encoder_runs(), 1);
    // one click: best of 3 candidates; two clicks: one mask
    let one = p.predict(&e1, &click(400.0, 230.0), None).unwrap();
    assert_eq!(one.candidates.len(), 3);
    let best = one
        .candidates
        .iter()
        .map(|c| c.iou)
        .fold(f32::MIN, f32::max);
    assert_eq!(one.iou, best);
    let mut two = click(400.0, 230.0);
    two.points.push(Point {
        x: 700.0,
        y: 500.0,
        positive: false,
    });
    let r = p.predict(&e1, &two, Some(&one.low_res_logits)).unwrap();
    assert_eq!(r.candidates.len(), 1);
    // a bounded cache keeps only the latest embedding
    let mut small = ImagePredictor::new(model(), 1);
    small
        .encode(FrameKey { item: 0, frame: 0 }, &img, None)
        .unwrap();
    small
        .encode(FrameKey { item: 0, frame: 1 }, &img, None)
        .unwrap();
    assert_eq!(small.cached(), 1);
    assert_eq!(small.encoder_runs(), 2);
}

#[test]
fn empty_previous_mask_and_empty_frames() {
    let img = load_rgb(&fixture().join("reference/image.png")).unwrap();
    let mut p = ImagePredictor::new(model(), ImagePredictor::DEFAULT_CACHE_BYTES);
    let emb = p
        .encode(FrameKey { item: 0, frame: 0 }, &img, None)
        .unwrap();
    let empty = LowResLogits {
        size: 256,
        data: vec![-32.0; 256 * 256],
    };
    let r = p.predict(&emb, &click(400.0, 230.0), Some(&empty)).unwrap();
    assert!(r.low_res_logits.data.iter().all(|v| v.is_finite()));
    let wrong = LowResLogits {
        size: 16,
        data: vec![0.0; 256],
    };
    assert!(matches!(
        p.predict(&emb, &click(400.0, 230.0), Some(&wrong)),
        Err(SegmentError::Prompt(_))
    ));
    for (w, h) in [(0, 0), (0, 5), (5, 0)] {
        assert!(
            matches!(
                p.encode(FrameKey { item: 1, frame: 0 }, &RgbImage::new(w, h), None),
                Err(SegmentError::Frame(_))
            ),
            "a {w}x{h} frame is refused"
        );
    }
    // A buffer longer than its pixels (image::ImageBuffer allows it) reads only the pixels.
    let (w, h) = img.dimensions();
    let mut longer = img.clone().into_raw();
    longer.extend_from_slice(&[255; 7]);
    let longer = RgbImage::from_raw(w, h, longer).unwrap();
    let emb2 = p
        .encode(FrameKey { item: 2, frame: 0 }, &longer, None)
        .unwrap();
    let c = click(400.0, 230.0);
    assert_eq!(
        p.predict(&emb, &c, None).unwrap().low_res_logits.data,
        p.predict(&emb2, &c, None).unwrap().low_res_logits.data
    );
}

#[test]
fn one_frame_video() {
    let mut f = frames(1);
    let (w, h) = f[0].dimensions();
    let mut t = VideoTracker::new(model(), 1, w, h, TrackerOptions::default()).unwrap();
    let r = t
        .add_prompts(&mut f, 0, 1, &click(130.0, 85.0), true, None)
        .unwrap();
    assert_eq!(r.len(), 1);
    let mut seen = Vec::new();
    t.propagate(
        &mut f,
        None,
        Direction::Forward,
        None,
        None,
        &mut |p, objs| seen.push((p.frame, objs.len())),
    )
    .unwrap();
    assert_eq!(seen, vec![(0, 1)]);
    let mut back = 0;
    t.propagate(
        &mut f,
        None,
        Direction::Backward,
        None,
        None,
        &mut |_, _| back += 1,
    )
    .unwrap();
    assert_eq!(back, 0, "nothing before frame 0");
    // a correction on the only (already tracked) frame uses the memory bank: no NaN
    let r = t
        .add_prompts(&mut f, 0, 1, &click(135.0, 90.0), true, None)
        .unwrap();
    assert!(r[0].low_res_logits.data.iter().all(|v| v.is_finite()));
    assert!(matches!(
        t.add_prompts(&mut f, 1, 1, &click(1.0, 1.0), true, None),
        Err(SegmentError::FrameIndex { index: 1, count: 1 })
    ));
    assert!(VideoTracker::new(model(), 0, w, h, TrackerOptions::default()).is_err());
}

#[test]
fn video_prompt_checks() {
    let mut f = frames(2);
    let (w, h) = f[0].dimensions();
    let mut t = VideoTracker::new(model(), 2, w, h, TrackerOptions::default()).unwrap();
    let mut none = 0;
    assert!(matches!(
        t.propagate(&mut f, None, Direction::Forward, None, None, &mut |_, _| {
            none += 1
        }),
        Err(SegmentError::NoPrompts)
    ));
    assert!(matches!(
        t.add_prompts(&mut f, 0, 1, &click(w as f32 + 1.0, 5.0), true, None),
        Err(SegmentError::Prompt(_))
    ));
    // a frame of another size
    f[1] = RgbImage::new(4, 4);
    assert!(matches!(
        t.add_prompts(&mut f, 1, 1, &click(2.0, 2.0), true, None),
        Err(SegmentError::Frame(_))
    ));
}

#[test]
fn not_visible_objects_get_an_empty_mask_and_a_flag() {
    let mut f = frames(10);
    let (w, h) = f[0].dimensions();
    let mut t = VideoTracker::new(model(), 10, w, h, TrackerOptions::default()).unwrap();
    t.add_prompts(&mut f, 3, 1, &click(180.0, 95.0), true, None)
        .unwrap();
    let mut all = Vec::new();
    t.propagate(
        &mut f,
        None,
        Direction::Forward,
        None,
        None,
        &mut |_, objs| all.extend(objs),
    )
    .unwrap();
    assert_eq!(all.len(), 7);
    for o in &all {
        assert_eq!(o.visible, o.score > 0.0);
        if !o.visible {
            assert!(o.mask.is_empty());
        }
    }
}

#[test]
fn memory_stays_within_budget_on_long_propagation() {
    // 24 frames: the 10 reference frames, cycled
    let base = frames(10);
    let n = 24;
    let mut f: Vec<RgbImage> = (0..n).map(|i| base[i % 10].clone()).collect();
    let (w, h) = f[0].dimensions();
    let run = |budget: usize, f: &mut Vec<RgbImage>| {
        let options = TrackerOptions {
            memory_budget_bytes: budget,
            ..TrackerOptions::default()
        };
        let mut t = VideoTracker::new(model(), n, w, h, options).unwrap();
        t.add_prompts(f, 0, 1, &click(110.0, 80.0), true, None)
            .unwrap();
        let mut peak = 0;
        let mut frames_out = 0;
        t.propagate(f, None, Direction::Forward, None, None, &mut |_, _| {
            frames_out += 1
        })
        .unwrap();
        peak = peak.max(t.memory_bytes());
        (frames_out, peak, t.encoder_runs())
    };
    let (n_full, full, enc) = run(usize::MAX, &mut f);
    let (n_small, small, _) = run(1, &mut f);
    assert_eq!((n_full, n_small), (n, n));
    // one encoder pass per frame (the prompted frame's features are reused)
    assert_eq!(enc, n as u64);
    // with a tiny budget only the prompted frame and the recent window (num_maskmem + 1 frames
    // on each side) keep their memories; every frame keeps its object pointer (under 1 KiB)
    let per_frame = full / n;
    let window = model().config().num_maskmem + 1;
    assert!(
        small <= per_frame * (window + 2) + n * 1024,
        "{small} bytes kept, {per_frame} per frame"
    );
    assert!(small < full / 2, "{small} vs {full}");
}

#[test]
fn cancel_returns_quickly() {
    let mut f = frames(10);
    let (w, h) = f[0].dimensions();
    let mut t = VideoTracker::new(model(), 10, w, h, TrackerOptions::default()).unwrap();
    t.add_prompts(&mut f, 0, 1, &click(110.0, 80.0), true, None)
        .unwrap();
    // cancelled from the per-frame callback: stops before the next frame
    let cancel = CancelToken::new();
    let mut seen = 0;
    let c2 = cancel.clone();
    let err = t
        .propagate(
            &mut f,
            None,
            Direction::Forward,
            None,
            Some(&cancel),
            &mut |_, _| {
                seen += 1;
                if seen == 2 {
                    c2.cancel();
                }
            },
        )
        .unwrap_err();
    assert!(matches!(err, SegmentError::Cancelled), "{err}");
    assert_eq!(seen, 2);

    // cancelled from another thread while graphs run: returns soon after
    let cancel = CancelToken::new();
    let c3 = cancel.clone();
    let cancelled_at = Arc::new(parking_lot::Mutex::new(None));
    let at = Arc::clone(&cancelled_at);
    let handle = std::thread::Builder::new()
        .name("cancel-test".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            *at.lock() = Some(Instant::now());
            c3.cancel();
        })
        .unwrap();
    let mut t = VideoTracker::new(model(), 10, w, h, TrackerOptions::default()).unwrap();
    t.add_prompts(&mut f, 0, 1, &click(110.0, 80.0), true, None)
        .unwrap();
    let mut frames_done = 0;
    let res = t.propagate(
        &mut f,
        None,
        Direction::Forward,
        None,
        Some(&cancel),
        &mut |_, _| frames_done += 1,
    );
    let returned = Instant::now();
    handle.join().unwrap();
    if frames_done < 10 {
        assert!(matches!(res, Err(SegmentError::Cancelled)), "{res:?}");
        let at = cancelled_at.lock().unwrap();
        let lag = returned.duration_since(at);
        assert!(
            lag < Duration::from_secs(2),
            "returned {lag:?} after cancel"
        );
    }
}

#[test]
fn the_next_frame_encoded_alongside_gives_the_same_masks() {
    // the next frame's encoder pass on its own thread while the current frame's objects run,
    // or every pass in turn: the same features, so the same masks, bit for bit
    let mut f = frames(4);
    let (w, h) = f[0].dimensions();
    let run = |prefetch_next_frame: bool, f: &mut Vec<RgbImage>| {
        let options = TrackerOptions {
            prefetch_next_frame,
            ..TrackerOptions::default()
        };
        let mut t = VideoTracker::new(model(), 4, w, h, options).unwrap();
        t.add_prompts(f, 0, 1, &click(110.0, 80.0), true, None)
            .unwrap();
        t.add_prompts(f, 2, 2, &click(300.0, 100.0), true, None)
            .unwrap();
        let mut all = Vec::new();
        t.propagate(f, None, Direction::Forward, None, None, &mut |_, objs| {
            all.extend(objs)
        })
        .unwrap();
        (all, t.encoder_runs())
    };
    let (alongside, runs_alongside) = run(true, &mut f);
    let (in_turn, runs_in_turn) = run(false, &mut f);
    assert_eq!(runs_alongside, runs_in_turn);
    assert_eq!(alongside.len(), 8);
    for (a, b) in alongside.iter().zip(&in_turn) {
        assert_eq!((a.obj_id, a.frame), (b.obj_id, b.frame));
        assert_eq!(a.score.to_bits(), b.score.to_bits());
        assert_eq!(a.low_res_logits.data, b.low_res_logits.data);
    }
}

#[test]
fn objects_run_one_by_one_or_batched_give_the_same_masks() {
    // batch budget 0: every graph call takes one object; usize::MAX: all three in one batch,
    // memory attention with one shared frame row (this exporter's graphs) or, with the manifest
    // of an older export (pix_feat batched like the objects), one row per object
    let mut f = frames(3);
    let (w, h) = f[0].dimensions();
    let run = |model: Arc<Sam2Model>, budget: usize, f: &mut Vec<RgbImage>| {
        let options = TrackerOptions {
            batch_budget_bytes: budget,
            ..TrackerOptions::default()
        };
        let mut t = VideoTracker::new(model, 3, w, h, options).unwrap();
        for (id, (x, y)) in [(110.0, 80.0), (300.0, 100.0), (200.0, 200.0)]
            .into_iter()
            .enumerate()
        {
            t.add_prompts(f, 0, id as u32, &click(x, y), true, None)
                .unwrap();
        }
        let mut all = Vec::new();
        t.propagate(f, None, Direction::Forward, None, None, &mut |_, objs| {
            all.extend(objs)
        })
        .unwrap();
        all
    };
    let tmp = tempfile::tempdir().unwrap();
    copy_model(tmp.path());
    edit_manifest(tmp.path(), |v| {
        let pix = graph_input(v, "memory_attention", "pix_feat");
        assert_eq!(pix["shape"][0], "image_batch");
        pix["shape"][0] = "B".into();
    });
    let per_object_rows = Arc::new(Sam2Model::load(tmp.path(), &opts()).unwrap());
    assert!(model().shares_frame_row() && !per_object_rows.shares_frame_row());

    let one = run(model(), 0, &mut f);
    assert_eq!(one.len(), 9);
    for batched in [
        run(model(), usize::MAX, &mut f),
        run(per_object_rows, usize::MAX, &mut f),
    ] {
        assert_eq!(one.len(), batched.len());
        for (a, b) in one.iter().zip(&batched) {
            assert_eq!((a.obj_id, a.frame), (b.obj_id, b.frame));
            assert!(
                (a.score - b.score).abs() <= 1e-3,
                "{} vs {}",
                a.score,
                b.score
            );
            let diff = a
                .low_res_logits
                .data
                .iter()
                .zip(&b.low_res_logits.data)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(
                diff <= 1e-3,
                "object {} frame {}: logits differ by {diff}",
                a.obj_id,
                a.frame
            );
        }
    }
}
