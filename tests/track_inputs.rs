//! `pixelrefer-studio track` refuses bad prompts files and unusable output paths with one
//! sentence, before the model loads (no `[sam2]` line on stderr) and before any propagation,
//! and never writes over its inputs. Uses the tiny SAM 2 fixture (`$PIXELREFER_FIXTURES`), so a
//! prompt that slipped through would really be tracked.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

#[path = "support/fixtures.rs"]
mod fixtures;

fn track(media: &Path, prompts: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .arg("track")
        .arg(media)
        .arg("--model")
        .arg(fixtures::fixture("sam2-tiny"))
        .arg("--prompts")
        .arg(prompts)
        .arg("--out")
        .arg(out)
        .args(["--device", "cpu", "--threads", "2"])
        .output()
        .unwrap()
}

/// Asserts a refusal before the model loaded, whose one-line message holds every `needles`.
fn assert_refused_early(run: &Output, needles: &[&str], case: &str) {
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{case}: accepted\n{stderr}");
    assert!(
        !stderr.contains("[sam2]") && !stderr.contains("[track]"),
        "{case}: refused only after loading the model or tracking\n{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{case}: no error line\n{stderr}"));
    for n in needles {
        assert!(line.contains(n), "{case}: {line:?} does not say {n:?}");
    }
}

#[test]
fn bad_prompt_files_are_refused_before_the_model_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let media = fixtures::sam2_frames_folder(tmp.path(), 2);
    let out = tmp.path().join("r.regions.json");
    let ok_point = r#"{"frame":0,"points":[[120,130,1]]}"#;
    let mut small = pixelrefer_studio::mask::Mask::new(12, 10);
    small.set(3, 3, true);
    small.to_png(&tmp.path().join("small.png")).unwrap();
    pixelrefer_studio::mask::Mask::new(480, 270)
        .to_png(&tmp.path().join("empty.png"))
        .unwrap();
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "duplicate object id",
            format!(
                r#"{{"objects":[{{"id":0,"prompts":[{ok_point}]}},{{"id":0,"prompts":[{{"frame":1,"points":[[300,100,1]]}}]}}]}}"#
            ),
            vec!["object id 0", "twice"],
        ),
        (
            "point label 7",
            r#"{"objects":[{"id":0,"prompts":[{"frame":0,"points":[[120,130,7]]}]}]}"#.into(),
            vec!["label 7", "1 is a positive click, 0 a negative one"],
        ),
        (
            "point label 0.5",
            r#"{"objects":[{"id":0,"prompts":[{"frame":0,"points":[[120,130,0.5]]}]}]}"#.into(),
            vec!["label 0.5"],
        ),
        (
            "non-finite coordinate (1e39 overflows f32)",
            r#"{"objects":[{"id":0,"prompts":[{"frame":0,"points":[[1e39,130,1]]}]}]}"#.into(),
            vec!["inf", "not a finite position"],
        ),
        (
            "box with swapped corners",
            r#"{"objects":[{"id":0,"prompts":[{"frame":0,"box":[300,60,250,220]}]}]}"#.into(),
            vec!["swapped corners"],
        ),
        (
            "two prompts of one object on one frame",
            format!(r#"{{"objects":[{{"id":2,"prompts":[{ok_point},{ok_point}]}}]}}"#),
            vec!["object 2", "two prompts on frame 0"],
        ),
        (
            "frame beyond the video",
            r#"{"objects":[{"id":0,"prompts":[{"frame":5,"points":[[120,130,1]]}]}]}"#.into(),
            vec!["frame 5 is outside the video (2 frames"],
        ),
        (
            "point outside the frame",
            r#"{"objects":[{"id":0,"prompts":[{"frame":0,"points":[[481,130,1]]}]}]}"#.into(),
            vec!["outside the 480x270 image"],
        ),
        (
            "prompt with neither points nor box",
            r#"{"objects":[{"id":0,"prompts":[{"frame":0}]}]}"#.into(),
            vec!["neither points, a box nor a mask"],
        ),
        (
            "mask together with points",
            r#"{"objects":[{"id":0,"prompts":[{"frame":0,"points":[[120,130,1]],"mask":"small.png"}]}]}"#.into(),
            vec!["either a mask or points and a box, not both"],
        ),
        (
            "missing mask file",
            r#"{"objects":[{"id":0,"prompts":[{"frame":0,"mask":"nowhere.png"}]}]}"#.into(),
            vec!["object 0 frame 0", "nowhere.png", "cannot read it"],
        ),
        (
            "empty mask",
            r#"{"objects":[{"id":0,"prompts":[{"frame":0,"mask":"empty.png"}]}]}"#.into(),
            vec!["empty.png", "no pixel is in the mask"],
        ),
        (
            "mask of another size than the video",
            r#"{"objects":[{"id":0,"prompts":[{"frame":0,"mask":"small.png"}]}]}"#.into(),
            vec!["small.png is 12x10 but the video is 480x270"],
        ),
        (
            "empty objects list",
            r#"{"objects":[]}"#.into(),
            vec!["objects list is empty"],
        ),
    ];
    for (case, json, needles) in cases {
        let prompts = tmp.path().join("prompts.json");
        std::fs::write(&prompts, json).unwrap();
        let run = track(&media, &prompts, &out);
        assert_refused_early(&run, &needles, case);
        assert!(!out.exists(), "{case}: wrote an output");
    }
}

