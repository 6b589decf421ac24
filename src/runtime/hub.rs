//! Downloads from a Hugging Face hub (or a mirror speaking the same protocol) into the standard
//! hub cache, so a checkpoint fetched with Python's `huggingface_hub` is reused and the other
//! way round.
//!
//! The protocol is the `hf-hub` crate's and `huggingface_hub`'s: resolve URLs (following
//! redirects to a CDN), ranged chunked downloads that resume from `blobs/<etag>.sync.part`. On
//! top of it this module adds what a fetch needs: the repository listing with every file's size
//! and hash (`/api/models/{repo}/revision/{rev}?blobs=true`), which alone decides the commit, the
//! blob names and the sizes (a server's `ETag` / `X-Repo-Commit` headers never name a path), a
//! hash check of every file before use (LFS files by sha256, others by git blob id), reuse of
//! blobs already in the cache under another commit, a disk-space check, progress, cancel, a
//! stall timeout, a bounded retry of requests a busy hub turns away (429, 502, 503, 504, after
//! its `Retry-After`), and refusal of answers that are not the range asked for (nothing is read
//! beyond it, nor into memory).
//!
//! Environment: `HF_ENDPOINT`, `HF_TOKEN` (else the token file `huggingface-cli login` writes),
//! `HF_HUB_CACHE` / `HF_HOME` (cache `~/.cache/huggingface/hub` by default).

use super::catalog::{CatalogEntry, is_safe_repo_path};
use super::manifest::digest_reader;
use hf_hub::api::tokio::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Default bytes per ranged request (also the resume granularity).
pub const DEFAULT_CHUNK_BYTES: usize = 10_000_000;

/// Default time without a received byte after which a download gives up (it resumes next time).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Free space kept on top of what a download needs.
const DISK_MARGIN_BYTES: u64 = 64 << 20;

/// Largest repository listing read.
const MAX_LISTING_BYTES: usize = 16 << 20;

/// Largest file size a listing may give (1 PiB): more is a broken or hostile hub, and sizes
/// must add up without overflow.
const MAX_FILE_BYTES: u64 = 1 << 50;

/// Errors from the hub, each one sentence.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No connection could be made.
    #[error(
        "cannot reach the model hub at {endpoint} ({reason}); check the network connection, or HF_ENDPOINT for a mirror"
    )]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The hub answered with an HTTP error.
    #[error("the model hub at {endpoint} answered HTTP {status} for {what}{hint}")]
    Http {
        /// The endpoint.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// What was asked for.
        what: String,
        /// What to do about it.
        hint: String,
    },
    /// No byte arrived for too long.
    #[error(
        "the download of {file} stalled (no data for {seconds} s); run the same command again to resume where it stopped"
    )]
    Stalled {
        /// The file.
        file: String,
        /// The timeout.
        seconds: u64,
    },
    /// The hub's answer made no sense.
    #[error("the model hub at {endpoint} sent an unusable answer for {what}: {reason}")]
    Protocol {
        /// The endpoint.
        endpoint: String,
        /// What was asked for.
        what: String,
        /// Why.
        reason: String,
    },
    /// A file the catalogue names is not in the repository.
    #[error("{repo} at revision {revision} has no file {file}")]
    MissingFile {
        /// Repository.
        repo: String,
        /// Revision.
        revision: String,
        /// The file.
        file: String,
    },
    /// A downloaded (or cached) file does not have the published hash.
    #[error(
        "{file} from {repo} does not match its published {algorithm} (expected {expected}, got {actual}); the file was deleted and nothing was installed"
    )]
    HashMismatch {
        /// Repository.
        repo: String,
        /// The file.
        file: String,
        /// `sha256` or `git blob id`.
        algorithm: &'static str,
        /// Expected hex.
        expected: String,
        /// Actual hex.
        actual: String,
    },
    /// Not enough free space.
    #[error("not enough disk space in {path}: {what} needs {needed} and only {available} is free")]
    DiskSpace {
        /// The folder.
        path: PathBuf,
        /// What needs it.
        what: String,
        /// Bytes needed, formatted.
        needed: String,
        /// Bytes free, formatted.
        available: String,
    },
    /// A local file operation failed.
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

impl HubError {
    fn io(path: &Path) -> impl Fn(std::io::Error) -> HubError + '_ {
        move |e| HubError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// Where and how to reach the hub.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Base URL (`HF_ENDPOINT`, default [`DEFAULT_ENDPOINT`]).
    pub endpoint: String,
    /// Bearer token (`HF_TOKEN`, else the cache's token file).
    pub token: Option<String>,
    /// The hub cache folder (`HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// Bytes per ranged request (`PIXELREFER_HUB_CHUNK_BYTES`).
    pub chunk_bytes: usize,
    /// Ranged requests in flight per file.
    pub parallel_requests: usize,
    /// Give up after this long without data (`PIXELREFER_HUB_STALL_SECS`).
    pub stall_timeout: Duration,
    /// Limit for the listing request.
    pub request_timeout: Duration,
}

