//! `models list`, `models fetch` and `models remove`: the catalogue, downloads and installed
//! model directories from the command line (progress bar from `indicatif`, Ctrl-C cancels).

use crate::jobs::{FetchEvent, FetchRequest, FetchStage, fetch_model};
use crate::runtime::catalog::{Catalog, CatalogEntry, Pick};
use crate::runtime::hub::{HubConfig, format_bytes};
use crate::runtime::install::{
    InstallRecord, default_install_root, installed_name, remove_installed,
};
use crate::runtime::{ModelKind, SessionOptions, find_model_dirs, model_search_dirs};
use anyhow::{Context as _, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Installed models and what the catalogue offers. `json` prints one JSON object instead.
pub fn list(models: Option<&Path>, catalog: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let catalog = Catalog::load(catalog)?;
    let hub = HubConfig::from_env();
    let installed = find_model_dirs(models);
    let machine = crate::runtime::MachineInfo::detect();
    let rec = catalog.recommend(machine.cuda, machine.memory_bytes);
    if json {
        let value = serde_json::json!({
            "catalog": catalog.source,
            "machine": {"cuda": machine.cuda, "memory_bytes": machine.memory_bytes},
            "installed": installed.iter().map(|(dir, m)| serde_json::json!({
                "name": installed_name(dir),
                "path": dir,
                "kind": m.kind,
                "variant": m.variant,
                "bytes": dir_size(dir),
                "from_catalog": InstallRecord::load(dir).is_some(),
            })).collect::<Vec<_>>(),
            "available": catalog.models.iter().map(|e| serde_json::json!({
                "name": e.name,
                "display_name": e.display_name,
                "kind": e.kind,
                "repo": e.repo,
                "license": e.license,
                "approx_download_bytes": e.approx_download_bytes,
                "approx_disk_bytes": e.approx_disk_bytes,
                "approx_memory_bytes": e.approx_memory_bytes,
                "recommended": rec.pick(e) == Some(Pick::Recommended),
                "faster": rec.pick(e) == Some(Pick::Faster),
                "tradeoff": (!e.tradeoff.is_empty()).then_some(&e.tradeoff),
                "installed": installed.iter().any(|(d, _)| installed_name(d).as_deref() == Some(e.name.as_str())),
                "in_hub_cache": in_hub_cache(&hub, e),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("Installed:");
    if installed.is_empty() {
        println!(
            "  (none; searched {})",
            join_paths(&model_search_dirs(models))
        );
    }
    for (dir, manifest) in &installed {
        println!(
            "  {:<26} {:<16} {:>9}  {}",
            installed_name(dir).unwrap_or_default(),
            manifest.kind.to_string(),
            format_bytes(dir_size(dir)),
            dir.display()
        );
    }
    println!(
        "\nAvailable (catalogue: {}; this machine: {}, {} memory; * = recommended, + = faster, less accurate):",
        catalog.source,
        if machine.cuda { "CUDA" } else { "CPU only" },
        format_bytes(machine.memory_bytes)
    );
    for e in &catalog.models {
        let done = installed
            .iter()
            .any(|(d, _)| installed_name(d).as_deref() == Some(e.name.as_str()));
        println!(
            "{} {:<26} {:<30} {:<16} download ~{:>7}, disk ~{:>7}, memory ~{:>7}  {}{}{}",
            match rec.pick(e) {
                Some(Pick::Recommended) => "*",
                Some(Pick::Faster) => "+",
                None => " ",
            },
            e.name,
            e.display_name,
            e.kind.to_string(),
            format_bytes(e.approx_download_bytes),
            format_bytes(e.approx_disk_bytes),
            format_bytes(e.approx_memory_bytes),
            e.license,
            if done { "  [installed]" } else { "" },
            if !done && in_hub_cache(&hub, e) {
                "  [in hub cache]"
            } else {
                ""
            },
        );
    }
    if let Some(f) = rec.faster_sam2 {
        println!("\n+ {}: {}.", f.display_name, f.tradeoff);
    }
    println!(
        "\n`pixelrefer-studio models fetch NAME` downloads, exports, verifies and installs one."
    );
    Ok(())
}

/// `models fetch NAME`: download, export, verify, install into `models` (default: the user
/// models folder), with a progress bar; Ctrl-C cancels (the download resumes next time).
pub fn fetch(
    name: &str,
    models: Option<&Path>,
    catalog: Option<&Path>,
    session: SessionOptions,
) -> anyhow::Result<()> {
    let catalog = Catalog::load(catalog)?;
    let entry = catalog.get(name)?.clone();
    let root = match models {
        Some(dir) => dir.to_path_buf(),
        None => default_install_root()
            .ok_or_else(|| anyhow!("this system has no user data folder; give --models DIR"))?,
    };
    let hub = HubConfig::from_env();
    eprintln!(
        "[fetch] {} ({}) from {}/{} into {}; hub cache {}",
        entry.display_name,
        entry.license,
        hub.endpoint,
        entry.repo,
        root.display(),
        hub.cache_dir.display()
    );
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = Arc::clone(&cancel);
        // A second handler (a test harness calling twice) is not an error worth stopping for.
        let _ = ctrlc::set_handler(move || cancel.store(true, Ordering::Relaxed));
    }
    let request = FetchRequest {
        entry,
        root,
        hub,
        session,
    };
    let mut view = FetchView::new();
    let result = fetch_model(&request, &mut |event| view.show(event), &cancel);
    view.finish();
    match result {
        Ok(dir) => {
            eprintln!("[fetch] installed {}", dir.display());
            println!("{}", dir.display());
            Ok(())
        }
        Err(e) if e.is_cancelled() => Err(anyhow!(
            "cancelled; nothing was installed (run the same command to resume the download)"
        )),
        Err(e) => Err(e).with_context(|| format!("cannot fetch {name}")),
    }
}

/// `models remove NAME`: deletes an installed model directory (the download stays in the hub
/// cache).
pub fn remove(name: &str, models: Option<&Path>) -> anyhow::Result<()> {
    let mut roots = model_search_dirs(models);
    roots.dedup();
    let dir = remove_installed(&roots, name)?;
    eprintln!(
        "[remove] removed {} (its download stays in the hub cache, {})",
        dir.display(),
        HubConfig::from_env().cache_dir.display()
    );
    Ok(())
}

/// Progress on stderr: an `indicatif` bar on a terminal, a line every few seconds otherwise.
struct FetchView {
    bar: Option<ProgressBar>,
    terminal: bool,
    last_line: Instant,
    stage: Option<FetchStage>,
}

impl FetchView {
    fn new() -> Self {
        FetchView {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
            last_line: Instant::now(),
            stage: None,
        }
    }

    fn bar(&mut self, style: &str, len: u64) -> &ProgressBar {
        self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template(style)
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        })
    }

    fn show(&mut self, event: FetchEvent) {
        match event {
            FetchEvent::Stage(stage) => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                self.stage = Some(stage);
                eprintln!("[fetch] {}…", stage.label().to_lowercase());
            }
            FetchEvent::Download(p) => {
                if self.terminal {
                    let bar = self.bar(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left",
                        p.total,
                    );
                    bar.set_length(p.total);
                    bar.set_position(p.done);
                    bar.set_message(format!("{} ({}/{})", p.file, p.index, p.files));
                } else if self.last_line.elapsed() >= Duration::from_secs(2) || p.done == p.total {
                    self.last_line = Instant::now();
                    eprintln!(
                        "[fetch] {} ({}/{}): {} of {}",
                        p.file,
                        p.index,
                        p.files,
                        format_bytes(p.done),
                        format_bytes(p.total)
                    );
                }
            }
            FetchEvent::Export {
                stage,
                index,
                total,
                name,
            } => {
                let text = format!("{stage} {index}/{total} {name}");
                if self.terminal {
                    let bar = self.bar("{spinner} exporting: {msg} ({elapsed})", 0);
                    bar.set_message(text);
                } else {
                    eprintln!("[fetch] export: {text}");
                }
            }
            FetchEvent::Line(line) => {
                let stage_is_verify = self.stage == Some(FetchStage::Verifying);
                if stage_is_verify || line.starts_with("[summary]") || line.starts_with("error") {
                    match &self.bar {
                        Some(bar) => bar.println(&line),
                        None => eprintln!("{line}"),
                    }
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Whether every explicitly named file of `entry` is in the hub cache at its revision.
fn in_hub_cache(hub: &HubConfig, entry: &CatalogEntry) -> bool {
    let repo = hub.repo_dir(&entry.repo);
    let Ok(commit) = std::fs::read_to_string(repo.join("refs").join(&entry.revision)) else {
        return false;
    };
    let snapshot = repo.join("snapshots").join(commit.trim());
    snapshot.is_dir() && entry.files.iter().all(|f| snapshot.join(&f.path).is_file())
}

/// Bytes of the regular files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How `models compare` probes the two models.
#[derive(Debug, Clone, Copy)]
pub struct CompareProbe<'a> {
    /// Image to use (default: a synthetic one).
    pub image: Option<&'a Path>,
    /// PixelRefer: greedy steps compared.
    pub steps: usize,
    /// SAM 2: frames tracked.
    pub frames: usize,
}

/// `models compare REFERENCE OTHER`: for PixelRefer models greedy token agreement and the
/// largest logit difference ([`crate::refer::compare`]); for SAM 2 models the IoU of every mask
/// ([`crate::segment::compare`]); as text or one JSON object.
pub fn compare(
    reference: &Path,
    other: &Path,
    probe: CompareProbe,
    json: bool,
    options: &SessionOptions,
) -> anyhow::Result<()> {
    use crate::refer::{CancelToken, PixelRefer, compare};
    let kind = |dir: &Path| {
        crate::runtime::Manifest::load(dir)
            .map(|m| m.kind)
            .with_context(|| format!("cannot load the model in {}", dir.display()))
    };
    let (ka, kb) = (kind(reference)?, kind(other)?);
    if (ka == ModelKind::Sam2) != (kb == ModelKind::Sam2) {
        anyhow::bail!(
            "{} is a {ka} model and {} a {kb} model: compare two SAM 2 models or two PixelRefer models",
            reference.display(),
            other.display()
        );
    }
    let image = probe
        .image
        .map(|p| {
            image::open(p)
                .map(|i| i.to_rgb8())
                .with_context(|| format!("cannot read the image {}", p.display()))
        })
        .transpose()?;
    if ka == ModelKind::Sam2 {
        return compare_sam2(reference, other, image, probe.frames, json, options);
    }
    let steps = probe.steps;
    let load = |dir: &Path| {
        PixelRefer::load(dir, options)
            .with_context(|| format!("cannot load the model in {}", dir.display()))
    };
    let (mut a, mut b) = (load(reference)?, load(other)?);
    for w in a.warnings().iter().chain(b.warnings()) {
        eprintln!("warning: {w}");
    }
    let req = compare::probe_request(image);
    let r = compare::compare(&mut a, &mut b, &req, steps, &CancelToken::new())
        .context("the comparison failed")?;
    let label = |m: &PixelRefer| precision_label(m.quantization());
    if json {
        let mut v = serde_json::to_value(&r)?;
        v["agreement_rate"] = r.rate().into();
        v["reference"] = serde_json::json!({"dir": reference, "precision": label(&a)});
        v["other"] = serde_json::json!({"dir": other, "precision": label(&b)});
        println!("{v}");
    } else {
        println!(
            "{} ({}) against {} ({}), {} prompt tokens:",
            other.display(),
            label(&b),
            reference.display(),
            label(&a),
            r.prompt_tokens
        );
        println!(
            "greedy tokens agree at {}/{} steps ({:.1}%); identical for the first {} steps",
            r.agreed,
            r.steps,
            100.0 * r.rate(),
            r.identical_prefix
        );
        println!(
            "largest logit difference {:.4} (reference logits reach {:.2}); per step, median largest difference {:.4} against a median margin of {:.4} between the reference's first and second token",
            r.max_logit_diff, r.max_abs_logit, r.median_step_diff, r.median_margin
        );
        println!(
            "time: reference {:.1} s, other {:.1} s (prompt, prefill and {} steps each)",
            r.reference_secs, r.other_secs, r.steps
        );
    }
    Ok(())
}

fn precision_label(q: Option<&crate::runtime::preflight::Quantization>) -> String {
    q.map_or("full precision".to_string(), |q| format!("{q} quantized"))
}

/// `models compare` for two SAM 2 models: clicks on the first frame and two objects tracked
/// through `frames` frames, every mask of `other` held against `reference`'s.
fn compare_sam2(
    reference: &Path,
    other: &Path,
    image: Option<image::RgbImage>,
    frames: usize,
    json: bool,
    options: &SessionOptions,
) -> anyhow::Result<()> {
    use crate::segment::{CancelToken, Sam2Model, compare};
    if frames == 0 {
        anyhow::bail!("--frames must be at least 1");
    }
    let load = |dir: &Path| {
        Sam2Model::load(dir, options)
            .map(Arc::new)
            .with_context(|| format!("cannot load the model in {}", dir.display()))
    };
    let (a, b) = (load(reference)?, load(other)?);
    for w in a.warnings().iter().chain(b.warnings()) {
        eprintln!("warning: {w}");
    }
    let probe = compare::probe_frames(image, frames)?;
    let r =
        compare::compare(&a, &b, &probe, &CancelToken::new()).context("the comparison failed")?;
    let (la, lb) = (
        precision_label(a.quantization()),
        precision_label(b.quantization()),
    );
    if json {
        let mut v = serde_json::to_value(&r)?;
        v["reference"] = serde_json::json!({"dir": reference, "precision": la});
        v["other"] = serde_json::json!({"dir": other, "precision": lb});
        println!("{v}");
    } else {
        println!(
            "{} ({lb}) against {} ({la}), {}x{} frames:",
            other.display(),
            reference.display(),
            probe[0].width(),
            probe[0].height()
        );
        println!(
            "image: {} clicks, mask IoU min {:.4}, mean {:.4}; {} chose another of the three candidates; largest low-res logit difference {:.4} (reference logits reach {:.2})",
            r.clicks,
            r.image_min_iou,
            r.image_mean_iou,
            r.image_choice_changes,
            r.max_logit_diff,
            r.max_abs_logit
        );
        println!(
            "video: {} objects over {} frames, mask IoU min {:.4} (frame {}, object {}), mean {:.4}; visibility differs on {} frame-objects",
            r.objects,
            r.frames,
            r.video_min_iou,
            r.video_worst.0,
            r.video_worst.1,
            r.video_mean_iou,
            r.visibility_changes
        );
        println!(
            "time: reference {:.1} s, other {:.1} s (one encoder pass, the clicks, and the tracking each)",
            r.reference_secs, r.other_secs
        );
    }
    Ok(())
}