#[test]
fn unusable_output_paths_are_refused_before_the_model_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let media = fixtures::sam2_frames_folder(tmp.path(), 2);
    let prompts = tmp.path().join("prompts.json");
    let text = r#"{"objects":[{"id":0,"prompts":[{"frame":0,"points":[[120,130,1]]}]}]}"#;
    std::fs::write(&prompts, text).unwrap();

    // a folder that does not exist: the old code failed only after the whole propagation
    let missing = tmp.path().join("no-such-folder").join("r.regions.json");
    let run = track(&media, &prompts, &missing);
    assert_refused_early(
        &run,
        &["no-such-folder", "does not exist"],
        "missing folder",
    );

    // an existing folder as the output file
    let run = track(&media, &prompts, tmp.path());
    assert_refused_early(&run, &["is a folder"], "folder as output");

    // the prompts file itself, also through a relative path with `..`
    let run = track(&media, &prompts, &prompts);
    assert_refused_early(&run, &["one of the inputs"], "prompts as output");
    let dotted = tmp.path().join("frames/../prompts.json");
    let run = track(&media, &prompts, &dotted);
    assert_refused_early(&run, &["one of the inputs"], "prompts through ..");
    assert_eq!(std::fs::read_to_string(&prompts).unwrap(), text);
}

#[test]
fn out_naming_the_video_is_refused_and_the_video_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = fixtures::sam2_frames_folder(tmp.path(), 2);
    let video = tmp.path().join("clip.mp4");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-framerate", "5", "-i"])
        .arg(frames.join("%05d.png"))
        .args(["-frames:v", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(status.success());
    let before = std::fs::read(&video).unwrap();
    let prompts = tmp.path().join("prompts.json");
    std::fs::write(
        &prompts,
        r#"{"objects":[{"id":0,"prompts":[{"frame":0,"points":[[120,130,1]]}]}]}"#,
    )
    .unwrap();
    let run = track(&video, &prompts, &video);
    assert_refused_early(&run, &["one of the inputs"], "video as output");
    // and through a symbolic link to it
    #[cfg(unix)]
    {
        let link = tmp.path().join("link.mp4");
        std::os::unix::fs::symlink(&video, &link).unwrap();
        let run = track(&video, &prompts, &link);
        assert_refused_early(&run, &["one of the inputs"], "link to the video as output");
    }
    assert_eq!(std::fs::read(&video).unwrap(), before, "the video changed");
}

#[cfg(unix)]
/// A mask file of the prompts is an input too: `--out` naming it is refused and it is kept.
#[test]
fn out_naming_a_mask_file_is_refused_and_the_mask_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let media = fixtures::sam2_frames_folder(tmp.path(), 2);
    let mut mask = pixelrefer_studio::mask::Mask::new(480, 270);
    mask.set(100, 100, true);
    let mask_path = tmp.path().join("m.png");
    mask.to_png(&mask_path).unwrap();
    let before = std::fs::read(&mask_path).unwrap();
    let prompts = tmp.path().join("prompts.json");
    std::fs::write(
        &prompts,
        r#"{"objects":[{"id":0,"prompts":[{"frame":0,"mask":"m.png"}]}]}"#,
    )
    .unwrap();
    let run = track(&media, &prompts, &mask_path);
    assert_refused_early(&run, &["one of the inputs"], "mask file as output");
    assert_eq!(std::fs::read(&mask_path).unwrap(), before);
}

#[test]
fn a_fifo_as_prompts_file_is_refused_instead_of_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let media = fixtures::sam2_frames_folder(tmp.path(), 2);
    let fifo = tmp.path().join("prompts.json");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .arg("track")
        .arg(&media)
        .arg("--model")
        .arg(fixtures::fixture("sam2-tiny"))
        .arg("--prompts")
        .arg(&fifo)
        .arg("--out")
        .arg(tmp.path().join("r.regions.json"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // nobody ever writes to the FIFO: reading it would block forever
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("track is still waiting on a FIFO after 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let run = Output {
        status,
        stdout: Vec::new(),
        stderr: {
            use std::io::Read as _;
            let mut e = Vec::new();
            child.stderr.take().unwrap().read_to_end(&mut e).unwrap();
            e
        },
    };
    assert_refused_early(&run, &["not a regular file"], "FIFO as prompts");
}
