//! Model directories: `manifest.json`, file hashes, search paths (DESIGN.md §4).

use super::RuntimeError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The manifest's file name inside a model directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The newest manifest schema this build reads (what `onnx/sam2_export/export.py` and
/// `onnx/pixelrefer_export/export.py` write).
pub const MANIFEST_VERSION: u32 = 1;

/// Largest `manifest.json` read (exported ones are a few kB).
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Largest `reference/cases.json` read (exported ones are a few kB to a few MB).
pub const MAX_CASES_BYTES: u64 = 256 << 20;

/// Model families the app runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelKind {
    /// SAM 2 / 2.1.
    #[serde(rename = "sam2")]
    Sam2,
    /// PixelRefer (Vision-Object framework).
    #[serde(rename = "pixelrefer")]
    PixelRefer,
    /// PixelRefer-Lite (Object-Only framework).
    #[serde(rename = "pixelrefer-lite")]
    PixelReferLite,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ModelKind::Sam2 => "sam2",
            ModelKind::PixelRefer => "pixelrefer",
            ModelKind::PixelReferLite => "pixelrefer-lite",
        })
    }
}

/// One tensor of a graph's interface. `shape` holds numbers for fixed dimensions and strings for
/// symbolic ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name in the graph.
    pub name: String,
    /// Element type (`float32`, `float16`, `int64`, `bool`…).
    pub dtype: String,
    /// Dimensions.
    pub shape: Vec<serde_json::Value>,
}

/// One graph of a model directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphSpec {
    /// File name inside the model directory.
    pub file: String,
    /// Inputs the host feeds.
    pub inputs: Vec<TensorSpec>,
    /// Outputs the host reads.
    pub outputs: Vec<TensorSpec>,
    /// The graph's external-data file (weights over 2 GB live beside the graph), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_data: Option<String>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `pixelrefer-studio-model`.
    pub format: String,
    /// Manifest schema version.
    pub version: u32,
    /// Model family.
    pub kind: ModelKind,
    /// Variant (`sam2.1_hiera_tiny`, `PixelRefer-Lite-2B`, `tiny-random`…).
    pub variant: String,
    /// The upstream checkpoint it was exported from.
    #[serde(default)]
    pub upstream: serde_json::Value,
    /// Graphs by role.
    pub graphs: BTreeMap<String, GraphSpec>,
    /// Every constant the host needs, by name.
    #[serde(default)]
    pub constants: serde_json::Value,
    /// The safetensors file of constant tensors (SAM 2: `constants.safetensors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constants_file: Option<String>,
    /// sha256 (hex) of every file, by file name.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Set for an opt-in weight-quantized export (outputs differ from the fp32 model's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<super::preflight::Quantization>,
}

