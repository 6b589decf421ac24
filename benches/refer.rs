//! PixelRefer benchmark (harness = false), interleaved (benches/support/harness.rs): side A is the
//! Rust engine on `$PIXELREFER_BENCH_MODEL` (default: the tiny Lite fixture), side B the PyTorch
//! reference (`onnx/bench_pixelrefer.py`, needs `checkpoint/` in the model directory) on the same
//! requests, or another Rust model (`--b rust:DIR`, e.g. an int4 export against its fp32 source).
//! Each round asks one image question and one video question (8 frames) per side; per side: time
//! to first token with the vision/object encoding and the prefill apart, for the image and for the
//! video, tokens per second, peak RSS; min, median, ratio of medians and the load average. Then
//! the number of LLM input tokens for the same question with PixelRefer and with Lite
//! (`$PIXELREFER_BENCH_FULL_MODEL`, default: the tiny PixelRefer fixture).
//!
//! cargo bench --bench refer --profile test [-- --quick] [-- --rounds N] [-- --a SPEC --b SPEC]
//! Full-size random Lite export (5.5 min, 15 GB RAM):
//! `python onnx/export_pixelrefer.py --full-random DIR --variant lite`, then
//! `PIXELREFER_BENCH_MODEL=DIR cargo bench --bench refer --profile test`.
//! Environment: PIXELREFER_BENCH_TOKENS (default 32, quick 16), PIXELREFER_BENCH_ROUNDS (default
//! 3, quick 2), PIXELREFER_BENCH_THREADS (default: one per core).

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;

