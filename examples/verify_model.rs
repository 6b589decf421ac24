//! `models verify` without the app: replays a model directory's `reference/` cases through the
//! Rust pipeline on a chosen provider and prints the same lines, for machines that have a GPU but
//! no desktop libraries (the CLI binary links GTK for its file dialogs). Used by
//! `scripts/gpu_check.sh`.
//!
//! cargo run --example verify_model -- MODEL_DIR [cpu|cuda] [THREADS]

use pixelrefer_studio::jobs::verify_model;
use pixelrefer_studio::runtime::{ExecutionProvider, SessionOptions};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: verify_model MODEL_DIR [cpu|cuda] [THREADS]");
        return ExitCode::from(2);
    };
    let provider = match args.get(1).map(String::as_str) {
        None | Some("cpu") => ExecutionProvider::Cpu,
        Some("cuda") => ExecutionProvider::Cuda,
        Some(other) => {
            eprintln!("unknown device {other:?}: cpu or cuda");
            return ExitCode::from(2);
        }
    };
    let intra_threads = match args.get(2).map(|t| t.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("the thread count is not a number: {e}");
            return ExitCode::from(2);
        }
    };
    let options = SessionOptions {
        provider,
        intra_threads,
        remote: None,
    };
    match verify_model(&dir, &options, &mut |l| println!("{l}"), &mut |n| {
        eprintln!("{n}")
    }) {
        Ok(summary) => {
            println!("{summary}");
            println!("PASS");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
