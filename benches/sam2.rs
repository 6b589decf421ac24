//! SAM 2 benchmark (not a timed test), interleaved (benches/support/harness.rs): side A is the
//! Rust engine, side B the official PyTorch predictors (`onnx/bench_sam2.py`) on the same weights
//! and inputs, each a worker process with its model loaded once; rounds alternate the sides.
//! Per side: encoder (preprocessing included), decoder per click (mask post-processing to full
//! size included), propagation per tracked frame per object (two objects, encoder pass included)
//! over the whole clip, over the frames that fill the memory bank (1 .. `num_maskmem` - 1) and,
//! with more than `num_maskmem` (7) frames, over the frames whose memory bank is full (steady
//! state: what most frames of a long clip cost), minor page faults per
//! click and per tracked frame (fresh pages the kernel maps and zeroes: buffers a side does not
//! reuse), peak RSS; min, median, ratio of medians and the load average.
//!
//! cargo bench --bench sam2 --profile test [-- --quick] [-- --rounds N]
//!     [-- --a rust:DIR --b torch:DIR | --b rust:DIR2]
//! Model: `$PIXELREFER_SAM2_BENCH_MODEL`, default .fixtures/bench/sam2-full-random
//! (`python onnx/export_sam2.py --full-random DIR`). `--b rust:DIR2` compares two Rust models
//! (e.g. SAM 2.1-tiny against EdgeTAM) on the same harness.
//! Environment: SAM2_BENCH_THREADS (default 2), SAM2_BENCH_FRAMES (default 10, quick 3),
//! SAM2_BENCH_CLICKS (default 10, quick 5), SAM2_BENCH_ROUNDS (default 5, quick 2),
//! SAM2_BENCH_BATCH_BUDGET_MIB (the tracker's batch budget) and SAM2_BENCH_PREFETCH=1 (the
//! next frame's encoder pass alongside the current frame's objects), each per side with
//! `--a-env`/`--b-env`,
//! PIXELREFER_ORT_PROFILE=DIR (ONNX Runtime's profiler on the Rust side: one JSON per graph).

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use harness::{Args, Better, Worker, env_usize};
use pixelrefer_studio::runtime::SessionOptions;
use pixelrefer_studio::segment::{
    Direction, FrameKey, ImagePredictor, Point, Prompts, Sam2Model, TrackerOptions, VideoTracker,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A deterministic textured scene with two moving blobs (same pixels for both sides: written
/// as PNG and read by every worker).
fn scene(w: u32, h: u32, t: f32) -> image::RgbImage {
    let (c1x, c1y) = ((0.25 + 0.3 * t) * w as f32, 0.35 * h as f32);
    let (c2x, c2y) = ((0.7 - 0.2 * t) * w as f32, (0.6 + 0.1 * t) * h as f32);
    image::RgbImage::from_fn(w, h, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        if (xf - c1x).powi(2) + (yf - c1y).powi(2) < (0.12 * w as f32).powi(2) {
            return image::Rgb([210, 50, 40]);
        }
        if (xf - c2x).abs() < 0.08 * w as f32 && (yf - c2y).abs() < 0.1 * h as f32 {
            return image::Rgb([235, 210, 60]);
        }
        image::Rgb([
            (90.0 + 60.0 * (xf / w as f32 * 3.1).sin()) as u8,
            (110.0 + 40.0 * (yf / h as f32 * 2.5).cos()) as u8,
            (140.0 + 30.0 * ((xf + yf) / 40.0).sin()) as u8,
        ])
    })
}

/// The tracker's defaults, with `SAM2_BENCH_BATCH_BUDGET_MIB` as its batch budget and
/// `SAM2_BENCH_PREFETCH=1` to encode the next frame alongside (per side, `--a-env`/`--b-env`).
fn tracker_options() -> TrackerOptions {
    let mut options = TrackerOptions::default();
    if let Ok(mib) = std::env::var("SAM2_BENCH_BATCH_BUDGET_MIB") {
        options.batch_budget_bytes =
            mib.parse::<usize>().expect("SAM2_BENCH_BATCH_BUDGET_MIB") << 20;
    }
    if let Ok(v) = std::env::var("SAM2_BENCH_PREFETCH") {
        options.prefetch_next_frame = v == "1";
    }
    options
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

fn read_rgb(path: &Path) -> image::RgbImage {
    image::open(path).unwrap().to_rgb8()
}

/// The Rust side: `--worker MODEL_DIR INPUTS THREADS CLICKS`.
fn worker(args: &[String]) {
    let [dir, inputs, threads, clicks] = args else {
        panic!("worker arguments: MODEL_DIR INPUTS THREADS CLICKS");
    };
    let (threads, n_clicks): (usize, usize) = (threads.parse().unwrap(), clicks.parse().unwrap());
    let inputs = PathBuf::from(inputs);
    let image = read_rgb(&inputs.join("image.png"));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(inputs.join("frames"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let frames: Vec<image::RgbImage> = paths.iter().map(|p| read_rgb(p)).collect();
    let (vw, vh) = (frames[0].width(), frames[0].height());
    let options = SessionOptions {
        provider: harness::bench_provider(),
        intra_threads: threads,
        remote: None,
    };
    let t0 = Instant::now();
    let model = Arc::new(Sam2Model::load(Path::new(dir), &options).unwrap());
    let ready = json!({
        "ready": true,
        "load_s": t0.elapsed().as_secs_f64(),
        "variant": model.variant(),
        "provider": model.provider().to_string(),
        "warnings": model.warnings(),
        "threads": threads,
    });
    let mut pred = ImagePredictor::new(Arc::clone(&model), 1);
    let (iw, ih) = (image.width() as f32, image.height() as f32);
    let mut key = 0;
    harness::serve(ready, |req| {
        let mut encode = |pred: &mut ImagePredictor| {
            key += 1; // a new key: the predictor's cache never answers
            let t = Instant::now();
            let e = pred
                .encode(
                    FrameKey {
                        item: 0,
                        frame: key,
                    },
                    &image,
                    None,
                )
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((e, t.elapsed().as_secs_f64() * 1e3))
        };
        let decode = |pred: &mut ImagePredictor, emb, k: usize| {
            let x = iw * (0.2 + 0.6 * (k as f32 / n_clicks.max(1) as f32));
            let t = Instant::now();
            let p = pred
                .predict(emb, &click(x, ih * 0.4), None)
                .map_err(|e| e.to_string())?;
            std::hint::black_box(p);
            Ok::<_, String>(t.elapsed().as_secs_f64() * 1e3)
        };
        if req.get("warmup").is_some() {
            let (emb, _) = encode(&mut pred)?;
            decode(&mut pred, &emb, 0)?;
            return Ok(json!({ "metrics": {} }));
        }
        let mut enc = Vec::new();
        let mut emb = None;
        for _ in 0..2 {
            let (e, ms) = encode(&mut pred)?;
            enc.push(ms);
            emb = Some(e);
        }
        let emb = emb.ok_or("no embedding")?;
        let f0 = harness::minor_faults();
        let dec = (0..n_clicks)
            .map(|k| decode(&mut pred, &emb, k))
            .collect::<Result<Vec<_>, _>>()?;
        let click_faults = (harness::minor_faults() - f0) / n_clicks.max(1) as f64;
        drop(emb);
        // video: two objects clicked on frame 0, forward propagation through the clip
        let mut src = frames.clone();
        let n = src.len();
        let mut tracker = VideoTracker::new(Arc::clone(&model), n, vw, vh, tracker_options())
            .map_err(|e| e.to_string())?;
        for (id, (x, y)) in [(1, (0.25, 0.35)), (2, (0.7, 0.6))] {
            tracker
                .add_prompts(
                    &mut src,
                    0,
                    id,
                    &click(x * vw as f32, y * vh as f32),
                    true,
                    None,
                )
                .map_err(|e| e.to_string())?;
        }
        let mut stamps = Vec::new();
        let mut faults = Vec::new();
        let t = Instant::now();
        tracker
            .propagate(
                &mut src,
                None,
                Direction::Forward,
                None,
                None,
                &mut |_, _| {
                    stamps.push(t.elapsed().as_secs_f64());
                    faults.push(harness::minor_faults());
                },
            )
            .map_err(|e| e.to_string())?;
        // frame 0 is the prompted frame (memory encoding only); per-frame time over frames 1..
        let span = stamps.last().unwrap_or(&0.0) - stamps.first().unwrap_or(&0.0);
        let prop = span * 1e3 / n.saturating_sub(1).max(1) as f64 / 2.0;
        let (filling, steady) = bank_frames(&stamps, model.config().num_maskmem);
        let frame_faults = (faults.last().unwrap_or(&0.0) - faults.first().unwrap_or(&0.0))
            / n.saturating_sub(1).max(1) as f64;
        Ok(json!({ "metrics": {
            "encoder_ms": enc,
            "decoder_ms": dec,
            "propagation_ms_per_frame_per_object": [prop],
            "filling_propagation_ms_per_frame_per_object": filling,
            "steady_propagation_ms_per_frame_per_object": steady,
            "minor_page_faults_per_click": [click_faults],
            "minor_page_faults_per_tracked_frame": [frame_faults],
        }}))
    });
}

/// Per-frame times (ms per object, two objects) split by the state of the memory bank: frames
/// `1 .. num_maskmem - 1` still fill it (they attend to fewer memories than later frames), and
/// from frame `num_maskmem` on frame `t` attends to the prompted frame and frames
/// `t-1 .. t-num_maskmem+1`, so every such frame costs the same as in a long clip. `stamps[t]`
/// is the time frame `t` was reported. Returns (filling, full).
fn bank_frames(stamps: &[f64], num_maskmem: usize) -> (Vec<f64>, Vec<f64>) {
    let (full, filling): (Vec<_>, Vec<_>) = stamps
        .windows(2)
        .enumerate()
        .map(|(i, w)| (i + 1 >= num_maskmem, (w[1] - w[0]) * 1e3 / 2.0))
        .partition(|(full, _)| *full);
    let ms = |v: Vec<(bool, f64)>| v.into_iter().map(|(_, t)| t).collect();
    (ms(filling), ms(full))
}

fn side(
    spec: &str,
    env: &[(String, String)],
    inputs: &Path,
    threads: usize,
    clicks: usize,
) -> Worker {
    let (kind, dir) = spec.split_once(':').unwrap_or(("rust", spec));
    let label = harness::label(spec);
    let worker = match kind {
        "rust" => Worker::rust(
            &label,
            &[
                dir.to_string(),
                inputs.display().to_string(),
                threads.to_string(),
                clicks.to_string(),
            ],
            env,
        ),
        "torch" => Worker::python(
            &label,
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("onnx/bench_sam2.py"),
            &[
                "--model-dir".into(),
                dir.into(),
                "--inputs".into(),
                inputs.display().to_string(),
                "--threads".into(),
                threads.to_string(),
                "--clicks".into(),
                clicks.to_string(),
            ],
            env,
        ),
        other => Err(format!(
            "unknown side kind {other:?} (rust:DIR or torch:DIR)"
        )),
    };
    worker.unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1);
    })
}

fn main() {
    let args = Args::parse();
    if let Some(w) = &args.worker {
        return worker(w);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("PIXELREFER_SAM2_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".fixtures/bench/sam2-full-random"));
    let a = args.a.clone().unwrap_or(format!("rust:{}", dir.display()));
    let b = args.b.clone().unwrap_or(format!("torch:{}", dir.display()));
    for spec in [&a, &b] {
        let d = Path::new(spec.split_once(':').map_or(spec.as_str(), |s| s.1));
        if !d.join("manifest.json").is_file() {
            eprintln!(
                "no model at {}: run `~/.cache/pixelrefer-studio/venv/bin/python onnx/export_sam2.py --full-random {}` first",
                d.display(),
                d.display()
            );
            std::process::exit(2);
        }
    }
    let q = args.quick;
    let threads = env_usize("SAM2_BENCH_THREADS", 2);
    let n_frames = env_usize("SAM2_BENCH_FRAMES", if q { 3 } else { 10 }).max(2);
    let clicks = env_usize("SAM2_BENCH_CLICKS", if q { 5 } else { 10 }).max(1);
    let rounds = args
        .rounds
        .unwrap_or(env_usize("SAM2_BENCH_ROUNDS", if q { 2 } else { 5 }));
    let tmp = tempfile::tempdir().unwrap();
    scene(1280, 720, 0.3)
        .save(tmp.path().join("image.png"))
        .unwrap();
    std::fs::create_dir_all(tmp.path().join("frames")).unwrap();
    for i in 0..n_frames {
        scene(640, 360, i as f32 / (n_frames - 1) as f32)
            .save(tmp.path().join(format!("frames/{i:05}.png")))
            .unwrap();
    }
    println!(
        "SAM 2 bench: A = {a}, B = {b}; {rounds} rounds, {threads} threads, image 1280x720, {clicks} clicks, video {n_frames} frames 640x360, 2 objects; load average before {}",
        harness::load_average()
    );
    let mut workers = [
        side(&a, &args.a_env, tmp.path(), threads, clicks),
        side(&b, &args.b_env, tmp.path(), threads, clicks),
    ];
    for w in &workers {
        println!("[{}] ready: {}", w.label, w.ready);
    }
    let result = harness::interleave(&mut workers, rounds, &|r| json!({ "round": r }));
    let rounds = result.unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1);
    });
    let (la, lb) = (workers[0].label.clone(), workers[1].label.clone());
    let variant = |w: &Worker| w.ready["variant"].as_str().unwrap_or_default().to_string();
    let tracker_pair =
        variant(&workers[0]).starts_with("edgetam") && variant(&workers[1]).starts_with("sam2");
    drop(workers);
    rounds.report(&la, &lb, &|_| Better::Lower);
    if b.starts_with("torch:") {
        print_torch_targets(&rounds);
    } else if tracker_pair {
        print_tracker_targets(&rounds);
    }
}

