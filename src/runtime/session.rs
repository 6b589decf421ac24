//! Building sessions on an execution provider, and checking a graph's interface.

use super::{GraphSpec, RuntimeError, ensure_initialized};
use ort::session::Session;
use std::path::Path;

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionProvider {
    /// The CPU provider (always available).
    Cpu,
    /// NVIDIA CUDA (needs the CUDA-enabled ONNX Runtime and CUDA/cuDNN libraries).
    Cuda,
}

impl std::fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExecutionProvider::Cpu => "CPU",
            ExecutionProvider::Cuda => "CUDA",
        })
    }
}

/// How to build a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOptions {
    /// Preferred provider; CUDA falls back to CPU with a warning.
    pub provider: ExecutionProvider,
    /// Intra-op threads (0 = ONNX Runtime's default: one per core).
    pub intra_threads: usize,
    /// Run every graph on this Open Inference Protocol server instead of locally.
    pub remote: Option<super::remote::RemoteEndpoint>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            provider: ExecutionProvider::Cpu,
            intra_threads: 0,
            remote: None,
        }
    }
}

/// Oversubscription factor of [`max_intra_threads`]: ONNX Runtime's intra-op pool gains nothing
/// beyond one thread per core, and a few per core still leave room for SMT and for users who
/// oversubscribe on purpose; thousands of threads only exhaust memory and crash the process
/// (`--threads 100000` died with SIGSEGV after a minute).
pub const THREADS_PER_CORE_LIMIT: usize = 4;

/// The most intra-op threads a session accepts on this machine: [`THREADS_PER_CORE_LIMIT`] per
/// core that this process may use (`std::thread::available_parallelism`, which honours CPU
/// quotas), at least 4.
pub fn max_intra_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    cores.saturating_mul(THREADS_PER_CORE_LIMIT).max(4)
}

impl SessionOptions {
    /// Checks the thread count: 0 (one per core) or 1 to [`max_intra_threads`]. Every session
    /// build calls it; call it earlier to refuse a bad setting before loading anything.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let max = max_intra_threads();
        if self.intra_threads > max {
            return Err(RuntimeError::Threads {
                requested: self.intra_threads,
                max,
            });
        }
        Ok(())
    }

    /// CUDA when this ONNX Runtime build has the CUDA provider ([`cuda_available`]), else the
    /// CPU; `intra_threads` as given.
    pub fn auto(intra_threads: usize) -> Self {
        Self {
            provider: if cuda_available() {
                ExecutionProvider::Cuda
            } else {
                ExecutionProvider::Cpu
            },
            intra_threads,
            remote: None,
        }
    }
}

/// Whether the loaded ONNX Runtime was built with the CUDA provider (the `onnxruntime-gpu`
/// wheel). Whether CUDA really starts is only known when a session is built; a failure there
/// falls back to the CPU with a warning.
pub fn cuda_available() -> bool {
    if ensure_initialized().is_err() {
        return false;
    }
    <ort::ep::CUDA as ort::ep::ExecutionProvider>::is_available().unwrap_or(false)
}

/// Environment variable naming a folder for ONNX Runtime's profiler: every session then writes
/// a Chrome-trace JSON per graph there (`<graph>_<date>.json`, one event per node run).
pub const PROFILE_ENV: &str = "PIXELREFER_ORT_PROFILE";

/// Builds a session for `file` on the preferred provider. Returns the session, the provider it
/// really runs on, and a warning when CUDA was asked for but could not start (never silent).
pub fn build_session(
    file: &Path,
    options: &SessionOptions,
) -> Result<(Session, ExecutionProvider, Option<String>), RuntimeError> {
    build_session_with(file, options, true)
}

