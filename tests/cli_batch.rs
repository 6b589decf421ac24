//! `pixelrefer-studio batch`: shards cover every input exactly once, a failed input does not stop
//! the run, the JSONL log says what happened to each input, a rerun skips what is done and a
//! killed batch resumes; describe and ask write captions and QA into the regions files.
#![allow(clippy::unwrap_used)]

#[allow(unused_imports)]
mod refer_common;

use refer_common::fixtures;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn batch(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .arg("batch")
        .args(args)
        .output()
        .unwrap()
}

/// Track inputs: `in/<name>` frame folders of two reference frames with their prompts beside.
fn track_inputs(dir: &Path, names: &[&str]) -> PathBuf {
    let root = dir.join("in");
    for name in names {
        let media = root.join(name);
        let folder = fixtures::sam2_frames_folder(&media, 2);
        std::fs::rename(&folder, media.with_extension("tmp")).unwrap();
        std::fs::remove_dir_all(&media).unwrap();
        std::fs::rename(media.with_extension("tmp"), &media).unwrap();
        std::fs::write(
            root.join(format!("{name}.prompts.json")),
            r#"{"objects":[{"id":0,"label":"left","prompts":[{"frame":0,"points":[[120,130,1]]}]}]}"#,
        )
        .unwrap();
    }
    root
}

fn log_lines(out: &Path) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".jsonl") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                lines.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    lines
}

fn track_args<'a>(inputs: &'a Path, out: &'a Path, model: &'a Path) -> Vec<&'a std::ffi::OsStr> {
    vec![
        "track".as_ref(),
        "--inputs".as_ref(),
        inputs.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--model".as_ref(),
        model.as_os_str(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--threads".as_ref(),
        "1".as_ref(),
    ]
}

#[test]
fn shards_cover_each_input_once_and_reruns_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures::fixture("sam2-tiny");
    let inputs = track_inputs(tmp.path(), &["a", "b", "sub/c"]);
    // An input whose media is missing: logged as failed, the others still run.
    std::fs::write(
        inputs.join("gone.prompts.json"),
        r#"{"objects":[{"id":0,"prompts":[{"frame":0,"points":[[1,1,1]]}]}]}"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let mut failed_runs = 0;
    for shard in ["0/2", "1/2"] {
        let mut args = track_args(&inputs, &out, &model);
        args.extend([std::ffi::OsStr::new("--shard"), std::ffi::OsStr::new(shard)]);
        let run = batch(&args);
        if !run.status.success() {
            failed_runs += 1;
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert!(
                stderr.lines().last().unwrap().contains("1 input(s) failed"),
                "{stderr}"
            );
        }
    }
    assert_eq!(failed_runs, 1, "the broken input belongs to one shard");
    let mut outputs: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".regions.json"))
        .collect();
    outputs.sort();
    assert_eq!(
        outputs,
        ["a.regions.json", "b.regions.json", "sub__c.regions.json"]
    );
    for name in &outputs {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(name)).unwrap()).unwrap();
        assert_eq!(
            v["items"][0]["objects"][0]["frames"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
    // Every input is in exactly one shard's log.
    let lines = log_lines(&out);
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in &lines {
        seen.entry(l["input"].as_str().unwrap().to_string())
            .or_default()
            .push(l["shard"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 4, "{lines:?}");
    assert!(seen.values().all(|s| s.len() == 1), "{seen:?}");
    let gone = lines
        .iter()
        .find(|l| l["input"].as_str().unwrap().ends_with("gone.prompts.json"))
        .unwrap();
    assert_eq!(gone["status"], "failed");
    assert!(gone["error"].as_str().unwrap().contains("gone"), "{gone}");
    assert!(lines.iter().all(|l| l["seconds"].as_f64().unwrap() >= 0.0));

    // A rerun of everything skips the done inputs and retries only the failed one.
    let before = std::fs::metadata(out.join("a.regions.json"))
        .unwrap()
        .modified()
        .unwrap();
    let run = batch(&track_args(&inputs, &out, &model));
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("3 already done, 1 to run"), "{stderr}");
    assert_eq!(
        std::fs::metadata(out.join("a.regions.json"))
            .unwrap()
            .modified()
            .unwrap(),
        before
    );
}

#[test]
fn a_killed_batch_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures::fixture("sam2-tiny");
    let inputs = track_inputs(tmp.path(), &["p", "q", "r", "s"]);
    let out = tmp.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
        .arg("batch")
        .args(track_args(&inputs, &out, &model))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !out.join("p.regions.json").is_file() {
        assert!(started.elapsed() < Duration::from_secs(300), "no result");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".regions.json")
        })
        .count();
    assert!(done_before < 4, "killed before the end");
    let run = batch(&track_args(&inputs, &out, &model));
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!("{done_before} already done")),
        "{stderr}"
    );
    for name in ["p", "q", "r", "s"] {
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.join(format!("{name}.regions.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(v["format"], "pixelrefer-studio/regions");
    }
}

/// A prompts file's mask is an input like the media: a batch never writes or deletes it, even
/// when it sits where a result (or the partial result a batch clears after a success) would go.
#[test]
fn a_mask_input_is_never_a_result_file() {
    use pixelrefer_studio::mask::Mask;
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures::fixture("sam2-tiny");
    let inputs = track_inputs(tmp.path(), &["m"]);
    let frame = image::open(inputs.join("m/00000.png")).unwrap();
    let mut mask = Mask::new(frame.width(), frame.height());
    for y in 40..120 {
        for x in 60..180 {
            mask.set(x, y, true);
        }
    }
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // where `batch` keeps (and, after a success, deletes) the partial result of `m`
    let held = out.join("m.partial.regions.json");
    mask.to_png(&held).unwrap();
    let bytes = std::fs::read(&held).unwrap();
    std::fs::write(
        inputs.join("m.prompts.json"),
        r#"{"objects":[{"id":1,"prompts":[{"frame":0,"mask":"../out/m.partial.regions.json"}]}]}"#,
    )
    .unwrap();
    let run = batch(&track_args(&inputs, &out, &model));
    assert!(!run.status.success());
    assert_eq!(
        std::fs::read(&held).unwrap(),
        bytes,
        "the mask input is untouched"
    );
    assert!(!out.join("m.regions.json").exists());
    let lines = log_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["status"], "failed");
    let error = lines[0]["error"].as_str().unwrap();
    assert!(error.contains("m.partial.regions.json"), "{error}");
}

