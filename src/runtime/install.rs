//! Installing fetched models: the exporters' Python environment, running an exporter with
//! progress and cancel, staging folders that the model search never sees, and the atomic
//! rename that makes a verified model appear (DESIGN.md §4).
//!
//! A model is exported into `ROOT/.staging/NAME.PID.NANOS/`; only after it verifies is it
//! renamed to `ROOT/NAME/` with an `install.json` recording where it came from. The model search
//! ([`super::find_model_dirs`]) looks at `ROOT/*/manifest.json` and skips hidden folders, so a
//! half-exported directory is never found; a staging folder whose process died is removed by
//! the next fetch.

use super::catalog::{CatalogEntry, is_safe_name};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// File written into an installed model directory, recording its origin.
pub const INSTALL_RECORD: &str = "install.json";

/// Hidden folder under an install root where models are exported before they verify.
pub const STAGING_DIR: &str = ".staging";

/// Errors installing or removing a model, each one sentence.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// No Python environment for the exporters.
    #[error(
        "the exporters' Python environment is missing ({looked}); run ./run.sh once (or scripts/setup.sh) to create it, or set PIXELREFER_PYTHON"
    )]
    NoPython {
        /// Where it looked.
        looked: String,
    },
    /// The exporter scripts were not found.
    #[error(
        "the exporter {script} was not found in {dir}; set PIXELREFER_EXPORTERS to the repository's onnx/ folder"
    )]
    NoExporter {
        /// The script name.
        script: String,
        /// The folder searched.
        dir: PathBuf,
    },
    /// The exporter failed.
    #[error("exporting {name} failed: {reason} (full log: {log})")]
    Export {
        /// The model.
        name: String,
        /// The exporter's last error line.
        reason: String,
        /// Where its whole output is.
        log: PathBuf,
    },
    /// A model of that name is installed already.
    #[error("{name} is already installed in {path}; remove it first (`models remove {name}`)")]
    AlreadyInstalled {
        /// The model.
        name: String,
        /// Its folder.
        path: PathBuf,
    },
    /// Nothing of that name is installed.
    #[error("no installed model named `{name}` in {roots}")]
    NotInstalled {
        /// The name.
        name: String,
        /// The roots searched.
        roots: String,
    },
    /// A file operation failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Someone cancelled.
    #[error("cancelled")]
    Cancelled,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> InstallError + '_ {
    move |e| InstallError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// `install.json`: where an installed model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallRecord {
    /// Catalogue name (the folder name).
    pub name: String,
    /// Name shown to people.
    pub display_name: String,
    /// Upstream repository.
    pub repo: String,
    /// Revision asked for.
    pub revision: String,
    /// Commit downloaded.
    pub commit: String,
    /// Upstream files: path, size and published hash (`sha256:…` or `git-blob:…`).
    pub files: Vec<RecordedFile>,
    /// Exporter command (script and arguments as in the catalogue).
    pub exporter: Vec<String>,
    /// Install time, seconds since the Unix epoch.
    pub installed_at: u64,
    /// The verification summary line.
    pub verified: String,
}

/// One upstream file in an [`InstallRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFile {
    /// Path in the repository.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// `sha256:HEX` or `git-blob:HEX`.
    pub hash: String,
}

