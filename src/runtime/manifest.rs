//! Model directories: `manifest.json`, file hashes, search paths (DESIGN.md §4).

use super::RuntimeError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The manifest's file name inside a model directory.
pub const MANIFEST_FILE: &str = "manifest.json";

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
    /// sha256 (hex) of every file, by file name.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

impl Manifest {
    /// Reads `DIR/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, RuntimeError> {
        let path = dir.join(MANIFEST_FILE);
        let err = |reason: String| RuntimeError::Manifest {
            path: dir.to_path_buf(),
            reason,
        };
        if !dir.is_dir() {
            return Err(err("it is not a directory".into()));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| err(format!("cannot read {MANIFEST_FILE}: {e}")))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| err(format!("{MANIFEST_FILE} is invalid: {e}")))?;
        if manifest.format != "pixelrefer-studio-model" {
            return Err(err(format!(
                "{MANIFEST_FILE} has format `{}`, expected `pixelrefer-studio-model`",
                manifest.format
            )));
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

    /// Checks that every file listed in `files` exists and has its recorded sha256.
    pub fn verify_files(&self, dir: &Path) -> Result<(), RuntimeError> {
        for (name, want) in &self.files {
            let path = dir.join(name);
            let have = sha256_file(&path)?;
            if !have.eq_ignore_ascii_case(want) {
                return Err(RuntimeError::File {
                    path,
                    reason: format!(
                        "sha256 is {have}, the manifest records {want}: the file changed after export"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String, RuntimeError> {
    let err = |e: std::io::Error| RuntimeError::File {
        path: path.to_path_buf(),
        reason: format!("cannot read: {e}"),
    };
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
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
/// or its immediate subdirectories that hold a manifest. Unreadable entries are skipped.
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
        let mut subdirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        subdirs.sort();
        for sub in subdirs {
            if let Ok(m) = Manifest::load(&sub) {
                out.push((sub, m));
            }
        }
    }
    out
}