impl HubConfig {
    /// The configuration from the environment, as `huggingface_hub` reads it.
    pub fn from_env() -> HubConfig {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let cache_dir = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| var("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .or_else(|| dirs::home_dir().map(|h| h.join(".cache").join("huggingface").join("hub")))
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
        let token = var("HF_TOKEN").map(|t| t.trim().to_string()).or_else(|| {
            let file = var("HF_TOKEN_PATH")
                .map(PathBuf::from)
                .or_else(|| cache_dir.parent().map(|p| p.join("token")))?;
            let text = std::fs::read_to_string(file).ok()?;
            Some(text.trim().to_string()).filter(|t| !t.is_empty())
        });
        HubConfig {
            endpoint: var("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.into()),
            token,
            cache_dir,
            chunk_bytes: var("PIXELREFER_HUB_CHUNK_BYTES")
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n >= 4096)
                .unwrap_or(DEFAULT_CHUNK_BYTES),
            parallel_requests: 4,
            stall_timeout: var("PIXELREFER_HUB_STALL_SECS")
                .and_then(|v| v.parse().ok())
                .filter(|&s: &u64| s > 0)
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_STALL_TIMEOUT),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl HubConfig {
    /// The cache folder of model repository `owner/name`: `CACHE/models--owner--name`, as
    /// `huggingface_hub` names it.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache_dir
            .join(format!("models--{}", repo.replace('/', "--")))
    }
}

/// One file to fetch, as the hub lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Path inside the repository.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The published hash it is checked against.
    pub hash: FileHash,
}

/// A file's published hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileHash {
    /// sha256 of an LFS file (its LFS object id), hex.
    Sha256(String),
    /// Git blob id (SHA-1 of `blob <len>\0` + content) of a file stored in git itself, hex.
    GitBlob(String),
}

impl RemoteFile {
    /// The cache's blob name: the ETag the hub sends, which is the LFS sha256 or the git blob
    /// id.
    fn etag(&self) -> &str {
        match &self.hash {
            FileHash::Sha256(h) | FileHash::GitBlob(h) => h,
        }
    }

    /// The sha256, for LFS files.
    pub fn sha256(&self) -> Option<&str> {
        match &self.hash {
            FileHash::Sha256(h) => Some(h),
            FileHash::GitBlob(_) => None,
        }
    }
}

/// What a fetch downloads: a repository at one commit and the wanted files.
#[derive(Debug, Clone)]
pub struct RepoPlan {
    /// `owner/name`.
    pub repo: String,
    /// The revision asked for.
    pub revision: String,
    /// The commit it resolved to.
    pub commit: String,
    /// The files.
    pub files: Vec<RemoteFile>,
}

impl RepoPlan {
    /// Total size.
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |sum, f| sum.saturating_add(f.size))
    }
}

/// Download progress.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadProgress {
    /// The file being fetched.
    pub file: String,
    /// Its index (1-based) and the file count.
    pub index: usize,
    /// Number of files.
    pub files: usize,
    /// Bytes present over all files (including those already cached or resumed).
    pub done: u64,
    /// Bytes over all files.
    pub total: u64,
}

#[derive(Deserialize)]
struct Listing {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, rename = "blobId")]
    blob_id: Option<String>,
    #[serde(default)]
    lfs: Option<LfsInfo>,
}

#[derive(Deserialize)]
struct LfsInfo {
    sha256: String,
    size: u64,
}

/// A client for one hub.
pub struct Hub {
    config: HubConfig,
}

impl Hub {
    /// A client with `config`.
    pub fn new(config: HubConfig) -> Hub {
        Hub { config }
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    fn runtime(&self) -> Result<tokio::runtime::Runtime, HubError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hub")
            .enable_all()
            .build()
            .map_err(|e| HubError::Io {
                path: PathBuf::from("(tokio runtime)"),
                reason: e.to_string(),
            })
    }

    fn api(&self, revision: &str, repo: &str) -> Result<hf_hub::api::tokio::ApiRepo, HubError> {
        Ok(self.client_api()?.repo(Repo::with_revision(
            repo.to_string(),
            RepoType::Model,
            revision.to_string(),
        )))
    }

    fn client_api(&self) -> Result<hf_hub::api::tokio::Api, HubError> {
        ApiBuilder::from_cache(Cache::new(self.config.cache_dir.clone()))
            .with_endpoint(self.config.endpoint.clone())
            .with_token(self.config.token.clone())
            .with_progress(false)
            .build()
            .map_err(|e| self.api_error(e, "the client set-up"))
    }

