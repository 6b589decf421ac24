//! Local CPU against remote (a real tritonserver on loopback, tests/support/oip_server.rs) with
//! the same graphs: time per tracked frame per object and per answer, and the bytes sent and
//! received per tracked frame and per generated token, so the network cost is known. Rounds
//! alternate the sides (local, remote, local, …) on the same inputs; min and median per side,
//! the ratio of medians and the load average are printed.
//!
//! cargo bench --bench remote [-- --quick]
//! Models: $PIXELREFER_REMOTE_BENCH_SAM2 (default .fixtures/models/sam2-tiny),
//! $PIXELREFER_REMOTE_BENCH_REFER (default .fixtures/models/pixelrefer-tiny); a full-size
//! random model (`onnx/export_sam2.py --full-random DIR`) gives the real tensor sizes.
//! Environment: REMOTE_BENCH_ROUNDS (default 3), REMOTE_BENCH_FRAMES (default 8).

#![allow(clippy::unwrap_used)]

#[path = "support/harness.rs"]
mod harness;
#[path = "../tests/support/oip_server.rs"]
mod oip_server;
#[path = "../tests/refer_common/mod.rs"]
#[allow(unused_imports)]
mod refer_common;

use oip_server::{Engine, OipServer, ServerOpts};
use pixelrefer_studio::cli::ask::AskArgs;
use pixelrefer_studio::cli::sam_cmds;
use pixelrefer_studio::refer::{CancelToken, PixelRefer};
use pixelrefer_studio::runtime::remote::triton_repo::{InstanceKind, RepoOptions, write_repo};
use pixelrefer_studio::runtime::remote::{RemoteClient, RemoteEndpoint};
use pixelrefer_studio::runtime::{ExecutionProvider, SessionOptions};
use refer_common::fixtures;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

fn model_dir(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(default),
        PathBuf::from,
    )
}

use harness::{env_usize, load_average, min_median as stats};

fn report(what: &str, unit: &str, local: &[f64], remote: &[f64]) {
    let (lmin, lmed) = stats(local);
    let (rmin, rmed) = stats(remote);
    println!(
        "{what:<28} local min {lmin:9.2} med {lmed:9.2} {unit} | remote min {rmin:9.2} med {rmed:9.2} {unit} | remote/local {:.2}x",
        rmed / lmed
    );
}

