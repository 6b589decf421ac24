//! Headless commands of the `pixelrefer-studio` binary. Each returns `anyhow::Result` so the
//! binary can report failures in one sentence.

pub mod ask;
pub mod batch;
pub mod media_cmds;
pub mod models_cmds;
pub mod project_cmds;
pub mod sam_cmds;
pub mod serve_cmds;

use crate::runtime::remote::RemoteEndpoint;
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

/// Session options for `--device`, `--threads` and `--remote`; a thread count this machine
/// cannot use ([`SessionOptions::validate`]) or a server address that is not `grpc://HOST:PORT`
/// is refused here, before ONNX Runtime or any model is loaded.
pub fn session_options(
    device: Device,
    threads: usize,
    remote: Option<&str>,
) -> Result<SessionOptions, RuntimeError> {
    SessionOptions {
        intra_threads: threads,
        ..SessionOptions::default()
    }
    .validate()?;
    let remote = remote.map(RemoteEndpoint::parse).transpose()?;
    let local = match device {
        Device::Auto => SessionOptions::auto(threads),
        Device::Cpu => SessionOptions {
            provider: ExecutionProvider::Cpu,
            intra_threads: threads,
            remote: None,
        },
        Device::Cuda => SessionOptions {
            provider: ExecutionProvider::Cuda,
            intra_threads: threads,
            remote: None,
        },
    };
    Ok(SessionOptions { remote, ..local })
}

/// A token that Ctrl-C cancels, so a long command stops at the next step and keeps what it has
/// done; a second Ctrl-C ends the process at once (exit status 130, as a shell reports SIGINT).
pub fn cancel_on_ctrl_c(command: &str) -> crate::runtime::CancelToken {
    let cancel = crate::runtime::CancelToken::new();
    let token = cancel.clone();
    if let Err(e) = ctrlc::set_handler(move || {
        if token.is_cancelled() {
            std::process::exit(130);
        }
        token.cancel();
    }) {
        log::warn!("Ctrl-C will not stop {command} cleanly: {e}");
    }
    cancel
}

/// The error and its causes as one line, leaving out a cause whose text the line already holds
/// (typed errors often include their source in their own message).
pub fn one_sentence(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
