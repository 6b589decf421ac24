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
pub fn import(media: &Path, coco: &Path, out: &Path) -> anyhow::Result<()> {
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
/// the folder).
fn output_file(out: &Path, default: String) -> anyhow::Result<PathBuf> {
    if out.extension().is_some_and(|e| e == "json") {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        return Ok(out.to_path_buf());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(out.join(default))
}

/// `pixelrefer-studio export P.prj.json --format regions|coco|png --out DIR`.
///
/// Writes `DIR/NAME.regions.json`, `DIR/NAME.instances.json` (COCO) or PNG masks under `DIR`
/// (`--out` may also name the `.json` file directly) and prints the paths written.
pub fn export(project: &Path, format: ExportFormat, out: &Path) -> anyhow::Result<()> {
    let doc = project::load_project(project)?;
    // Masks do not need the media: a missing one is a warning, a different one an error.
    match crate::jobs::check_project_media(&doc, project) {
        Err(missing @ crate::jobs::ProjectMediaError::Missing { .. }) => {
            eprintln!("warning: {missing}; exporting the masks anyway");
        }
        other => other?,
    }
    let stem = project_stem(project);
    match format {
        ExportFormat::Regions => {
            let file = output_file(out, format!("{stem}.regions.json"))?;
            project::export_regions(&doc, &file)?;
            println!("{}", file.display());
        }
        ExportFormat::Coco => {
            let file = output_file(out, format!("{stem}.instances.json"))?;
            project::export_coco(&doc, &file)?;
            println!("{}", file.display());
        }
        ExportFormat::Png => {
            std::fs::create_dir_all(out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let files = project::export_pngs(&doc, out)?;
            println!("{} ({} masks)", out.display(), files.len());
        }
    }
    Ok(())
}