/// [`build_session`], choosing whether the intra-op threads spin between ONNX Runtime's parallel
/// sections (its default) or sleep. Spinning keeps one session's pool warm for its next kernel;
/// a pipeline that alternates several sessions per step wants them asleep, or each session's
/// idle pool spins on the cores the next session needs.
pub fn build_session_with(
    file: &Path,
    options: &SessionOptions,
    spin: bool,
) -> Result<(Session, ExecutionProvider, Option<String>), RuntimeError> {
    options.validate()?;
    let runtime = ensure_initialized()?;
    if !file.is_file() {
        return Err(RuntimeError::File {
            path: file.to_path_buf(),
            reason: "the graph file is missing".into(),
        });
    }
    let base = || -> Result<_, RuntimeError> {
        let mut builder = Session::builder(&runtime.environment)?;
        if let Some(dir) = std::env::var_os(PROFILE_ENV) {
            // ONNX Runtime appends `_<date>.json` to the prefix.
            let stem = file.file_stem().unwrap_or_default();
            builder = builder.with_profiling(Path::new(&dir).join(stem))?;
        }
        if runtime.shared_arena {
            builder = builder.with_env_allocators()?;
        }
        if !spin {
            builder = builder.with_intra_op_spinning(false)?;
        }
        if options.intra_threads > 0 {
            builder = builder.with_intra_threads(options.intra_threads)?;
        }
        Ok(builder)
    };
    let open_err = |e: ort::Error| RuntimeError::File {
        path: file.to_path_buf(),
        reason: format!("ONNX Runtime could not open the graph: {e}"),
    };
    let mut warning = None;
    if options.provider == ExecutionProvider::Cuda {
        // fp32 graphs compute in fp32: TensorFloat-32 matrix products (ONNX Runtime's `use_tf32`)
        // change outputs by about 1e-3 relative, beyond the parity tolerances; the fp16 exports are
        // the labelled speed option on CUDA.
        let cuda = ort::ep::CUDA::default()
            .with_tf32(false)
            .build()
            .error_on_failure();
        match base()?.with_execution_providers([cuda]) {
            Ok(mut builder) => match builder.commit_from_file(file) {
                Ok(session) => return Ok((session, ExecutionProvider::Cuda, None)),
                Err(e) => warning = Some(format!("CUDA could not run {}: {e}", file.display())),
            },
            Err(e) => warning = Some(format!("CUDA is not available: {e}")),
        }
        // Returned to the caller, which reports it once per model (not once per graph).
        if let Some(w) = &warning {
            log::debug!("{w}; falling back to the CPU");
        }
    }
    let session = base()?.commit_from_file(file).map_err(open_err)?;
    Ok((session, ExecutionProvider::Cpu, warning))
}

/// Checks a session's inputs and outputs against the manifest's spec: every named tensor exists,
/// with the same element type and rank (and the same size on fixed dimensions). The error names
/// the file and the tensor.
pub fn validate_io(session: &Session, file: &Path, spec: &GraphSpec) -> Result<(), RuntimeError> {
    let check = |actual: &[ort::value::Outlet], expected: &[super::TensorSpec], what: &str| {
        for want in expected {
            let err = |reason: String| RuntimeError::Interface {
                file: file.to_path_buf(),
                tensor: want.name.clone(),
                reason,
            };
            let Some(have) = actual.iter().find(|o| o.name() == want.name) else {
                return Err(err(format!("is not an {what} of the graph")));
            };
            let ty = have.dtype();
            let Some(elem) = ty.tensor_type() else {
                return Err(err("is not a tensor".into()));
            };
            let elem = format!("{elem:?}").to_lowercase();
            if elem != want.dtype.to_lowercase() {
                return Err(err(format!("has type {elem}, expected {}", want.dtype)));
            }
            let shape = ty.tensor_shape().map(|s| s.to_vec()).unwrap_or_default();
            check_shape(want, &shape).map_err(err)?;
        }
        Ok(())
    };
    check(session.inputs(), &spec.inputs, "input")?;
    check(session.outputs(), &spec.outputs, "output")
}

/// Checks a graph's (or a served model's) shape of a tensor against the manifest's: the same
/// rank, and the same size on every dimension fixed on both sides (-1: variable).
pub(crate) fn check_shape(want: &super::TensorSpec, shape: &[i64]) -> Result<(), String> {
    if shape.len() != want.shape.len() {
        return Err(format!(
            "has rank {}, expected {}",
            shape.len(),
            want.shape.len()
        ));
    }
    for (axis, (&dim, wanted)) in shape.iter().zip(&want.shape).enumerate() {
        if let Some(fixed) = wanted.as_i64()
            && dim >= 0
            && dim != fixed
        {
            return Err(format!("has size {dim} on axis {axis}, expected {fixed}"));
        }
    }
    Ok(())
}
