//! SAM 2 benchmark (not a timed test): the Rust engine on a full-size random-weight
//! `sam2.1_hiera_t` (`python onnx/export_sam2.py --full-random DIR`), then the official PyTorch
//! predictors on the same weights in the same run (`onnx/bench_sam2.py`), printed as ratios.
//!
//! cargo bench --bench sam2            (model: $PIXELREFER_SAM2_BENCH_MODEL, default
//!                                      .fixtures/bench/sam2-full-random)
//! Environment: SAM2_BENCH_THREADS (default 2), SAM2_BENCH_FRAMES (default 8),
//! SAM2_BENCH_CLICKS (default 10), SAM2_BENCH_SKIP_TORCH=1 to skip the PyTorch side.

#![allow(clippy::unwrap_used)]

use pixelrefer_studio::runtime::{ExecutionProvider, SessionOptions};
use pixelrefer_studio::segment::{
    Direction, FrameKey, ImagePredictor, Point, Prompts, RgbImage, Sam2Model, TrackerOptions,
    VideoTracker,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// VmHWM (peak resident set) of this process in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A deterministic textured scene with two moving blobs (same pixels for both sides: written
/// as PNG and read by bench_sam2.py).
fn scene(w: u32, h: u32, t: f32) -> RgbImage {
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    let (c1x, c1y) = ((0.25 + 0.3 * t) * w as f32, 0.35 * h as f32);
    let (c2x, c2y) = ((0.7 - 0.2 * t) * w as f32, (0.6 + 0.1 * t) * h as f32);
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f32, y as f32);
            let mut px = [
                (90.0 + 60.0 * (xf / w as f32 * 3.1).sin()) as u8,
                (110.0 + 40.0 * (yf / h as f32 * 2.5).cos()) as u8,
                (140.0 + 30.0 * ((xf + yf) / 40.0).sin()) as u8,
            ];
            if (xf - c1x).powi(2) + (yf - c1y).powi(2) < (0.12 * w as f32).powi(2) {
                px = [210, 50, 40];
            }
            if (xf - c2x).abs() < 0.08 * w as f32 && (yf - c2y).abs() < 0.1 * h as f32 {
                px = [235, 210, 60];
            }
            data.extend_from_slice(&px);
        }
    }
    RgbImage::new(w, h, data).unwrap()
}

