//! Remote inference over the Open Inference Protocol against two independent real servers on
//! 127.0.0.1 (tests/support/oip_server.rs): a real `tritonserver` (nvidia-pytriton's, Python
//! backend wrapping ONNX Runtime, CPU-only) and MLServer. Both serve the Triton repository that
//! `serve triton-repo` writes from the tiny fixtures. Checked: the repository against Triton's own
//! config proto and the graphs; remote == local (SAM 2 tracks byte for byte, PixelRefer token ids
//! against the PyTorch reference); a missing model, a rejected shape, a deadline, cancelling an
//! in-flight call, a server restart, and a server killed mid-propagation and mid-answer.
#![allow(clippy::unwrap_used)]

#[path = "support/oip_server.rs"]
mod oip_server;
#[allow(unused_imports)]
mod refer_common;

use refer_common::fixtures;

use oip_server::{Engine, OipServer, ServerOpts};
use pixelrefer_studio::runtime::remote::{RawInput, RemoteClient, RemoteEndpoint, RemoteError};
use pixelrefer_studio::runtime::{CancelToken, ElementType, Manifest};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"))
}

fn fixtures_root() -> PathBuf {
    fixtures::fixture("sam2-tiny")
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The server-side names of every graph of a model directory.
fn names(dir: &Path) -> Vec<String> {
    let m = Manifest::load(dir).unwrap();
    m.graphs
        .keys()
        .map(|role| pixelrefer_studio::runtime::remote::model_name(&m, dir, role).unwrap())
        .collect()
}

fn name_of(dir: &Path, role: &str) -> String {
    let m = Manifest::load(dir).unwrap();
    pixelrefer_studio::runtime::remote::model_name(&m, dir, role).unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn last_error(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().last().unwrap_or_default().to_string();
    assert!(line.starts_with("error:"), "{stderr}");
    line
}

/// A repository of the four tiny fixtures, written by the CLI and validated.
fn write_repo(tmp: &Path) -> PathBuf {
    let root = fixtures_root();
    let repo = tmp.join("repo");
    let dirs = [
        "sam2-tiny",
        "pixelrefer-tiny",
        "pixelrefer-lite-tiny",
        "pixelrefer-tiny-fp16",
    ];
    let run = || {
        let mut cmd = bin();
        cmd.args(["serve", "triton-repo"]);
        for d in dirs {
            cmd.arg(root.join(d));
        }
        ok(&cmd.arg("--out").arg(&repo).output().unwrap())
    };
    let first = run();
    assert_eq!(
        first.lines().filter(|l| l.starts_with("+ ")).count(),
        23,
        "{first}"
    );
    assert!(first.contains("tritonserver --model-repository"), "{first}");
    // Written again: every model is already there, nothing changes.
    let again = run();
    assert_eq!(
        again.lines().filter(|l| l.starts_with("= ")).count(),
        23,
        "{again}"
    );
    oip_server::check_repo(&repo).unwrap();
    repo
}

/// A project over the first reference frame of the tiny PixelRefer model with its reference
/// mask as `<object0>`.
fn refer_project(model: &Path, dir: &Path) -> PathBuf {
    let path = dir.join("p.prj.json");
    refer_common::image_project(model, &path);
    path
}

fn ask_ids(model: &Path, project: &Path, remote: Option<&str>) -> (Vec<u64>, String) {
    let mut cmd = bin();
    cmd.arg("ask")
        .arg("--model")
        .arg(model)
        .arg("--project")
        .arg(project)
        .args(["--json", "--max-new-tokens", "12", "--device", "cpu"]);
    if let Some(url) = remote {
        cmd.args(["--remote", url]);
    }
    cmd.arg("What is <object0> doing?");
    let v: serde_json::Value = serde_json::from_str(&ok(&cmd.output().unwrap())).unwrap();
    let ids = v["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    (ids, v["provider"].as_str().unwrap_or_default().to_string())
}

/// A `track` command over `media` with the prompts of `cli_track.rs`.
fn track_cmd(media: &Path, prompts: &Path, out: &Path, remote: Option<&str>) -> Command {
    let mut cmd = bin();
    cmd.arg("track")
        .arg(media)
        .arg("--model")
        .arg(fixtures::fixture("sam2-tiny"))
        .arg("--prompts")
        .arg(prompts)
        .arg("--out")
        .arg(out)
        .args(["--device", "cpu", "--threads", "2"]);
    if let Some(url) = remote {
        cmd.args(["--remote", url]);
    }
    cmd
}

fn write_prompts(dir: &Path, frame: usize) -> PathBuf {
    let prompts = dir.join("prompts.json");
    std::fs::write(
        &prompts,
        format!(
            r#"{{"objects":[
            {{"id":0,"label":"left","prompts":[{{"frame":{frame},"points":[[120,130,1]]}}]}},
            {{"id":3,"label":"right","prompts":[{{"frame":{frame},"box":[250,60,420,220]}}]}}
        ]}}"#
        ),
    )
    .unwrap();
    prompts
}

