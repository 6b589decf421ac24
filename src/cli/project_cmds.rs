//! `import` and `export` commands.

use std::path::Path;

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
pub fn import(_media: &Path, _coco: &Path, _out: &Path) -> anyhow::Result<()> {
    anyhow::bail!("the import command is not built yet")
}

/// `pixelrefer-studio export P.prj.json --format regions|coco|png --out DIR`.
pub fn export(_project: &Path, _format: ExportFormat, _out: &Path) -> anyhow::Result<()> {
    anyhow::bail!("the export command is not built yet")
}
