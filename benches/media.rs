//! Media benchmark: open time, random scrubbing and sequential playback cost, and peak memory
//! with a bounded frame cache, on a 10-minute video.
//!
//! `cargo bench --bench media` (set `MEDIA_BENCH_FILE=/path/video` to measure another file).
//! The generated clip (320×180, 30 fps, H.264 with B-frames, 2 s GOP) is kept in the system temp
//! directory and reused.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pixelrefer_studio::media;

const CACHE_BUDGET_BYTES: usize = 64 << 20;

fn ten_minute_clip() -> PathBuf {
    if let Some(path) = std::env::var_os("MEDIA_BENCH_FILE") {
        return PathBuf::from(path);
    }
    let dir = std::env::temp_dir().join("pixelrefer-media-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ten_minutes_320x180_30fps.mp4");
    if !path.exists() {
        eprintln!("generating {} with ffmpeg (once)…", path.display());
        let partial = dir.join("partial.mp4");
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x180:rate=30",
                "-t",
                "600",
            ])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ])
            .args([
                "-x264-params",
                "bframes=2:keyint=60:min-keyint=60:scenecut=0",
            ])
            .arg(&partial)
            .status()
            .unwrap();
        assert!(status.success(), "ffmpeg failed");
        std::fs::rename(&partial, &path).unwrap();
    }
    path
}

/// Peak resident set size of this process in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resets `VmHWM` to the current RSS (Linux `clear_refs` value 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let path = ten_minute_clip();
    let file_mib = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;

    // Open (index build + first frame), best and worst of three.
    let mut open_times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let source = media::open(&path).unwrap();
        open_times.push(t.elapsed());
        drop(source);
    }
    open_times.sort();
    let mut source = media::open(&path).unwrap();
    let info = source.item_info(0).unwrap();
    source.set_cache_budget_bytes(CACHE_BUDGET_BYTES);

    // Random scrubbing over the whole video (deterministic sequence, distinct frames).
    reset_peak_rss();
    let rss_before = peak_rss_kib();
    let count = info.frame_count;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let scrub_n = 100;
    let mut worst = Duration::ZERO;
    let t = Instant::now();
    for _ in 0..scrub_n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % count;
        let one = Instant::now();
        source.frame(0, i).unwrap();
        worst = worst.max(one.elapsed());
    }
    let scrub = t.elapsed() / scrub_n;

    // Sequential playback from the middle.
    let seq_n = 300u64;
    let start = count / 2;
    source.frame(0, start).unwrap();
    let t = Instant::now();
    for i in start + 1..=start + seq_n {
        source.frame(0, i).unwrap();
    }
    let sequential = t.elapsed() / seq_n as u32;

    // Stepping back one frame at a time (arrow key in the UI), from the middle of a GOP.
    let back_n = 60u64;
    let from = count / 3 + 37;
    source.frame(0, from).unwrap();
    let t = Instant::now();
    for i in (from - back_n..from).rev() {
        source.frame(0, i).unwrap();
    }
    let backward = t.elapsed() / back_n as u32;
    let rss_after = peak_rss_kib();

    println!("media benchmark: {}", path.display());
    println!(
        "  video: {}x{} {} frames, {:.1} fps, {:.0} s, {}, {:.1} MiB",
        info.width,
        info.height,
        info.frame_count,
        info.fps,
        info.duration_secs,
        info.codec,
        file_mib
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| open (index + first frame), best of 3 | {:.0} ms |",
        ms(open_times[0])
    );
    println!("| open, worst of 3 | {:.0} ms |", ms(open_times[2]));
    println!(
        "| random scrub, mean per frame ({scrub_n} frames) | {:.1} ms |",
        ms(scrub)
    );
    println!("| random scrub, worst frame | {:.1} ms |", ms(worst));
    println!(
        "| sequential, per frame ({seq_n} frames) | {:.2} ms |",
        ms(sequential)
    );
    println!(
        "| step back, per frame ({back_n} frames) | {:.2} ms |",
        ms(backward)
    );
    println!(
        "| cache budget / used | {} MiB / {:.1} MiB |",
        CACHE_BUDGET_BYTES >> 20,
        source.cache_bytes() as f64 / 1048576.0
    );
    println!(
        "| peak RSS before / after scrubbing | {:.0} MiB / {:.0} MiB |",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    let target = Duration::from_secs(2);
    println!(
        "open target < 2 s: {}",
        if open_times[2] < target {
            "met"
        } else {
            "MISSED"
        }
    );
}