impl Manifest {
    /// Reads `DIR/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, RuntimeError> {
        let path = dir.join(MANIFEST_FILE);
        let err = |reason: String| RuntimeError::Manifest {
            path: dir.to_path_buf(),
            reason,
        };
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(err("it is not a directory".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(err("it does not exist".into()));
            }
            Err(e) => return Err(err(format!("cannot read it: {e}"))),
        }
        let bytes = super::read_regular_file(&path, MAX_MANIFEST_BYTES)
            .map_err(|e| err(format!("cannot read {MANIFEST_FILE}: {e}")))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| err(format!("{MANIFEST_FILE} is invalid: {e}")))?;
        if manifest.format != "pixelrefer-studio-model" {
            return Err(err(format!(
                "{MANIFEST_FILE} has format `{}`, expected `pixelrefer-studio-model`",
                manifest.format
            )));
        }
        if manifest.version == 0 || manifest.version > MANIFEST_VERSION {
            return Err(err(format!(
                "{MANIFEST_FILE} is of schema version {}, and this build reads version \
                 {MANIFEST_VERSION}: a newer PixelRefer Studio made it (update this one)",
                manifest.version
            )));
        }
        // Every file the graphs load must carry its sha256: a graph that is not the one
        // exported with the rest (another model's, another quantization) is refused at load.
        let needed = manifest
            .graphs
            .values()
            .flat_map(|g| std::iter::once(&g.file).chain(g.external_data.as_ref()))
            .chain(manifest.constants_file.as_ref());
        for file in needed {
            if !manifest.files.contains_key(file) {
                return Err(err(format!(
                    "{MANIFEST_FILE} records no sha256 for {file}, so it cannot be checked; \
                     export or fetch the model again"
                )));
            }
        }
        Ok(manifest)
    }

    /// Fails with [`RuntimeError::WrongKind`] unless the manifest is one of `kinds`.
    pub fn expect_kind(&self, dir: &Path, kinds: &[ModelKind]) -> Result<(), RuntimeError> {
        if kinds.contains(&self.kind) {
            return Ok(());
        }
        Err(RuntimeError::WrongKind {
            path: dir.to_path_buf(),
            found: self.kind.to_string(),
            expected: kinds
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
        })
    }

    /// The spec of graph `role`, or a clear error naming the directory.
    pub fn graph(&self, dir: &Path, role: &str) -> Result<&GraphSpec, RuntimeError> {
        self.graphs.get(role).ok_or_else(|| RuntimeError::Manifest {
            path: dir.to_path_buf(),
            reason: format!("{MANIFEST_FILE} names no `{role}` graph"),
        })
    }

    /// A numeric constant, or a clear error.
    pub fn constant_f64(&self, dir: &Path, name: &str) -> Result<f64, RuntimeError> {
        self.constants
            .get(name)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| RuntimeError::Manifest {
                path: dir.to_path_buf(),
                reason: format!("{MANIFEST_FILE} has no numeric constant `{name}`"),
            })
    }

    /// Checks that every file listed in `files` exists and has its recorded sha256. SAM 2,
    /// PixelRefer and PixelRefer-Lite loading all call it. A file whose size, times and inode
    /// are those recorded when it last matched is not hashed again ([`verify_files_with_cache`]
    /// with [`verified_cache_path`]), so a multi-GB model is hashed once, not on every load.
    pub fn verify_files(&self, dir: &Path) -> Result<(), RuntimeError> {
        let cache = verified_cache_path(dir);
        verify_files_with_cache(dir, &self.files, cache.as_deref()).map(|_| ())
    }

    /// [`Self::verify_files`] for a model whose graphs run on a server: the graph files need
    /// not be here (the server's model names carry their sha256); every other file (tokenizer,
    /// reference data) is checked.
    pub fn verify_files_except_graphs(&self, dir: &Path) -> Result<(), RuntimeError> {
        let graphs: std::collections::BTreeSet<&str> =
            self.graphs.values().map(|g| g.file.as_str()).collect();
        let files: BTreeMap<String, String> = self
            .files
            .iter()
            .filter(|(name, _)| !graphs.contains(name.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let cache = verified_cache_path(dir);
        verify_files_with_cache(dir, &files, cache.as_deref()).map(|_| ())
    }
}

/// What [`verify_files_with_cache`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyStats {
    /// Files hashed.
    pub hashed: usize,
    /// Files skipped because the cache records them as verified and unchanged.
    pub cached: usize,
}

/// A file's identity as far as the verification cache is concerned: any write changes the
/// change time (which no tool can set back) and usually the modification time and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Stamp {
                len: meta.len(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                ctime: (meta.ctime(), meta.ctime_nsec()),
                ino: meta.ino(),
                dev: meta.dev(),
            }
        }
        #[cfg(not(unix))]
        {
            let since = |t: std::io::Result<std::time::SystemTime>| {
                t.ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or((0, 0), |d| {
                        (
                            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                            i64::from(d.subsec_nanos()),
                        )
                    })
            };
            Stamp {
                len: meta.len(),
                mtime: since(meta.modified()),
                ctime: since(meta.created()),
                ino: 0,
                dev: 0,
            }
        }
    }
}

/// One verified file in the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Verified {
    sha256: String,
    stamp: Stamp,
}

/// The sidecar of one model directory: verified files by manifest name.
#[derive(Debug, Default, Serialize, Deserialize)]
struct VerifiedCache {
    files: BTreeMap<String, Verified>,
}

/// Where the verification cache of model directory `dir` lives: the user cache directory
/// (`~/.cache/pixelrefer-studio/verified/<sha256 of the directory's canonical path>.json`),
/// not the model directory, which may be read-only or shared. `None` when there is no cache
/// directory or `dir` cannot be resolved (every file is then hashed).
pub fn verified_cache_path(dir: &Path) -> Option<PathBuf> {
    let canonical = std::fs::canonicalize(dir).ok()?;
    let key = hex::encode(Sha256::digest(canonical.as_os_str().as_encoded_bytes()));
    Some(
        dirs::cache_dir()?
            .join("pixelrefer-studio")
            .join("verified")
            .join(format!("{key}.json")),
    )
}

