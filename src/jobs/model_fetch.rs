//! Fetch → export → verify → install of a catalogue model, and the reference check that
//! `models verify` and the install share (DESIGN.md §4).
//!
//! [`fetch_model`] downloads the upstream files through the hub ([`crate::runtime::hub`]),
//! runs the project's exporter in the managed Python environment into a hidden staging folder,
//! replays the reference cases the exporter wrote from the PyTorch pipeline on the real weights
//! ([`verify_model`]), and only then renames the folder into place
//! ([`crate::runtime::install`]). Any failure or a cancel leaves no model directory behind;
//! downloaded bytes stay in the hub cache and are reused by the next attempt.

use crate::refer::PixelRefer;
use crate::refer::reference as refer_reference;
use crate::runtime::catalog::CatalogEntry;
use crate::runtime::hub::{DownloadProgress, FileHash, Hub, HubConfig, HubError, check_free_space};
use crate::runtime::install::{
    ExportEvent, Exporters, InstallError, InstallRecord, RecordedFile, Staging, now_seconds,
    run_exporter,
};
use crate::runtime::{Manifest, ModelKind, SessionOptions};
use crate::segment::reference::{Tolerances, run_reference};
use crate::segment::{Sam2Config, Sam2Model};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a reference check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The directory has no `reference/`.
    #[error(
        "{dir} has no reference data (reference/cases.json): export the model with `onnx/{script} --checkpoint CKPT … --out {dir} --reference` to verify it"
    )]
    NoReference {
        /// The model directory.
        dir: PathBuf,
        /// The exporter that writes it.
        script: &'static str,
    },
    /// The model or its reference could not be loaded or run.
    #[error("{0}")]
    Failed(String),
    /// Outputs differ beyond the tolerances.
    #[error("{dir} does not match its reference: {failures}")]
    Mismatch {
        /// The model directory.
        dir: PathBuf,
        /// Every failed check, joined.
        failures: String,
    },
}

/// Replays `dir`'s bundled `reference/` cases through the Rust pipeline (SAM 2: image mask
/// IoU ≥ 0.99 and low-res logits max|diff| ≤ 1e-3; video mask IoU ≥ 0.98 on every frame,
/// object, direction and correction. PixelRefer / Lite: every case with the reference crops fed
/// in — prompt and greedy ids exact; vision features, object tokens and inputs_embeds
/// max|diff| ≤ 1e-4; first-step logits ≤ 2e-4 — and from raw inputs, ids exact). Lines go to
/// `on_line` (`[case] …`, `[turn] …`), notes (warnings, where it runs) to `on_note`; returns the
/// `[summary] …` line.
pub fn verify_model(
    dir: &Path,
    options: &SessionOptions,
    on_line: &mut dyn FnMut(&str),
    on_note: &mut dyn FnMut(&str),
) -> Result<String, VerifyError> {
    let manifest = Manifest::load(dir).map_err(|e| VerifyError::Failed(e.to_string()))?;
    let script = match manifest.kind {
        ModelKind::Sam2
            if Sam2Config::from_constants(&manifest.constants)
                .is_ok_and(|c| c.family() == "edgetam") =>
        {
            "export_edgetam.py"
        }
        ModelKind::Sam2 => "export_sam2.py",
        ModelKind::PixelRefer | ModelKind::PixelReferLite => "export_pixelrefer.py",
    };
    if let Some(q) = &manifest.quantization
        && !dir.join("reference").join("cases.json").is_file()
    {
        return Err(VerifyError::Failed(format!(
            "{} is an {q} quantized export: its answers differ from the fp32 reference by design; measure how far with `pixelrefer-studio models compare FP32_DIR {}`",
            dir.display(),
            dir.display()
        )));
    }
    if !dir.join("reference").join("cases.json").is_file() {
        return Err(VerifyError::NoReference {
            dir: dir.to_path_buf(),
            script,
        });
    }
    let (summary, failures) = match manifest.kind {
        ModelKind::Sam2 => verify_sam2(dir, options, on_line, on_note)?,
        ModelKind::PixelRefer | ModelKind::PixelReferLite => {
            verify_pixelrefer(dir, &manifest, options, on_line, on_note)?
        }
    };
    if failures.is_empty() {
        Ok(summary)
    } else {
        on_line(&summary);
        Err(VerifyError::Mismatch {
            dir: dir.to_path_buf(),
            failures: failures.join("; "),
        })
    }
}

