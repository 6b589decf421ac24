//! The model catalogue: every model the app knows how to fetch, where it comes from upstream,
//! what it needs, and how the project's exporter turns it into a model directory (DESIGN.md §4).
//!
//! The built-in catalogue is `assets/models.catalog.json`; `--catalog FILE` or
//! `$PIXELREFER_CATALOG` replaces it (a mirror, or a test hub).

use super::ModelKind;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The catalogue compiled into the binary.
pub const BUILTIN_CATALOG: &str = include_str!("../../assets/models.catalog.json");

/// Environment variable naming a catalogue file that replaces the built-in one.
pub const CATALOG_ENV: &str = "PIXELREFER_CATALOG";

/// Largest catalogue file read.
const MAX_CATALOG_BYTES: u64 = 4 << 20;

/// Errors reading or using a catalogue.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read the model catalogue {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The text is not a valid catalogue.
    #[error("the model catalogue {source_name} is invalid: {reason}")]
    Invalid {
        /// The file, or `built-in`.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// No entry of that name.
    #[error("the catalogue has no model named `{name}` (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// Every name, joined.
        known: String,
    },
}

/// One upstream file named explicitly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// Path inside the upstream repository.
    pub path: String,
    /// Size in bytes, where known in advance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// sha256 (hex), where upstream publishes one; checked in addition to the hub's own hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One model the app can fetch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// Short name used on the command line and as the installed directory's name.
    pub name: String,
    /// Name shown to people.
    pub display_name: String,
    /// Model family of the installed directory.
    pub kind: ModelKind,
    /// Upstream Hugging Face repository (`owner/name`).
    pub repo: String,
    /// Branch, tag or commit (default `main`).
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Files named explicitly.
    #[serde(default)]
    pub files: Vec<CatalogFile>,
    /// Glob patterns (`*` and `?`) of further files, matched against the repository listing.
    #[serde(default)]
    pub include: Vec<String>,
    /// Licence of the weights, as upstream states it.
    pub license: String,
    /// Parameter count.
    #[serde(default)]
    pub parameters: u64,
    /// Download size estimate (the hub's listing gives the exact one at fetch time).
    pub approx_download_bytes: u64,
    /// Size of the installed model directory, estimated.
    pub approx_disk_bytes: u64,
    /// Memory needed to run it on the CPU, estimated.
    pub approx_memory_bytes: u64,
    /// Machine classes (`cpu`, `cuda`) this model is the recommended choice for.
    #[serde(default)]
    pub recommended_for: Vec<String>,
    /// Machine classes where this SAM 2 family model is offered next to the recommended one
    /// as the faster, less accurate tracker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faster_for: Vec<String>,
    /// What the faster model trades against the recommended one, in one line for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tradeoff: String,
    /// The exporter script (in `onnx/`) and its arguments; `{file:PATH}` is the downloaded
    /// file, `{snapshot}` the folder holding every downloaded file, `{out}` the output folder.
    pub exporter: Vec<String>,
    /// One line for people choosing a model.
    #[serde(default)]
    pub summary: String,
}

fn default_revision() -> String {
    "main".into()
}

/// The whole catalogue file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Always `pixelrefer-studio-catalog`.
    pub format: String,
    /// Schema version (1).
    pub version: u32,
    /// Free text.
    #[serde(default)]
    pub notes: String,
    /// The models.
    pub models: Vec<CatalogEntry>,
    /// Where it was read from (`built-in` or a path).
    #[serde(skip)]
    pub source: String,
}

