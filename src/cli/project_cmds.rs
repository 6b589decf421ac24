//! `import` and `export` commands.

use crate::project::{self, Item, MediaRef};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Export formats of `pixelrefer-studio export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// `*.regions.json` (DESIGN.md §5).
    Regions,
    /// COCO `instances` JSON with RLE segmentations.
    Coco,
    /// One PNG mask per object and frame.
    Png,
}

/// `pixelrefer-studio import --media M --coco FILE --out P.prj.json`.
///
/// Refuses, before reading anything, an `--out` that names the media (or, for a folder, one of
/// its images) or the COCO file.
pub fn import(media: &Path, coco: &Path, out: &Path) -> anyhow::Result<()> {
    project::check_output_path(out, &[media, coco])?;
    let source = crate::media::open(media)?;
    let doc = crate::jobs::new_document(&source)?;
    import_with_items(doc.media, doc.items, coco, out)
}

/// The project half of `import`: reads the COCO file, builds the document for `media` and its
/// `items` (sizes from the media reader) and saves it to `out`.
pub fn import_with_items(
    media: MediaRef,
    items: Vec<Item>,
    coco: &Path,
    out: &Path,
) -> anyhow::Result<()> {
    project::check_import_output(out, &media, &items, coco)?;
    let value = project::read_coco(coco)?;
    let doc = project::import_project(media, items, &value)
        .with_context(|| format!("cannot import {}", coco.display()))?;
    project::save_project(&doc, out)?;
    let objects: usize = doc.items.iter().map(|i| i.objects.len()).sum();
    println!("{} ({objects} objects)", out.display());
    Ok(())
}

/// `NAME` of `NAME.prj.json` (or the file stem).
fn project_stem(project: &Path) -> String {
    let name = project
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".into());
    for suffix in [".prj.json", ".json"] {
        if let Some(stem) = name.strip_suffix(suffix)
            && !stem.is_empty()
        {
            return stem.to_string();
        }
    }
    name
}

/// The output file: `out` itself when it names a `.json` file, else `out/<default>` (creating
/// the folder). Refuses, before creating anything, a path that names one of `inputs`.
fn output_file(out: &Path, default: String, inputs: &[&Path]) -> anyhow::Result<PathBuf> {
    project::check_output_path(out, inputs)?;
    if out.extension().is_some_and(|e| e == "json") {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        return Ok(out.to_path_buf());
    }
    let file = out.join(default);
    project::check_output_path(&file, inputs)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(file)
}

/// `pixelrefer-studio export P.prj.json --format regions|coco|png --out DIR`.
///
/// Writes `DIR/NAME.regions.json`, `DIR/NAME.instances.json` (COCO) or PNG masks under `DIR`
/// (`--out` may also name the `.json` file directly) and prints the paths written (for PNGs,
/// the folder and the number of files written). Refuses, before writing anything, an output
/// that would replace the project or its media.
pub fn export(project: &Path, format: ExportFormat, out: &Path) -> anyhow::Result<()> {
    let mut doc = project::load_project(project)?;
    // Masks do not need the media: a missing one is a warning, a different one an error.
    match crate::jobs::check_project_media(&mut doc, project) {
        Err(missing @ crate::jobs::ProjectMediaError::Missing { .. }) => {
            eprintln!("warning: {missing}; exporting the masks anyway");
        }
        other => other?,
    }
    let stem = project_stem(project);
    let media = doc.media.path.clone();
    let inputs = [project, media.as_path()];
    match format {
        ExportFormat::Regions => {
            let file = output_file(out, format!("{stem}.regions.json"), &inputs)?;
            project::export_regions(&doc, &file)?;
            println!("{}", file.display());
        }
        ExportFormat::Coco => {
            let file = output_file(out, format!("{stem}.instances.json"), &inputs)?;
            project::export_coco(&doc, &file)?;
            println!("{}", file.display());
        }
        ExportFormat::Png => {
            let written = project::write_pngs(&doc, out, &inputs, |_| {})?;
            println!("{} ({written} masks)", out.display());
        }
    }
    Ok(())
}