    fn api_error(&self, err: ApiError, what: &str) -> HubError {
        match err {
            ApiError::RequestError(e) => {
                if let Some(status) = e.status() {
                    let status = status.as_u16();
                    let hint = match status {
                        401 | 403 => "; the repository may be gated or private: accept its licence on the hub and set HF_TOKEN".to_string(),
                        404 => "; check the catalogue's repository and file names".to_string(),
                        429 => "; the hub is rate-limiting this machine, try again in a few minutes".to_string(),
                        500..=599 => "; the hub is having trouble, try again later (the download resumes)".to_string(),
                        _ => String::new(),
                    };
                    HubError::Http {
                        endpoint: self.config.endpoint.clone(),
                        status,
                        what: what.to_string(),
                        hint,
                    }
                } else if e.is_connect() || e.is_timeout() {
                    HubError::Unreachable {
                        endpoint: self.config.endpoint.clone(),
                        reason: one_line(&e),
                    }
                } else {
                    HubError::Protocol {
                        endpoint: self.config.endpoint.clone(),
                        what: what.to_string(),
                        reason: one_line(&e),
                    }
                }
            }
            ApiError::IoError(e) => HubError::Io {
                path: self.config.cache_dir.clone(),
                reason: e.to_string(),
            },
            ApiError::TooManyRetries(inner) => self.api_error(*inner, what),
            ApiError::LockAcquisition(path) => HubError::Io {
                path,
                reason: "another download of this file is running (its lock is held)".into(),
            },
            other => HubError::Protocol {
                endpoint: self.config.endpoint.clone(),
                what: what.to_string(),
                reason: other.to_string(),
            },
        }
    }

    /// Lists the repository and picks the files `entry` wants, with sizes and hashes.
    pub fn plan(&self, entry: &CatalogEntry, cancel: &AtomicBool) -> Result<RepoPlan, HubError> {
        let rt = self.runtime()?;
        let api = self.api(&entry.revision, &entry.repo)?;
        let what = format!("the file list of {}", entry.repo);
        let timeout = self.config.request_timeout;
        let body = rt.block_on(async {
            let request = async {
                let response = send_retrying(api.info_request().query(&[("blobs", "true")]), None)
                    .await
                    .map_err(|e| self.api_error(e.into(), &what))?;
                if response.content_length().unwrap_or(0) > MAX_LISTING_BYTES as u64 {
                    return Err(self.protocol(&what, "the listing is too large"));
                }
                // Read at most the limit, whatever the headers say (a chunked answer has none).
                let mut response = response;
                let mut body = Vec::new();
                while let Some(part) = response
                    .chunk()
                    .await
                    .map_err(|e| self.api_error(e.into(), &what))?
                {
                    if body.len() + part.len() > MAX_LISTING_BYTES {
                        return Err(self.protocol(&what, "the listing is too large"));
                    }
                    body.extend_from_slice(&part);
                }
                Ok(body)
            };
            with_cancel(cancel, timeout, request)
                .await
                .map_err(|e| match e {
                    Interrupted::Cancelled => HubError::Cancelled,
                    Interrupted::TimedOut => HubError::Unreachable {
                        endpoint: self.config.endpoint.clone(),
                        reason: format!("no answer within {} s", timeout.as_secs()),
                    },
                    Interrupted::Failed(e) => e,
                })
        })?;
        let listing: Listing = serde_json::from_slice(&body)
            .map_err(|e| self.protocol(&what, &format!("it is not a repository listing ({e})")))?;
        let commit = listing
            .sha
            .filter(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.protocol(&what, "it names no commit"))?;
        let mut files = Vec::new();
        for wanted in &entry.files {
            let sibling = listing
                .siblings
                .iter()
                .find(|s| s.rfilename == wanted.path)
                .ok_or_else(|| HubError::MissingFile {
                    repo: entry.repo.clone(),
                    revision: entry.revision.clone(),
                    file: wanted.path.clone(),
                })?;
            let file = self.remote_file(sibling, &what)?;
            if let Some(expected) = &wanted.sha256
                && file.sha256() != Some(expected.to_ascii_lowercase().as_str())
            {
                return Err(self.protocol(
                    &what,
                    &format!(
                        "{} has sha256 {} on the hub but the catalogue expects {expected}",
                        wanted.path,
                        file.sha256().unwrap_or("(none: not an LFS file)")
                    ),
                ));
            }
            files.push(file);
        }
        for sibling in &listing.siblings {
            if !entry.files.iter().any(|f| f.path == sibling.rfilename)
                && entry.wants(&sibling.rfilename)
            {
                files.push(self.remote_file(sibling, &what)?);
            }
        }
        if files.is_empty() {
            return Err(self.protocol(&what, "no file matches the catalogue entry"));
        }
        Ok(RepoPlan {
            repo: entry.repo.clone(),
            revision: entry.revision.clone(),
            commit,
            files,
        })
    }

