//! Project files (`*.prj.json`, DESIGN.md §5): atomic save, load with schema migration, media
//! path handling, autosave and crash recovery.

use super::ProjectError;
use super::model::{Document, Fingerprint, MediaKind, PROJECT_VERSION};
use serde_json::Value;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is written,
/// fsynced and renamed over `path`, then the directory is fsynced. A failure at any point
/// leaves the old file (or none) in place and removes the temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ProjectError> {
    let io = |source: std::io::Error| ProjectError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.flush().map_err(io)?;
    // Keep the permissions of the file being replaced; new files get the usual 0644.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    #[cfg(unix)]
    {
        // Make the rename itself durable.
        let d = std::fs::File::open(&dir).map_err(|source| ProjectError::Io {
            path: dir.clone(),
            source,
        })?;
        d.sync_all()
            .map_err(|source| ProjectError::Io { path: dir, source })?;
    }
    Ok(())
}

/// Lexically normalises `path`: removes `.` and folds `..` into the preceding component.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let popped =
                    matches!(out.components().next_back(), Some(Component::Normal(_))) && out.pop();
                if !popped && !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn absolute(path: &Path) -> PathBuf {
    let p = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    normalize(&p)
}

/// `target` relative to the directory `base` (both made absolute), or None when they share no
/// root (another drive on Windows).
pub fn relative_path(target: &Path, base: &Path) -> Option<PathBuf> {
    let (target, base) = (absolute(target), absolute(base));
    let t: Vec<Component> = target.components().collect();
    let b: Vec<Component> = base.components().collect();
    if t.first() != b.first() {
        return None;
    }
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Some(out)
}