/// Checks `files` (manifest name → sha256 hex) in `dir`, skipping files that `cache` records
/// as verified with the same sha256 and an unchanged [`Stamp`] (size, modification and change
/// times, inode); files that match are recorded. A name that is absolute or climbs out of
/// `dir` is refused. A missing or unwritable cache only costs time: it is never an error.
pub fn verify_files_with_cache(
    dir: &Path,
    files: &BTreeMap<String, String>,
    cache: Option<&Path>,
) -> Result<VerifyStats, RuntimeError> {
    let mut stats = VerifyStats::default();
    let mut known: VerifiedCache = cache
        .and_then(|c| std::fs::read(c).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let mut changed = false;
    for (name, want) in files {
        let rel = Path::new(name);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(RuntimeError::Manifest {
                path: dir.to_path_buf(),
                reason: format!(
                    "{MANIFEST_FILE} lists `{name}`, which is not a file name inside the directory"
                ),
            });
        }
        let path = dir.join(rel);
        let meta = std::fs::metadata(&path).map_err(|e| RuntimeError::File {
            path: path.clone(),
            reason: format!("cannot read: {e}"),
        })?;
        if !meta.is_file() {
            return Err(RuntimeError::File {
                path,
                reason: "it is not a file".into(),
            });
        }
        let stamp = Stamp::of(&meta);
        if let Some(v) = known.files.get(name)
            && v.stamp == stamp
            && v.sha256.eq_ignore_ascii_case(want)
        {
            stats.cached += 1;
            continue;
        }
        let have = sha256_file(&path)?;
        stats.hashed += 1;
        if !have.eq_ignore_ascii_case(want) {
            if known.files.remove(name).is_some() {
                changed = true;
            }
            if changed && let Some(c) = cache {
                write_cache(c, &known);
            }
            return Err(RuntimeError::File {
                path,
                reason: format!(
                    "sha256 is {have}, the manifest records {want}: the file changed after export (copy the model again)"
                ),
            });
        }
        // Stamp again: a write during hashing must not be recorded as verified.
        let after = std::fs::metadata(&path).map(|m| Stamp::of(&m)).ok();
        if after.as_ref() == Some(&stamp) {
            known.files.insert(
                name.clone(),
                Verified {
                    sha256: have,
                    stamp,
                },
            );
            changed = true;
        }
    }
    if changed && let Some(c) = cache {
        write_cache(c, &known);
    }
    Ok(stats)
}

/// Writes the cache atomically (a temporary file renamed over it); failures are logged only.
fn write_cache(path: &Path, cache: &VerifiedCache) {
    let write = || -> std::io::Result<()> {
        let parent = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)?;
        let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
        serde_json::to_writer(&mut tmp, cache)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    if let Err(e) = write() {
        log::debug!(
            "cannot write the model verification cache {}: {e}",
            path.display()
        );
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, RuntimeError> {
    let err = |e: std::io::Error| RuntimeError::File {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    };
    let mut file = std::fs::File::open(path).map_err(err)?;
    digest_reader(&mut file, Sha256::new()).map_err(err)
}

/// Feeds everything `reader` yields to `hasher` (which may hold a prefix already), hex digest.
pub(crate) fn digest_reader<D: Digest>(
    reader: &mut impl Read,
    mut hasher: D,
) -> std::io::Result<String> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Directories searched for models, in order: `--models DIR`, `$PIXELREFER_MODELS`, `./models`,
/// and the user data directory (`~/.local/share/pixelrefer-studio/models`).
pub fn model_search_dirs(cli: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = cli {
        out.push(dir.to_path_buf());
    }
    if let Ok(env) = std::env::var("PIXELREFER_MODELS")
        && !env.is_empty()
    {
        out.push(PathBuf::from(env));
    }
    out.push(PathBuf::from("models"));
    if let Some(data) = dirs::data_dir() {
        out.push(data.join("pixelrefer-studio").join("models"));
    }
    out
}

/// Model directories found in the search dirs: a search dir that is itself a model directory,
/// or its immediate subdirectories that hold a manifest (hidden ones excepted). Unreadable
/// entries are skipped.
pub fn find_model_dirs(cli: Option<&Path>) -> Vec<(PathBuf, Manifest)> {
    let mut out = Vec::new();
    for dir in model_search_dirs(cli) {
        if let Ok(m) = Manifest::load(&dir) {
            out.push((dir, m));
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        // Hidden folders (`.staging`, where fetched models are exported) are never models.
        let mut subdirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        subdirs.sort();
        for sub in subdirs {
            if let Ok(m) = Manifest::load(&sub) {
                out.push((sub, m));
            }
        }
    }
    out
}