    fn protocol(&self, what: &str, reason: &str) -> HubError {
        HubError::Protocol {
            endpoint: self.config.endpoint.clone(),
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    fn remote_file(&self, s: &Sibling, what: &str) -> Result<RemoteFile, HubError> {
        if !is_safe_repo_path(&s.rfilename) {
            return Err(self.protocol(what, &format!("unsafe file name `{}`", s.rfilename)));
        }
        let hex = |h: &str, len: usize| h.len() == len && h.bytes().all(|b| b.is_ascii_hexdigit());
        let (size, sha256) = match &s.lfs {
            Some(lfs) if hex(&lfs.sha256, 64) => (lfs.size, Some(lfs.sha256.to_ascii_lowercase())),
            Some(_) => return Err(self.protocol(what, &format!("bad sha256 for {}", s.rfilename))),
            None => (
                s.size
                    .ok_or_else(|| self.protocol(what, &format!("no size for {}", s.rfilename)))?,
                None,
            ),
        };
        if size > MAX_FILE_BYTES {
            return Err(self.protocol(
                what,
                &format!(
                    "it lists {} at {size} bytes, more than any model file",
                    s.rfilename
                ),
            ));
        }
        let hash = match (sha256, s.blob_id.as_deref()) {
            (Some(sha), _) => FileHash::Sha256(sha),
            (None, Some(id)) if hex(id, 40) => FileHash::GitBlob(id.to_ascii_lowercase()),
            _ => {
                return Err(self.protocol(
                    what,
                    &format!(
                        "no hash for {} (neither an LFS sha256 nor a blob id)",
                        s.rfilename
                    ),
                ));
            }
        };
        Ok(RemoteFile {
            path: s.rfilename.clone(),
            size,
            hash,
        })
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.config.repo_dir(repo)
    }

    /// The snapshot folder of a plan (where the files are once downloaded).
    pub fn snapshot_dir(&self, plan: &RepoPlan) -> PathBuf {
        self.repo_dir(&plan.repo)
            .join("snapshots")
            .join(&plan.commit)
    }

    /// Bytes still to download: files neither in the snapshot nor as a blob.
    pub fn missing_bytes(&self, plan: &RepoPlan) -> u64 {
        let snapshot = self.snapshot_dir(plan);
        let blobs = self.repo_dir(&plan.repo).join("blobs");
        plan.files
            .iter()
            .filter(|f| !snapshot.join(&f.path).is_file() && !blobs.join(f.etag()).is_file())
            .fold(0u64, |sum, f| sum.saturating_add(f.size))
    }

    /// Downloads every file of `plan` that is not in the cache yet, checks every file's hash,
    /// and returns the snapshot folder. Progress goes to `progress`; `cancel` stops it (a later
    /// call resumes the partial file).
    pub fn download(
        &self,
        plan: &RepoPlan,
        progress: &mut dyn FnMut(&DownloadProgress),
        cancel: &AtomicBool,
    ) -> Result<PathBuf, HubError> {
        let snapshot = self.snapshot_dir(plan);
        let repo_dir = self.repo_dir(&plan.repo);
        let missing = self.missing_bytes(plan);
        check_free_space(&self.config.cache_dir, missing, "the download")?;
        let total = plan.total_bytes();
        let mut done_before = 0u64;
        let api = self.client_api()?;
        let rt = self.runtime()?;
        for (i, file) in plan.files.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                return Err(HubError::Cancelled);
            }
            let base = done_before;
            let report = |done: u64, progress: &mut dyn FnMut(&DownloadProgress)| {
                progress(&DownloadProgress {
                    file: file.path.clone(),
                    index: i + 1,
                    files: plan.files.len(),
                    done: base + done.min(file.size),
                    total,
                })
            };
            report(0, progress);
            let pointer = snapshot.join(&file.path);
            let blob = repo_dir.join("blobs").join(file.etag());
            if !pointer.is_file() && !blob.is_file() {
                self.fetch_file(
                    &rt,
                    &api,
                    plan,
                    file,
                    &blob,
                    &mut |d| report(d, progress),
                    cancel,
                )?;
            }
            if !pointer.is_file() {
                // Fetched now, or the same content under another commit (or fetched by Python).
                link_pointer(&blob, &pointer)?;
            }
            self.check_hash(plan, file, &pointer)?;
            done_before += file.size;
            report(file.size, progress);
        }
        write_ref(&repo_dir, &plan.revision, &plan.commit)?;
        Ok(snapshot)
    }

