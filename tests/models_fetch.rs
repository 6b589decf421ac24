//! `models fetch / list / remove` end to end against a local hub on 127.0.0.1 (tests/support/
//! fake_hub.rs) serving tiny random checkpoints in the official repository layouts
//! (`onnx/make_hub_fixtures.py`, written by ./test.sh): fetch → export → verify → install for
//! SAM 2 and both PixelRefer variants, the hub cache shared with Python's `huggingface_hub`,
//! resume after a kill, a tampered file, server errors, a stall, disk space, a missing Python
//! environment, and a failed reference check — each with nothing half-installed.
#![allow(clippy::unwrap_used)]

#[path = "support/fake_hub.rs"]
mod fake_hub;

use fake_hub::{FakeHub, Faults, Transient, hub_fixtures};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SAM: &str = "sam2.1-hiera-tiny";
const SAM_REPO: &str = "facebook/sam2.1-hiera-tiny";
const SAM_CKPT: &str = "sam2.1_hiera_tiny.pt";

/// A scratch place: hub cache, models folder and a catalogue made from the built-in entries
/// with sizes that fit a test machine.
struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
    catalog: PathBuf,
    exporters: Option<PathBuf>,
}

/// The entry `name` of `models list --json`'s `available` list.
fn available<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list["available"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in {list}"))
}

impl Scratch {
    fn new() -> Scratch {
        Self::with_catalog(|_| {})
    }

