//! `pixelrefer-studio track` end to end on a short real video: the tiny SAM 2 fixture
//! (`$PIXELREFER_FIXTURES/sam2-tiny`, written by ./test.sh), prompts on a middle frame, forward
//! and backward propagation, and the app's regions export with COCO compressed RLE.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/fixtures.rs"]
mod fixtures;

fn fixture() -> PathBuf {
    fixtures::fixture("sam2-tiny")
}

/// A `frames`-frame H.264 clip in `dir` made from the fixture's reference frames.
fn clip(dir: &Path, frames: usize) -> PathBuf {
    let video = dir.join("clip.mp4");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-framerate", "5", "-i"])
        .arg(fixture().join("reference/frames/%05d.png"))
        .args([
            "-frames:v",
            &frames.to_string(),
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&video)
        .status()
        .unwrap();
    assert!(status.success());
    video
}

/// Runs `track` on the CPU and requires it to succeed.
fn run_track(video: &Path, prompts: &Path, out: &Path) {
    let run = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .arg("track")
        .arg(video)
        .arg("--model")
        .arg(fixture())
        .arg("--prompts")
        .arg(prompts)
        .arg("--out")
        .arg(out)
        .args(["--device", "cpu", "--threads", "2"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn track_writes_regions_for_every_frame_of_every_object() {
    let tmp = tempfile::tempdir().unwrap();
    let video = clip(tmp.path(), 4);
    let prompts = tmp.path().join("prompts.json");
    std::fs::write(
        &prompts,
        r#"{"objects":[
            {"id":0,"label":"left","prompts":[{"frame":1,"points":[[120,130,1]]}]},
            {"id":3,"label":"right","prompts":[{"frame":1,"box":[250,60,420,220]}]}
        ]}"#,
    )
    .unwrap();
    let out = tmp.path().join("clip.regions.json");
    run_track(&video, &prompts, &out);

    let regions: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let objects = regions["items"][0]["objects"].as_array().unwrap();
    let tags: Vec<&str> = objects.iter().map(|o| o["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, ["<object0>", "<object3>"]);
    for object in objects {
        let frames = object["frames"].as_array().unwrap();
        let indices: Vec<u64> = frames
            .iter()
            .map(|f| f["index"].as_u64().unwrap())
            .collect();
        assert_eq!(indices, [0, 1, 2, 3], "every frame, both directions");
        let sources: Vec<&str> = frames
            .iter()
            .map(|f| f["source"].as_str().unwrap())
            .collect();
        assert_eq!(
            sources,
            ["propagated", "clicked", "propagated", "propagated"]
        );
        for f in frames {
            assert!(f["rle"]["counts"].is_string(), "compressed COCO RLE: {f}");
            assert_eq!(f["rle"]["size"], serde_json::json!([270, 480]));
        }
    }
}

/// A frame given as a mask image (`"mask"`, relative to the prompts file) starts the object's
/// track (SAM 2's add_new_mask): that frame keeps the given mask (`imported`), the others are
/// propagated from it.
#[test]
fn track_follows_an_object_given_as_a_mask() {
    use pixelrefer_studio::mask::Mask;
    let tmp = tempfile::tempdir().unwrap();
    let video = clip(tmp.path(), 3);
    let mut mask = Mask::new(480, 270);
    for y in 80..170 {
        for x in 300..400 {
            mask.set(x, y, true);
        }
    }
    std::fs::create_dir(tmp.path().join("masks")).unwrap();
    mask.to_png(&tmp.path().join("masks/box.png")).unwrap();
    let prompts = tmp.path().join("prompts.json");
    std::fs::write(
        &prompts,
        r#"{"objects":[{"id":5,"label":"painted","prompts":[{"frame":1,"mask":"masks/box.png"}]}]}"#,
    )
    .unwrap();
    let out = tmp.path().join("clip.regions.json");
    run_track(&video, &prompts, &out);
    let regions: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let object = &regions["items"][0]["objects"][0];
    assert_eq!(object["tag"], "<object5>");
    let frames = object["frames"].as_array().unwrap();
    let sources: Vec<&str> = frames
        .iter()
        .map(|f| f["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["propagated", "imported", "propagated"]);
    let given = &frames[1];
    assert_eq!(given["area"], 100 * 90);
    assert_eq!(given["bbox"], serde_json::json!([300, 80, 100, 90]));
    assert!(given["score"].as_f64().unwrap() > 0.0, "{given}");
}

/// Ctrl-C (SIGINT) during propagation stops at the next frame: the command fails with one
/// sentence saying it was cancelled, and the masks tracked so far are written.
#[test]
fn ctrl_c_stops_tracking_and_keeps_the_masks_so_far() {
    use std::io::Read;
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    // A long clip (the reference frames looped), so the signal lands mid-propagation.
    let video = tmp.path().join("long.mp4");
    let status = Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-y",
            "-stream_loop",
            "-1",
            "-framerate",
            "5",
            "-i",
        ])
        .arg(fixture().join("reference/frames/%05d.png"))
        .args([
            "-frames:v",
            "2000",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ])
        .args(["-pix_fmt", "yuv420p"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(status.success());
    let prompts = tmp.path().join("prompts.json");
    std::fs::write(
        &prompts,
        r#"{"objects":[{"id":1,"prompts":[{"frame":0,"points":[[120,130,1]]}]}]}"#,
    )
    .unwrap();
    let out = tmp.path().join("long.regions.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .arg("track")
        .arg(&video)
        .arg("--model")
        .arg(fixture())
        .arg("--prompts")
        .arg(&prompts)
        .arg("--out")
        .arg(&out)
        .args(["--device", "cpu", "--threads", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = Arc::new(Mutex::new(String::new()));
    let reader = {
        let text = Arc::clone(&text);
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                text.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    // Wait (bounded) for the third propagated frame, then send SIGINT as Ctrl-C does.
    let started = Instant::now();
    while !text.lock().unwrap().contains("(3/") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress: {}",
            text.lock().unwrap()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before the signal"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let text = text.lock().unwrap().clone();
    assert!(!status.success(), "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.contains("cancelled") && last.contains("masks tracked before it are in"),
        "{last}"
    );
    let regions: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let frames = regions["items"][0]["objects"][0]["frames"]
        .as_array()
        .unwrap()
        .len();
    assert!((3..2000).contains(&frames), "{frames} frames kept");
}
