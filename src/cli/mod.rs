//! Headless commands of the `pixelrefer-studio` binary. Each returns `anyhow::Result` so the
//! binary can report failures in one sentence.

pub mod ask;
pub mod media_cmds;
pub mod models_cmds;
pub mod project_cmds;
pub mod sam_cmds;

use crate::runtime::{ExecutionProvider, RuntimeError, SessionOptions};

/// Where models run (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Device {
    /// CUDA when this ONNX Runtime build has the CUDA provider, else the CPU.
    #[default]
    Auto,
    /// The CPU only.
    Cpu,
    /// CUDA (falls back to the CPU with a warning).
    Cuda,
}

/// Session options for `--device` and `--threads`; a thread count this machine cannot use
/// ([`SessionOptions::validate`]) is refused here, before ONNX Runtime or any model is loaded.
pub fn session_options(device: Device, threads: usize) -> Result<SessionOptions, RuntimeError> {
    SessionOptions {
        provider: ExecutionProvider::Cpu,
        intra_threads: threads,
    }
    .validate()?;
    Ok(match device {
        Device::Auto => SessionOptions::auto(threads),
        Device::Cpu => SessionOptions {
            provider: ExecutionProvider::Cpu,
            intra_threads: threads,
        },
        Device::Cuda => SessionOptions {
            provider: ExecutionProvider::Cuda,
            intra_threads: threads,
        },
    })
}