impl Catalog {
    /// The catalogue to use: `file` when given, else `$PIXELREFER_CATALOG` when set, else the
    /// built-in one.
    pub fn load(file: Option<&Path>) -> Result<Catalog, CatalogError> {
        let env = std::env::var_os(CATALOG_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        match file.map(Path::to_path_buf).or(env) {
            Some(path) => Self::read(&path),
            None => Self::parse(BUILTIN_CATALOG, "built-in"),
        }
    }

    /// Reads a catalogue file.
    pub fn read(path: &Path) -> Result<Catalog, CatalogError> {
        let err = |reason: String| CatalogError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if !meta.is_file() {
            return Err(err("it is not a regular file".into()));
        }
        if meta.len() > MAX_CATALOG_BYTES {
            return Err(err(format!(
                "it is {} bytes, more than the {MAX_CATALOG_BYTES} a catalogue may have",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates catalogue text.
    pub fn parse(text: &str, source_name: &str) -> Result<Catalog, CatalogError> {
        let invalid = |reason: String| CatalogError::Invalid {
            source_name: source_name.to_string(),
            reason,
        };
        let mut catalog: Catalog =
            serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        catalog.source = source_name.to_string();
        catalog.validate().map_err(invalid)?;
        Ok(catalog)
    }

    fn validate(&self) -> Result<(), String> {
        if self.format != "pixelrefer-studio-catalog" {
            return Err(format!(
                "format is `{}`, expected `pixelrefer-studio-catalog`",
                self.format
            ));
        }
        if self.version != 1 {
            return Err(format!("version {} is not supported (1 is)", self.version));
        }
        let mut names = std::collections::HashSet::new();
        for entry in &self.models {
            entry.validate()?;
            if !names.insert(entry.name.as_str()) {
                return Err(format!("model `{}` is listed twice", entry.name));
            }
        }
        Ok(())
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Result<&CatalogEntry, CatalogError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| CatalogError::Unknown {
                name: name.to_string(),
                known: self
                    .models
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The recommended SAM 2 and PixelRefer entries for a machine: the first entry of each
    /// family tagged for the machine class (`cuda` when a CUDA provider is present, else
    /// `cpu`) whose memory estimate fits `memory_bytes`; failing that, the smallest of the
    /// family tagged for the class.
    pub fn recommend(&self, cuda: bool, memory_bytes: u64) -> Recommendation<'_> {
        let class = if cuda { "cuda" } else { "cpu" };
        let pick = |refer: bool| {
            let family: Vec<&CatalogEntry> = self
                .models
                .iter()
                .filter(|m| (m.kind != ModelKind::Sam2) == refer)
                .filter(|m| m.recommended_for.iter().any(|c| c == class))
                .collect();
            family
                .iter()
                .find(|m| m.approx_memory_bytes <= memory_bytes)
                .or_else(|| family.iter().min_by_key(|m| m.approx_memory_bytes))
                .copied()
        };
        let sam2 = pick(false);
        let faster_sam2 = self
            .models
            .iter()
            .filter(|m| m.kind == ModelKind::Sam2 && m.faster_for.iter().any(|c| c == class))
            .filter(|m| sam2.is_none_or(|s| s.name != m.name))
            .find(|m| m.approx_memory_bytes <= memory_bytes);
        Recommendation {
            class,
            sam2,
            faster_sam2,
            refer: pick(true),
        }
    }
}

/// What [`Catalog::recommend`] picked.
#[derive(Debug, Clone, Copy)]
pub struct Recommendation<'a> {
    /// `cpu` or `cuda`.
    pub class: &'static str,
    /// The SAM 2 model.
    pub sam2: Option<&'a CatalogEntry>,
    /// A faster, less accurate SAM 2 family model offered next to it (`faster_for` the class)
    /// that fits the memory.
    pub faster_sam2: Option<&'a CatalogEntry>,
    /// The PixelRefer model.
    pub refer: Option<&'a CatalogEntry>,
}

/// What a [`Recommendation`] makes of one catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The recommended SAM 2 or PixelRefer model.
    Recommended,
    /// The faster, less accurate SAM 2 family model offered next to it.
    Faster,
}

impl Recommendation<'_> {
    /// Whether `entry` is recommended here, offered as the faster tracker, or neither.
    pub fn pick(&self, entry: &CatalogEntry) -> Option<Pick> {
        let is = |e: Option<&CatalogEntry>| e.is_some_and(|e| e.name == entry.name);
        if is(self.sam2) || is(self.refer) {
            Some(Pick::Recommended)
        } else if is(self.faster_sam2) {
            Some(Pick::Faster)
        } else {
            None
        }
    }
}

impl CatalogEntry {
    fn validate(&self) -> Result<(), String> {
        let ctx = |what: String| format!("model `{}`: {what}", self.name);
        if !is_safe_name(&self.name) {
            return Err(ctx(
                "the name must be 1 to 64 of a-z, 0-9, `.`, `_`, `-`, not starting with `.`".into(),
            ));
        }
        let mut parts = self.repo.split('/');
        let ok_repo = matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None)
            if !a.is_empty() && !b.is_empty() && !a.starts_with('.') && !b.starts_with('.'));
        if !ok_repo || self.repo.contains(['\\', ' ', '?', '#']) {
            return Err(ctx(format!(
                "repo `{}` is not of the form owner/name",
                self.repo
            )));
        }
        if self.files.is_empty() && self.include.is_empty() {
            return Err(ctx("it names no files and no include patterns".into()));
        }
        for f in &self.files {
            if !is_safe_repo_path(&f.path) {
                return Err(ctx(format!(
                    "file path `{}` is not a plain relative path",
                    f.path
                )));
            }
            if let Some(sha) = &f.sha256
                && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(ctx(format!("sha256 of `{}` is not 64 hex digits", f.path)));
            }
        }
        let Some(script) = self.exporter.first() else {
            return Err(ctx("the exporter command is empty".into()));
        };
        if !is_safe_name(script) || !script.ends_with(".py") {
            return Err(ctx(format!(
                "exporter `{script}` must be a script name in onnx/"
            )));
        }
        if !self.exporter.iter().any(|a| a == "{out}") {
            return Err(ctx("the exporter arguments never name {out}".into()));
        }
        if let Some(c) = self
            .recommended_for
            .iter()
            .chain(&self.faster_for)
            .find(|c| !matches!(c.as_str(), "cpu" | "cuda"))
        {
            return Err(ctx(format!(
                "machine class `{c}` is neither `cpu` nor `cuda`"
            )));
        }
        if !self.faster_for.is_empty() && self.kind != ModelKind::Sam2 {
            return Err(ctx(
                "only a SAM 2 family model can be offered as `faster_for`".into(),
            ));
        }
        if !self.faster_for.is_empty() && self.tradeoff.trim().is_empty() {
            return Err(ctx("`faster_for` needs a `tradeoff` line for people".into()));
        }
        for arg in &self.exporter[1..] {
            if let Some(file) = arg.strip_prefix("{file:").and_then(|r| r.strip_suffix('}'))
                && !self.files.iter().any(|f| f.path == file)
            {
                return Err(ctx(format!(
                    "exporter argument `{arg}` names a file that is not in `files`"
                )));
            }
        }
        Ok(())
    }

    /// Exporter arguments (after the script) with the placeholders filled in.
    pub fn exporter_args(&self, snapshot: &Path, out: &Path) -> Vec<std::ffi::OsString> {
        self.exporter[1..]
            .iter()
            .map(|arg| {
                if arg == "{out}" {
                    out.as_os_str().to_owned()
                } else if arg == "{snapshot}" {
                    snapshot.as_os_str().to_owned()
                } else if let Some(file) =
                    arg.strip_prefix("{file:").and_then(|r| r.strip_suffix('}'))
                {
                    snapshot.join(file).into_os_string()
                } else {
                    arg.into()
                }
            })
            .collect()
    }

    /// The exporter script's file name.
    pub fn exporter_script(&self) -> &str {
        &self.exporter[0]
    }

    /// Whether `path` (a repository file) is wanted: named in `files` or matched by `include`.
    pub fn wants(&self, path: &str) -> bool {
        self.files.iter().any(|f| f.path == path)
            || (is_safe_repo_path(path)
                && self.include.iter().any(|pattern| glob_match(pattern, path)))
    }
}

/// A directory or CLI name: 1 to 64 of `a-z A-Z 0-9 . _ + -`, not starting with `.`.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

/// A relative path inside a repository: `/`-separated parts, none empty, `.` or `..`.
pub fn is_safe_repo_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 512
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// `*` (any run of characters except `/`) and `?` (one character) glob matching.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && t[0] != b'/' && go(p, &t[1..])),
            (Some(b'?'), Some(c)) if *c != b'/' => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_is_valid_and_complete() {
        let c = Catalog::parse(BUILTIN_CATALOG, "built-in").expect("valid");
        for name in [
            "sam2.1-hiera-tiny",
            "sam2.1-hiera-small",
            "sam2.1-hiera-base-plus",
            "sam2.1-hiera-large",
            "sam2-hiera-tiny",
            "sam2-hiera-small",
            "sam2-hiera-base-plus",
            "sam2-hiera-large",
            "pixelrefer-2b",
            "pixelrefer-7b",
            "pixelrefer-lite-2b",
            "pixelrefer-lite-7b",
        ] {
            let e = c.get(name).expect(name);
            assert!(e.approx_download_bytes > 0 && !e.license.is_empty());
        }
        let cpu = c.recommend(false, 16 << 30);
        assert_eq!(cpu.sam2.map(|e| e.name.as_str()), Some("sam2.1-hiera-tiny"));
        assert_eq!(
            cpu.refer.map(|e| e.name.as_str()),
            Some("pixelrefer-lite-2b")
        );
        // EdgeTAM is offered next to it on a CPU, not on a CUDA machine.
        assert_eq!(cpu.faster_sam2.map(|e| e.name.as_str()), Some("edgetam"));
        assert!(cpu.faster_sam2.is_some_and(|e| !e.tradeoff.is_empty()));
        assert_eq!(
            cpu.pick(c.get("edgetam").expect("edgetam")),
            Some(Pick::Faster)
        );
        assert_eq!(
            cpu.pick(c.get("sam2.1-hiera-tiny").expect("tiny")),
            Some(Pick::Recommended)
        );
        assert_eq!(cpu.pick(c.get("sam2-hiera-large").expect("large")), None);
        assert!(c.recommend(true, 64 << 30).faster_sam2.is_none());
        // ... nor where it does not fit the memory.
        assert!(c.recommend(false, 512 << 20).faster_sam2.is_none());
        // Too little memory for any: still the smallest tagged one.
        assert!(c.recommend(false, 1 << 30).refer.is_some());
        assert_eq!(
            c.recommend(true, 64 << 30).sam2.map(|e| e.name.as_str()),
            Some("sam2.1-hiera-base-plus")
        );
    }