    /// Downloads `file` into `blob` (`blobs/<etag>`) in ranged requests, resuming
    /// `blobs/<etag>.sync.part` (the data, then the committed length as 8 little-endian bytes,
    /// as `hf-hub` writes it). Only the listing decides the URL, the blob name and the size: no
    /// header of the server's names a path, and an answer that is not the range asked for (or
    /// the whole file) is refused; no answer is held in memory.
    #[allow(clippy::too_many_arguments)]
    fn fetch_file(
        &self,
        rt: &tokio::runtime::Runtime,
        api: &hf_hub::api::tokio::Api,
        plan: &RepoPlan,
        file: &RemoteFile,
        blob: &Path,
        report: &mut dyn FnMut(u64),
        cancel: &AtomicBool,
    ) -> Result<(), HubError> {
        let what = format!("{} of {}", file.path, plan.repo);
        let url = format!(
            "{}/{}/resolve/{}/{}",
            self.config.endpoint,
            encode_path(&plan.repo),
            plan.commit,
            encode_path(&file.path)
        );
        let blobs = blob.parent().ok_or_else(|| HubError::Io {
            path: blob.to_path_buf(),
            reason: "no parent folder".into(),
        })?;
        std::fs::create_dir_all(blobs).map_err(HubError::io(blobs))?;
        let lock_path = blobs.join(format!("{}.lock", file.etag()));
        let lock = std::fs::File::create(&lock_path).map_err(HubError::io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(HubError::Io {
                path: lock_path,
                reason: "another download of this file is running (its lock is held)".into(),
            });
        }
        let part = blobs.join(format!("{}.sync.part", file.etag()));
        let size = file.size;
        let mut committed = open_partial(&part, size)?;
        let chunk = (self.config.chunk_bytes as u64).max(1);
        let parallel = self.config.parallel_requests.max(1);
        let progress = Arc::new(AtomicU64::new(committed));
        let activity = Arc::new(AtomicU64::new(0));
        let stall = self.config.stall_timeout;
        let client = api.client().clone();
        rt.block_on(async {
            let download = async {
                let mut next = committed;
                let mut set = tokio::task::JoinSet::new();
                let mut finished = std::collections::BinaryHeap::new();
                loop {
                    while set.len() < parallel && next < size {
                        let (a, b) = (next, (next + chunk).min(size));
                        next = b;
                        let request = client
                            .get(&url)
                            .header("Range", format!("bytes={a}-{}", b - 1));
                        let range = ByteRange {
                            part: part.clone(),
                            a,
                            b,
                            size,
                        };
                        let (progress, activity) = (Arc::clone(&progress), Arc::clone(&activity));
                        set.spawn(fetch_range(request, range, progress, activity));
                    }
                    let Some(joined) = set.join_next().await else {
                        return Ok(());
                    };
                    let (a, b) = joined
                        .map_err(|e| HubError::Io {
                            path: part.clone(),
                            reason: e.to_string(),
                        })?
                        .map_err(|f| match f {
                            ChunkFailure::Api(e) => self.api_error(e, &what),
                            ChunkFailure::Protocol(reason) => self.protocol(&what, &reason),
                            ChunkFailure::Io(e) => HubError::io(&part)(e),
                        })?;
                    finished.push(std::cmp::Reverse((a, b)));
                    while let Some(&std::cmp::Reverse((a, b))) = finished.peek()
                        && a == committed
                    {
                        finished.pop();
                        committed = b;
                    }
                    write_committed(&part, size, committed)?;
                }
            };
            tokio::pin!(download);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut last = (0u64, 0u64);
            let mut last_change = Instant::now();
            loop {
                tokio::select! {
                    result = &mut download => return result,
                    _ = tick.tick() => {
                        if cancel.load(Ordering::Relaxed) {
                            return Err(HubError::Cancelled);
                        }
                        let now = (progress.load(Ordering::Relaxed), activity.load(Ordering::Relaxed));
                        if now != last {
                            last = now;
                            last_change = Instant::now();
                            report(now.0);
                        } else if last_change.elapsed() >= stall {
                            return Err(HubError::Stalled { file: file.path.clone(), seconds: stall.as_secs() });
                        }
                    }
                }
            }
        })?;
        let out = std::fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .map_err(HubError::io(&part))?;
        out.set_len(size).map_err(HubError::io(&part))?;
        out.sync_all().map_err(HubError::io(&part))?;
        drop(out);
        std::fs::rename(&part, blob).map_err(HubError::io(blob))?;
        drop(lock);
        Ok(())
    }

