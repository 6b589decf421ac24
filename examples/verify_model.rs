//! `models verify` alone: the CLI's own `verify` (same cases, lines, summary and `PASS`) and
//! `--device`/`--threads` handling, in a binary that links neither GTK (the app's file dialogs)
//! nor FFmpeg's shared libraries, which the CLI needs even built without the `gui` feature, for
//! bare GPU machines that have neither. Used by `scripts/gpu_check.sh`.
//!
//! cargo run --example verify_model -- MODEL_DIR [auto|cpu|cuda] [THREADS]

use clap::ValueEnum;
use pixelrefer_studio::cli::{Device, sam_cmds, session_options};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: verify_model MODEL_DIR [auto|cpu|cuda] [THREADS]");
        return ExitCode::from(2);
    };
    let device = match args.get(1).map(|d| Device::from_str(d, true)) {
        None => Device::Auto,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let threads = match args.get(2).map(|t| t.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("error: the thread count is not a number: {e}");
            return ExitCode::from(2);
        }
    };
    let result = session_options(device, threads, None)
        .map_err(anyhow::Error::from)
        .and_then(|options| sam_cmds::verify(&dir, &options));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
