//! Finding and loading the ONNX Runtime shared library.

use super::RuntimeError;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The ONNX Runtime version `scripts/setup.sh` installs (from the PyPI `onnxruntime` wheel).
pub const BUNDLED_ORT_VERSION: &str = "1.31.1";

/// Environment variable that gives every session an arena of its own instead of the shared CPU
/// arena (to compare the two, or to rule the shared one out).
pub const SEPARATE_ARENAS_ENV: &str = "PIXELREFER_ORT_SEPARATE_ARENAS";

/// What was loaded: the library and the process-wide ONNX Runtime environment.
#[derive(Clone)]
pub struct RuntimeInfo {
    /// The shared library file.
    pub library: PathBuf,
    /// ONNX Runtime's build string (branch, commit, build type).
    pub build_info: String,
    /// Version read from the library's file name (`libonnxruntime.so.1.31.1`), when it has one.
    pub version: Option<String>,
    /// The environment every session is built in.
    pub environment: ort::environment::Environment,
    /// Whether the environment holds one CPU arena that every session allocates from.
    pub shared_arena: bool,
}

impl std::fmt::Debug for RuntimeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeInfo")
            .field("library", &self.library)
            .field("build_info", &self.build_info)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

const LIB_NAME: &str = "libonnxruntime.so";

/// The places searched for the library, in order: `ORT_DYLIB_PATH`; next to the executable;
/// the project-local `.ort/lib` of a source checkout (found from the executable's location under
/// `target/`, or from the directory the crate was built in); the user data directory
/// (`~/.local/share/pixelrefer-studio/onnxruntime`); then the system loader path.
pub fn library_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(path) = std::env::var("ORT_DYLIB_PATH")
        && !path.is_empty()
    {
        out.push(PathBuf::from(path));
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(Path::to_path_buf);
        // The executable itself, then up to four parents (target/release/deps → repo root).
        for _ in 0..5 {
            let Some(d) = dir else { break };
            out.push(d.join(LIB_NAME));
            out.push(d.join(".ort").join("lib").join(LIB_NAME));
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    out.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".ort")
            .join("lib")
            .join(LIB_NAME),
    );
    if let Some(data) = dirs::data_dir() {
        out.push(
            data.join("pixelrefer-studio")
                .join("onnxruntime")
                .join(LIB_NAME),
        );
    }
    for dir in ["/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu"] {
        out.push(Path::new(dir).join(LIB_NAME));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// The first existing candidate of [`library_candidates`].
pub fn find_library() -> Result<PathBuf, RuntimeError> {
    let candidates = library_candidates();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| RuntimeError::LibraryNotFound {
            searched: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Why loading failed, kept so that later calls return the same error.
#[derive(Debug, Clone)]
enum InitFailure {
    /// No library in any searched place (the places, joined).
    NotFound(String),
    /// The library at `path` could not be used.
    Load(PathBuf, String),
}

impl From<&InitFailure> for RuntimeError {
    fn from(f: &InitFailure) -> Self {
        match f {
            InitFailure::NotFound(searched) => RuntimeError::LibraryNotFound {
                searched: searched.clone(),
            },
            InitFailure::Load(path, reason) => RuntimeError::LibraryLoad {
                path: path.clone(),
                reason: reason.clone(),
            },
        }
    }
}

static RUNTIME: OnceLock<Result<RuntimeInfo, InitFailure>> = OnceLock::new();

/// Loads ONNX Runtime once per process and returns what was loaded. Later calls return the same
/// result (also the same failure: the process must be restarted after fixing the install).
pub fn ensure_initialized() -> Result<&'static RuntimeInfo, RuntimeError> {
    let result = RUNTIME.get_or_init(|| {
        let path = find_library().map_err(|e| match e {
            RuntimeError::LibraryNotFound { searched } => InitFailure::NotFound(searched),
            other => InitFailure::Load(PathBuf::new(), other.to_string()),
        })?;
        let failed = |reason: String| InitFailure::Load(path.clone(), reason);
        let builder = ort::init_from(&path).map_err(|e| failed(e.to_string()))?;
        // `ort` panics when the library lacks the API version it was built for (an old
        // ONNX Runtime); turn that into a message instead of a crash.
        let too_old = || {
            failed(format!(
                "it is too old for this build (need {BUNDLED_ORT_VERSION} or a compatible 1.22+)"
            ))
        };
        let mut environment = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            builder.with_name("pixelrefer-studio").build()
        }))
        .map_err(|_| too_old())?
        .map_err(|e| failed(format!("its environment: {e}")))?;
        // One CPU arena for every session (they opt in with `session.use_env_allocators`): a
        // process holds the peak of its largest graph instead of one grown arena per graph. SAM
        // 2.1-tiny's four graphs peaked at 2.1 GB with an arena each and 1.7 GB shared, same
        // speed (`cargo bench --bench sam2`, issue 10). Without it, or with
        // SEPARATE_ARENAS_ENV set, sessions keep their own.
        let shared_arena = if std::env::var_os(SEPARATE_ARENAS_ENV).is_some() {
            false
        } else {
            match register_shared_cpu_arena(&mut environment) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!("{e}; each session keeps its own memory arena");
                    false
                }
            }
        };
        let build_info = std::panic::catch_unwind(ort::info)
            .map(str::to_string)
            .map_err(|_| too_old())?;
        log::info!("ONNX Runtime loaded from {}: {build_info}", path.display());
        let version = std::fs::canonicalize(&path).ok().and_then(|real| {
            let name = real.file_name()?.to_str()?.to_string();
            name.strip_prefix("libonnxruntime.so.").map(str::to_string)
        });
        Ok(RuntimeInfo {
            library: path,
            build_info,
            version,
            environment,
            shared_arena,
        })
    });
    result.as_ref().map_err(RuntimeError::from)
}

/// Registers one CPU arena allocator in the environment; sessions built with
/// `session.use_env_allocators` take their activations from it instead of an arena of their own.
fn register_shared_cpu_arena(env: &mut ort::environment::Environment) -> Result<(), String> {
    use ort::AsPointer;
    let info = ort::memory::MemoryInfo::new(
        ort::memory::AllocationDevice::CPU,
        0,
        ort::memory::AllocatorType::Arena,
        ort::memory::MemoryType::Default,
    )
    .map_err(|e| format!("ONNX Runtime memory info: {e}"))?;
    let api = ort::api();
    // SAFETY: both pointers are live for the call; a null arena config asks for the defaults.
    let status =
        unsafe { (api.CreateAndRegisterAllocator)(env.ptr_mut(), info.ptr(), std::ptr::null()) };
    if status.0.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null status is an error we own: read its message, then release it.
    let msg = unsafe {
        let m = std::ffi::CStr::from_ptr((api.GetErrorMessage)(status.0))
            .to_string_lossy()
            .into_owned();
        (api.ReleaseStatus)(status.0);
        m
    };
    Err(format!("ONNX Runtime shared CPU arena: {msg}"))
}
