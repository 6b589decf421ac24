//! First, interleaved with PyTorch (benches/support/harness.rs): rounds alternate `pixelrefer-studio
//! track` and the official predictor (`onnx/bench_sam2.py --track`) on the same clip (default
//! 10 s at 10 fps, `--quick` 3 s; the official loader holds every frame in memory, so longer
//! clips are for the Rust side only), one object clicked on frame 0; per side the time per
//! tracked frame (Rust: prompting, decoding and propagation as `track` reports them; PyTorch:
//! prompting and propagation, frames preloaded) and the peak RSS of the process (`wait4`).
//!
//! Then memory over a long propagation (not a timed test): `pixelrefer-studio track` on a synthetic
//! 1-minute and 10-minute video with the tiny SAM 2 model, one object clicked on frame 0 and
//! tracked through every frame; prints the peak resident set of each run, sampled from
//! `/proc/<pid>/status` (VmHWM) every 100 ms. Bounded memory means the 10-minute run peaks near
//! the 1-minute run: the memory bank keeps the prompted frames and a recent window, and what
//! grows with the video is only the written masks (COCO RLE) and a per-frame object pointer.
//!
//! Then peak RSS against the object count: `track` on a 4-frame clip of the same video with 1,
//! 10 and 50 objects clicked on frame 1 (peak from `wait4`'s `ru_maxrss`). Bounded memory means
//! the 50-object run peaks near the 1-object run: graph calls batch objects only within
//! `TrackerOptions::batch_budget_bytes` (320 MiB). Measured on 2 shared cores, `--threads 2`, the
//! tiny SAM 2 fixture (`-- --quick` with `SAM2_LONG_OBJECTS=1,10,50`): 1 / 10 / 50 objects peak at
//! 188 / 343 / 425 MiB (2.1 / 6.7 / 29.9 s). Before batches had a budget, every object's memory
//! attention ran in one batch and each object added about 0.7 GiB.
//!
//! cargo bench --bench sam2_long --profile test [-- --quick] [-- --rounds N]
//! Environment: PIXELREFER_FIXTURES (default .fixtures/models, the `sam2-tiny` model),
//! SAM2_LONG_CLIP_SECONDS (default 10, quick 3), SAM2_LONG_CLIP_FPS (default 10),
//! SAM2_LONG_FPS (default 30), SAM2_LONG_MINUTES (default "1,10"; quick: skipped),
//! SAM2_LONG_OBJECTS (default "1,10,50"; quick: skipped), SAM2_LONG_THREADS (default 2).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/harness.rs"]
mod harness;
#[path = "../tests/support/peak_rss.rs"]
mod peak_rss;

fn list(var: &str, default: &str) -> Vec<u32> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|m| m.trim().parse().ok())
        .collect()
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A `secs`-long 320x180 H.264 video of a ball crossing a textured background.
fn make_video(dir: &Path, secs: u32, fps: u32) -> PathBuf {
    let out = dir.join(format!("long-{secs}s-{fps}fps.mp4"));
    let filter = format!(
        "testsrc2=size=320x180:rate={fps}:duration={secs}[bg];\
         color=c=red:size=48x48:rate={fps}:duration={secs},format=yuva420p,\
         geq=lum='p(X,Y)':a='if(lt((X-24)*(X-24)+(Y-24)*(Y-24),400),255,0)'[ball];\
         [bg][ball]overlay=x='136+100*sin(t/3)':y='66+40*cos(t/5)'"
    );
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-filter_complex",
        ])
        .arg(&filter)
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&out)
        .status()
        .expect("the ffmpeg CLI is needed");
    assert!(status.success(), "ffmpeg failed");
    out
}