    fn check_hash(
        &self,
        plan: &RepoPlan,
        file: &RemoteFile,
        pointer: &Path,
    ) -> Result<(), HubError> {
        let (algorithm, expected, actual) = match &file.hash {
            FileHash::Sha256(sha) => ("sha256", sha.clone(), hash_file(pointer, false)?),
            FileHash::GitBlob(id) => ("git blob id", id.clone(), hash_file(pointer, true)?),
        };
        if expected == actual {
            return Ok(());
        }
        // Delete what was fetched: the blob and the snapshot link, so nothing uses it.
        if let Ok(target) = std::fs::canonicalize(pointer) {
            let _ = std::fs::remove_file(target);
        }
        let _ = std::fs::remove_file(pointer);
        Err(HubError::HashMismatch {
            repo: plan.repo.clone(),
            file: file.path.clone(),
            algorithm,
            expected,
            actual,
        })
    }
}

fn one_line(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

enum Interrupted {
    Cancelled,
    TimedOut,
    Failed(HubError),
}

async fn with_cancel<T>(
    cancel: &AtomicBool,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, HubError>>,
) -> Result<T, Interrupted> {
    tokio::pin!(fut);
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            r = &mut fut => return r.map_err(Interrupted::Failed),
            _ = tick.tick() => {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Interrupted::Cancelled);
                }
                if Instant::now() >= deadline {
                    return Err(Interrupted::TimedOut);
                }
            }
        }
    }
}

/// Answers that say the server (or a gateway before it) cannot serve for a moment: 429 Too Many
/// Requests (RFC 6585 §4), 502, 503 and 504 (RFC 9110 §15.6). The request is sent again.
const TRANSIENT_STATUSES: [u16; 4] = [429, 502, 503, 504];

/// How many times one request is sent again after transient answers.
const MAX_RETRIES: u32 = 4;