fn verify_sam2(
    dir: &Path,
    options: &SessionOptions,
    on_line: &mut dyn FnMut(&str),
    on_note: &mut dyn FnMut(&str),
) -> Result<(String, Vec<String>), VerifyError> {
    let model = Sam2Model::load(dir, options).map_err(|e| VerifyError::Failed(e.to_string()))?;
    for w in model.warnings() {
        on_note(&format!("warning: {w}"));
    }
    on_note(&format!(
        "[sam2] {} ({}) on {}",
        dir.display(),
        model.variant(),
        model.provider()
    ));
    let report =
        run_reference(Arc::new(model), on_line).map_err(|e| VerifyError::Failed(e.to_string()))?;
    let tol = Tolerances::default();
    let summary = format!(
        "[summary] image: min mask IoU {:.4} (≥ {}), logits max|diff| {:.2e} (≤ {:.0e}); video: min mask IoU {:.4} (≥ {}) over {} frame-objects, object score max|diff| {:.2e}, pooled logits max|diff| {:.2e}, object pointer max|diff| {:.2e} (≤ {:.0e}), memory-bank mismatches {}",
        report.image_min_iou(),
        tol.image_min_iou,
        report.image_logits_max_abs_diff(),
        tol.image_logits_max_abs_diff,
        report.video_min_iou(),
        tol.video_min_iou,
        report.video_comparisons(),
        report.video_score_max_abs_diff(),
        report.video_logits_pool4_max_abs_diff(),
        report.video_obj_ptr_max_abs_diff(),
        tol.video_obj_ptr_max_abs_diff,
        report.bank_mismatches()
    );
    Ok((summary, report.failures(&tol)))
}

fn verify_pixelrefer(
    dir: &Path,
    manifest: &Manifest,
    options: &SessionOptions,
    on_line: &mut dyn FnMut(&str),
    on_note: &mut dyn FnMut(&str),
) -> Result<(String, Vec<String>), VerifyError> {
    let mut model = PixelRefer::load(dir, options).map_err(|e| {
        VerifyError::Failed(format!("cannot load the model in {}: {e}", dir.display()))
    })?;
    for w in model.warnings() {
        on_note(&format!("warning: {w}"));
    }
    on_note(&format!(
        "[{}] {} on {}",
        manifest.kind,
        dir.display(),
        model.provider()
    ));
    let report = refer_reference::run_reference(&mut model, dir, &mut |line| on_line(line))
        .map_err(|e| VerifyError::Failed(e.to_string()))?;
    let tol = refer_reference::Tolerances::default();
    let turns = report.turn_count();
    let summary = format!(
        "[summary] {} cases, {turns} turns; reference crops: ids exact {}/{turns}; raw inputs ({}): ids exact {}/{turns}; vision features max|diff| {:.2e}, object tokens {:.2e}, inputs_embeds {:.2e} (≤ {:.0e}); first logits max|diff| {:.2e} (≤ {:.0e}); exact host mismatches {}",
        report.cases.len(),
        report.reference_crops_exact(),
        refer_reference::raw_role(&tol),
        report.raw_inputs_exact(),
        report.vision_features_max_abs_diff(),
        report.object_tokens_max_abs_diff(),
        report.inputs_embeds_max_abs_diff(),
        tol.features_max_abs_diff,
        report.first_logits_max_abs_diff(),
        tol.logits_max_abs_diff,
        report.exact_mismatch_count()
    );
    Ok((summary, report.failures(&tol)))
}

/// What [`fetch_model`] needs.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The catalogue entry.
    pub entry: CatalogEntry,
    /// The folder the model is installed in (`ROOT/NAME`).
    pub root: PathBuf,
    /// The hub.
    pub hub: HubConfig,
    /// How the reference check runs the model.
    pub session: SessionOptions,
}

/// The stage a fetch is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStage {
    /// Listing the repository, checking disk space and the Python environment.
    Checking,
    /// Downloading.
    Downloading,
    /// Running the exporter.
    Exporting,
    /// Replaying the reference cases.
    Verifying,
    /// Renaming into place.
    Installing,
}

impl FetchStage {
    /// A word for people.
    pub fn label(self) -> &'static str {
        match self {
            FetchStage::Checking => "Checking",
            FetchStage::Downloading => "Downloading",
            FetchStage::Exporting => "Exporting",
            FetchStage::Verifying => "Verifying",
            FetchStage::Installing => "Installing",
        }
    }
}

/// Progress of a fetch.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchEvent {
    /// A new stage started.
    Stage(FetchStage),
    /// Download progress (bytes over all files).
    Download(DownloadProgress),
    /// An exporter step (`graph 2/4 prompt_decoder`).
    Export {
        /// Exporter stage (`graph`, `reference`…).
        stage: String,
        /// Step, 1-based.
        index: u64,
        /// Steps.
        total: u64,
        /// Graph or case.
        name: String,
    },
    /// A line of exporter or verification output.
    Line(String),
}