fn save_png(img: &RgbImage, path: &Path) {
    image::RgbImage::from_raw(img.width, img.height, img.data.clone())
        .unwrap()
        .save(path)
        .unwrap();
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

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("PIXELREFER_SAM2_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".fixtures/bench/sam2-full-random"));
    if !dir.join("manifest.json").is_file() {
        eprintln!(
            "no benchmark model at {}: run `~/.cache/pixelrefer-studio/venv/bin/python onnx/export_sam2.py --full-random {}` first",
            dir.display(),
            dir.display()
        );
        std::process::exit(2);
    }
    let threads = env_usize("SAM2_BENCH_THREADS", 2);
    let n_frames = env_usize("SAM2_BENCH_FRAMES", 8);
    let n_clicks = env_usize("SAM2_BENCH_CLICKS", 10);
    let (iw, ih) = (1280u32, 720u32);
    let (vw, vh) = (640u32, 360u32);
    let tmp = tempfile::tempdir().unwrap();
    let image = scene(iw, ih, 0.3);
    save_png(&image, &tmp.path().join("image.png"));
    let frames: Vec<RgbImage> = (0..n_frames)
        .map(|i| scene(vw, vh, i as f32 / (n_frames.max(2) - 1) as f32))
        .collect();
    std::fs::create_dir_all(tmp.path().join("frames")).unwrap();
    for (i, f) in frames.iter().enumerate() {
        save_png(f, &tmp.path().join(format!("frames/{i:05}.png")));
    }

    let options = SessionOptions {
        provider: ExecutionProvider::Cpu,
        intra_threads: threads,
        remote: None,
    };
    let t0 = Instant::now();
    let model = Arc::new(Sam2Model::load(&dir, &options).unwrap());
    let load_s = t0.elapsed().as_secs_f64();
    println!(
        "[rust] model {} on {} with {threads} threads, loaded in {load_s:.1}s",
        model.variant(),
        model.provider()
    );

    // image encoder (preprocessing included), 1 warm-up + 3 timed
    let mut pred = ImagePredictor::new(Arc::clone(&model), 1);
    let mut enc_ms = Vec::new();
    let mut emb = None;
    for k in 0..4 {
        let t = Instant::now();
        let e = pred
            .encode(FrameKey { item: 0, frame: k }, &image, None)
            .unwrap();
        if k > 0 {
            enc_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        emb = Some(e);
    }
    let emb = emb.unwrap();
    // decoder per click (post-processing to a full-size mask included), 1 warm-up
    let mut dec_ms = Vec::new();
    for k in 0..=n_clicks {
        let x = iw as f32 * (0.2 + 0.6 * (k as f32 / n_clicks.max(1) as f32));
        let t = Instant::now();
        let p = pred
            .predict(&emb, &click(x, ih as f32 * 0.4), None)
            .unwrap();
        if k > 0 {
            dec_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        std::hint::black_box(p);
    }
    // video: two objects clicked on frame 0, forward propagation through the clip
    let mut frames_src = frames.clone();
    let mut tracker = VideoTracker::new(
        Arc::clone(&model),
        n_frames,
        vw,
        vh,
        TrackerOptions::default(),
    )
    .unwrap();
    tracker
        .add_prompts(
            &mut frames_src,
            0,
            1,
            &click(0.25 * vw as f32, 0.35 * vh as f32),
            true,
            None,
        )
        .unwrap();
    tracker
        .add_prompts(
            &mut frames_src,
            0,
            2,
            &click(0.7 * vw as f32, 0.6 * vh as f32),
            true,
            None,
        )
        .unwrap();
    let mut stamps = Vec::new();
    let t = Instant::now();
    tracker
        .propagate(
            &mut frames_src,
            None,
            Direction::Forward,
            None,
            None,
            &mut |p, _| stamps.push((p.frame, t.elapsed().as_secs_f64())),
        )
        .unwrap();
    // frame 0 is the prompted frame (memory encoding only); per-frame time over frames 1..
    let first = stamps.first().map_or(0.0, |s| s.1);
    let last = stamps.last().map_or(0.0, |s| s.1);
    let tracked = n_frames.saturating_sub(1).max(1);
    let prop_ms_per_frame_obj = (last - first) * 1e3 / tracked as f64 / 2.0;
    let rss = peak_rss_mib();
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let enc = med(&mut enc_ms);
    let dec = med(&mut dec_ms);
    println!("[rust] encoder {enc:.0} ms (median of 3, preprocessing included)");
    println!(
        "[rust] decoder {dec:.1} ms per click (median of {n_clicks}, mask post-processing included)"
    );
    println!(
        "[rust] propagation {prop_ms_per_frame_obj:.0} ms per frame per object (2 objects, {tracked} frames, {vw}x{vh}; encoder pass included)"
    );
    println!("[rust] peak RSS {rss:.0} MiB");

    if std::env::var_os("SAM2_BENCH_SKIP_TORCH").is_some() {
        return;
    }
    let py = std::env::var_os("PIXELREFER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::cache_dir()
                .unwrap_or_else(|| PathBuf::from("~/.cache"))
                .join("pixelrefer-studio/venv/bin/python")
        });
    println!(
        "[torch] running onnx/bench_sam2.py with {} ...",
        py.display()
    );
    let out = std::process::Command::new(&py)
        .arg(root.join("onnx/bench_sam2.py"))
        .arg("--model-dir")
        .arg(&dir)
        .arg("--inputs")
        .arg(tmp.path())
        .args([
            "--threads",
            &threads.to_string(),
            "--clicks",
            &n_clicks.to_string(),
        ])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "bench_sam2.py failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("cannot run {}: {e}", py.display());
            std::process::exit(1);
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(json) = text.lines().rev().find(|l| l.starts_with('{')) else {
        eprintln!("bench_sam2.py printed no result: {text}");
        std::process::exit(1);
    };
    let r: serde_json::Value = serde_json::from_str(json).unwrap();
    let get = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let (t_enc, t_dec, t_prop, t_rss) = (
        get("encoder_ms"),
        get("decoder_ms"),
        get("propagation_ms_per_frame_per_object"),
        get("peak_rss_mib"),
    );
    println!(
        "[torch] encoder {t_enc:.0} ms, decoder {t_dec:.1} ms per click, propagation {t_prop:.0} ms per frame per object, peak RSS {t_rss:.0} MiB (torch {}, {} threads)",
        r["torch"].as_str().unwrap_or("?"),
        r["threads"]
    );
    println!("[ratio] speed-up = torch time / rust time (> 1: Rust faster); memory = rust / torch");
    println!("[ratio] encoder     {:.2}x", t_enc / enc);
    println!(
        "[ratio] decoder     {:.2}x  (target: decoder < 60 ms per click: {})",
        t_dec / dec,
        if dec < 60.0 { "met" } else { "missed" }
    );
    println!(
        "[ratio] propagation {:.2}x  (target >= 1.5x: {})",
        t_prop / prop_ms_per_frame_obj,
        if t_prop / prop_ms_per_frame_obj >= 1.5 {
            "met"
        } else {
            "missed"
        }
    );
    println!("[ratio] peak RSS    {:.2}", rss / t_rss);
}