fn main() {
    let models = std::env::var_os("PIXELREFER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".fixtures/models"));
    let model = models.join("sam2-tiny");
    assert!(
        model.join("manifest.json").is_file(),
        "{} is missing: run ./test.sh first",
        model.display()
    );
    let fps: u32 = std::env::var("SAM2_LONG_FPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let args = harness::Args::parse();
    let quick = args.quick;
    let minutes = list("SAM2_LONG_MINUTES", if quick { "" } else { "1,10" });
    let object_counts = list("SAM2_LONG_OBJECTS", if quick { "" } else { "1,10,50" });
    let threads = std::env::var("SAM2_LONG_THREADS").unwrap_or_else(|_| "2".into());
    let tmp = tempfile::tempdir().unwrap();
    let prompts = tmp.path().join("prompts.json");
    // The ball starts at (136 + 24, 66 + 40 + 24) on frame 0.
    std::fs::write(
        &prompts,
        r#"{"objects":[{"id":0,"label":"ball","prompts":[{"frame":0,"points":[[160,130,1]],"box":null}]}]}"#,
    )
    .unwrap();
    let clip_secs = list("SAM2_LONG_CLIP_SECONDS", if quick { "3" } else { "10" });
    let clip_fps = list("SAM2_LONG_CLIP_FPS", "10");
    if let (Some(&secs), Some(&cfps)) = (clip_secs.first(), clip_fps.first()) {
        let rounds = args.rounds.unwrap_or(if quick { 2 } else { 3 });
        interleaved(tmp.path(), &model, &prompts, secs, cfps, rounds, &threads);
    }
    println!("model {}; {fps} fps, 320x180", model.display());
    for m in minutes {
        let video = make_video(tmp.path(), m * 60, fps);
        let out = tmp.path().join(format!("r{m}.regions.json"));
        let start = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
            .args(["track"])
            .arg(&video)
            .arg("--model")
            .arg(&model)
            .arg("--prompts")
            .arg(&prompts)
            .arg("--out")
            .arg(&out)
            .args(["--device", "cpu", "--threads", &threads])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let (mut peak, mut samples) = (0u64, Vec::new());
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if let Some(hwm) = status_kib(pid, "VmHWM:") {
                peak = peak.max(hwm);
            }
            if let Some(rss) = status_kib(pid, "VmRSS:") {
                samples.push((start.elapsed().as_secs_f64(), rss));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "track failed on the {m}-minute video");
        let secs = start.elapsed().as_secs_f64();
        let frames = u64::from(m) * 60 * u64::from(fps);
        let at = |frac: f64| {
            let t = secs * frac;
            samples
                .iter()
                .find(|(s, _)| *s >= t)
                .map_or(0, |(_, r)| *r / 1024)
        };
        let out_mib = std::fs::metadata(&out).map_or(0, |m| m.len()) as f64 / (1 << 20) as f64;
        println!(
            "{m:>3} min ({frames} frames): {secs:.1} s ({:.2} ms/frame), peak RSS {} MiB; RSS at 25/50/75% of the run {}/{}/{} MiB; regions file {out_mib:.1} MiB",
            secs * 1000.0 / frames as f64,
            peak / 1024,
            at(0.25),
            at(0.5),
            at(0.75),
        );
    }
    if !object_counts.is_empty() {
        objects_peak(tmp.path(), &model, fps, &threads, &object_counts);
    }
}

/// Rounds of `track` (A) and the official predictor (B) on the same clip, one object.
fn interleaved(
    dir: &Path,
    model: &Path,
    prompts: &Path,
    secs: u32,
    fps: u32,
    rounds: usize,
    threads: &str,
) {
    let clip = make_video(dir, secs, fps);
    let frames = dir.join(format!("frames-{secs}s"));
    std::fs::create_dir_all(&frames).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&clip)
        .arg(frames.join("%05d.png"))
        .status()
        .expect("the ffmpeg CLI is needed");
    assert!(status.success(), "ffmpeg failed");
    println!(
        "interleaved: {secs} s at {fps} fps ({} frames, 320x180), one object, {rounds} rounds, {threads} threads; load average before {}",
        secs * fps,
        harness::load_average()
    );
    let log = dir.join("side.log");
    let run = |mut cmd: Command| -> (i32, u64, String) {
        let file = std::fs::File::create(&log).unwrap();
        #[allow(clippy::zombie_processes)] // reaped by `wait4`
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let (status, peak_kib) = peak_rss::wait_peak_kib(&child);
        (
            status,
            peak_kib,
            std::fs::read_to_string(&log).unwrap_or_default(),
        )
    };
    let mut table = harness::Rounds::default();
    for r in 0..rounds {
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let (status, peak_kib, text) = if side == 0 {
                let out = dir.join("clip.regions.json");
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"));
                cmd.arg("track")
                    .arg(&clip)
                    .arg("--model")
                    .arg(model)
                    .arg("--prompts")
                    .arg(prompts)
                    .arg("--out")
                    .arg(&out)
                    .args(["--device", "cpu", "--threads", threads]);
                run(cmd)
            } else {
                let mut cmd = Command::new(harness::python());
                cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx/bench_sam2.py"))
                    .arg("--model-dir")
                    .arg(model)
                    .arg("--track")
                    .arg(&frames)
                    .args(["--point", "160,130", "--threads", threads]);
                run(cmd)
            };
            assert_eq!(status, 0, "side {side} failed: {text}");
            let ms_per_frame = if side == 0 {
                // "[track] N frames, M objects in X.Ys"
                text.lines()
                    .find_map(|l| {
                        let rest = l.strip_prefix("[track] ")?;
                        let (n, rest) = rest.split_once(" frames, ")?;
                        let secs = rest.split(" in ").nth(1)?.trim_end_matches('s');
                        Some(secs.parse::<f64>().ok()? * 1e3 / n.parse::<f64>().ok()?)
                    })
                    .expect("track prints its timing")
            } else {
                let json = text.lines().rev().find(|l| l.starts_with('{')).unwrap();
                serde_json::from_str::<serde_json::Value>(json).unwrap()["ms_per_frame"]
                    .as_f64()
                    .unwrap()
            };
            table.sample_load();
            table.push(side, "ms per tracked frame", &[ms_per_frame]);
            table.peak(side, peak_kib as f64 / 1024.0);
        }
        eprintln!("[bench] round {}/{rounds} done", r + 1);
    }
    table.report("rust track", "torch", &|_| harness::Better::Lower);
}