fn embed_inputs(ids: &[i64]) -> Vec<RawInput<'_>> {
    vec![RawInput {
        name: "input_ids",
        element: ElementType::I64,
        shape: vec![1, ids.len() as i64],
        bytes: bytemuck::cast_slice(ids),
    }]
}

#[test]
fn triton_runs_the_graphs_as_local_onnx_runtime_does() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = write_repo(tmp.path());
    let root = fixtures_root();
    let sam = fixtures::fixture("sam2-tiny");
    let lite = fixtures::fixture("pixelrefer-lite-tiny");
    let full = fixtures::fixture("pixelrefer-tiny");
    let fp16 = root.join("pixelrefer-tiny-fp16");
    // pixelrefer-tiny stays unserved: the "missing model" case.
    let mut served = names(&sam);
    served.extend(names(&lite));
    served.extend(names(&fp16));
    let mut server = OipServer::start(
        Engine::Triton,
        &repo,
        &ServerOpts {
            delay_ms: 0,
            models: served,
        },
    )
    .unwrap();
    let url = server.url();

    // What the server has, and which local models it runs.
    let check = ok(&bin()
        .args(["serve", "check", &url, "--json", "--models"])
        .arg(&root)
        .output()
        .unwrap());
    let report: serde_json::Value = serde_json::from_str(&check).unwrap();
    assert_eq!(report["server"], "triton");
    assert_eq!(report["ready"], true);
    let runs = |dir: &Path| {
        report["local"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["dir"].as_str() == Some(dir.to_str().unwrap()))
            .map(|l| l["runs_remotely"].as_bool().unwrap())
    };
    assert_eq!(runs(&sam), Some(true), "{check}");
    assert_eq!(runs(&lite), Some(true), "{check}");
    assert_eq!(runs(&full), Some(false), "{check}");

    // PixelRefer-Lite: the bundled reference cases, token ids exact against PyTorch.
    let verify = ok(&bin()
        .args(["models", "verify"])
        .arg(&lite)
        .args(["--remote", &url])
        .output()
        .unwrap());
    assert!(verify.contains("PASS"), "{verify}");

    // fp16 PixelRefer: the same token ids remotely as locally.
    let project = refer_project(&full, tmp.path());
    let (local, local_at) = ask_ids(&fp16, &project, None);
    let (remote, remote_at) = ask_ids(&fp16, &project, Some(&url));
    assert_eq!(local, remote);
    assert_eq!(local_at, "CPU");
    assert_eq!(remote_at, format!("triton@127.0.0.1:{}", server.port()));

    // The same through `batch describe --remote`, logged as run on the server.
    let out = tmp.path().join("batch");
    let run = bin()
        .args(["batch", "describe", "--inputs"])
        .arg(&project)
        .arg("--out")
        .arg(&out)
        .arg("--model")
        .arg(&fp16)
        .args(["--max-new-tokens", "6", "--remote", &url])
        .output()
        .unwrap();
    ok(&run);
    let log = std::fs::read_to_string(out.join("batch-log.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(line["status"], "done");
    assert_eq!(line["placement"], remote_at.as_str());
    assert!(out.join("p.regions.json").is_file());

    // A model the server lacks: one sentence naming it.
    let mut cmd = bin();
    cmd.arg("ask")
        .arg("--model")
        .arg(&full)
        .arg("--project")
        .arg(&project)
        .args(["--remote", &url, "What is <object0> doing?"]);
    let line = last_error(&cmd.output().unwrap());
    assert!(line.contains("has no model `pixelrefer-"), "{line}");

    // SAM 2 video: the regions of a remote track are byte for byte the local ones.
    let clip = fixtures::sam2_frames_folder(tmp.path(), 4);
    let prompts = write_prompts(tmp.path(), 1);
    let (a, b) = (
        tmp.path().join("local.json"),
        tmp.path().join("remote.json"),
    );
    ok(&track_cmd(&clip, &prompts, &a, None).output().unwrap());
    let run = track_cmd(&clip, &prompts, &b, Some(&url)).output().unwrap();
    ok(&run);
    assert!(
        String::from_utf8_lossy(&run.stderr)
            .contains(&format!("on triton@127.0.0.1:{}", server.port())),
        "the placement is reported"
    );
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    // A shape the server rejects, and a missing model, from the client itself.
    let endpoint = RemoteEndpoint::parse(&url).unwrap();
    let client = RemoteClient::connect(&endpoint).unwrap();
    let embed = name_of(&lite, "embed_tokens");
    let ids = [1i64, 2, 3];
    let good = client
        .infer(&embed, &embed_inputs(&ids), &["inputs_embeds"], None)
        .unwrap();
    assert_eq!(good[0].shape, [1, 3, 64]);
    let flat = [RawInput {
        shape: vec![3],
        ..embed_inputs(&ids)[0].clone()
    }];
    match client.infer(&embed, &flat, &["inputs_embeds"], None) {
        Err(e @ RemoteError::Rejected { .. }) => {
            assert!(e.to_string().contains(&embed), "{e}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(matches!(
        client.infer(
            "no-such-model",
            &embed_inputs(&ids),
            &["inputs_embeds"],
            None
        ),
        Err(RemoteError::ModelMissing { .. })
    ));

    // A restart: calls fail in one clear sentence while it is down, then work again on the same
    // client (the channel reconnects by itself).
    server.kill();
    let down = client
        .infer(&embed, &embed_inputs(&ids), &["inputs_embeds"], None)
        .unwrap_err();
    assert!(matches!(down, RemoteError::Unreachable { .. }), "{down:?}");
    assert!(down.to_string().contains("cannot be reached"), "{down}");
    server.restart().unwrap();
    let again = client
        .infer(&embed, &embed_inputs(&ids), &["inputs_embeds"], None)
        .unwrap();
    assert_eq!(again, good);

    // A server killed mid-propagation: the run fails in one sentence and keeps every mask
    // tracked before the failure.
    let long = fixtures::sam2_frames_folder(&tmp.path().join("long"), 10);
    let prompts = write_prompts(tmp.path(), 0);
    let out = tmp.path().join("cut.json");
    let mut child = track_cmd(&long, &prompts, &out, Some(&url))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            let _ = tx.send(String::from_utf8_lossy(&all).into_owned());
        }
        String::from_utf8_lossy(&all).into_owned()
    });
    let started = Instant::now();
    loop {
        let seen = rx.recv_timeout(Duration::from_secs(120)).unwrap();
        if seen.contains("Forward frame 3 ") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{seen}");
    }
    server.kill();
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert!(!status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("propagation stopped") && last.contains("cannot be reached"),
        "{stderr}"
    );
    let regions: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    for object in regions["items"][0]["objects"].as_array().unwrap() {
        let frames = object["frames"].as_array().unwrap().len();
        assert!((3..10).contains(&frames), "kept {frames} frames: {object}");
    }
}