use harness::{Args, Better, Worker, env_usize};
use image::RgbImage;
use pixelrefer_studio::mask::Mask;
use pixelrefer_studio::refer::{
    CancelToken, FrameMask, GenerationOptions, Media, ObjectMasks, PixelRefer, Request,
};
use pixelrefer_studio::runtime::SessionOptions;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn fixture(name: &str) -> PathBuf {
    std::env::var("PIXELREFER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".fixtures/models"))
        .join(name)
}

const W: u32 = 640;
const H: u32 = 480;
/// Frames of the video request (`onnx/bench_pixelrefer.py` builds the same).
const VIDEO_FRAMES: u32 = 8;

/// Frame `k` of the benchmark media (frame 0 is the image request's image).
fn frame(k: u32) -> RgbImage {
    RgbImage::from_fn(W, H, |x, y| {
        let xs = (x + 8 * k) % W;
        image::Rgb([
            (xs * 255 / W) as u8,
            (y * 255 / H) as u8,
            ((xs ^ y) & 0xff) as u8,
        ])
    })
}

/// The two objects (an ellipse and a box) on frame 0.
fn objects() -> Vec<ObjectMasks> {
    let mut a = vec![0u8; (W * H) as usize];
    let mut b = vec![0u8; (W * H) as usize];
    for y in 0..H {
        for x in 0..W {
            let (dx, dy) = ((x as f64 - 200.0) / 90.0, (y as f64 - 240.0) / 120.0);
            if dx * dx + dy * dy <= 1.0 {
                a[(y * W + x) as usize] = 1;
            }
            if (400..560).contains(&x) && (100..300).contains(&y) {
                b[(y * W + x) as usize] = 1;
            }
        }
    }
    let obj = |tag, data| ObjectMasks {
        tag_id: tag,
        masks: vec![FrameMask {
            frame: 0,
            mask: Mask::from_raw(W, H, data).expect("mask size"),
        }],
    };
    vec![obj(0, a), obj(1, b)]
}

/// The benchmark requests: an image question and a video question about two objects.
fn request(video: bool, max_new_tokens: usize) -> Request {
    let media = if video {
        Media::Video {
            frames: (0..VIDEO_FRAMES).map(frame).collect(),
            timestamps_secs: (0..VIDEO_FRAMES).map(f64::from).collect(),
        }
    } else {
        Media::Image(frame(0))
    };
    Request {
        media,
        objects: objects(),
        history: vec![],
        question: if video {
            "What are <object0> and <object1> doing in the video?".into()
        } else {
            "What is the relationship between <object0> and <object1>?".into()
        },
        options: GenerationOptions {
            max_new_tokens: Some(max_new_tokens),
            repetition_penalty: Some(1.0),
            ..GenerationOptions::default()
        },
    }
}

/// The Rust side: `--worker MODEL_DIR MAX_NEW THREADS`.
fn worker(args: &[String]) {
    let [dir, max_new, threads] = args else {
        panic!("worker arguments: MODEL_DIR MAX_NEW THREADS");
    };
    let max_new: usize = max_new.parse().unwrap();
    let options = SessionOptions {
        provider: harness::bench_provider(),
        intra_threads: threads.parse().unwrap(),
        ..SessionOptions::default()
    };
    let t = Instant::now();
    let mut model = match PixelRefer::load(Path::new(dir), &options) {
        Ok(m) => m,
        Err(e) => {
            println!("{}", json!({ "error": format!("cannot load {dir}: {e}") }));
            std::process::exit(1);
        }
    };
    let ready = json!({
        "ready": true,
        "load_s": t.elapsed().as_secs_f64(),
        "variant": format!("{:?}", model.variant()),
        "quantization": model.quantization().map(|q| q.to_string()),
        "provider": model.provider().to_string(),
        "warnings": model.warnings(),
    });
    let cancel = CancelToken::new();
    let (image, video) = (request(false, max_new), request(true, max_new));
    harness::serve(ready, |req| {
        let mut metrics = serde_json::Map::new();
        let asks: &[(&str, &Request)] = if req.get("warmup").is_some() {
            &[("image", &image)]
        } else {
            &[("image", &image), ("video", &video)]
        };
        for (name, r) in asks {
            model.clear_cache();
            let a = model
                .ask(r, &mut |_| {}, &cancel)
                .map_err(|e| e.to_string())?;
            let t = &a.timings;
            metrics.insert(format!("{name} ttft s"), t.time_to_first_token_secs.into());
            metrics.insert(format!("{name} encode s"), t.encode_secs.into());
            metrics.insert(format!("{name} prefill s"), t.prefill_secs.into());
            metrics.insert(format!("{name} tokens/s"), t.tokens_per_sec.into());
            metrics.insert(format!("{name} prompt tokens"), a.prompt_tokens.into());
            metrics.insert(
                format!("{name} generated tokens"),
                a.generated_tokens.into(),
            );
        }
        if req.get("warmup").is_some() {
            metrics.clear();
        }
        Ok(json!({ "metrics": metrics }))
    });
}

fn side(
    spec: &str,
    env: &[(String, String)],
    max_new: usize,
    threads: usize,
) -> Result<Worker, String> {
    let (kind, dir) = spec.split_once(':').unwrap_or(("rust", spec));
    let label = harness::label(spec);
    match kind {
        "rust" => Worker::rust(
            &label,
            &[dir.into(), max_new.to_string(), threads.to_string()],
            env,
        ),
        "torch" => {
            if !Path::new(dir).join("checkpoint").is_dir() {
                return Err(format!(
                    "{dir} has no checkpoint/: the PyTorch side needs an export made with --tiny-random or --full-random"
                ));
            }
            Worker::python(
                &label,
                &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("onnx/bench_pixelrefer.py"),
                &[
                    dir.into(),
                    "--max-new-tokens".into(),
                    max_new.to_string(),
                    "--threads".into(),
                    threads.to_string(),
                    "--video-frames".into(),
                    VIDEO_FRAMES.to_string(),
                ],
                env,
            )
        }
        other => Err(format!(
            "unknown side kind {other:?} (rust:DIR or torch:DIR)"
        )),
    }
}

fn main() {
    let args = Args::parse();
    if let Some(w) = &args.worker {
        return worker(w);
    }
    let model_dir = std::env::var("PIXELREFER_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| fixture("pixelrefer-lite-tiny"));
    let full_dir = std::env::var("PIXELREFER_BENCH_FULL_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| fixture("pixelrefer-tiny"));
    let q = args.quick;
    let max_new = env_usize("PIXELREFER_BENCH_TOKENS", if q { 16 } else { 32 });
    let rounds = args
        .rounds
        .unwrap_or(env_usize("PIXELREFER_BENCH_ROUNDS", if q { 2 } else { 3 }));
    let threads = env_usize(
        "PIXELREFER_BENCH_THREADS",
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    );
    let a = args
        .a
        .clone()
        .unwrap_or(format!("rust:{}", model_dir.display()));
    let b = args
        .b
        .clone()
        .unwrap_or(format!("torch:{}", model_dir.display()));
    println!(
        "PixelRefer bench: A = {a}, B = {b}; {rounds} rounds, {threads} threads, {max_new} new tokens, image {W}x{H} and video {VIDEO_FRAMES} frames, 2 objects; load average before {}",
        harness::load_average()
    );
    let started = side(&a, &args.a_env, max_new, threads)
        .and_then(|wa| Ok([wa, side(&b, &args.b_env, max_new, threads)?]));
    match started {
        Ok(mut workers) => {
            for w in &workers {
                println!("[{}] ready: {}", w.label, w.ready);
            }
            match harness::interleave(&mut workers, rounds, &|r| json!({ "round": r })) {
                Ok(rounds) => {
                    let (la, lb) = (workers[0].label.clone(), workers[1].label.clone());
                    drop(workers);
                    rounds.report(&la, &lb, &|k| {
                        if k.ends_with("tokens/s") {
                            Better::Higher
                        } else {
                            Better::Lower
                        }
                    });
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
        Err(e) => println!("(interleaved comparison skipped: {e})"),
    }
    // LLM input tokens, same request, both variants.
    let cancel = CancelToken::new();
    let mut counts = Vec::new();
    for dir in [&full_dir, &fixture("pixelrefer-lite-tiny")] {
        if let Ok(mut m) = PixelRefer::load(dir, &SessionOptions::default())
            && let Ok(ans) = m.ask(&request(false, 1), &mut |_| {}, &cancel)
        {
            println!(
                "LLM input tokens with {:?} ({}): {}",
                m.variant(),
                dir.display(),
                ans.prompt_tokens
            );
            counts.push(ans.prompt_tokens);
        }
    }
    if let [full, lite] = counts[..] {
        println!(
            "PixelRefer / Lite input tokens: {:.2}x",
            full as f64 / lite as f64
        );
    }
}