/// Why a fetch failed, one sentence.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Download or hub error.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// Export or install error.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// The export did not verify.
    #[error(
        "{name} was exported but failed its reference check, so it was not installed: {source}"
    )]
    Verify {
        /// The model.
        name: String,
        /// What failed.
        source: VerifyError,
    },
    /// Cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl FetchError {
    /// True when the fetch stopped because someone cancelled it.
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            FetchError::Cancelled
                | FetchError::Hub(HubError::Cancelled)
                | FetchError::Install(InstallError::Cancelled)
        )
    }
}

/// Fetches, exports, verifies and installs `request.entry` into `request.root/NAME`, returning
/// the installed directory. Checks before any download: not installed yet, the Python
/// environment and exporter exist, the repository lists every file, and the disk has room for
/// the download and the export.
pub fn fetch_model(
    request: &FetchRequest,
    on_event: &mut dyn FnMut(FetchEvent),
    cancel: &AtomicBool,
) -> Result<PathBuf, FetchError> {
    let entry = &request.entry;
    let dest = request.root.join(&entry.name);
    on_event(FetchEvent::Stage(FetchStage::Checking));
    if dest.exists() {
        return Err(InstallError::AlreadyInstalled {
            name: entry.name.clone(),
            path: dest,
        }
        .into());
    }
    let exporters = Exporters::find()?;
    exporters.script(entry.exporter_script())?;
    let hub = Hub::new(request.hub.clone());
    let plan = hub.plan(entry, cancel)?;
    let missing = hub.missing_bytes(&plan);
    let same_fs = same_file_system(&request.hub.cache_dir, &request.root);
    check_free_space(
        &request.root,
        entry.approx_disk_bytes + if same_fs { missing } else { 0 },
        &format!("installing {}", entry.name),
    )?;
    on_event(FetchEvent::Stage(FetchStage::Downloading));
    let snapshot = hub.download(
        &plan,
        &mut |p| on_event(FetchEvent::Download(p.clone())),
        cancel,
    )?;
    check_cancel(cancel)?;

    on_event(FetchEvent::Stage(FetchStage::Exporting));
    let staging = Staging::create(&request.root, &entry.name)?;
    let log = export_log_path(&entry.name);
    run_exporter(
        &exporters,
        entry,
        &snapshot,
        staging.path(),
        &log,
        &mut |event| match event {
            ExportEvent::Step {
                stage,
                index,
                total,
                name,
            } => on_event(FetchEvent::Export {
                stage,
                index,
                total,
                name,
            }),
            ExportEvent::Line(line) => on_event(FetchEvent::Line(line)),
        },
        cancel,
    )?;
    check_cancel(cancel)?;

    on_event(FetchEvent::Stage(FetchStage::Verifying));
    let summary = verify_model(
        staging.path(),
        &request.session,
        &mut |line| on_event(FetchEvent::Line(line.to_string())),
        &mut |_| {},
    )
    .map_err(|source| FetchError::Verify {
        name: entry.name.clone(),
        source,
    })?;
    on_event(FetchEvent::Line(summary.clone()));
    check_cancel(cancel)?;

    on_event(FetchEvent::Stage(FetchStage::Installing));
    let record = InstallRecord {
        name: entry.name.clone(),
        display_name: entry.display_name.clone(),
        repo: plan.repo.clone(),
        revision: plan.revision.clone(),
        commit: plan.commit.clone(),
        files: plan
            .files
            .iter()
            .map(|f| RecordedFile {
                path: f.path.clone(),
                size: f.size,
                hash: match &f.hash {
                    FileHash::Sha256(h) => format!("sha256:{h}"),
                    FileHash::GitBlob(h) => format!("git-blob:{h}"),
                },
            })
            .collect(),
        exporter: entry.exporter.clone(),
        installed_at: now_seconds(),
        verified: summary,
    };
    Ok(staging.commit(&record)?)
}

fn check_cancel(cancel: &AtomicBool) -> Result<(), FetchError> {
    if cancel.load(Ordering::Relaxed) {
        Err(FetchError::Cancelled)
    } else {
        Ok(())
    }
}

/// Where the exporter's whole output for `name` is kept: `~/.cache/pixelrefer-studio/logs/`.
pub fn export_log_path(name: &str) -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("pixelrefer-studio")
        .join("logs")
        .join(format!("export-{name}.log"))
}

/// Whether two paths (or their nearest existing ancestors) are on one file system.
fn same_file_system(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let dev = |p: &Path| {
            p.ancestors()
                .find_map(|q| std::fs::metadata(q).ok())
                .map(|m| m.dev())
        };
        matches!((dev(a), dev(b)), (Some(x), Some(y)) if x == y)
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        true
    }
}
