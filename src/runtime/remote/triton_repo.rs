//! Writes a Triton model repository from model directories: one Triton model per graph, named
//! by [`super::model_name`], with a `config.pbtxt` for the ONNX Runtime backend
//! (`REPO/<name>/config.pbtxt`, `REPO/<name>/1/model.onnx`, the external-data file beside it).
//!
//! Model configuration rules (Triton's `model_config.proto` and model-configuration docs): with
//! `max_batch_size > 0` the first dimension of every input and output is the batch and is left
//! out of `dims`; `-1` marks a variable dimension. A graph is batched only when every input and
//! output starts with the same batch axis as the exporters name it (`batch` or `B`) and has a
//! dimension after it (Triton refuses a tensor that is only the batch, `dims: [ ]`): the SAM 2
//! image encoder and the PixelRefer token embedding and decoder (requests of equal shapes are
//! batched). Other leading axes (patches, tokens, a bank's frames) are not batches, and batching
//! them would mix requests.

use super::model_name;
use crate::runtime::{GraphSpec, Manifest, RuntimeError, TensorSpec};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceKind {
    /// `KIND_GPU` (the server's GPUs).
    Gpu,
    /// `KIND_CPU`.
    Cpu,
}

/// How to write the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoOptions {
    /// Instance kind of every model.
    pub kind: InstanceKind,
    /// Instances per model (per GPU for `KIND_GPU`).
    pub instances: u32,
    /// Largest batch of a batched graph.
    pub max_batch_size: u32,
}

impl Default for RepoOptions {
    fn default() -> Self {
        Self {
            kind: InstanceKind::Gpu,
            instances: 1,
            max_batch_size: 8,
        }
    }
}

/// One Triton model written (or already present with the same content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenModel {
    /// Triton model name.
    pub name: String,
    /// The model directory it came from.
    pub source: PathBuf,
    /// The graph role.
    pub role: String,
    /// Whether it has dynamic batching.
    pub batched: bool,
    /// False when a model of this name was already in the repository (same content).
    pub new: bool,
}

/// The batch axis name of a graph, when every input and output starts with it.
fn batch_axis(spec: &GraphSpec) -> Option<&str> {
    fn first(t: &TensorSpec) -> Option<&str> {
        t.shape.first().and_then(serde_json::Value::as_str)
    }
    let axis = spec.inputs.first().and_then(first)?;
    if !matches!(axis, "batch" | "B") {
        return None;
    }
    spec.inputs
        .iter()
        .chain(&spec.outputs)
        .all(|t| first(t) == Some(axis) && t.shape.len() >= 2)
        .then_some(axis)
}

fn triton_type(dtype: &str) -> Option<&'static str> {
    Some(match dtype.to_ascii_lowercase().as_str() {
        "float32" => "TYPE_FP32",
        "float16" => "TYPE_FP16",
        "int64" => "TYPE_INT64",
        "int32" => "TYPE_INT32",
        "bool" => "TYPE_BOOL",
        "uint8" => "TYPE_UINT8",
        _ => return None,
    })
}

fn tensors(
    out: &mut String,
    what: &str,
    list: &[TensorSpec],
    batched: bool,
    dir: &Path,
) -> Result<(), RuntimeError> {
    let _ = writeln!(out, "{what} [");
    for (i, t) in list.iter().enumerate() {
        let ty = triton_type(&t.dtype).ok_or_else(|| RuntimeError::Manifest {
            path: dir.to_path_buf(),
            reason: format!(
                "tensor `{}` has type {}, which Triton has no name for",
                t.name, t.dtype
            ),
        })?;
        let dims: Vec<String> = t
            .shape
            .iter()
            .skip(usize::from(batched))
            .map(|d| {
                d.as_i64()
                    .map_or_else(|| "-1".to_string(), |n| n.to_string())
            })
            .collect();
        let comma = if i + 1 < list.len() { "," } else { "" };
        let _ = writeln!(
            out,
            "  {{\n    name: \"{}\"\n    data_type: {ty}\n    dims: [ {} ]\n  }}{comma}",
            t.name.replace('\\', "\\\\").replace('"', "\\\""),
            dims.join(", ")
        );
    }
    let _ = writeln!(out, "]");
    Ok(())
}

/// The `config.pbtxt` of one graph.
pub fn model_config(
    name: &str,
    spec: &GraphSpec,
    source: &str,
    dir: &Path,
    options: &RepoOptions,
) -> Result<(String, bool), RuntimeError> {
    let batched = batch_axis(spec).is_some() && options.max_batch_size > 0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by pixelrefer-studio serve triton-repo: {source}"
    );
    let _ = writeln!(out, "name: \"{name}\"");
    let _ = writeln!(out, "backend: \"onnxruntime\"");
    let _ = writeln!(out, "default_model_filename: \"model.onnx\"");
    let _ = writeln!(
        out,
        "max_batch_size: {}",
        if batched { options.max_batch_size } else { 0 }
    );
    tensors(&mut out, "input", &spec.inputs, batched, dir)?;
    tensors(&mut out, "output", &spec.outputs, batched, dir)?;
    let kind = match options.kind {
        InstanceKind::Gpu => "KIND_GPU",
        InstanceKind::Cpu => "KIND_CPU",
    };
    let _ = writeln!(
        out,
        "instance_group [\n  {{\n    count: {}\n    kind: {kind}\n  }}\n]",
        options.instances.max(1)
    );
    if batched {
        let _ = writeln!(
            out,
            "dynamic_batching {{\n  max_queue_delay_microseconds: 2000\n}}"
        );
    }
    Ok((out, batched))
}