fn project_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn to_json(doc: &Document, path: &Path, relative_media: bool) -> Result<Vec<u8>, ProjectError> {
    let mut doc = doc.clone();
    doc.version = PROJECT_VERSION;
    if relative_media && let Some(rel) = relative_path(&doc.media.path, &project_dir(path)) {
        doc.media.path = rel;
    } else {
        doc.media.path = absolute(&doc.media.path);
    }
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| ProjectError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Saves `doc` to `path` atomically ([`write_atomic`]), with the media path stored relative to
/// the project file's folder when possible. The document itself is not changed.
pub fn save_project(doc: &Document, path: &Path) -> Result<(), ProjectError> {
    write_atomic(path, &to_json(doc, path, true)?)
}

/// Loads a project of any known schema version, migrating it to [`PROJECT_VERSION`], makes the
/// media path absolute, raises `next_object_id` above every object id, and checks the result
/// ([`Document::validate`]: unique ids, masks of the item's size, frames inside the item).
pub fn load_project(path: &Path) -> Result<Document, ProjectError> {
    let bytes = std::fs::read(path).map_err(|source| ProjectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let format = |reason: String| ProjectError::Format {
        path: path.to_path_buf(),
        reason,
    };
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
    let value = migrate(value).map_err(format)?;
    let mut doc: Document = serde_json::from_value(value).map_err(|e| format(e.to_string()))?;
    doc.version = PROJECT_VERSION;
    if doc.media.path.is_relative() {
        doc.media.path = project_dir(path).join(&doc.media.path);
    }
    doc.media.path = absolute(&doc.media.path);
    // A counter behind the ids (a hand-edited file) is repaired rather than refused, so ids
    // are still never reused.
    for item in &mut doc.items {
        let above = item
            .objects
            .iter()
            .map(|o| o.id.saturating_add(1))
            .max()
            .unwrap_or(0);
        item.next_object_id = item.next_object_id.max(above);
    }
    doc.validate().map_err(|e| format(e.to_string()))?;
    Ok(doc)
}

/// Brings a project file's JSON from its version to [`PROJECT_VERSION`], one version at a time.
pub fn migrate(mut value: Value) -> Result<Value, String> {
    let version = value
        .get("version")
        .and_then(Value::as_u64)
        .ok_or("it has no schema \"version\" number")?;
    if version == 0 {
        return Err("schema version 0 does not exist".into());
    }
    if version > PROJECT_VERSION as u64 {
        return Err(format!(
            "it was written by a newer PixelRefer Studio (schema version {version}; this build \
             reads up to {PROJECT_VERSION})"
        ));
    }
    let mut v = version as u32;
    while v < PROJECT_VERSION {
        value = match v {
            1 => migrate_v1_to_v2(value)?,
            other => return Err(format!("no migration from schema version {other}")),
        };
        v += 1;
        value["version"] = Value::from(v);
    }
    Ok(value)
}

/// Version 1 wrote RLE counts as lists of run lengths; version 2 writes the COCO compressed
/// string. (The loader accepts both, but the migration makes version 2 the only input form.)
fn migrate_v1_to_v2(mut value: Value) -> Result<Value, String> {
    let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) else {
        return Ok(value);
    };
    for item in items {
        let Some(objects) = item.get_mut("objects").and_then(Value::as_array_mut) else {
            continue;
        };
        for object in objects {
            let Some(frames) = object.get_mut("frames").and_then(Value::as_object_mut) else {
                continue;
            };
            for (frame, annotation) in frames.iter_mut() {
                let Some(mask) = annotation.get_mut("mask") else {
                    continue;
                };
                if mask.is_null() || mask.get("counts").is_some_and(Value::is_string) {
                    continue;
                }
                let rle: crate::mask::Rle = serde_json::from_value(mask.clone())
                    .map_err(|e| format!("the mask of frame {frame}: {e}"))?;
                *mask = serde_json::to_value(&rle).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(value)
}

/// Whether the media a project refers to is still where it was and unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaStatus {
    /// Present, with the recorded fingerprint (or none recorded).
    Ok,
    /// The file or folder (or an item of the folder) is gone or unreadable.
    Missing,
    /// Present but its content differs from the recorded fingerprint.
    Changed,
}

/// Checks the media of `doc` (whose path is absolute, as [`load_project`] leaves it).
/// `fingerprint` computes a file's fingerprint (the caller passes the `media` module's), and
/// returns None when the file cannot be read.
pub fn check_media<F>(doc: &Document, mut fingerprint: F) -> MediaStatus
where
    F: FnMut(&Path) -> Option<Fingerprint>,
{
    let path = &doc.media.path;
    if !path.exists() {
        return MediaStatus::Missing;
    }
    let mut check = |file: &Path, recorded: &Option<Fingerprint>| -> MediaStatus {
        if !file.is_file() {
            return MediaStatus::Missing;
        }
        match (recorded, fingerprint(file)) {
            (None, _) => MediaStatus::Ok,
            (Some(_), None) => MediaStatus::Missing,
            (Some(want), Some(got)) if *want == got => MediaStatus::Ok,
            (Some(_), Some(_)) => MediaStatus::Changed,
        }
    };
    match doc.media.kind {
        MediaKind::Folder => {
            if !path.is_dir() {
                return MediaStatus::Missing;
            }
            let mut status = MediaStatus::Ok;
            for item in &doc.items {
                let Some(file) = &item.file else { continue };
                match check(&path.join(file), &item.fingerprint) {
                    MediaStatus::Missing => return MediaStatus::Missing,
                    MediaStatus::Changed => status = MediaStatus::Changed,
                    MediaStatus::Ok => {}
                }
            }
            status
        }
        MediaKind::Image | MediaKind::Video => check(path, &doc.media.fingerprint),
    }
}

/// Points the project at media that moved: sets the (absolute) media path. Check the result
/// with [`check_media`]; fingerprints are kept so a different file is reported as Changed.
pub fn relink_media(doc: &mut Document, new_path: &Path) {
    doc.media.path = absolute(new_path);
}

/// Where the autosave of a project lives: `.NAME.prj.json.autosave` next to a saved project
/// `NAME.prj.json`; for an unsaved project, `<user data dir>/pixelrefer-studio/autosave/
/// <hash of the media path>.prj.json.autosave` (the hash is the first 16 hex digits of the
/// sha256 of the absolute media path).
pub fn autosave_path(project_path: Option<&Path>, media_path: &Path) -> PathBuf {
    if let Some(project) = project_path {
        let name = project
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return project_dir(project).join(format!(".{name}.autosave"));
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(absolute(media_path).to_string_lossy().as_bytes());
    let key = hex::encode(&digest[..8]);
    let base = dirs::data_dir().unwrap_or_else(std::env::temp_dir);
    base.join("pixelrefer-studio")
        .join("autosave")
        .join(format!("{key}.prj.json.autosave"))
}

/// Writes an autosave atomically (creating its folder). The media path is stored absolute, so
/// the file can be loaded with [`load_project`] from wherever it lives.
pub fn write_autosave(doc: &Document, path: &Path) -> Result<(), ProjectError> {
    let dir = project_dir(path);
    std::fs::create_dir_all(&dir).map_err(|source| ProjectError::Io { path: dir, source })?;
    write_atomic(path, &to_json(doc, path, false)?)
}

/// The autosave to offer for recovery when opening `project_path` (or media never saved as a
/// project): one that exists and is newer than the project file (or any, when the project file
/// does not exist).
pub fn find_recovery(project_path: Option<&Path>, media_path: &Path) -> Option<PathBuf> {
    let autosave = autosave_path(project_path, media_path);
    let saved_at = std::fs::metadata(&autosave)
        .and_then(|m| m.modified())
        .ok()?;
    let project_at =
        project_path.and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    match project_at {
        Some(t) if t >= saved_at => None,
        _ => Some(autosave),
    }
}

/// Deletes an autosave (after a save, or when the user declines recovery). A missing file is
/// not an error.
pub fn discard_autosave(path: &Path) -> Result<(), ProjectError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ProjectError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether two paths name the same file or folder: the same device and inode when both exist
/// (through links, hard links and `..`), else the same absolute path after resolving the
/// deepest existing ancestor (so a file not yet written still compares equal).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    resolved(a) == resolved(b)
}

/// `path` made absolute with its deepest existing ancestor canonicalised (links resolved) and
/// the rest appended as written.
fn resolved(path: &Path) -> PathBuf {
    let path = absolute(path);
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            let mut out = canonical;
            out.extend(rest.iter().rev());
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path,
        }
    }
}

/// Refuses an output path that names one of the command's inputs (the project being exported,
/// the media, a COCO or prompts file), so no command ever writes over what it reads. Call it
/// before any work is done.
pub fn check_output_path(out: &Path, inputs: &[&Path]) -> Result<(), ProjectError> {
    for input in inputs {
        if same_file(out, input) {
            return Err(ProjectError::OutputIsInput {
                out: out.to_path_buf(),
            });
        }
    }
    Ok(())
}