/// The longest pause honoured before sending again; a server that asks for a longer one gets its
/// answer reported (the download resumes when run again).
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// Sends `request` and returns its answer, an error for a status of 400 or more. After a
/// transient answer ([`TRANSIENT_STATUSES`]) it waits the server's `Retry-After` (in seconds)
/// or 1, 2, 4, 8 s, and sends it again, at most [`MAX_RETRIES`] times; each such answer counts
/// as `activity`, so the stall timer sees the server alive.
async fn send_retrying(
    request: reqwest::RequestBuilder,
    activity: Option<&AtomicU64>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut retries = 0;
    loop {
        // A body-less GET always clones; were it not, it is sent once.
        let Some(this) = request.try_clone() else {
            return request.send().await?.error_for_status();
        };
        let response = this.send().await?;
        let status = response.status().as_u16();
        if retries < MAX_RETRIES && TRANSIENT_STATUSES.contains(&status) {
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(Duration::from_secs(1 << retries), Duration::from_secs);
            if wait <= MAX_RETRY_WAIT {
                retries += 1;
                if let Some(activity) = activity {
                    activity.fetch_add(1, Ordering::Relaxed);
                }
                drop(response);
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        return response.error_for_status();
    }
}

/// One ranged request of a download: where it writes and what it asks for.
struct ByteRange {
    /// The partial file (`blobs/<etag>.sync.part`).
    part: PathBuf,
    /// First byte asked for.
    a: u64,
    /// One past the last byte asked for.
    b: u64,
    /// The whole file's size.
    size: u64,
}

/// Sends one ranged request and writes its bytes at their offset in the partial file: a 206
/// must be exactly the range asked for, a 200 the whole file (skipped to the range); nothing
/// past the range is read. Returns the range written.
async fn fetch_range(
    request: reqwest::RequestBuilder,
    range: ByteRange,
    progress: Arc<AtomicU64>,
    activity: Arc<AtomicU64>,
) -> Result<(u64, u64), ChunkFailure> {
    let ByteRange { part, a, b, size } = range;
    let response = send_retrying(request, Some(&activity))
        .await
        .map_err(|e| ChunkFailure::Api(e.into()))?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut skip = match status {
        206 => {
            let asked = format!("bytes {a}-{}/{size}", b - 1);
            let range = header("content-range");
            if range.as_deref() != Some(asked.as_str()) {
                return Err(ChunkFailure::Protocol(format!(
                    "it answered Content-Range `{}` to a request for `{asked}`",
                    range
                        .as_deref()
                        .map(super::remote::clean_text)
                        .unwrap_or_default()
                )));
            }
            0
        }
        // The whole file (a server that ignores ranges): skip to `a`.
        200 => {
            if let Some(len) = response.content_length()
                && len != size
            {
                return Err(ChunkFailure::Protocol(format!(
                    "it sent {len} bytes for a file of {size}"
                )));
            }
            a
        }
        other => {
            return Err(ChunkFailure::Protocol(format!(
                "it answered HTTP {other} instead of the file's bytes"
            )));
        }
    };
    if status == 206
        && let Some(len) = response.content_length()
        && len != b - a
    {
        return Err(ChunkFailure::Protocol(format!(
            "it announced {len} bytes for a range of {}",
            b - a
        )));
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .open(&part)
        .map_err(ChunkFailure::Io)?;
    out.seek(SeekFrom::Start(a)).map_err(ChunkFailure::Io)?;
    let mut response = response;
    let mut pos = a;
    while pos < b {
        let Some(bytes) = response
            .chunk()
            .await
            .map_err(|e| ChunkFailure::Api(e.into()))?
        else {
            break;
        };
        activity.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let mut data = &bytes[..];
        let skipped = skip.min(data.len() as u64);
        data = &data[skipped as usize..];
        skip -= skipped;
        let room = (b - pos).min(data.len() as u64) as usize;
        if room < data.len() && status == 206 {
            return Err(ChunkFailure::Protocol(format!(
                "it sent more than the {} bytes asked for",
                b - a
            )));
        }
        out.write_all(&data[..room]).map_err(ChunkFailure::Io)?;
        pos += room as u64;
        progress.fetch_add(room as u64, Ordering::Relaxed);
    }
    if pos < b {
        return Err(ChunkFailure::Protocol(format!(
            "the answer ended after {} of the {} bytes asked for; run the same command again to resume",
            pos - a,
            b - a
        )));
    }
    if status == 206
        && response
            .chunk()
            .await
            .map_err(|e| ChunkFailure::Api(e.into()))?
            .is_some_and(|more| !more.is_empty())
    {
        return Err(ChunkFailure::Protocol(format!(
            "it sent more than the {} bytes asked for",
            b - a
        )));
    }
    out.flush().map_err(ChunkFailure::Io)?;
    Ok((a, b))
}

/// Why one ranged request failed.
enum ChunkFailure {
    Api(ApiError),
    Protocol(String),
    Io(std::io::Error),
}

/// Percent-encodes each `/`-separated part of a repository path for a URL.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Opens (or creates) the partial download `part` of a `size`-byte file and returns the length
/// already committed (0 unless `part` is `size` + 8 bytes long with a valid trailer).
fn open_partial(part: &Path, size: u64) -> Result<u64, HubError> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(HubError::io(part))?;
    let len = file.metadata().map_err(HubError::io(part))?.len();
    if len == size + 8 {
        let mut trailer = [0u8; 8];
        file.seek(SeekFrom::Start(size))
            .map_err(HubError::io(part))?;
        file.read_exact(&mut trailer).map_err(HubError::io(part))?;
        let committed = u64::from_le_bytes(trailer);
        if committed <= size {
            return Ok(committed);
        }
    }
    file.set_len(0).map_err(HubError::io(part))?;
    file.set_len(size + 8).map_err(HubError::io(part))?;
    Ok(0)
}

/// Records that the first `committed` bytes of `part` are complete.
fn write_committed(part: &Path, size: u64, committed: u64) -> Result<(), HubError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(part)
        .map_err(HubError::io(part))?;
    file.seek(SeekFrom::Start(size))
        .map_err(HubError::io(part))?;
    file.write_all(&committed.to_le_bytes())
        .map_err(HubError::io(part))
}

/// sha256 (or, with `git_blob`, the git blob SHA-1: `blob <len>\0` + content) of a file, hex.
fn hash_file(path: &Path, git_blob: bool) -> Result<String, HubError> {
    let mut file = std::fs::File::open(path).map_err(HubError::io(path))?;
    let hex = if git_blob {
        let len = file.metadata().map_err(HubError::io(path))?.len();
        digest_reader(&mut file, Sha1::new_with_prefix(format!("blob {len}\0")))
    } else {
        digest_reader(&mut file, Sha256::new())
    };
    hex.map_err(HubError::io(path))
}

/// `snapshots/<commit>/<path>` → relative link to `blobs/<etag>`, as `huggingface_hub` makes.
fn link_pointer(blob: &Path, pointer: &Path) -> Result<(), HubError> {
    let parent = pointer.parent().ok_or_else(|| HubError::Io {
        path: pointer.to_path_buf(),
        reason: "no parent folder".into(),
    })?;
    std::fs::create_dir_all(parent).map_err(HubError::io(parent))?;
    // pointer = <repo>/snapshots/<commit>/<a>/<b>…; blob = <repo>/blobs/<etag>.
    let snapshot_depth = pointer
        .strip_prefix(
            blob.parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("")),
        )
        .map(|rel| rel.components().count().saturating_sub(1))
        .unwrap_or(2);
    let mut target = PathBuf::new();
    for _ in 0..snapshot_depth {
        target.push("..");
    }
    target.push("blobs");
    if let Some(name) = blob.file_name() {
        target.push(name);
    }
    let _ = std::fs::remove_file(pointer);
    #[cfg(unix)]
    let linked = std::os::unix::fs::symlink(&target, pointer);
    #[cfg(not(unix))]
    let linked = std::fs::copy(blob, pointer).map(|_| ());
    linked.map_err(HubError::io(pointer))
}