#[test]
fn describe_and_ask_fill_captions_and_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let model = fixtures::fixture("pixelrefer-tiny");
    let inputs = tmp.path().join("projects");
    std::fs::create_dir_all(&inputs).unwrap();
    refer_common::image_project(&model, &inputs.join("one.prj.json"));
    refer_common::image_project(&model, &inputs.join("two.prj.json"));
    let list = tmp.path().join("list.txt");
    std::fs::write(
        &list,
        "# the projects\nprojects/one.prj.json\n\nprojects/two.prj.json\n",
    )
    .unwrap();
    for (task, question) in [
        ("describe", None),
        ("ask", Some("What is <object0> doing?")),
    ] {
        let out = tmp.path().join(task);
        let mut args: Vec<&std::ffi::OsStr> = vec![
            task.as_ref(),
            "--inputs".as_ref(),
            list.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--model".as_ref(),
            model.as_os_str(),
            "--max-new-tokens".as_ref(),
            "8".as_ref(),
            "--device".as_ref(),
            "cpu".as_ref(),
        ];
        if let Some(q) = question {
            args.extend([std::ffi::OsStr::new("--question"), std::ffi::OsStr::new(q)]);
        }
        let run = batch(&args);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        for name in ["projects__one", "projects__two"] {
            let v: serde_json::Value = serde_json::from_slice(
                &std::fs::read(out.join(format!("{name}.regions.json"))).unwrap(),
            )
            .unwrap();
            let object = &v["items"][0]["objects"][0];
            if question.is_none() {
                assert!(!object["caption"].as_str().unwrap().is_empty(), "{object}");
            } else {
                let qa = object["qa"].as_array().unwrap();
                assert_eq!(qa.len(), 1, "{object}");
                assert!(
                    qa[0].to_string().contains("What is <object0> doing?"),
                    "{object}"
                );
            }
        }
        let lines = log_lines(&out);
        assert_eq!(lines.len(), 2);
        assert!(
            lines
                .iter()
                .all(|l| l["status"] == "done" && l["placement"] == "CPU")
        );
    }
    // ask without a question: refused before anything loads.
    let run = batch(&[
        "ask".as_ref(),
        "--inputs".as_ref(),
        list.as_os_str(),
        "--out".as_ref(),
        tmp.path().join("x").as_os_str(),
        "--model".as_ref(),
        model.as_os_str(),
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("needs --question"));
}

#[test]
fn an_out_that_is_a_file_is_refused_before_the_model_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = track_inputs(tmp.path(), &["a"]);
    let out = tmp.path().join("results.txt");
    std::fs::write(&out, "keep").unwrap();
    // No model is needed to refuse it: the model folder does not even exist.
    let model = tmp.path().join("no-model");
    let o = batch(&track_args(&inputs, &out, &model));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("is a file; a batch writes"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep");
}
