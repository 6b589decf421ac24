//! Project files (`*.prj.json`, DESIGN.md §5): atomic save, load with schema migration, media
//! path handling, autosave and crash recovery.

use super::ProjectError;
use super::model::{Document, Fingerprint, MediaKind, PROJECT_VERSION};
use serde_json::Value;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Suffix of the temporary files [`write_atomic`] writes, so they are recognisably ours:
/// `.{NAME, cut to TEMP_NAME_BYTES}.{6 random characters}.pixelrefer.tmp`.
const TEMP_SUFFIX: &str = ".pixelrefer.tmp";

/// Bytes of the final name kept in a temporary name, so the temporary name stays far below
/// the usual 255-byte limit whatever the length of the name being written.
const TEMP_NAME_BYTES: usize = 64;

/// Symbolic links followed before giving up (Linux's own limit is 40).
const MAX_LINKS: usize = 40;

/// `.{name cut to TEMP_NAME_BYTES at a character boundary}.`
fn temp_prefix(name: &std::ffi::OsStr) -> String {
    let name = name.to_string_lossy();
    let mut end = name.len().min(TEMP_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!(".{}.", &name[..end])
}

/// The file `path` finally names: symbolic links of its last component followed, one after
/// another (the target need not exist yet: saving through a dangling link creates it).
fn link_target(path: &Path) -> Result<PathBuf, ProjectError> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current).map_err(|source| ProjectError::Io {
                    path: current.clone(),
                    source,
                })?;
                current = if target.is_absolute() {
                    target
                } else {
                    project_dir(&current).join(target)
                };
            }
            _ => return Ok(current),
        }
    }
    Err(ProjectError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!("more than {MAX_LINKS} symbolic links in a row")),
    })
}

/// Whether the open temporary file is still the one its path names (a cleaner may have
/// removed it between its creation and our lock).
fn still_at_path(tmp: &tempfile::NamedTempFile) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (
            std::fs::symlink_metadata(tmp.path()),
            tmp.as_file().metadata(),
        ) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        tmp.path().exists()
    }
}

/// A new temporary file for `name` in `dir`, exclusively locked for as long as it is open,
/// so [`remove_stale_temp_files`] can tell a live writer's file from a dead one's (the OS
/// drops the lock when a process dies, however it dies).
fn create_locked_temp(
    dir: &Path,
    name: &std::ffi::OsStr,
) -> std::io::Result<tempfile::NamedTempFile> {
    let prefix = temp_prefix(name);
    for _ in 0..8 {
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(TEMP_SUFFIX)
            .rand_bytes(6)
            .tempfile_in(dir)?;
        match tmp.as_file().try_lock() {
            Ok(()) => {}
            // A cleaner holds it and is removing it: take another name.
            Err(std::fs::TryLockError::WouldBlock) => continue,
            // No locks on this file system: cleaners never remove a file they cannot lock.
            Err(std::fs::TryLockError::Error(err)) => {
                log::debug!("no lock on {}: {err}", tmp.path().display());
                return Ok(tmp);
            }
        }
        if still_at_path(&tmp) {
            return Ok(tmp);
        }
    }
    Err(std::io::Error::other(
        "could not create a temporary file next to it",
    ))
}

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ProjectError> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes `path` atomically with what `write` writes: a temporary file in the same directory
/// (`.{NAME}.{random}.pixelrefer.tmp`, at most about 90 bytes long, locked while open) is
/// written, fsynced and renamed over `path`, then the directory is fsynced. A failure at any
/// point leaves the old file (or none) in place and removes the temporary file; a process
/// killed mid-write leaves it behind for [`remove_stale_temp_files`].
///
/// When `path` is a symbolic link (or a chain of them) the file it finally names is replaced
/// and the link kept. The permissions of the replaced file are kept; new files get 0644.
pub fn write_atomic_with<F>(path: &Path, write: F) -> Result<(), ProjectError>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let target = link_target(path)?;
    let io = |source: std::io::Error| ProjectError::Io {
        path: target.clone(),
        source,
    };
    let dir = project_dir(&target);
    let name = target
        .file_name()
        .ok_or_else(|| io(std::io::Error::other("the path does not name a file")))?;
    let mut tmp = create_locked_temp(&dir, name).map_err(|e| io(folder_error(&dir, &e)))?;
    {
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        write(&mut writer).map_err(io)?;
        writer.flush().map_err(io)?;
    }
    // Keep the permissions of the file being replaced; new files get the usual 0644.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
            .map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(&target).map_err(|e| io(e.error))?;
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

