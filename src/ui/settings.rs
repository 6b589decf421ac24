//! The app's remembered choices (`<data dir>/pixelrefer-studio/settings.json`): today the tracker
//! a person chose in *Models ▸ Tracker*, loaded again at the next start. A missing or unreadable
//! file means nothing was remembered; a write that fails leaves the previous file whole.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the app remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The tracker model directory chosen last (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracker: Option<PathBuf>,
}

/// Largest settings file read (a bigger one is not ours).
const MAX_BYTES: u64 = 64 << 10;

impl Settings {
    /// `<data dir>/pixelrefer-studio/settings.json` (None without a data directory).
    pub fn default_path() -> Option<PathBuf> {
        dirs::data_dir().map(|d| d.join("pixelrefer-studio").join("settings.json"))
    }

    /// Reads `path`; anything missing, unreadable or malformed reads as nothing remembered.
    pub fn load(path: &Path) -> Settings {
        crate::project::read_bounded(path, MAX_BYTES)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Writes `path` atomically, creating its folder.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        crate::project::write_atomic(path, &bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_bad_files_as_empty() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("sub/settings.json");
        assert_eq!(Settings::load(&path), Settings::default());
        let s = Settings {
            tracker: Some(PathBuf::from("/models/edgetam")),
        };
        s.save(&path).expect("save");
        assert_eq!(Settings::load(&path), s);
        std::fs::write(&path, b"{not json").expect("write");
        assert_eq!(Settings::load(&path), Settings::default());
    }
}