    fn with_catalog(edit: impl Fn(&mut serde_json::Value)) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let builtin: serde_json::Value =
            serde_json::from_str(pixelrefer_studio::runtime::catalog::BUILTIN_CATALOG).unwrap();
        let mut catalog = builtin.clone();
        let keep = [SAM, "pixelrefer-2b", "pixelrefer-lite-2b"];
        catalog["models"] = builtin["models"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| keep.contains(&m["name"].as_str().unwrap()))
            .cloned()
            .map(|mut m| {
                m["approx_disk_bytes"] = 50_000_000.into();
                m["approx_memory_bytes"] = 1_000_000_000.into();
                m
            })
            .collect();
        edit(&mut catalog);
        let path = root.join("catalog.json");
        std::fs::write(&path, catalog.to_string()).unwrap();
        Scratch {
            _dir: dir,
            root,
            catalog: path,
            exporters: None,
        }
    }

    /// Swaps the SAM 2 exporter for [`fake_hub::write_copy_exporter`]'s; only the end-to-end
    /// test runs the real exporter on the downloaded checkpoint.
    fn with_copy_exporter(mut self) -> Scratch {
        let dir = fake_hub::write_copy_exporter(&self.root.join("exporters"));
        self.exporters = Some(dir);
        self
    }

    fn models(&self) -> PathBuf {
        self.root.join("models")
    }

    fn hf_home(&self) -> PathBuf {
        self.root.join("hf")
    }

    fn repo_cache(&self, repo: &str) -> PathBuf {
        self.hf_home()
            .join("hub")
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    fn command(&self, hub: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pixelrefer-studio"));
        cmd.args(args);
        // `models remove` needs no catalogue: it deletes a folder.
        if args.get(1) != Some(&"remove") {
            cmd.arg("--catalog").arg(&self.catalog);
        }
        cmd.env("HF_ENDPOINT", hub)
            .env("HF_HOME", self.hf_home())
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_CACHE")
            .env_remove("PIXELREFER_CATALOG")
            .env("PIXELREFER_HUB_STALL_SECS", "30")
            .env("RUST_LOG", "warn");
        match &self.exporters {
            Some(dir) => cmd.env("PIXELREFER_EXPORTERS", dir),
            None => cmd.env_remove("PIXELREFER_EXPORTERS"),
        };
        cmd
    }

    /// `models list [extra]` over this scratch's models folder: its standard output.
    fn list(&self, hub: &str, extra: &[&str]) -> Vec<u8> {
        let models = self.models();
        let mut args = vec!["models", "list", "--models", models.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.command(hub, &args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    }

    /// `models list` as text.
    fn list_text(&self, hub: &str) -> String {
        String::from_utf8_lossy(&self.list(hub, &[])).into_owned()
    }

    /// `models list --json`, parsed.
    fn list_json(&self, hub: &str) -> serde_json::Value {
        serde_json::from_slice(&self.list(hub, &["--json"])).unwrap()
    }

    fn fetch_command(&self, hub: &str, name: &str) -> Command {
        let models = self.models();
        let models = models.to_str().unwrap();
        self.command(
            hub,
            &[
                "models",
                "fetch",
                name,
                "--models",
                models,
                "--threads",
                "2",
            ],
        )
    }

    /// `models remove NAME`, which must succeed.
    fn remove(&self, hub: &str, name: &str) {
        let models = self.models();
        let args = [
            "models",
            "remove",
            name,
            "--models",
            models.to_str().unwrap(),
        ];
        let out = self.command(hub, &args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn fetch(&self, hub: &str, name: &str) -> Output {
        self.fetch_command(hub, name).output().unwrap()
    }

    /// Nothing installed and nothing staged.
    fn assert_nothing_installed(&self, name: &str) {
        let dir = self.models().join(name);
        assert!(!dir.exists(), "{} must not exist", dir.display());
        let staging = self.models().join(".staging");
        if staging.exists() {
            let left: Vec<_> = std::fs::read_dir(&staging).unwrap().flatten().collect();
            assert!(left.is_empty(), "staging left behind: {left:?}");
        }
        let found = pixelrefer_studio::runtime::find_model_dirs(Some(&self.models()));
        assert!(
            !found.iter().any(|(d, _)| d.starts_with(self.models())),
            "the model search found {found:?}"
        );
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The CLI's one-sentence error: the last stderr line, which must start with `error:`.
fn error_line(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure:\n{}",
        stderr(out)
    );
    let line = stderr(out).lines().last().unwrap_or_default().to_string();
    assert!(line.starts_with("error: "), "{line}");
    assert!(!line.contains("panicked"), "{line}");
    line
}

fn assert_installed(s: &Scratch, name: &str, kind: &str, out: &Output) -> PathBuf {
    assert!(
        out.status.success(),
        "fetch {name} failed:\n{}",
        stderr(out)
    );
    let dir = s.models().join(name);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.trim(), dir.display().to_string());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], kind);
    assert!(dir.join("reference/cases.json").is_file());
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("install.json")).unwrap()).unwrap();
    assert_eq!(record["name"], name);
    assert!(
        record["verified"]
            .as_str()
            .unwrap()
            .starts_with("[summary]"),
        "{record}"
    );
    let err = stderr(out);
    for stage in [
        "checking",
        "downloading",
        "exporting",
        "verifying",
        "installing",
    ] {
        assert!(
            err.contains(&format!("[fetch] {stage}")),
            "no {stage}:\n{err}"
        );
    }
    assert!(
        err.contains("export: graph 1/"),
        "no per-graph progress:\n{err}"
    );
    let staging = s.models().join(".staging");
    assert!(
        !staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none(),
        "staging not empty"
    );
    // The model search finds it, and `models verify` passes on it.
    let found = pixelrefer_studio::runtime::find_model_dirs(Some(&s.models()));
    assert!(found.iter().any(|(d, _)| d == &dir), "{found:?}");
    dir
}