/// Why no file can be created in `dir`, naming the folder rather than the temporary file the
/// attempt used.
fn folder_error(dir: &Path, err: &std::io::Error) -> std::io::Error {
    if dir.is_dir() && err.kind() == std::io::ErrorKind::Other {
        std::io::Error::other(err.to_string())
    } else if dir.is_dir() {
        std::io::Error::new(
            err.kind(),
            format!("cannot create a file in {}: {}", dir.display(), err.kind()),
        )
    } else if dir.exists() {
        std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a folder", dir.display()),
        )
    } else {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("the folder {} does not exist", dir.display()),
        )
    }
}

/// Removes the temporary files that writers of `path` (through its links) killed mid-write
/// left next to it, and returns how many. A file is removed only when its name is one
/// [`write_atomic_with`] makes for `path` and its lock can be taken, which the OS allows only
/// once its writer is gone: a live concurrent writer's file is never touched. Errors are
/// ignored (a file that cannot be removed is left).
pub fn remove_stale_temp_files(path: &Path) -> usize {
    let Ok(target) = link_target(path) else {
        return 0;
    };
    let Some(name) = target.file_name() else {
        return 0;
    };
    let prefix = temp_prefix(name);
    let Ok(entries) = std::fs::read_dir(project_dir(&target)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(random) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix.as_str()))
            .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
        else {
            continue;
        };
        if random.len() != 6 || !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let stale = entry.path();
        let Ok(file) = std::fs::File::open(&stale) else {
            continue;
        };
        // Removed while holding the lock, so a writer that created the file but has not
        // locked it yet sees it gone and takes another name.
        if file.try_lock().is_ok() && std::fs::remove_file(&stale).is_ok() {
            log::info!("removed {}, left by a killed save", stale.display());
            removed += 1;
        }
    }
    removed
}

/// Largest project or autosave file read, in bytes (1 GiB). A project stores masks as
/// compressed RLE, a few hundred bytes per object and mask: 1 GiB holds about a million masked
/// objects (the largest case the export benchmark covers), while a stream such as /dev/zero or
/// a wrong multi-GB file is refused before it is read into memory.
pub const MAX_PROJECT_BYTES: u64 = 1 << 30;

/// What a non-regular file is, for the error.
fn file_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    if t.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if t.is_char_device() || t.is_block_device() {
            return Some("a device");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    Some("something other than a file")
}