fn main() {
    let quick = harness::Args::parse().quick;
    let rounds = env_usize("REMOTE_BENCH_ROUNDS", if quick { 2 } else { 3 });
    let frames = env_usize("REMOTE_BENCH_FRAMES", if quick { 3 } else { 8 });
    let sam = model_dir("PIXELREFER_REMOTE_BENCH_SAM2", ".fixtures/models/sam2-tiny");
    let refer = model_dir(
        "PIXELREFER_REMOTE_BENCH_REFER",
        ".fixtures/models/pixelrefer-tiny",
    );
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    write_repo(
        &[sam.clone(), refer.clone()],
        &repo,
        &RepoOptions {
            kind: InstanceKind::Cpu,
            ..RepoOptions::default()
        },
    )
    .unwrap();
    println!("load average before: {}", load_average());
    let server = OipServer::start(Engine::Triton, &repo, &ServerOpts::default()).unwrap();
    let endpoint = RemoteEndpoint::parse(&server.url()).unwrap();
    let client = RemoteClient::shared(&endpoint).unwrap();
    let local = SessionOptions {
        provider: ExecutionProvider::Cpu,
        intra_threads: 2,
        remote: None,
    };
    let remote = SessionOptions {
        remote: Some(endpoint.clone()),
        ..local.clone()
    };

    // SAM 2: the same frames and prompts tracked by both sides.
    let media = fixtures::sam2_frames_folder(tmp.path(), frames.max(2));
    let prompts = tmp.path().join("prompts.json");
    std::fs::write(
        &prompts,
        r#"{"objects":[{"id":0,"prompts":[{"frame":0,"points":[[120,130,1]]}]},
                       {"id":1,"prompts":[{"frame":0,"box":[250,60,420,220]}]}]}"#,
    )
    .unwrap();
    let (file, checked) = sam_cmds::read_prompt_file(&prompts).unwrap();
    let objects = file.objects.len() as f64;
    let sam_local = Arc::new(pixelrefer_studio::segment::Sam2Model::load(&sam, &local).unwrap());
    let sam_remote = Arc::new(pixelrefer_studio::segment::Sam2Model::load(&sam, &remote).unwrap());
    let (mut t_local, mut t_remote, mut bytes_frame) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (model, times) in [(&sam_local, &mut t_local), (&sam_remote, &mut t_remote)] {
            let before = client.traffic();
            let source = pixelrefer_studio::jobs::MediaFrames::open(&media).unwrap();
            let count = source.count as f64;
            let t0 = Instant::now();
            let tracked =
                sam_cmds::track_loaded(model, &media, source, &file, &checked, &CancelToken::new())
                    .unwrap();
            assert!(tracked.failure.is_none());
            times.push(t0.elapsed().as_secs_f64() * 1e3 / count / objects);
            if model.provider().is_remote() {
                let after = client.traffic();
                bytes_frame.push(
                    (after.sent + after.received - before.sent - before.received) as f64 / count,
                );
            }
        }
    }
    println!(
        "SAM 2 {} ({} frames, 2 objects, {rounds} rounds), server {}",
        sam.display(),
        frames.max(2),
        server.url()
    );
    report("tracked frame per object", "ms", &t_local, &t_remote);
    let (bmin, bmed) = stats(&bytes_frame);
    println!(
        "bytes per tracked frame (2 objects, both ways): min {:.2} MiB, median {:.2} MiB",
        bmin / 1048576.0,
        bmed / 1048576.0
    );

    // PixelRefer: one answer per side per round, the same question.
    let project = tmp.path().join("p.prj.json");
    // The project: the tiny fixture's reference frame and mask (inputs only; any model reads them).
    refer_common::image_project(&fixtures::fixture("pixelrefer-tiny"), &project);
    let mut refer_local = PixelRefer::load(&refer, &local).unwrap();
    let mut refer_remote = PixelRefer::load(&refer, &remote).unwrap();
    let args = AskArgs {
        model: refer.clone(),
        image: None,
        video: None,
        project: Some(project),
        item: 0,
        masks: Vec::new(),
        regions: None,
        fps: None,
        max_frames: 16,
        question: "Please describe <object0> in detail.".into(),
        json: true,
        max_new_tokens: if quick { 16 } else { 64 },
        temperature: None,
        top_p: None,
        seed: 0,
        device: pixelrefer_studio::cli::Device::Cpu,
        threads: 2,
        remote: None,
    };
    let (mut a_local, mut a_remote, mut bytes_token) = (Vec::new(), Vec::new(), Vec::new());
    let mut tokens = 0;
    for _ in 0..rounds {
        for (model, times) in [
            (&mut refer_local, &mut a_local),
            (&mut refer_remote, &mut a_remote),
        ] {
            model.clear_cache();
            let before = client.traffic();
            let t0 = Instant::now();
            let answer =
                pixelrefer_studio::cli::ask::answer_with(model, &args, &CancelToken::new())
                    .unwrap();
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            tokens = answer.generated_tokens;
            if model.provider().is_remote() {
                let after = client.traffic();
                bytes_token.push(
                    (after.sent + after.received - before.sent - before.received) as f64
                        / answer.generated_tokens.max(1) as f64,
                );
            }
        }
    }
    println!(
        "PixelRefer {} ({tokens} tokens per answer)",
        refer.display()
    );
    report("answer", "ms", &a_local, &a_remote);
    let (bmin, bmed) = stats(&bytes_token);
    println!(
        "bytes per generated token (whole answer incl. prefill / tokens): min {:.1} KiB, median {:.1} KiB",
        bmin / 1024.0,
        bmed / 1024.0
    );
    println!("load average after: {}", load_average());
}