fn io_err(path: &Path, e: std::io::Error) -> RuntimeError {
    RuntimeError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Hard-links `from` to `to` (same file system: no copy of gigabytes), else copies it.
fn link_or_copy(from: &Path, to: &Path) -> Result<(), RuntimeError> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| io_err(to, e))
}

/// Writes (or adds to) the repository at `out` from `model_dirs`. Every model directory is
/// verified first (its files against the manifest's sha256), so nothing is written for a
/// damaged model. Each Triton model is assembled in a hidden staging folder beside `out` and
/// renamed into place: a reader (or Triton polling the repository) never sees half a model. A
/// model already present under the same name has the same graph and is kept.
pub fn write_repo(
    model_dirs: &[PathBuf],
    out: &Path,
    options: &RepoOptions,
) -> Result<Vec<WrittenModel>, RuntimeError> {
    let mut plan = Vec::new();
    for dir in model_dirs {
        let manifest = Manifest::load(dir)?;
        manifest.verify_files(dir)?;
        for (role, spec) in &manifest.graphs {
            let name = model_name(&manifest, dir, role)?;
            let source = format!(
                "{} ({} {}), graph {role}",
                dir.display(),
                manifest.kind,
                manifest.variant
            );
            let (config, batched) = model_config(&name, spec, &source, dir, options)?;
            plan.push((
                dir.clone(),
                role.clone(),
                spec.clone(),
                name,
                config,
                batched,
            ));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
    let parent = out.parent().unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".triton-repo-staging-")
        .tempdir_in(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        })
        .map_err(|e| io_err(parent, e))?;
    let mut written = Vec::new();
    for (dir, role, spec, name, config, batched) in plan {
        let target = out.join(&name);
        let exists =
            target.join("config.pbtxt").is_file() && target.join("1").join("model.onnx").is_file();
        if !exists && !written.iter().any(|w: &WrittenModel| w.name == name) {
            let stage = staging.path().join(&name);
            let version = stage.join("1");
            std::fs::create_dir_all(&version).map_err(|e| io_err(&version, e))?;
            std::fs::write(stage.join("config.pbtxt"), &config)
                .map_err(|e| io_err(&stage.join("config.pbtxt"), e))?;
            link_or_copy(&dir.join(&spec.file), &version.join("model.onnx"))?;
            if let Some(data) = &spec.external_data {
                // The graph names its weights file by this relative name.
                link_or_copy(&dir.join(data), &version.join(data))?;
            }
            if target.exists() {
                std::fs::remove_dir_all(&target).map_err(|e| io_err(&target, e))?;
            }
            std::fs::rename(&stage, &target).map_err(|e| io_err(&target, e))?;
        }
        let new = !exists && !written.iter().any(|w: &WrittenModel| w.name == name);
        written.push(WrittenModel {
            name,
            source: dir,
            role,
            batched,
            new,
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, dtype: &str, shape: serde_json::Value) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype: dtype.into(),
            shape: shape.as_array().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn only_true_batch_axes_are_batched() {
        let encoder = GraphSpec {
            file: "e.onnx".into(),
            inputs: vec![t("image", "float32", serde_json::json!(["batch", 3, 8, 8]))],
            outputs: vec![t("f", "float32", serde_json::json!(["batch", 4]))],
            external_data: None,
        };
        let (config, batched) = model_config(
            "m",
            &encoder,
            "test",
            Path::new("."),
            &RepoOptions::default(),
        )
        .expect("config");
        assert!(batched);
        assert!(config.contains("max_batch_size: 8"), "{config}");
        assert!(config.contains("dims: [ 3, 8, 8 ]"), "{config}");
        assert!(config.contains("dynamic_batching"), "{config}");
        let vision = GraphSpec {
            file: "v.onnx".into(),
            inputs: vec![t("p", "float16", serde_json::json!(["num_patches", 588]))],
            outputs: vec![t("f", "float16", serde_json::json!(["num_patches", 32]))],
            external_data: None,
        };
        let (config, batched) = model_config(
            "v",
            &vision,
            "test",
            Path::new("."),
            &RepoOptions::default(),
        )
        .expect("config");
        assert!(!batched);
        assert!(config.contains("max_batch_size: 0"), "{config}");
        assert!(config.contains("dims: [ -1, 588 ]"), "{config}");
        assert!(config.contains("TYPE_FP16"), "{config}");
        assert!(!config.contains("dynamic_batching"), "{config}");
    }
}