/// Reads a whole regular file of at most `limit_bytes` bytes. Refuses a FIFO, a device, a
/// directory or a socket before reading (so nothing hangs or reads forever), and reads
/// through `take(limit_bytes + 1)` so a file that grows while read is still bounded.
pub fn read_bounded(path: &Path, limit_bytes: u64) -> Result<Vec<u8>, ProjectError> {
    use std::io::Read;
    let io = |source: std::io::Error| ProjectError::Io {
        path: path.to_path_buf(),
        source,
    };
    let check = |meta: &std::fs::Metadata| -> Result<(), ProjectError> {
        if let Some(what) = file_kind(meta) {
            return Err(ProjectError::NotAFile {
                path: path.to_path_buf(),
                what,
            });
        }
        if meta.len() > limit_bytes {
            return Err(ProjectError::TooLarge {
                path: path.to_path_buf(),
                limit_bytes,
            });
        }
        Ok(())
    };
    check(&std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::File::open(path).map_err(io)?;
    // The path may name something else by now: check what was opened.
    let meta = file.metadata().map_err(io)?;
    check(&meta)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit_bytes {
        return Err(ProjectError::TooLarge {
            path: path.to_path_buf(),
            limit_bytes,
        });
    }
    Ok(bytes)
}

/// Reads a JSON file of at most `limit_bytes` bytes ([`read_bounded`]) into a value.
pub fn read_json_file(path: &Path, limit_bytes: u64) -> Result<Value, ProjectError> {
    let bytes = read_bounded(path, limit_bytes)?;
    serde_json::from_slice(&bytes).map_err(|e| ProjectError::Json {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
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

/// The folder a relative media path is stored against: that of the file `path` finally names
/// (a project saved or opened through a symbolic link keeps paths relative to where it lies).
fn media_base(path: &Path) -> Result<PathBuf, ProjectError> {
    Ok(project_dir(&link_target(path)?))
}

fn to_json(doc: &Document, path: &Path, relative_media: bool) -> Result<Vec<u8>, ProjectError> {
    let mut doc = doc.clone();
    doc.version = PROJECT_VERSION;
    if relative_media && let Some(rel) = relative_path(&doc.media.path, &media_base(path)?) {
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
    remove_stale_temp_files(path);
    write_atomic(path, &to_json(doc, path, true)?)
}

/// Loads a project of any known schema version (the file is read with [`read_bounded`] and
/// [`MAX_PROJECT_BYTES`]), makes the media path absolute, raises `next_object_id` above every
/// object id, and checks the result ([`Document::validate`]: sizes, frame counts and fps real
/// media can have, unique ids, masks of the item's size, frames inside the item, finite
/// numbers; a `frames` map naming a frame twice is refused while reading). A media path that is
/// empty, or names a directory for an image or video project (a file for a folder project),
/// is refused; a missing media file is not an error here (the caller decides).
pub fn load_project(path: &Path) -> Result<Document, ProjectError> {
    let bytes = read_bounded(path, MAX_PROJECT_BYTES)?;
    let format = |reason: String| ProjectError::Format {
        path: path.to_path_buf(),
        reason,
    };
    /// Only the version, read before the rest (other fields are skipped, not stored).
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(default)]
        version: Option<Value>,
    }
    let header: Header = serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
    check_version(header.version.as_ref().and_then(Value::as_u64)).map_err(format)?;
    // Every version so far differs only in how RLE counts are written, and the mask reader
    // takes both forms: the document is read from the bytes directly, without a
    // `serde_json::Value` in between (which would take about ten times the file's size and
    // would keep the last of two equal keys without a word).
    let mut doc: Document = serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
    drop(bytes);
    doc.version = PROJECT_VERSION;
    if doc.media.path.as_os_str().is_empty() {
        return Err(format("the media path is empty".into()));
    }
    if doc.media.path.is_relative() {
        doc.media.path = media_base(path)?.join(&doc.media.path);
    }
    doc.media.path = absolute(&doc.media.path);
    if let Ok(meta) = std::fs::metadata(&doc.media.path) {
        let media = doc.media.path.display();
        match (doc.media.kind, meta.is_dir()) {
            (MediaKind::Folder, false) => {
                return Err(format(format!(
                    "its media {media} is a file, but the project is of a folder of images"
                )));
            }
            (MediaKind::Image | MediaKind::Video, true) => {
                return Err(format(format!(
                    "its media {media} is a directory, but the project is of one {}",
                    if doc.media.kind == MediaKind::Image {
                        "image"
                    } else {
                        "video"
                    }
                )));
            }
            _ => {}
        }
    }
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

/// The schema version of a file, if this build reads it.
fn check_version(version: Option<u64>) -> Result<u32, String> {
    let version = version.ok_or("it has no schema \"version\" number")?;
    if version == 0 {
        return Err("schema version 0 does not exist".into());
    }
    if version > PROJECT_VERSION as u64 {
        return Err(format!(
            "it was written by a newer PixelRefer Studio (schema version {version}; this build \
             reads up to {PROJECT_VERSION})"
        ));
    }
    Ok(version as u32)
}

/// Brings a project file's JSON from its version to [`PROJECT_VERSION`], one version at a time.
pub fn migrate(mut value: Value) -> Result<Value, String> {
    let mut v = check_version(value.get("version").and_then(Value::as_u64))?;
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
    remove_stale_temp_files(path);
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
pub(crate) fn resolved(path: &Path) -> PathBuf {
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
