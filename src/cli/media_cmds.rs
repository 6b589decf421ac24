//! `info` and `frame` commands.

use std::path::Path;

use anyhow::Context as _;

use crate::media::{self, MediaError, SourceKind};

/// A media error as one line: its message already names the file and includes the cause, so
/// the cause chain is not repeated.
fn one_line(err: MediaError) -> anyhow::Error {
    anyhow::anyhow!("{err}")
}

/// `pixelrefer-studio info MEDIA`: prints JSON facts about the media.
///
/// Images and videos: `kind`, `name`, displayed `width` and `height`, `frame_count`, `fps`,
/// `duration_secs`, `codec`, `rotation_degrees`. Folders: `kind`, `count` and `items` (the same
/// facts per image, or an `error` for an image whose header cannot be read).
pub fn info(media_path: &Path) -> anyhow::Result<()> {
    let source = media::open(media_path).map_err(one_line)?;
    let value = match source.kind() {
        SourceKind::Folder => {
            let items: Vec<serde_json::Value> = (0..source.item_count())
                .map(|i| match source.item_info(i) {
                    Ok(info) => serde_json::to_value(info).unwrap_or_default(),
                    Err(err) => serde_json::json!({
                        "name": source
                            .item_path(i)
                            .ok()
                            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
                        "error": err.to_string(),
                    }),
                })
                .collect();
            serde_json::json!({
                "kind": SourceKind::Folder,
                "path": media_path,
                "count": items.len(),
                "items": items,
            })
        }
        kind => {
            let info = source.item_info(0).map_err(one_line)?;
            let mut value = serde_json::to_value(&info)?;
            if let Some(map) = value.as_object_mut() {
                map.insert("kind".into(), serde_json::to_value(kind)?);
                map.insert("path".into(), serde_json::to_value(media_path)?);
            }
            value
        }
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// `pixelrefer-studio frame MEDIA --index N --out F.png`: writes frame N as displayed, as PNG
/// (`.png` or no extension) or JPEG (`.jpg`, `.jpeg`; alpha dropped), written atomically. For a
/// folder, N is the image index. An `--out` that names the media (or the folder's image) is
/// refused before anything is decoded.
pub fn frame(media_path: &Path, index: u64, out: &Path) -> anyhow::Result<()> {
    crate::project::check_output_path(out, &[media_path])?;
    let format = output_format(out)?;
    let mut source = media::open(media_path).map_err(one_line)?;
    let frame = if source.kind() == SourceKind::Folder {
        let item = usize::try_from(index)
            .ok()
            .filter(|i| *i < source.item_count())
            .with_context(|| {
                format!(
                    "image {index} is outside {} ({} images)",
                    media_path.display(),
                    source.item_count()
                )
            })?;
        let item_path = source.item_path(item).map_err(one_line)?;
        crate::project::check_output_path(out, &[&item_path])?;
        source.frame(item, 0).map_err(one_line)?
    } else {
        source.frame(0, index).map_err(one_line)?
    };
    let rgba = image::RgbaImage::from_raw(frame.width, frame.height, frame.rgba.clone())
        .context("the decoded frame has the wrong number of pixels")?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    let encoded = match format {
        image::ImageFormat::Jpeg => image::DynamicImage::ImageRgba8(rgba)
            .to_rgb8()
            .write_to(&mut bytes, format),
        _ => rgba.write_to(&mut bytes, format),
    };
    encoded.with_context(|| format!("cannot encode frame {index} for {}", out.display()))?;
    crate::project::write_atomic(out, bytes.get_ref())
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// The image format `frame` writes to `out`, from its extension.
fn output_format(out: &Path) -> anyhow::Result<image::ImageFormat> {
    let ext = out
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        None | Some("png") => Ok(image::ImageFormat::Png),
        Some("jpg" | "jpeg") => Ok(image::ImageFormat::Jpeg),
        Some(other) => anyhow::bail!(
            "cannot write a .{other} file: --out must end in .png, .jpg or .jpeg ({})",
            out.display()
        ),
    }
}
