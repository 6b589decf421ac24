//! Checks made before a model's graphs are loaded: that this build and CPU can run the model's
//! weight quantization, and that the machine has the memory the model needs. Each failure is
//! one sentence naming the model directory; nothing is half-loaded.

use super::{ExecutionProvider, Manifest, ModelKind, RuntimeError, SessionOptions};
use std::path::Path;

/// Quantization schemes this build runs (written by `onnx/common/quantize.py`).
pub const SUPPORTED_SCHEMES: &[&str] = &["int8", "int4"];

/// Operators a quantized graph may use: ONNX Runtime's `com.microsoft` MatMulNBits and
/// GatherBlockQuantized (LLM) and the standard MatMulInteger / DynamicQuantizeLinear (vision
/// encoder), all in every ONNX Runtime this build accepts (1.22 or newer).
pub const SUPPORTED_OPERATORS: &[&str] = &[
    "MatMulNBits",
    "GatherBlockQuantized",
    "MatMulInteger",
    "DynamicQuantizeLinear",
];

/// A manifest's `quantization` entry: an opt-in export whose weights are stored in fewer bits
/// (its outputs differ from the fp32 model's).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quantization {
    /// `int8` or `int4`.
    pub scheme: String,
    /// How (free text, shown in the model chooser's details).
    #[serde(default)]
    pub method: String,
    /// Operators the quantized graphs use.
    #[serde(default)]
    pub operators: Vec<String>,
    /// Bits of the LLM's matrices.
    #[serde(default)]
    pub llm_bits: Option<u32>,
    /// Bits of the vision encoder's matrices.
    #[serde(default)]
    pub vision_bits: Option<u32>,
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.scheme)
    }
}

/// Environment variable capping the memory a model may assume (MiB), for shared machines: the
/// check uses the smaller of it and what the system reports available.
pub const MEMORY_LIMIT_ENV: &str = "PIXELREFER_MEMORY_LIMIT_MB";

/// Environment variable that skips the memory check (`1`), for a user who knows better (swap,
/// memory about to be freed).
pub const SKIP_MEMORY_CHECK_ENV: &str = "PIXELREFER_SKIP_MEMORY_CHECK";

/// Working memory on top of the weights, by model kind: activations and ONNX Runtime's arena.
/// Rough figures from the benches on this project's random-weight exports (SAM 2.1-tiny peaks at
/// about 1.5 GiB above its 150 MB of weights when encoding a 1024×1024 frame; PixelRefer's vision
/// encoder and a prompt of a few thousand tokens stay under 1 GiB above the weights).
fn working_bytes(kind: ModelKind) -> u64 {
    match kind {
        ModelKind::Sam2 => 1536 << 20,
        _ => 1 << 30,
    }
}

/// Bytes the model is expected to need: its graph files (ONNX Runtime keeps every weight
/// resident) plus the working memory of its kind.
pub fn estimated_need_bytes(dir: &Path, manifest: &Manifest) -> u64 {
    let weights: u64 = manifest
        .graphs
        .values()
        .flat_map(|g| std::iter::once(&g.file).chain(g.external_data.as_ref()))
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    weights + working_bytes(manifest.kind)
}

/// Memory this process may use now, in bytes: the system's available memory (cgroup limits
/// included), capped by [`MEMORY_LIMIT_ENV`]; None when unknown.
pub fn available_memory_bytes() -> Option<u64> {
    let mut avail = None;
    if let Ok(mut system) = sysinfo::System::new() {
        system.refresh_memory();
        avail = Some(system.available_memory()).filter(|&b| b > 0);
        if let Some(cg) = system.cgroup_limits() {
            let room = cg.total_memory.saturating_sub(cg.rss);
            avail = Some(avail.map_or(room, |a| a.min(room)));
        }
    }
    if let Some(mb) = std::env::var(MEMORY_LIMIT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        let cap = mb.saturating_mul(1 << 20);
        avail = Some(avail.map_or(cap, |a| a.min(cap)));
    }
    avail
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 30)
}