/// Peak RSS of `track` on a 4-frame clip against the number of objects.
fn objects_peak(dir: &Path, model: &Path, fps: u32, threads: &str, counts: &[u32]) {
    let long = make_video(dir, 60, fps);
    let clip = dir.join("clip4.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(&long)
        .args(["-frames:v", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .status()
        .expect("the ffmpeg CLI is needed");
    assert!(status.success(), "ffmpeg failed");
    for &n in counts {
        // clicks on a 10 x 5 grid over the 320x180 frame, all on frame 1
        let objects: Vec<String> = (0..n)
            .map(|i| {
                let (x, y) = (16 + 32 * (i % 10), 18 + 36 * (i / 10 % 5));
                format!(r#"{{"id":{i},"prompts":[{{"frame":1,"points":[[{x},{y},1]]}}]}}"#)
            })
            .collect();
        let prompts = dir.join(format!("objects{n}.json"));
        std::fs::write(
            &prompts,
            format!(r#"{{"objects":[{}]}}"#, objects.join(",")),
        )
        .unwrap();
        let out = dir.join(format!("objects{n}.regions.json"));
        let start = Instant::now();
        #[allow(clippy::zombie_processes)] // reaped by `wait4` below
        let child = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
            .args(["track"])
            .arg(&clip)
            .arg("--model")
            .arg(model)
            .arg("--prompts")
            .arg(&prompts)
            .arg("--out")
            .arg(&out)
            .args(["--device", "cpu", "--threads", threads])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (status, peak_kib) = peak_rss::wait_peak_kib(&child);
        assert_eq!(status, 0, "track failed with {n} objects");
        println!(
            "{n:>3} objects, 4 frames: {:.1} s, peak RSS {} MiB",
            start.elapsed().as_secs_f64(),
            peak_kib / 1024
        );
    }
}