impl InstallRecord {
    /// Reads `DIR/install.json`, if any.
    pub fn load(dir: &Path) -> Option<InstallRecord> {
        let text = std::fs::read_to_string(dir.join(INSTALL_RECORD)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The catalogue name of an installed model directory: its `install.json` name, else the
/// folder's name.
pub fn installed_name(dir: &Path) -> Option<String> {
    InstallRecord::load(dir)
        .map(|r| r.name)
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Where `models fetch` installs by default: `~/.local/share/pixelrefer-studio/models` (the
/// last place the model search looks).
pub fn default_install_root() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("pixelrefer-studio").join("models"))
}

/// The exporters' interpreter and scripts.
#[derive(Debug, Clone)]
pub struct Exporters {
    /// The Python interpreter.
    pub python: PathBuf,
    /// The folder holding `export_sam2.py` and `export_pixelrefer.py`.
    pub dir: PathBuf,
}

impl Exporters {
    /// `$PIXELREFER_PYTHON`, else `$PIXELREFER_VENV/bin/python`, else the environment
    /// `scripts/setup.sh` makes (`~/.cache/pixelrefer-studio/venv`); scripts from
    /// `$PIXELREFER_EXPORTERS`, else this checkout's `onnx/`.
    pub fn find() -> Result<Exporters, InstallError> {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let mut looked = Vec::new();
        let candidates = [
            var("PIXELREFER_PYTHON"),
            var("PIXELREFER_VENV").map(|v| v.join("bin").join("python")),
            dirs::cache_dir().map(|c| {
                c.join("pixelrefer-studio")
                    .join("venv")
                    .join("bin")
                    .join("python")
            }),
        ];
        let mut python = None;
        for candidate in candidates.into_iter().flatten() {
            if candidate.is_file() {
                python = Some(candidate);
                break;
            }
            looked.push(candidate.display().to_string());
        }
        let python = python.ok_or_else(|| InstallError::NoPython {
            looked: if looked.is_empty() {
                "no cache folder".into()
            } else {
                format!("looked for {}", looked.join(", "))
            },
        })?;
        let dir = var("PIXELREFER_EXPORTERS")
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx"));
        Ok(Exporters { python, dir })
    }

    /// The path of `script`, checked to exist.
    pub fn script(&self, script: &str) -> Result<PathBuf, InstallError> {
        let path = self.dir.join(script);
        if is_safe_name(script) && path.is_file() {
            Ok(path)
        } else {
            Err(InstallError::NoExporter {
                script: script.to_string(),
                dir: self.dir.clone(),
            })
        }
    }
}

/// What an exporter reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportEvent {
    /// A `[progress]` line: stage (`load`, `graph`, `reference`, `verify`, `quantize`, `done`), step
    /// (1-based), step count and the graph or case name.
    Step {
        /// Stage.
        stage: String,
        /// Step, 1-based.
        index: u64,
        /// Steps in this stage.
        total: u64,
        /// Graph role or case.
        name: String,
    },
    /// Any other output line.
    Line(String),
}

#[derive(Deserialize)]
struct ProgressLine {
    stage: String,
    #[serde(default)]
    index: u64,
    #[serde(default)]
    total: u64,
    #[serde(default)]
    name: String,
}

/// Parses one line of exporter output.
pub fn parse_export_line(line: &str) -> ExportEvent {
    if let Some(json) = line.trim().strip_prefix("[progress]")
        && let Ok(p) = serde_json::from_str::<ProgressLine>(json.trim())
    {
        return ExportEvent::Step {
            stage: p.stage,
            index: p.index,
            total: p.total,
            name: p.name,
        };
    }
    ExportEvent::Line(line.to_string())
}

/// Runs `entry`'s exporter on the downloaded `snapshot`, writing the model into `out`; the
/// whole output goes to `log`. `cancel` kills the exporter.
pub fn run_exporter(
    exporters: &Exporters,
    entry: &CatalogEntry,
    snapshot: &Path,
    out: &Path,
    log: &Path,
    on_event: &mut dyn FnMut(ExportEvent),
    cancel: &AtomicBool,
) -> Result<(), InstallError> {
    let script = exporters.script(entry.exporter_script())?;
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let mut log_file = std::fs::File::create(log).map_err(io_err(log))?;
    let mut child = Command::new(&exporters.python)
        .arg("-u")
        .arg(&script)
        .args(entry.exporter_args(snapshot, out))
        .current_dir(&exporters.dir)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| InstallError::Export {
            name: entry.name.clone(),
            reason: format!("cannot start {}: {e}", exporters.python.display()),
            log: log.to_path_buf(),
        })?;
    let (tx, rx) = crossbeam_channel::unbounded::<(bool, String)>();
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send((false, line));
            }
        }));
    }
    if let Some(stderr) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send((true, line));
            }
        }));
    }
    drop(tx);
    let mut last_error: Option<String> = None;
    let mut last_stderr: Option<String> = None;
    let mut handle = |is_err: bool, line: String, log_file: &mut std::fs::File| {
        use std::io::Write as _;
        let _ = writeln!(log_file, "{line}");
        if is_err {
            if let Some(e) = line.trim().strip_prefix("error:") {
                last_error = Some(e.trim().to_string());
            }
            if !line.trim().is_empty() {
                last_stderr = Some(line.trim().to_string());
            }
            on_event(ExportEvent::Line(line));
        } else {
            on_event(parse_export_line(&line));
        }
    };
    let status = loop {
        if cancel.load(Ordering::Relaxed) {
            let _ = child.kill();
            let _ = child.wait();
            for r in readers {
                let _ = r.join();
            }
            return Err(InstallError::Cancelled);
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((is_err, line)) => handle(is_err, line, &mut log_file),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                // Both pipes closed: the process is ending.
                break child.wait().map_err(io_err(&exporters.python))?;
            }
        }
    };
    for r in readers {
        let _ = r.join();
    }
    while let Ok((is_err, line)) = rx.try_recv() {
        handle(is_err, line, &mut log_file);
    }
    if status.success() {
        return Ok(());
    }
    let reason = last_error
        .or(last_stderr)
        .unwrap_or_else(|| match status.code() {
            Some(code) => format!("the exporter exited with status {code}"),
            None => "the exporter was killed by a signal".into(),
        });
    Err(InstallError::Export {
        name: entry.name.clone(),
        reason,
        log: log.to_path_buf(),
    })
}

