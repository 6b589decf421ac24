//! Peak memory of `pixelrefer-studio track` does not grow with the number of objects: the real
//! binary tracks 1 and then 10 objects through a short clip with the tiny SAM 2 fixture
//! (`$PIXELREFER_FIXTURES/sam2-tiny`), and the child's peak RSS (`ru_maxrss` from `wait4`) of
//! the 10-object run must stay within the 1-object run plus the tracker's batch budget plus a
//! small per-object margin. (It used to grow by about 0.8 GiB per object: every object's memory
//! attention ran in one batch.)
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use pixelrefer_studio::segment::TrackerOptions;
use std::path::Path;
use std::process::{Command, Stdio};

#[path = "support/fixtures.rs"]
mod fixtures;

#[path = "support/peak_rss.rs"]
mod peak_rss;

/// Frames the clip has (the fixture's first reference frames, 480x270).
const FRAMES: usize = 2;
/// What one more object may add beyond the batch budget: its stored memories (about 0.4 MiB a
/// frame), its masks and RLE results, and allocator slack.
const PER_OBJECT_MARGIN: u64 = 16 << 20;

/// Runs `track` with `objects` objects (clicks spread over the frame, all on the last frame)
/// and returns the child's peak RSS in bytes.
fn peak_rss(dir: &Path, media: &Path, objects: usize) -> u64 {
    let list: Vec<String> = (0..objects)
        .map(|i| {
            let (x, y) = (40 + (i % 5) * 90, 60 + (i / 5 % 2) * 120);
            format!(r#"{{"id":{i},"prompts":[{{"frame":1,"points":[[{x},{y},1]]}}]}}"#)
        })
        .collect();
    let prompts = dir.join(format!("prompts{objects}.json"));
    std::fs::write(&prompts, format!(r#"{{"objects":[{}]}}"#, list.join(","))).unwrap();
    let out = dir.join(format!("out{objects}.regions.json"));
    let log = dir.join(format!("track{objects}.log"));
    #[allow(clippy::zombie_processes)] // reaped by `wait4` below
    let child = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .arg("track")
        .arg(media)
        .arg("--model")
        .arg(fixtures::fixture("sam2-tiny"))
        .arg("--prompts")
        .arg(&prompts)
        .arg("--out")
        .arg(&out)
        .args(["--device", "cpu", "--threads", "2"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (status, peak_kib) = peak_rss::wait_peak_kib(&child);
    assert_eq!(
        status,
        0,
        "track with {objects} objects failed:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let regions: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        regions["items"][0]["objects"].as_array().unwrap().len(),
        objects
    );
    peak_kib * 1024
}

#[test]
fn ten_objects_peak_within_one_object_plus_batch_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let media = fixtures::sam2_frames_folder(tmp.path(), FRAMES);
    let one = peak_rss(tmp.path(), &media, 1);
    let ten = peak_rss(tmp.path(), &media, 10);
    let budget = TrackerOptions::default().batch_budget_bytes as u64;
    let bound = one + budget + 10 * PER_OBJECT_MARGIN;
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    eprintln!(
        "peak RSS: 1 object {:.0} MiB, 10 objects {:.0} MiB (bound {:.0} MiB)",
        mib(one),
        mib(ten),
        mib(bound)
    );
    assert!(
        ten <= bound,
        "10 objects peaked at {:.0} MiB, over 1 object's {:.0} MiB + the {:.0} MiB batch budget + 10 x {:.0} MiB",
        mib(ten),
        mib(one),
        mib(budget),
        mib(PER_OBJECT_MARGIN)
    );
}
