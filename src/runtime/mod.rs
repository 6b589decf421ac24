//! The ONNX Runtime environment: locating the shared library, execution providers, model
//! directories and manifests (DESIGN.md §4).
//!
//! ONNX Runtime is loaded dynamically (`ort` with `load-dynamic`): no build step downloads a
//! binary. The library is found without any environment variable (see [`library_candidates`]);
//! `ORT_DYLIB_PATH` still overrides.
//!
//! Models come from the catalogue ([`catalog`]), are downloaded through the Hugging Face hub
//! protocol ([`hub`]) and exported and installed atomically ([`install`]).

pub mod catalog;
mod graph;
pub mod hub;
pub mod install;
mod library;
mod manifest;
pub mod preflight;
pub mod remote;
mod session;

pub use graph::{
    CancelToken, Cancelled, ElementType, Graph, GraphError, HostTensor, Input, InputData, Opened,
    Placement, TensorData, Value,
};
pub use library::{
    RuntimeInfo, SEPARATE_ARENAS_ENV, ensure_initialized, find_library, library_candidates,
};
pub use manifest::{
    GraphSpec, MANIFEST_FILE, MANIFEST_VERSION, MAX_CASES_BYTES, MAX_MANIFEST_BYTES, Manifest,
    ModelKind, TensorSpec, VerifyStats, find_model_dirs, model_search_dirs, verified_cache_path,
    verify_files_with_cache,
};
pub mod safetensors;

/// Reads the regular file at `path` whole, refusing first what is not one (a FIFO would block,
/// `/dev/zero` never ends) and what is larger than `limit_bytes`; the error is one sentence
/// without the path (callers wrap it in their own error type).
pub fn read_regular_file(path: &std::path::Path, limit_bytes: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let check = |meta: &std::fs::Metadata| -> Result<(), String> {
        if !meta.is_file() {
            return Err("it is not a regular file (a folder, FIFO or device)".into());
        }
        if meta.len() > limit_bytes {
            return Err(format!(
                "it is {} bytes, more than the {limit_bytes} such a file may have",
                meta.len()
            ));
        }
        Ok(())
    };
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    check(&meta)?;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    // The path may name something else by now: check what was opened.
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?;
    check(&meta)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > limit_bytes {
        return Err(format!(
            "it holds more than the {limit_bytes} bytes such a file may have"
        ));
    }
    Ok(bytes)
}
pub use session::{
    ExecutionProvider, SessionOptions, THREADS_PER_CORE_LIMIT, build_session, build_session_with,
    cuda_available, max_intra_threads, validate_io,
};

use std::path::PathBuf;

/// Errors from loading ONNX Runtime, model directories and sessions.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No ONNX Runtime library in any searched place.
    #[error(
        "ONNX Runtime was not found (looked for {searched}); run ./run.sh once, or set ORT_DYLIB_PATH to libonnxruntime.so"
    )]
    LibraryNotFound {
        /// The places searched, joined.
        searched: String,
    },
    /// The library exists but could not be loaded or is too old.
    #[error("ONNX Runtime at {path} could not be loaded: {reason}")]
    LibraryLoad {
        /// The library file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A model directory without a readable manifest.
    #[error("{path} is not a model directory: {reason}")]
    Manifest {
        /// The directory or manifest file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A model directory of another kind than the one asked for.
    #[error("{path} holds a {found} model, but a {expected} model is needed")]
    WrongKind {
        /// The directory.
        path: PathBuf,
        /// Kind found in the manifest.
        found: String,
        /// Kind needed.
        expected: String,
    },
    /// A file named by the manifest is missing or differs from its recorded sha256.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A graph's inputs or outputs differ from what the manifest and the host expect.
    #[error("{file}: tensor `{tensor}` {reason}")]
    Interface {
        /// The graph file.
        file: PathBuf,
        /// The tensor name.
        tensor: String,
        /// What differs.
        reason: String,
    },
    /// A thread count above [`max_intra_threads`].
    #[error(
        "{requested} threads is more than this machine can use: give 0 (one per core) or 1 to {max} threads"
    )]
    Threads {
        /// The thread count asked for.
        requested: usize,
        /// The largest accepted count on this machine.
        max: usize,
    },
    /// The model's weight quantization is one this build or machine cannot run.
    #[error("{path} is quantized as {reason}")]
    Quantization {
        /// The model directory.
        path: PathBuf,
        /// The scheme and why it cannot run.
        reason: String,
    },
    /// The machine has less memory available than the model needs.
    #[error(
        "{path} needs about {need_gib:.1} GiB of memory and {available_gib:.1} GiB is available: close other programs, or choose a smaller or quantized model (PIXELREFER_SKIP_MEMORY_CHECK=1 loads it anyway)"
    )]
    Memory {
        /// The model directory.
        path: PathBuf,
        /// Estimated need.
        need_gib: f64,
        /// Available now.
        available_gib: f64,
    },
    /// An error from ONNX Runtime itself.
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    /// The remote server failed (unreachable, missing model, different interface…).
    #[error(transparent)]
    Remote(#[from] remote::RemoteError),
}

impl<R> From<ort::Error<R>> for RuntimeError {
    fn from(err: ort::Error<R>) -> Self {
        RuntimeError::Ort(err.to_string())
    }
}

/// What this machine offers, for recommending models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineInfo {
    /// ONNX Runtime has a working CUDA provider.
    pub cuda: bool,
    /// Physical memory in bytes (0 when unknown).
    pub memory_bytes: u64,
}

impl MachineInfo {
    /// Looks at this machine (loads ONNX Runtime to ask about CUDA).
    pub fn detect() -> MachineInfo {
        let memory_bytes = sysinfo::System::new()
            .map(|mut system| {
                system.refresh_memory();
                system.total_memory()
            })
            .unwrap_or(0);
        MachineInfo {
            cuda: cuda_available(),
            memory_bytes,
        }
    }
}