/// A staging folder for one install; removed on drop unless committed.
pub struct Staging {
    root: PathBuf,
    name: String,
    dir: PathBuf,
    committed: bool,
}

impl Staging {
    /// Creates `ROOT/.staging/NAME.PID.NANOS/` (and `ROOT`), after removing staging folders
    /// whose process is gone.
    pub fn create(root: &Path, name: &str) -> Result<Staging, InstallError> {
        if !is_safe_name(name) {
            return Err(InstallError::Io {
                path: root.join(name),
                reason: "not a valid model name".into(),
            });
        }
        let staging = root.join(STAGING_DIR);
        std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
        remove_stale_staging(root);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = staging.join(format!("{name}.{}.{nanos}", std::process::id()));
        std::fs::create_dir(&dir).map_err(io_err(&dir))?;
        Ok(Staging {
            root: root.to_path_buf(),
            name: name.to_string(),
            dir,
            committed: false,
        })
    }

    /// The folder to export into.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `record` and renames the folder to `ROOT/NAME` in one step; fails when that
    /// exists already.
    pub fn commit(mut self, record: &InstallRecord) -> Result<PathBuf, InstallError> {
        let record_path = self.dir.join(INSTALL_RECORD);
        let text = serde_json::to_string_pretty(record).map_err(|e| InstallError::Io {
            path: record_path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&record_path, text).map_err(io_err(&record_path))?;
        sync_tree(&self.dir);
        let dest = self.root.join(&self.name);
        if dest.exists() {
            return Err(InstallError::AlreadyInstalled {
                name: self.name.clone(),
                path: dest,
            });
        }
        std::fs::rename(&self.dir, &dest).map_err(io_err(&dest))?;
        if let Ok(root) = std::fs::File::open(&self.root) {
            let _ = root.sync_all();
        }
        self.committed = true;
        Ok(dest)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// fsyncs every file under `dir` (and the folders), so a crash after the rename cannot leave an
/// installed model with empty files.
fn sync_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => sync_tree(&path),
            Ok(t) if t.is_file() => {
                if let Ok(f) = std::fs::File::open(&path) {
                    let _ = f.sync_all();
                }
            }
            _ => {}
        }
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Removes `ROOT/.staging/*` folders whose owning process no longer runs (Linux: `/proc/PID`;
/// elsewhere, folders older than a day).
pub fn remove_stale_staging(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root.join(STAGING_DIR)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid: Option<u32> = name.rsplit('.').nth(1).and_then(|p| p.parse().ok());
        let stale = match pid {
            Some(pid) if cfg!(target_os = "linux") => {
                pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(86_400)),
        };
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes the installed model `name` from the first of `roots` that has it: renamed into the
/// staging folder first (one step, so the model search never sees half a model), then deleted.
pub fn remove_installed(roots: &[PathBuf], name: &str) -> Result<PathBuf, InstallError> {
    let found = is_safe_name(name)
        .then(|| {
            roots
                .iter()
                .map(|r| r.join(name))
                .find(|d| d.join(super::MANIFEST_FILE).is_file())
        })
        .flatten();
    let Some(dir) = found else {
        return Err(InstallError::NotInstalled {
            name: name.to_string(),
            roots: roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let root = dir.parent().unwrap_or(Path::new("."));
    let trash_dir = root.join(STAGING_DIR);
    std::fs::create_dir_all(&trash_dir).map_err(io_err(&trash_dir))?;
    let trash = trash_dir.join(format!("{name}.{}.removing", std::process::id()));
    let _ = std::fs::remove_dir_all(&trash);
    std::fs::rename(&dir, &trash).map_err(io_err(&dir))?;
    std::fs::remove_dir_all(&trash).map_err(io_err(&trash))?;
    Ok(dir)
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_parse() {
        assert_eq!(
            parse_export_line(
                r#"[progress] {"stage": "graph", "index": 2, "total": 4, "name": "prompt_decoder"}"#
            ),
            ExportEvent::Step {
                stage: "graph".into(),
                index: 2,
                total: 4,
                name: "prompt_decoder".into()
            }
        );
        assert_eq!(
            parse_export_line("[progress] not json"),
            ExportEvent::Line("[progress] not json".into())
        );
    }

    #[test]
    fn staging_is_hidden_removed_on_drop_and_committed_atomically() {
        let root = tempfile::tempdir().expect("tmp");
        let s = Staging::create(root.path(), "m1").expect("stage");
        std::fs::write(s.path().join(super::super::MANIFEST_FILE), "{}").expect("w");
        let staged = s.path().to_path_buf();
        assert!(staged.starts_with(root.path().join(STAGING_DIR)));
        drop(s);
        assert!(!staged.exists(), "an uncommitted staging folder is removed");

        let s = Staging::create(root.path(), "m1").expect("stage");
        std::fs::write(s.path().join("a.onnx"), "x").expect("w");
        let record = InstallRecord {
            name: "m1".into(),
            display_name: "M1".into(),
            repo: "o/n".into(),
            revision: "main".into(),
            commit: "0".repeat(40),
            files: vec![],
            exporter: vec![],
            installed_at: 0,
            verified: "PASS".into(),
        };
        let dest = s.commit(&record).expect("commit");
        assert_eq!(dest, root.path().join("m1"));
        assert_eq!(InstallRecord::load(&dest), Some(record.clone()));
        // A second install of the same name is refused and leaves the first alone.
        let s = Staging::create(root.path(), "m1").expect("stage");
        let staged = s.path().to_path_buf();
        assert!(matches!(
            s.commit(&record),
            Err(InstallError::AlreadyInstalled { .. })
        ));
        assert!(!staged.exists());
        assert!(dest.join("a.onnx").is_file());
        // Remove: gone in one rename.
        std::fs::write(dest.join(super::super::MANIFEST_FILE), "{}").expect("w");
        let removed = remove_installed(&[root.path().to_path_buf()], "m1").expect("rm");
        assert_eq!(removed, dest);
        assert!(!dest.exists());
        assert!(matches!(
            remove_installed(&[root.path().to_path_buf()], "m1"),
            Err(InstallError::NotInstalled { .. })
        ));
        assert!(matches!(
            remove_installed(&[root.path().to_path_buf()], "../x"),
            Err(InstallError::NotInstalled { .. })
        ));
    }

    #[test]
    fn stale_staging_of_dead_processes_is_removed() {
        let root = tempfile::tempdir().expect("tmp");
        let dead = root.path().join(STAGING_DIR).join("m.4194304999.1");
        std::fs::create_dir_all(&dead).expect("mk");
        let live = Staging::create(root.path(), "m").expect("stage");
        assert!(!dead.exists() || !cfg!(target_os = "linux"));
        assert!(live.path().exists());
    }
}