#[test]
fn sam2_fetch_export_verify_install_list_remove_and_cache_reuse() {
    let hub = FakeHub::start(&hub_fixtures());
    let mut s = Scratch::new();
    let out = s.fetch(&hub.endpoint(), SAM);
    let dir = assert_installed(&s, SAM, "sam2", &out);
    // The hub cache has the official layout: blobs by sha256 / blob id, snapshot links, ref.
    let commit = hub.commit(SAM_REPO);
    let cache = s.repo_cache(SAM_REPO);
    assert_eq!(
        std::fs::read_to_string(cache.join("refs/main"))
            .unwrap()
            .trim(),
        commit
    );
    for f in hub
        .files(SAM_REPO)
        .into_iter()
        .filter(|f| [SAM_CKPT, "sam2.1_hiera_t.yaml"].contains(&f.path.as_str()))
    {
        let pointer = cache.join("snapshots").join(&commit).join(&f.path);
        assert!(pointer.is_symlink(), "{}", pointer.display());
        let etag = if f.lfs { &f.sha256 } else { &f.blob_id };
        assert!(cache.join("blobs").join(etag).is_file());
    }
    // list shows it installed.
    let v = s.list_json(&hub.endpoint());
    let entry = available(&v, SAM);
    assert_eq!(entry["installed"], true);
    assert_eq!(entry["in_hub_cache"], true);
    assert!(
        v["installed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["path"] == dir.to_str().unwrap() && m["from_catalog"] == true)
    );
    // A second fetch is refused and changes nothing.
    let again = s.fetch(&hub.endpoint(), SAM);
    assert!(error_line(&again).contains("already installed"));
    assert!(dir.join("install.json").is_file());
    // Remove, then fetch again: nothing is downloaded a second time.
    s.remove(&hub.endpoint(), SAM);
    assert!(!dir.exists());
    let cdn_before = hub
        .log()
        .iter()
        .filter(|l| l.path.starts_with("/cdn/"))
        .count();
    s = s.with_copy_exporter();
    let out = s.fetch(&hub.endpoint(), SAM);
    assert_installed(&s, SAM, "sam2", &out);
    let cdn_after = hub
        .log()
        .iter()
        .filter(|l| l.path.starts_with("/cdn/"))
        .count();
    assert_eq!(cdn_before, cdn_after, "cached files were downloaded again");
}

#[test]
fn pixelrefer_full_fetch_export_verify_install() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new();
    let out = s.fetch(&hub.endpoint(), "pixelrefer-2b");
    assert_installed(&s, "pixelrefer-2b", "pixelrefer", &out);
}

#[test]
fn pixelrefer_lite_fetch_export_verify_install() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new();
    let out = s.fetch(&hub.endpoint(), "pixelrefer-lite-2b");
    let dir = assert_installed(&s, "pixelrefer-lite-2b", "pixelrefer-lite", &out);
    assert!(dir.join("tokenizer.json").is_file());
}

#[test]
fn a_checkpoint_downloaded_by_python_is_reused() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new().with_copy_exporter();
    let python = python();
    let got = Command::new(&python)
        .args([
            "-c",
            &format!(
                "from huggingface_hub import hf_hub_download as d; print(d('{SAM_REPO}', '{SAM_CKPT}'))"
            ),
        ])
        .env("HF_ENDPOINT", hub.endpoint())
        .env("HF_HOME", s.hf_home())
        .env("HF_HUB_DISABLE_XET", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env_remove("HF_TOKEN")
        .output()
        .unwrap();
    assert!(got.status.success(), "{}", stderr(&got));
    let cdn_python = hub
        .log()
        .iter()
        .filter(|l| l.path.starts_with("/cdn/"))
        .count();
    assert!(cdn_python >= 1, "python did not download: {:?}", hub.log());
    let out = s.fetch(&hub.endpoint(), SAM);
    assert_installed(&s, SAM, "sam2", &out);
    let ckpt = checkpoint(&hub);
    let cdn_ckpt = hub
        .log()
        .iter()
        .filter(|l| l.path == format!("/cdn/{}", ckpt.sha256))
        .count();
    assert_eq!(
        cdn_ckpt,
        cdn_python,
        "the checkpoint Python fetched was downloaded again: {:?}",
        hub.log()
    );
}

/// The SAM 2 checkpoint the hub serves.
fn checkpoint(hub: &FakeHub) -> fake_hub::HubFile {
    hub.files(SAM_REPO)
        .into_iter()
        .find(|f| f.path == SAM_CKPT)
        .unwrap()
}

fn python() -> PathBuf {
    std::env::var_os("PIXELREFER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::cache_dir()
                .unwrap()
                .join("pixelrefer-studio/venv/bin/python")
        })
}

/// How long a throttled fetch may take to commit its first bytes.
const PROGRESS_LIMIT: Duration = Duration::from_secs(600);

/// Bytes of the checkpoint's partial download (`blobs/<sha256>.sync.part`, data + 8-byte
/// committed offset), if any.
fn partial_len(s: &Scratch, sha: &str) -> u64 {
    let part = s
        .repo_cache(SAM_REPO)
        .join("blobs")
        .join(format!("{sha}.sync.part"));
    std::fs::metadata(part).map(|m| m.len()).unwrap_or(0)
}