impl Manifest {
    /// The checks before loading: the quantization is one this build and CPU run, and (for
    /// graphs that run here) the memory the model needs is available. Returns warnings that do
    /// not stop the load (a CPU without the fast int8 kernels).
    pub fn check_can_run(
        &self,
        dir: &Path,
        options: &SessionOptions,
    ) -> Result<Vec<String>, RuntimeError> {
        options.validate()?;
        let mut warnings = Vec::new();
        if let Some(q) = &self.quantization {
            let err = |reason: String| RuntimeError::Quantization {
                path: dir.to_path_buf(),
                reason,
            };
            if !SUPPORTED_SCHEMES.contains(&q.scheme.as_str()) {
                return Err(err(format!(
                    "`{}`, which this version cannot run (it runs {})",
                    q.scheme,
                    SUPPORTED_SCHEMES.join(" and ")
                )));
            }
            if let Some(op) = q
                .operators
                .iter()
                .find(|op| !SUPPORTED_OPERATORS.contains(&op.as_str()))
            {
                return Err(err(format!(
                    "{} with the operator {op}, which this version cannot run",
                    q.scheme
                )));
            }
            if options.remote.is_none() {
                if options.provider == ExecutionProvider::Cuda {
                    warnings.push(format!(
                        "{} is a {} CPU export; on CUDA, use the fp16 export for speed",
                        dir.display(),
                        q.scheme
                    ));
                }
                if !fast_int8_kernels() {
                    warnings.push(format!(
                        "this CPU lacks the instructions (AVX2 on x86-64) of ONNX Runtime's fast {} kernels: {} will run, but slower than its fp32 export",
                        q.scheme,
                        dir.display()
                    ));
                }
            }
        }
        if options.remote.is_none() && std::env::var(SKIP_MEMORY_CHECK_ENV).as_deref() != Ok("1") {
            let need = estimated_need_bytes(dir, self);
            if let Some(avail) = available_memory_bytes()
                && need > avail
            {
                return Err(RuntimeError::Memory {
                    path: dir.to_path_buf(),
                    need_gib: gib(need),
                    available_gib: gib(avail),
                });
            }
        }
        Ok(warnings)
    }
}

/// Whether MLAS has its fast block-quantized kernels on this CPU (x86-64: AVX2; aarch64: NEON
/// is always there).
pub fn fast_int8_kernels() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        cfg!(target_arch = "aarch64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(quant: Option<&str>, ops: &[&str]) -> Manifest {
        let mut m: Manifest = serde_json::from_value(serde_json::json!({
            "format": "pixelrefer-studio-model", "version": 1, "kind": "pixelrefer-lite",
            "variant": "t", "graphs": {}
        }))
        .expect("manifest");
        m.quantization = quant.map(|s| Quantization {
            scheme: s.into(),
            method: String::new(),
            operators: ops.iter().map(|s| s.to_string()).collect(),
            llm_bits: None,
            vision_bits: None,
        });
        m
    }

    #[test]
    fn unknown_schemes_and_operators_are_refused_before_loading() {
        let dir = Path::new("/models/x");
        let opts = SessionOptions::default();
        let e = manifest(Some("fp4"), &[])
            .check_can_run(dir, &opts)
            .expect_err("fp4");
        assert_eq!(
            e.to_string(),
            "/models/x is quantized as `fp4`, which this version cannot run (it runs int8 and int4)"
        );
        let e = manifest(Some("int4"), &["MatMulNBits", "QMoE"])
            .check_can_run(dir, &opts)
            .expect_err("op");
        assert!(e.to_string().contains("operator QMoE"), "{e}");
        manifest(Some("int4"), &["MatMulNBits", "GatherBlockQuantized"])
            .check_can_run(dir, &opts)
            .expect("int4 runs");
        manifest(None, &[]).check_can_run(dir, &opts).expect("fp32");
    }

    #[test]
    fn thread_counts_are_checked_too() {
        let opts = SessionOptions {
            intra_threads: 100_000,
            ..SessionOptions::default()
        };
        let e = manifest(None, &[])
            .check_can_run(Path::new("/m"), &opts)
            .expect_err("threads");
        assert!(e.to_string().contains("100000 threads"), "{e}");
    }
}
