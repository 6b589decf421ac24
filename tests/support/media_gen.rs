//! Test media made at test time with the `ffmpeg` CLI, and an independent reference decode.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `ffmpeg -y -loglevel error ARGS`; panics with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg CLI is needed to make test media");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `testsrc2` clip (every frame different) of `frames` frames at `size` and 25 fps,
/// encoded with `codec_args` into `dir/name`.
pub fn testsrc_video(
    dir: &Path,
    name: &str,
    size: &str,
    frames: u32,
    codec_args: &[&str],
) -> PathBuf {
    let path = dir.join(name);
    let src = format!("testsrc2=size={size}:rate=25");
    let n = frames.to_string();
    let mut args = vec!["-f", "lavfi", "-i", &src, "-frames:v", &n];
    args.extend_from_slice(codec_args);
    let p = path.to_str().unwrap().to_owned();
    args.push(&p);
    ffmpeg(&args);
    path
}

/// A variable-frame-rate `testsrc2` clip of `frames` frames at `size`: frame `N` is shown at
/// `times` seconds (an ffmpeg expression of `N`), encoded with `codec_args` into `dir/name`.
pub fn vfr_video(
    dir: &Path,
    name: &str,
    size: &str,
    frames: u32,
    times: &str,
    codec_args: &[&str],
) -> PathBuf {
    let path = dir.join(name);
    let src = format!("testsrc2=size={size}:rate=25");
    let n = frames.to_string();
    let setpts = format!("setpts='({times})/TB'");
    let mut args = vec!["-f", "lavfi", "-i", &src, "-frames:v", &n, "-vf", &setpts];
    args.extend_from_slice(&["-fps_mode", "vfr"]);
    args.extend_from_slice(codec_args);
    let p = path.to_str().unwrap().to_owned();
    args.push(&p);
    ffmpeg(&args);
    path
}

/// Every frame of `path` decoded by the ffmpeg CLI (autorotation on, every decoded frame kept,
/// `vf` applied when given), as RGBA buffers of `width` × `height`.
pub fn reference_frames(path: &Path, width: u32, height: u32, vf: Option<&str>) -> Vec<Vec<u8>> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-fps_mode", "passthrough"]);
    if let Some(vf) = vf {
        cmd.args(["-vf", vf]);
    }
    let out = cmd
        .args(["-f", "rawvideo", "-pix_fmt", "rgba", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = (width * height * 4) as usize;
    assert_eq!(
        out.stdout.len() % size,
        0,
        "reference decode of {} is not {width}x{height}",
        path.display()
    );
    out.stdout.chunks_exact(size).map(<[u8]>::to_vec).collect()
}

/// Mean absolute difference of two equally sized buffers, per channel value.
pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "buffers differ in size");
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len() as f64
}

/// Index of the reference frame closest to `rgba`, and its difference.
pub fn closest(reference: &[Vec<u8>], rgba: &[u8]) -> (usize, f64) {
    reference
        .iter()
        .enumerate()
        .map(|(i, r)| (i, mean_abs_diff(r, rgba)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap()
}

/// Runs a small Python snippet with the project venv's interpreter (Pillow), if there is one.
pub fn python() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let venv = Path::new(&home).join(".cache/pixelrefer-studio/venv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    None
}
