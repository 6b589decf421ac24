//! PixelRefer benchmark (harness = false): time to first token, tokens per second and peak RSS
//! (`VmHWM`) for the model in `$PIXELREFER_BENCH_MODEL` (default: the tiny Lite fixture), and
//! the number of LLM input tokens for the same question with PixelRefer and with Lite
//! (`$PIXELREFER_BENCH_FULL_MODEL`, default: the tiny PixelRefer fixture). When
//! `$PIXELREFER_BENCH_PYTHON` (or the project venv) is present, `onnx/bench_pixelrefer.py` times
//! the PyTorch reference on the same request and the ratios are printed.
//!
//! Full-size random Lite export (5.5 min, 15 GB RAM):
//! `python onnx/export_pixelrefer.py --full-random DIR --variant lite`, then
//! `PIXELREFER_BENCH_MODEL=DIR cargo bench --bench refer`.

use image::RgbImage;
use pixelrefer_studio::mask::Mask;
use pixelrefer_studio::refer::{
    CancelToken, FrameMask, GenerationOptions, Media, ObjectMasks, PixelRefer, Request,
};
use pixelrefer_studio::runtime::SessionOptions;
use std::path::PathBuf;
use std::time::Instant;

fn vm_hwm_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn fixture(name: &str) -> PathBuf {
    std::env::var("PIXELREFER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".fixtures/models"))
        .join(name)
}

/// The benchmark request: a 640×480 image, two objects (an ellipse and a box), one question.
fn request(max_new_tokens: usize) -> Request {
    let (w, h) = (640u32, 480u32);
    let img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x ^ y) & 0xff) as u8,
        ])
    });
    let mut a = vec![0u8; (w * h) as usize];
    let mut b = vec![0u8; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = ((x as f64 - 200.0) / 90.0, (y as f64 - 240.0) / 120.0);
            if dx * dx + dy * dy <= 1.0 {
                a[(y * w + x) as usize] = 1;
            }
            if (400..560).contains(&x) && (100..300).contains(&y) {
                b[(y * w + x) as usize] = 1;
            }
        }
    }
    let obj = |tag, data| ObjectMasks {
        tag_id: tag,
        masks: vec![FrameMask {
            frame: 0,
            mask: Mask::from_raw(w, h, data).expect("mask size"),
        }],
    };
    Request {
        media: Media::Image(img),
        objects: vec![obj(0, a), obj(1, b)],
        history: vec![],
        question: "What is the relationship between <object0> and <object1>?".into(),
        options: GenerationOptions {
            max_new_tokens: Some(max_new_tokens),
            repetition_penalty: Some(1.0),
            ..GenerationOptions::default()
        },
    }
}

fn main() {
    let model_dir = std::env::var("PIXELREFER_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| fixture("pixelrefer-lite-tiny"));
    let full_dir = std::env::var("PIXELREFER_BENCH_FULL_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| fixture("pixelrefer-tiny"));
    let max_new: usize = std::env::var("PIXELREFER_BENCH_TOKENS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let runs: usize = std::env::var("PIXELREFER_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let req = request(max_new);
    let t = Instant::now();
    let mut model = match PixelRefer::load(&model_dir, &SessionOptions::default()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!(
                "bench refer: cannot load {}: {e} (run ./test.sh for the tiny fixtures)",
                model_dir.display()
            );
            std::process::exit(1);
        }
    };
    let load_secs = t.elapsed().as_secs_f64();
    let cancel = CancelToken::new();
    let mut ttft = Vec::new();
    let mut tps = Vec::new();
    let mut answer = None;
    for _ in 0..runs {
        model.clear_cache();
        let a = model.ask(&req, &mut |_| {}, &cancel).expect("ask");
        ttft.push(a.timings.time_to_first_token_secs);
        tps.push(a.timings.tokens_per_sec);
        answer = Some(a);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let a = answer.expect("at least one run");
    let (ttft_s, tps_v) = (median(&mut ttft), median(&mut tps));
    let hwm = vm_hwm_kib().unwrap_or(0);
    println!("model: {} ({:?})", model_dir.display(), model.variant());
    println!("load: {load_secs:.2} s");
    println!(
        "time to first token (median of {runs}, cold cache): {ttft_s:.3} s; tokens/s: {tps_v:.1}; generated {} tokens; prompt {} tokens",
        a.generated_tokens, a.prompt_tokens
    );
    println!("peak RSS (VmHWM): {:.1} MiB", hwm as f64 / 1024.0);
    // LLM input tokens, same request, both variants.
    drop(model);
    let mut counts = Vec::new();
    for dir in [&full_dir, &fixture("pixelrefer-lite-tiny")] {
        if let Ok(mut m) = PixelRefer::load(dir, &SessionOptions::default()) {
            let mut r = request(1);
            r.options.max_new_tokens = Some(1);
            if let Ok(ans) = m.ask(&r, &mut |_| {}, &cancel) {
                println!(
                    "LLM input tokens with {:?} ({}): {}",
                    m.variant(),
                    dir.display(),
                    ans.prompt_tokens
                );
                counts.push(ans.prompt_tokens);
            }
        }
    }
    if let [full, lite] = counts[..] {
        println!(
            "PixelRefer / Lite input tokens: {:.2}x",
            full as f64 / lite as f64
        );
    }
    // PyTorch reference timing on the same request (onnx/bench_pixelrefer.py).
    let py = std::env::var("PIXELREFER_BENCH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            dirs::home_dir()
                .unwrap_or_default()
                .join(".cache/pixelrefer-studio/venv/bin/python")
        });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("onnx/bench_pixelrefer.py");
    if py.is_file() && model_dir.join("checkpoint").is_dir() {
        let out = std::process::Command::new(&py)
            .arg(&script)
            .arg(&model_dir)
            .args([
                "--max-new-tokens",
                &max_new.to_string(),
                "--runs",
                &runs.to_string(),
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                print!("{text}");
                let get = |k: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(k))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                };
                if let (Some(pt), Some(pp)) =
                    (get("torch_ttft_secs:"), get("torch_tokens_per_sec:"))
                {
                    println!("ratio time to first token torch/rust: {:.2}x", pt / ttft_s);
                    println!("ratio tokens/s rust/torch: {:.2}x", tps_v / pp);
                }
            }
            Ok(o) => eprintln!(
                "bench_pixelrefer.py failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("cannot run {}: {e}", py.display()),
        }
    } else {
        println!(
            "(PyTorch side skipped: no python at {} or no checkpoint/ in the model dir)",
            py.display()
        );
    }
}