#[test]
fn mlserver_is_a_second_opinion_and_deadlines_and_cancel_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let root = fixtures_root();
    let full = fixtures::fixture("pixelrefer-tiny");
    let fp16 = root.join("pixelrefer-tiny-fp16");
    let repo = tmp.path().join("repo");
    ok(&bin()
        .args(["serve", "triton-repo"])
        .arg(&full)
        .arg(&fp16)
        .arg("--out")
        .arg(&repo)
        .output()
        .unwrap());
    let mut server = OipServer::start(Engine::Mlserver, &repo, &ServerOpts::default()).unwrap();
    let url = server.url();
    let verify = ok(&bin()
        .args(["models", "verify"])
        .arg(&full)
        .args(["--remote", &url])
        .output()
        .unwrap());
    assert!(verify.contains("PASS"), "{verify}");
    let project = refer_project(&full, tmp.path());
    let (local, _) = ask_ids(&fp16, &project, None);
    let (remote, at) = ask_ids(&fp16, &project, Some(&url));
    assert_eq!(local, remote, "fp16 tensors travel raw both ways");
    assert!(at.starts_with("mlserver@127.0.0.1:"), "{at}");
    server.kill();

    // A slow server: past the deadline, one sentence; a cancelled call returns at once.
    let mut slow = OipServer::start(
        Engine::Mlserver,
        &repo,
        &ServerOpts {
            delay_ms: 3000,
            models: names(&full),
        },
    )
    .unwrap();
    let embed = name_of(&full, "embed_tokens");
    let ids = [1i64, 2];
    let short = RemoteEndpoint::parse(&slow.url())
        .unwrap()
        .with_deadline(Duration::from_millis(800));
    let client = RemoteClient::connect(&short).unwrap();
    let t0 = Instant::now();
    let err = client
        .infer(&embed, &embed_inputs(&ids), &["inputs_embeds"], None)
        .unwrap_err();
    assert!(matches!(err, RemoteError::Deadline { .. }), "{err:?}");
    assert!(err.to_string().contains("did not answer"), "{err}");
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );

    let patient = RemoteClient::connect(&RemoteEndpoint::parse(&slow.url()).unwrap()).unwrap();
    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        trigger.cancel();
    });
    let t0 = Instant::now();
    let err = patient
        .infer(
            &embed,
            &embed_inputs(&ids),
            &["inputs_embeds"],
            Some(&cancel),
        )
        .unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, RemoteError::Cancelled), "{err:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );

    // Killed mid-answer: `ask` stops with one sentence instead of hanging.
    let child = bin()
        .arg("ask")
        .arg("--model")
        .arg(&full)
        .arg("--project")
        .arg(&project)
        .args(["--remote", &slow.url(), "What is <object0> doing?"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    slow.kill();
    let out = child.wait_with_output().unwrap();
    let line = last_error(&out);
    assert!(
        line.contains("cannot be reached") || line.contains("has no model"),
        "{line}"
    );
}