fn committed_offset(s: &Scratch, sha: &str, size: u64) -> u64 {
    let part = s
        .repo_cache(SAM_REPO)
        .join("blobs")
        .join(format!("{sha}.sync.part"));
    let Ok(bytes) = std::fs::read(part) else {
        return 0;
    };
    if bytes.len() as u64 != size + 8 {
        return 0;
    }
    u64::from_le_bytes(bytes[size as usize..].try_into().unwrap())
}

/// A fetch running in the background. Its stderr is drained by a thread as it comes, so the
/// child can never block on a full pipe, and is kept for the assertions and for diagnostics.
struct Running {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits for the end and returns what it printed, as `Command::output` does.
    fn output(mut self) -> Output {
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        Output {
            status,
            stdout: Vec::new(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

fn spawn_fetch(s: &Scratch, hub: &FakeHub, chunk: &str) -> Running {
    let mut child = s
        .fetch_command(&hub.endpoint(), SAM)
        .env("PIXELREFER_HUB_CHUNK_BYTES", chunk)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&stderr);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut pipe, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    Running {
        child,
        stderr,
        reader: Some(reader),
    }
}

/// Interrupt attempts of [`fetch_until_committed`].
const ATTEMPTS: usize = 3;

/// Starts a fetch of the SAM 2 model into a fresh scratch with the checkpoint throttled to
/// `size / 128` bytes a second per connection (the client keeps 4 in flight, so the file takes
/// about 32 s), and returns once at least `min` bytes are committed, with the fetch still running.
///
/// hf-hub commits only the contiguous prefix from byte 0, and tokio runs the chunk tasks in no
/// fixed order: when the first chunk finishes last, the whole file is committed in one step just
/// before the rename. Loaded CI machines twice finished a fetch without this loop seeing a partial
/// commit, most likely so. Such an attempt ends with nothing to interrupt and is made again, at
/// most [`ATTEMPTS`] times.
fn fetch_until_committed(hub: &FakeHub, chunk: u64, min: u64) -> (Scratch, Running) {
    let ckpt = checkpoint(hub);
    let size = ckpt.bytes.len() as u64;
    hub.set_faults(Faults {
        throttle: Some(size / 128),
        ..Faults::default()
    });
    let mut ended = Vec::new();
    for _ in 0..ATTEMPTS {
        let s = Scratch::new().with_copy_exporter();
        let first = hub.log().len();
        let mut child = spawn_fetch(&s, hub, &chunk.to_string());
        let start = Instant::now();
        loop {
            let committed = committed_offset(&s, &ckpt.sha256, size);
            if committed >= min.max(1) {
                return (s, child);
            }
            if child.child.try_wait().unwrap().is_some() {
                // The order the chunks were asked for, for the report if every attempt ends so.
                let ranges: Vec<String> = hub.log()[first..]
                    .iter()
                    .filter(|l| l.path == format!("/cdn/{}", ckpt.sha256))
                    .filter_map(|l| l.range.clone())
                    .take(8)
                    .collect();
                ended.push(format!(
                    "ended at {:?} (first ranges {ranges:?}): {}",
                    start.elapsed(),
                    String::from_utf8_lossy(&child.output().stderr)
                ));
                break;
            }
            // Generous: on two cores kept busy by the other tests of this file (PyTorch exports),
            // the throttled download once took over 120 s to commit its first quarter.
            assert!(
                start.elapsed() < PROGRESS_LIMIT,
                "no progress in {PROGRESS_LIMIT:?} ({} bytes on disk); the fetch said: {}",
                partial_len(&s, &ckpt.sha256),
                child.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("every fetch ended before {min} bytes were committed: {ended:#?}");
}

#[test]
fn a_download_killed_halfway_resumes_with_ranges() {
    let hub = FakeHub::start(&hub_fixtures());
    let ckpt = checkpoint(&hub);
    let size = ckpt.bytes.len() as u64;
    assert!(size > 256 * 1024, "the tiny checkpoint is {size} bytes");
    let chunk = 32 * 1024u64;
    let (s, mut child) = fetch_until_committed(&hub, chunk, size / 4);
    child.child.kill().unwrap(); // SIGKILL: a crash, no clean-up
    child.output();
    let committed = committed_offset(&s, &ckpt.sha256, size);
    assert!(
        committed > 0 && committed < size,
        "committed {committed} of {size}"
    );
    assert!(partial_len(&s, &ckpt.sha256) > 0);
    assert!(!s.models().join(SAM).exists());
    let before = hub.log().len();
    hub.set_faults(Faults::default());
    let out = s.fetch(&hub.endpoint(), SAM);
    assert_installed(&s, SAM, "sam2", &out);
    let resumed: Vec<u64> = hub.log()[before..]
        .iter()
        .filter(|l| l.path == format!("/cdn/{}", ckpt.sha256) && l.method == "GET")
        .filter_map(|l| {
            l.range
                .as_deref()?
                .strip_prefix("bytes=")?
                .split('-')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    // The metadata probe asks for byte 0; every data request starts at or after the
    // committed offset.
    let data: Vec<u64> = resumed.iter().copied().filter(|&r| r != 0).collect();
    assert!(!data.is_empty(), "{resumed:?}");
    assert!(
        data.iter().all(|&r| r >= committed),
        "re-downloaded bytes before {committed}: {resumed:?}"
    );
    let fetched_again: u64 = data.len() as u64 * chunk;
    assert!(
        fetched_again < size,
        "{fetched_again} of {size} bytes fetched again"
    );
}

#[test]
fn ctrl_c_cancels_cleanly_and_the_next_fetch_resumes() {
    let hub = FakeHub::start(&hub_fixtures());
    let ckpt = checkpoint(&hub);
    let size = ckpt.bytes.len() as u64;
    let (s, child) = fetch_until_committed(&hub, 32 * 1024, 1);
    // SIGINT, as Ctrl-C sends.
    let pid = child.child.id() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.output();
    let line = error_line(&out);
    assert!(
        line.contains("cancelled") && line.contains("resume"),
        "{line}"
    );
    s.assert_nothing_installed(SAM);
    assert!(
        committed_offset(&s, &ckpt.sha256, size) > 0,
        "the partial file was lost"
    );
}

#[test]
fn a_tampered_file_is_rejected_and_nothing_is_installed() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new().with_copy_exporter();
    hub.set_faults(Faults {
        tamper: vec![SAM_CKPT.into()],
        ..Faults::default()
    });
    let out = s.fetch(&hub.endpoint(), SAM);
    let line = error_line(&out);
    assert!(
        line.contains(SAM_CKPT) && line.contains("does not match its published sha256"),
        "{line}"
    );
    s.assert_nothing_installed(SAM);
    let ckpt = checkpoint(&hub);
    let cache = s.repo_cache(SAM_REPO);
    assert!(
        !cache.join("blobs").join(&ckpt.sha256).exists(),
        "the bad blob stays in the cache"
    );
    // Fixed upstream: the next fetch works.
    hub.set_faults(Faults::default());
    let out = s.fetch(&hub.endpoint(), SAM);
    assert_installed(&s, SAM, "sam2", &out);
}

#[test]
fn server_errors_give_one_sentence_and_install_nothing() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new();
    let cases: [(&str, u16, &[&str]); 4] = [
        ("/api/models/", 503, &["HTTP 503", "try again later"]),
        ("/api/models/", 404, &["HTTP 404"]),
        ("/api/models/", 401, &["HTTP 401", "HF_TOKEN"]),
        ("/resolve/", 500, &["HTTP 500", SAM_CKPT]),
    ];
    for (path, status, words) in cases {
        hub.set_faults(Faults {
            status: [(path.to_string(), status)].into_iter().collect(),
            ..Faults::default()
        });
        let out = s.fetch(&hub.endpoint(), SAM);
        let line = error_line(&out);
        for w in words {
            assert!(line.contains(w), "{path} {status}: {line}");
        }
        assert_eq!(
            stderr(&out)
                .lines()
                .filter(|l| l.starts_with("error"))
                .count(),
            1
        );
        s.assert_nothing_installed(SAM);
    }
    // Nobody listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let line = error_line(&s.fetch(&closed, SAM));
    assert!(line.contains("cannot reach the model hub"), "{line}");
    s.assert_nothing_installed(SAM);
    // A model the catalogue does not have.
    let line = error_line(&s.fetch(&hub.endpoint(), "no-such-model"));
    assert!(line.contains("no model named `no-such-model`"), "{line}");
}

/// How many requests the hub answered with `status` on paths containing `path`.
fn answered(hub: &FakeHub, path: &str, status: u16) -> usize {
    hub.log()
        .iter()
        .filter(|l| l.path.contains(path) && l.status == status)
        .count()
}

#[test]
fn a_busy_hub_is_asked_again_after_its_pause() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new().with_copy_exporter();
    // Rate-limited file requests, with the server's pause; a listing behind a busy gateway,
    // without one (1 s, then 2 s).
    for (path, status, retry_after) in [("/resolve/", 429, Some("0")), ("/api/models/", 503, None)]
    {
        hub.set_faults(Faults {
            transient: Some(Transient {
                path: path.into(),
                status,
                times: 2,
                retry_after: retry_after.map(str::to_string),
            }),
            ..Faults::default()
        });
        let before = answered(&hub, path, status);
        let out = s.fetch(&hub.endpoint(), SAM);
        assert_installed(&s, SAM, "sam2", &out);
        assert_eq!(answered(&hub, path, status) - before, 2, "{path}");
        s.remove(&hub.endpoint(), SAM);
    }
}

#[test]
fn a_hub_that_stays_busy_or_asks_for_a_long_pause_is_one_sentence() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new().with_copy_exporter();
    // Busy for good: the first request and four more, then the answer is reported.
    hub.set_faults(Faults {
        status: [("/api/models/".to_string(), 503)].into_iter().collect(),
        ..Faults::default()
    });
    let line = error_line(&s.fetch(&hub.endpoint(), SAM));
    assert!(
        line.contains("HTTP 503") && line.contains("try again later"),
        "{line}"
    );
    assert_eq!(answered(&hub, "/api/models/", 503), 5);
    s.assert_nothing_installed(SAM);
    // A pause of an hour is not waited for.
    hub.set_faults(Faults {
        transient: Some(Transient {
            path: "/resolve/".into(),
            status: 429,
            times: 100,
            retry_after: Some("3600".into()),
        }),
        ..Faults::default()
    });
    let started = Instant::now();
    let line = error_line(&s.fetch(&hub.endpoint(), SAM));
    assert!(
        line.contains("HTTP 429") && line.contains("rate-limiting"),
        "{line}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    s.assert_nothing_installed(SAM);
}

#[test]
fn a_stalled_download_times_out_with_a_sentence() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new();
    hub.set_faults(Faults {
        stall_after: Some(0),
        ..Faults::default()
    });
    let started = Instant::now();
    let out = s
        .fetch_command(&hub.endpoint(), SAM)
        .env("PIXELREFER_HUB_STALL_SECS", "2")
        .output()
        .unwrap();
    let line = error_line(&out);
    assert!(
        line.contains("stalled") && line.contains("resume"),
        "{line}"
    );
    assert!(started.elapsed() < Duration::from_secs(25));
    s.assert_nothing_installed(SAM);
}

#[test]
fn not_enough_disk_space_is_refused_before_downloading() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::with_catalog(|c| {
        for m in c["models"].as_array_mut().unwrap() {
            m["approx_disk_bytes"] = 9_000_000_000_000_000_000u64.into();
        }
    });
    let out = s.fetch(&hub.endpoint(), SAM);
    let line = error_line(&out);
    assert!(line.contains("not enough disk space"), "{line}");
    assert!(
        !hub.log()
            .iter()
            .any(|l| l.path.contains("/resolve/") || l.path.starts_with("/cdn/"))
    );
    s.assert_nothing_installed(SAM);
}

#[test]
fn a_missing_python_environment_is_one_sentence() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new();
    let empty = s.root.join("empty-cache");
    let out = s
        .fetch_command(&hub.endpoint(), SAM)
        .env("PIXELREFER_PYTHON", s.root.join("no/python"))
        .env("PIXELREFER_VENV", s.root.join("no/venv"))
        .env("XDG_CACHE_HOME", &empty)
        .output()
        .unwrap();
    let line = error_line(&out);
    assert!(
        line.contains("Python environment is missing") && line.contains("./run.sh"),
        "{line}"
    );
    assert!(
        hub.log().is_empty(),
        "nothing is downloaded without an exporter"
    );
    s.assert_nothing_installed(SAM);
}

/// An exporter whose output fails the reference check, and one that fails outright: the
/// model is not installed and the staging folder is gone.
#[test]
fn an_export_that_fails_or_does_not_verify_is_not_installed() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new();
    let fake = s.root.join("exporters");
    std::fs::create_dir_all(&fake).unwrap();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".fixtures/models/sam2-tiny");
    // Writes a real model but drops its reference cases.
    std::fs::write(
        fake.join("export_sam2.py"),
        format!(
            "import shutil, sys\nout = sys.argv[sys.argv.index('--out') + 1]\nshutil.rmtree(out)\nshutil.copytree({:?}, out)\nimport os\nos.remove(os.path.join(out, 'reference', 'cases.json'))\nprint('[progress] {{\"stage\": \"graph\", \"index\": 1, \"total\": 1, \"name\": \"copy\"}}')\n",
            fixture.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = s
        .fetch_command(&hub.endpoint(), SAM)
        .env("PIXELREFER_EXPORTERS", &fake)
        .output()
        .unwrap();
    let line = error_line(&out);
    assert!(
        line.contains("failed its reference check") && line.contains("not installed"),
        "{line}"
    );
    s.assert_nothing_installed(SAM);

    std::fs::write(
        fake.join("export_sam2.py"),
        "import sys\nsys.stderr.write('error: the state dict does not match the config\\n')\nsys.exit(3)\n",
    )
    .unwrap();
    let out = s
        .fetch_command(&hub.endpoint(), SAM)
        .env("PIXELREFER_EXPORTERS", &fake)
        .output()
        .unwrap();
    let line = error_line(&out);
    assert!(
        line.contains(
            "exporting sam2.1-hiera-tiny failed: the state dict does not match the config"
        ) && line.contains("full log:"),
        "{line}"
    );
    s.assert_nothing_installed(SAM);
}

#[test]
fn list_without_installed_models_names_the_recommended_pair() {
    let s = Scratch::new();
    let text = s.list_text("http://127.0.0.1:9");
    assert!(text.contains("Installed:"), "{text}");
    assert!(text.contains("pixelrefer-lite-2b"), "{text}");
    let starred: Vec<&str> = text.lines().filter(|l| l.starts_with('*')).collect();
    assert!(
        starred.iter().any(|l| l.contains("pixelrefer-lite-2b")),
        "the Lite model is recommended on every machine:\n{text}"
    );
    assert!(
        !starred.iter().any(|l| l.contains("pixelrefer-2b ")),
        "{text}"
    );
    // EdgeTAM is offered as the faster tracker on a machine without CUDA, with its trade-off.
    let s = Scratch::with_catalog(|c| {
        let builtin: serde_json::Value =
            serde_json::from_str(pixelrefer_studio::runtime::catalog::BUILTIN_CATALOG).unwrap();
        let edgetam = builtin["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "edgetam")
            .unwrap()
            .clone();
        c["models"].as_array_mut().unwrap().push(edgetam);
    });
    let text = s.list_text("http://127.0.0.1:9");
    let v = s.list_json("http://127.0.0.1:9");
    let cpu_only = v["machine"]["cuda"] == false
        && v["machine"]["memory_bytes"].as_u64() >= Some(1_000_000_000);
    let edgetam = available(&v, "edgetam");
    assert_eq!(edgetam["faster"], cpu_only, "{edgetam}");
    assert!(
        edgetam["tradeoff"]
            .as_str()
            .unwrap()
            .contains("less accurate")
    );
    let plus = text.lines().find(|l| l.starts_with('+'));
    assert_eq!(
        plus.is_some_and(|l| l.contains("edgetam")),
        cpu_only,
        "{text}"
    );
}

/// Entries of the scratch folder other than the hub cache, the models, the catalogue and the
/// exporters: anything else was written outside the cache.
fn strays(s: &Scratch) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![s.root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains("escape") {
                found.push(path.display().to_string());
            }
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

#[test]
fn resolve_headers_naming_paths_write_nothing_outside_the_cache() {
    // The blob name and the snapshot folder come from the listing, never from `ETag`,
    // `X-Linked-Etag` or `X-Repo-Commit`, which a hub could set to `../..` paths.
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new().with_copy_exporter();
    hub.set_faults(Faults {
        resolve_headers: vec![
            ("ETag".into(), "\"../../../escape-etag\"".into()),
            ("X-Linked-Etag".into(), "\"../../../escape-linked\"".into()),
            ("X-Repo-Commit".into(), "../../../../escape-commit".into()),
        ],
        ..Faults::default()
    });
    let out = s.fetch(&hub.endpoint(), SAM);
    assert_eq!(strays(&s), Vec::<String>::new(), "{}", stderr(&out));
    let dir = assert_installed(&s, SAM, "sam2", &out);
    assert!(dir.starts_with(s.models()));
    let snapshot = s
        .repo_cache(SAM_REPO)
        .join("snapshots")
        .join(hub.commit(SAM_REPO));
    assert!(snapshot.join(SAM_CKPT).is_file());
}

#[test]
fn a_redirect_without_location_is_one_sentence() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new();
    hub.set_faults(Faults {
        resolve_headers: vec![("Location".into(), String::new())],
        ..Faults::default()
    });
    let line = error_line(&s.fetch(&hub.endpoint(), SAM));
    assert!(
        line.contains(SAM_CKPT) && line.contains("HTTP 302 instead of the file's bytes"),
        "{line}"
    );
    s.assert_nothing_installed(SAM);
}

#[test]
fn answers_other_than_the_range_asked_are_refused() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new();
    let cases: [(Faults, &str); 2] = [
        (
            Faults {
                range_shift: Some(100),
                ..Faults::default()
            },
            "to a request for `bytes 0-",
        ),
        (
            // Runs on far past the file: must be refused at once, not read into memory.
            Faults {
                extra_body: Some(4 << 30),
                ..Faults::default()
            },
            "sent more than the",
        ),
    ];
    for (faults, words) in cases {
        hub.set_faults(faults);
        let started = Instant::now();
        let line = error_line(&s.fetch(&hub.endpoint(), SAM));
        assert!(line.contains(SAM_CKPT) && line.contains(words), "{line}");
        assert!(started.elapsed() < Duration::from_secs(20), "{line}");
        s.assert_nothing_installed(SAM);
        let blob = s
            .repo_cache(SAM_REPO)
            .join("blobs")
            .join(&checkpoint(&hub).sha256);
        assert!(!blob.exists(), "a bad blob was kept");
    }
}

#[test]
fn a_mirror_that_ignores_ranges_still_installs() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new().with_copy_exporter();
    hub.set_faults(Faults {
        ignore_range: true,
        ..Faults::default()
    });
    let out = s
        .fetch_command(&hub.endpoint(), SAM)
        .env("PIXELREFER_HUB_CHUNK_BYTES", "1000000")
        .output()
        .unwrap();
    assert_installed(&s, SAM, "sam2", &out);
}

#[test]
fn an_endless_listing_is_refused_without_reading_it_all() {
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new();
    hub.set_faults(Faults {
        endless_listing: true,
        ..Faults::default()
    });
    let started = Instant::now();
    let line = error_line(&s.fetch(&hub.endpoint(), SAM));
    assert!(line.contains("the listing is too large"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(20), "{line}");
    s.assert_nothing_installed(SAM);
}

#[test]
fn impossible_sizes_in_the_listing_are_one_sentence() {
    // Two files of 2^63 bytes: their sum overflowed (a panic) before the listing was checked.
    let hub = FakeHub::start(&hub_fixtures());
    let s = Scratch::new();
    hub.set_faults(Faults {
        listed_size: Some(1 << 63),
        ..Faults::default()
    });
    let line = error_line(&s.fetch(&hub.endpoint(), SAM));
    assert!(line.contains("more than any model file"), "{line}");
    s.assert_nothing_installed(SAM);
    assert!(
        !hub.log()
            .iter()
            .any(|l| l.path.contains("/resolve/") || l.path.starts_with("/cdn/"))
    );
}