/// Issue 10's targets for the Rust engine (A) against the official PyTorch code (B).
fn print_torch_targets(rounds: &harness::Rounds) {
    let dec = rounds.median(0, "decoder_ms");
    let enc = rounds.median(1, "encoder_ms") / rounds.median(0, "encoder_ms");
    println!("targets for A against PyTorch (issue 10):");
    println!(
        "  decoder <= 60 ms per click (median): {dec:.1} ms: {}",
        met(dec <= 60.0)
    );
    println!("  encoder >= 1.2x B: {enc:.2}x: {}", met(enc >= 1.2));
    print_propagation_targets(rounds, "propagation", 1.5);
    let (ra, rb) = (rounds.peak_rss(0), rounds.peak_rss(1));
    println!(
        "  peak RSS <= B: {ra:.0} MiB vs {rb:.0} MiB: {}",
        met(ra <= rb)
    );
}

/// Issue 10's target for a fast tracker (A, EdgeTAM) against SAM 2.1-tiny (B), both in Rust.
fn print_tracker_targets(rounds: &harness::Rounds) {
    println!("issue 10's tracker target (when A is EdgeTAM and B SAM 2.1-tiny, both Rust):");
    print_propagation_targets(rounds, "per tracked frame per object", 5.0);
}

/// The propagation speed-up of A over B against `min`: over the whole clip, over the frames that
/// fill the memory bank and, when the clip is long enough to have any, over the frames with a full
/// memory bank. The verdict reads the ratio of medians (the harness's measure) and says when the
/// ratio of minimums disagrees.
fn print_propagation_targets(rounds: &harness::Rounds, what: &str, min: f64) {
    for (key, part) in [
        ("propagation_ms_per_frame_per_object", "whole clip"),
        (
            "filling_propagation_ms_per_frame_per_object",
            "memory bank filling",
        ),
        (
            "steady_propagation_ms_per_frame_per_object",
            "memory bank full",
        ),
    ] {
        let median = rounds.median(1, key) / rounds.median(0, key);
        let minimum = rounds.min(1, key) / rounds.min(0, key);
        if median.is_finite() {
            println!(
                "  {what} >= {min}x B, {part}: {median:.2}x (minimums {minimum:.2}x): {}",
                verdict(median >= min, minimum >= min)
            );
        }
    }
}

/// `met` when the ratios of medians and of minimums both reach the target, `met by the medians
/// only` when the minimums fall short (a noisy run), else `missed`.
fn verdict(by_median: bool, by_min: bool) -> &'static str {
    match (by_median, by_min) {
        (true, true) => "met",
        (true, false) => "met by the medians only",
        (false, _) => "missed",
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "missed" }
}