    #[test]
    fn bad_catalogues_are_refused_with_a_reason() {
        let good = Catalog::parse(BUILTIN_CATALOG, "x").expect("valid");
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = serde_json::to_value(&good).expect("json");
            f(&mut v);
            Catalog::parse(&v.to_string(), "test").expect_err("must fail")
        };
        let e = with(&|v| v["models"][0]["name"] = "../evil".into());
        assert!(e.to_string().contains("name must be"), "{e}");
        let e = with(&|v| v["models"][0]["recommended_for"] = serde_json::json!(["gpu"]));
        assert!(e.to_string().contains("neither `cpu` nor `cuda`"), "{e}");
        let e = with(&|v| v["models"][0]["faster_for"] = serde_json::json!(["cpu"]));
        assert!(e.to_string().contains("needs a `tradeoff`"), "{e}");
        let refer = good
            .models
            .iter()
            .position(|m| m.kind != ModelKind::Sam2)
            .expect("a PixelRefer entry");
        let e = with(&|v| {
            v["models"][refer]["faster_for"] = serde_json::json!(["cpu"]);
            v["models"][refer]["tradeoff"] = "x".into();
        });
        assert!(e.to_string().contains("only a SAM 2 family model"), "{e}");
        let e = with(&|v| v["models"][0]["repo"] = "noslash".into());
        assert!(e.to_string().contains("owner/name"), "{e}");
        let e = with(&|v| v["models"][0]["files"][0]["path"] = "../../etc/passwd".into());
        assert!(e.to_string().contains("plain relative path"), "{e}");
        let e = with(&|v| v["models"][1]["name"] = v["models"][0]["name"].clone());
        assert!(e.to_string().contains("listed twice"), "{e}");
        let e = with(&|v| v["models"][0]["exporter"][0] = "/bin/sh".into());
        assert!(e.to_string().contains("script name"), "{e}");
        let e = with(&|v| v["models"][0]["exporter"][2] = "{file:other.pt}".into());
        assert!(e.to_string().contains("not in `files`"), "{e}");
        let e = with(&|v| v["models"][0]["files"][0]["sha256"] = "abc".into());
        assert!(e.to_string().contains("64 hex"), "{e}");
        assert!(matches!(
            good.get("nope"),
            Err(CatalogError::Unknown { .. })
        ));
    }

    #[test]
    fn include_patterns_and_placeholders() {
        let c = Catalog::parse(BUILTIN_CATALOG, "x").expect("valid");
        let lite = c.get("pixelrefer-lite-2b").expect("lite");
        assert!(lite.wants("model-00001-of-00002.safetensors"));
        assert!(lite.wants("tokenizer.json"));
        assert!(!lite.wants("sub/dir/model.safetensors"));
        assert!(!lite.wants("modeling_pixelrefer.py"));
        assert!(!lite.wants("../x.json"));
        let sam = c.get("sam2.1-hiera-tiny").expect("sam");
        let args = sam.exporter_args(Path::new("/snap"), Path::new("/out"));
        assert_eq!(args[1], "/snap/sam2.1_hiera_tiny.pt");
        assert!(args.contains(&"/out".into()));
        assert!(glob_match("*.json", "config.json"));
        assert!(!glob_match("*.json", "config.jsonx"));
        assert!(glob_match("model-?.bin", "model-1.bin"));
    }
}