fn write_ref(repo_dir: &Path, revision: &str, commit: &str) -> Result<(), HubError> {
    if revision == commit {
        return Ok(());
    }
    let path = repo_dir.join("refs").join(revision);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(HubError::io(parent))?;
    }
    std::fs::write(&path, commit).map_err(HubError::io(&path))
}

/// Free bytes on the file system holding `path` (or its nearest existing ancestor).
pub fn available_space(path: &Path) -> Option<u64> {
    let mut dir = path;
    loop {
        if dir.exists() {
            return fs4::available_space(dir).ok();
        }
        dir = dir.parent()?;
    }
}

/// Fails with [`HubError::DiskSpace`] unless `needed` bytes (plus a margin) are free at `path`.
pub fn check_free_space(path: &Path, needed: u64, what: &str) -> Result<(), HubError> {
    if needed == 0 {
        return Ok(());
    }
    match available_space(path) {
        Some(free) if free < needed.saturating_add(DISK_MARGIN_BYTES) => Err(HubError::DiskSpace {
            path: path.to_path_buf(),
            what: what.to_string(),
            needed: format_bytes(needed.saturating_add(DISK_MARGIN_BYTES)),
            available: format_bytes(free),
        }),
        _ => Ok(()),
    }
}

/// `1.5 GB`, `320 MB`, `12 kB`, `5 B` (decimal units, as the hub shows sizes).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// Transfer rate and time left from successive byte counts (for the app's progress line; the
/// CLI's bar computes its own).
#[derive(Debug, Clone)]
pub struct TransferMeter {
    start: Instant,
    start_bytes: Option<u64>,
    rate: f64,
    last: Option<(Instant, u64)>,
}

impl Default for TransferMeter {
    fn default() -> Self {
        TransferMeter {
            start: Instant::now(),
            start_bytes: None,
            rate: 0.0,
            last: None,
        }
    }
}

impl TransferMeter {
    /// Records that `done` bytes are present now.
    pub fn update(&mut self, done: u64) {
        let now = Instant::now();
        if self.start_bytes.is_none() {
            self.start_bytes = Some(done);
            self.start = now;
        }
        if let Some((t, b)) = self.last {
            let dt = now.duration_since(t).as_secs_f64();
            if dt >= 0.25 && done >= b {
                let instant = (done - b) as f64 / dt;
                self.rate = if self.rate == 0.0 {
                    instant
                } else {
                    0.7 * self.rate + 0.3 * instant
                };
                self.last = Some((now, done));
            }
        } else {
            self.last = Some((now, done));
        }
    }

    /// Bytes per second (smoothed).
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// `"12 MB of 156 MB, 3.1 MB/s, 46 s left"`.
    pub fn describe(&self, done: u64, total: u64) -> String {
        let mut text = format!("{} of {}", format_bytes(done), format_bytes(total));
        if self.rate > 0.0 {
            text.push_str(&format!(", {}/s", format_bytes(self.rate as u64)));
            let left = total.saturating_sub(done) as f64 / self.rate;
            if left.is_finite() {
                text.push_str(&format!(", {} left", format_duration(left)));
            }
        }
        text
    }
}

/// `45 s`, `3 min 5 s`, `2 h 10 min`.
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_id_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin` = ce013625030ba8dba906f756967f9e9ca394464a
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").expect("write");
        assert_eq!(
            hash_file(&path, true).expect("hash"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(
            hash_file(&path, false).expect("hash"),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
    }

    #[test]
    fn pointer_links_are_relative_like_huggingface_hub() {
        let dir = tempfile::tempdir().expect("tmp");
        let repo = dir.path().join("models--a--b");
        let blob = repo.join("blobs").join("abc");
        std::fs::create_dir_all(blob.parent().expect("p")).expect("mk");
        std::fs::write(&blob, b"x").expect("w");
        let pointer = repo
            .join("snapshots")
            .join("c0ffee")
            .join("sub")
            .join("f.json");
        link_pointer(&blob, &pointer).expect("link");
        assert_eq!(
            std::fs::read_link(&pointer).expect("link"),
            PathBuf::from("../../../blobs/abc")
        );
        assert_eq!(std::fs::read(&pointer).expect("read"), b"x");
    }

    #[test]
    fn sizes_and_times_read_well() {
        assert_eq!(format_bytes(5), "5 B");
        assert_eq!(format_bytes(156_000_000), "156 MB");
        assert_eq!(format_bytes(4_300_000_000), "4.3 GB");
        assert_eq!(format_duration(45.0), "45 s");
        assert_eq!(format_duration(185.0), "3 min 5 s");
        assert!(check_free_space(Path::new("/"), u64::MAX / 2, "x").is_err());
    }
}
