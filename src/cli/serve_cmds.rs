//! `pixelrefer-studio serve …`: a Triton model repository for a team's GPU server, and a check
//! of a running server.

use crate::runtime::find_model_dirs;
use crate::runtime::remote::triton_repo::{InstanceKind, RepoOptions, write_repo};
use crate::runtime::remote::{RemoteEndpoint, probe};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

/// The NVIDIA container the README's command uses (any release with the ONNX Runtime backend).
pub const TRITON_IMAGE: &str = "nvcr.io/nvidia/tritonserver:24.08-py3";

/// `serve triton-repo DIR… --out REPO`.
pub fn triton_repo(
    dirs: &[PathBuf],
    out: &Path,
    cpu: bool,
    instances: u32,
    max_batch: u32,
) -> Result<()> {
    if instances == 0 || instances > 64 {
        bail!("--instances {instances} is not accepted: give 1 to 64");
    }
    if max_batch > 1024 {
        bail!("--max-batch {max_batch} is not accepted: give 0 (no batching) to 1024");
    }
    for dir in dirs {
        if out.starts_with(dir) || crate::project::same_file(out, dir) {
            bail!(
                "refusing to write the repository inside the model folder {}: choose another --out",
                dir.display()
            );
        }
    }
    let options = RepoOptions {
        kind: if cpu {
            InstanceKind::Cpu
        } else {
            InstanceKind::Gpu
        },
        instances,
        max_batch_size: max_batch,
    };
    let written = write_repo(dirs, out, &options)
        .with_context(|| format!("cannot write the Triton repository {}", out.display()))?;
    for w in &written {
        println!(
            "{} {:<48} {} {}{}",
            if w.new { "+" } else { "=" },
            w.name,
            w.source.display(),
            w.role,
            if w.batched { " (dynamic batching)" } else { "" }
        );
    }
    let abs = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf());
    println!(
        "\nStart it on the GPU server:\n  docker run --gpus all --rm -p 8001:8001 -v {}:/models {TRITON_IMAGE} \\\n    tritonserver --model-repository=/models\nthen run the app with --remote grpc://SERVER:8001 (or Models > Server…).",
        abs.display()
    );
    Ok(())
}

/// `serve check URL`: the server's metadata and models, and which local models it can run.
pub fn check(url: &str, models: Option<&Path>, json: bool) -> Result<()> {
    let endpoint = RemoteEndpoint::parse(url)?;
    let dirs: Vec<PathBuf> = find_model_dirs(models)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    let report = probe(&endpoint, &dirs)?;
    if json {
        let v = serde_json::json!({
            "url": report.url,
            "server": report.info.name,
            "version": report.info.version,
            "extensions": report.info.extensions,
            "ready": report.ready,
            "latency_ms": report.latency.as_secs_f64() * 1e3,
            "models": report.models.as_ref().map(|list| list.iter().map(|m| serde_json::json!({
                "name": m.name, "state": m.state,
            })).collect::<Vec<_>>()),
            "local": report.local.iter().map(|l| serde_json::json!({
                "dir": l.dir, "model": l.label, "served": l.served, "missing": l.missing,
                "runs_remotely": l.missing.is_empty(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{}", report.summary());
    match &report.models {
        Some(list) => {
            println!("{} models:", list.len());
            for m in list {
                println!("  {} {}", m.name, m.state);
            }
        }
        None => println!("the server does not list its models"),
    }
    for l in &report.local {
        println!("{} in {}", l.summary(), l.dir.display());
    }
    Ok(())
}
