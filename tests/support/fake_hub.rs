//! A local stand-in for the Hugging Face hub on 127.0.0.1, serving the tiny checkpoints that
//! `onnx/make_hub_fixtures.py` writes in the official repository layouts, under the hub's URL
//! scheme:
//!
//! * `GET /api/models/{owner}/{name}/revision/{rev}?blobs=true`: the listing with `sha`,
//!   `siblings[].rfilename/size/blobId/lfs{sha256,size}`;
//! * `GET|HEAD /{owner}/{name}/resolve/{rev}/{path}`: LFS files (`.pt`, `.safetensors`, `.bin`,
//!   `.model`) answer `302` to an absolute `/cdn/{sha256}` URL with `X-Repo-Commit`,
//!   `X-Linked-Etag` and `X-Linked-Size`, as the hub redirects to its CDN (a second port, so
//!   another origin); other files answer
//!   `200` with `ETag` = git blob id and `X-Repo-Commit`;
//! * `GET /cdn/{sha256}`: the bytes, honouring `Range` (`206`, `Content-Range`).
//!
//! Faults can be switched on while it runs: an HTTP status for matching paths, tampered bytes,
//! a throttle, a stall, dropping the connection. Every request is logged. The server stops when
//! dropped; each connection is served on its own thread with read and write timeouts.
#![allow(dead_code)]

use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One file of a served repository.
#[derive(Debug, Clone)]
pub struct HubFile {
    pub path: String,
    pub bytes: Arc<Vec<u8>>,
    pub sha256: String,
    pub blob_id: String,
    pub lfs: bool,
}

/// Faults to inject. A `status` of 429 or 503 is sent with `Retry-After: 0`.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Answer this status to every request whose path contains the key.
    pub status: BTreeMap<String, u16>,
    /// Serve these repository paths with their first byte changed (hashes stay the originals).
    pub tamper: Vec<String>,
    /// Bytes per second for bodies (None: as fast as possible).
    pub throttle: Option<u64>,
    /// Stop sending bodies after this many bytes and hang (until the client gives up).
    pub stall_after: Option<u64>,
    /// Close the connection after this many body bytes.
    pub drop_after: Option<u64>,
    /// Headers that replace those of `/resolve/` answers (an empty value removes the header).
    pub resolve_headers: Vec<(String, String)>,
    /// Answer a `Range` request with a `206` for the range this many bytes further on.
    pub range_shift: Option<u64>,
    /// Answer a `Range` request with `200` and the whole file.
    pub ignore_range: bool,
    /// After the bytes asked for, keep sending junk (no `Content-Length`) for up to this many
    /// bytes or until the client hangs up.
    pub extra_body: Option<u64>,
    /// List every file at this size (its bytes stay the same).
    pub listed_size: Option<u64>,
    /// Send the listing chunked, padded with whitespace until the client hangs up (at most 60 s).
    pub endless_listing: bool,
    /// Answer requests whose path contains `path` with `status` (and `Retry-After: retry_after`
    /// when given) the first `times` times, then normally.
    pub transient: Option<Transient>,
}

/// A status answered a number of times before the normal answer (see [`Faults::transient`]).
#[derive(Debug, Clone)]
pub struct Transient {
    pub path: String,
    pub status: u16,
    pub times: u32,
    pub retry_after: Option<String>,
}

/// A logged request.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
}

struct State {
    repos: BTreeMap<String, (String, Vec<HubFile>)>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<Logged>>,
    /// How many transient answers were sent.
    transient_sent: Mutex<u32>,
    addr: SocketAddr,
    /// The "CDN": a second port, so the redirect leaves the hub's origin as the real one does
    /// (clients follow only same-origin redirects when reading metadata).
    cdn: SocketAddr,
}

/// The running server.
pub struct FakeHub {
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn is_lfs(path: &str) -> bool {
    [".pt", ".safetensors", ".bin", ".model", ".onnx"]
        .iter()
        .any(|ext| path.ends_with(ext))
}

/// Reads `root/{owner}/{name}/**` into repositories `owner/name`.
pub fn load_repos(root: &Path) -> BTreeMap<String, (String, Vec<HubFile>)> {
    let mut repos = BTreeMap::new();
    let mut owners: Vec<_> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("hub fixtures {}: {e}", root.display()))
        .flatten()
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    owners.sort_by_key(|e| e.file_name());
    for owner in owners {
        let mut names: Vec<_> = std::fs::read_dir(owner.path())
            .expect("read owner")
            .flatten()
            .filter(|e| e.path().is_dir())
            .collect();
        names.sort_by_key(|e| e.file_name());
        for name in names {
            let repo = format!(
                "{}/{}",
                owner.file_name().to_string_lossy(),
                name.file_name().to_string_lossy()
            );
            let mut files = Vec::new();
            collect(&name.path(), &name.path(), &mut files);
            files.sort_by(|a: &HubFile, b| a.path.cmp(&b.path));
            let mut commit = Sha1::new();
            commit.update(repo.as_bytes());
            for f in &files {
                commit.update(f.path.as_bytes());
                commit.update(f.sha256.as_bytes());
            }
            repos.insert(repo, (hex::encode(commit.finalize()), files));
        }
    }
    repos
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<HubFile>) {
    for entry in std::fs::read_dir(dir).expect("read repo").flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(base, &path, out);
        } else if path.is_file() {
            let rel = path
                .strip_prefix(base)
                .expect("inside")
                .to_string_lossy()
                .replace('\\', "/");
            let bytes = std::fs::read(&path).expect("read file");
            out.push(hub_file(&rel, bytes));
        }
    }
}

/// A [`HubFile`] with its hashes.
pub fn hub_file(path: &str, bytes: Vec<u8>) -> HubFile {
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let mut blob = Sha1::new();
    blob.update(format!("blob {}\0", bytes.len()).as_bytes());
    blob.update(&bytes);
    HubFile {
        path: path.to_string(),
        lfs: is_lfs(path),
        sha256,
        blob_id: hex::encode(blob.finalize()),
        bytes: Arc::new(bytes),
    }
}

impl FakeHub {
    /// Serves the repositories under `root` (see [`load_repos`]).
    pub fn start(root: &Path) -> FakeHub {
        Self::start_with(load_repos(root))
    }

    /// Serves the given repositories.
    pub fn start_with(repos: BTreeMap<String, (String, Vec<HubFile>)>) -> FakeHub {
        let bind = || {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
            listener.set_nonblocking(true).expect("nonblocking");
            listener
        };
        let (hub, cdn) = (bind(), bind());
        let state = Arc::new(State {
            repos,
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(Vec::new()),
            transient_sent: Mutex::new(0),
            addr: hub.local_addr().expect("addr"),
            cdn: cdn.local_addr().expect("addr"),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [hub, cdn]
            .into_iter()
            .map(|listener| {
                let state = Arc::clone(&state);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                let state = Arc::clone(&state);
                                let stop = Arc::clone(&stop);
                                std::thread::spawn(move || serve(stream, &state, &stop));
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
            })
            .collect();
        FakeHub {
            state,
            stop,
            threads,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.state.addr)
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        *self.state.transient_sent.lock().expect("transient") = 0;
        *self.state.faults.lock().expect("faults") = faults;
    }

    /// Requests so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state.log.lock().expect("log").clone()
    }

    /// The files of `repo`.
    pub fn files(&self, repo: &str) -> Vec<HubFile> {
        self.state
            .repos
            .get(repo)
            .map(|(_, f)| f.clone())
            .unwrap_or_default()
    }

    /// The commit `repo` is served at.
    pub fn commit(&self, repo: &str) -> String {
        self.state
            .repos
            .get(repo)
            .map(|(c, _)| c.clone())
            .unwrap_or_default()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    range: Option<String>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Some(Request {
        method,
        path,
        query,
        range,
    })
}

fn serve(mut stream: TcpStream, state: &State, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Some(req) = read_request(&stream) else {
        return;
    };
    let faults = state.faults.lock().expect("faults").clone();
    let status_fault = faults
        .status
        .iter()
        .find(|(k, _)| req.path.contains(k.as_str()))
        .map(|(_, s)| *s);
    let mut log = |status: u16| {
        state.log.lock().expect("log").push(Logged {
            method: req.method.clone(),
            path: format!(
                "{}{}",
                req.path,
                if req.query.is_empty() {
                    String::new()
                } else {
                    format!("?{}", req.query)
                }
            ),
            range: req.range.clone(),
            status,
        })
    };
    if let Some(status) = status_fault {
        log(status);
        // A busy server says when to come back; "now" keeps the client's retries quick.
        let headers = match status {
            429 | 503 => vec![("Retry-After", "0".to_string())],
            _ => Vec::new(),
        };
        respond(
            &mut stream,
            status,
            &headers,
            b"fault injected",
            &req.method,
        );
        return;
    }
    if let Some(t) = faults
        .transient
        .as_ref()
        .filter(|t| req.path.contains(t.path.as_str()))
    {
        let mut sent = state.transient_sent.lock().expect("transient");
        if *sent < t.times {
            *sent += 1;
            drop(sent);
            log(t.status);
            let headers: Vec<(&str, String)> = t
                .retry_after
                .iter()
                .map(|v| ("Retry-After", v.clone()))
                .collect();
            respond(&mut stream, t.status, &headers, b"busy", &req.method);
            return;
        }
    }
    // /api/models/{owner}/{name}/revision/{rev}
    if let Some(rest) = req.path.strip_prefix("/api/models/") {
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        let repo = format!(
            "{}/{}",
            parts.first().unwrap_or(&""),
            parts.get(1).unwrap_or(&"")
        );
        let Some((commit, files)) = state.repos.get(&repo) else {
            log(404);
            respond(
                &mut stream,
                404,
                &[("X-Error-Code", "RepoNotFound".into())],
                b"{\"error\":\"Repository not found\"}",
                &req.method,
            );
            return;
        };
        let siblings: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                let mut v = serde_json::json!({
                    "rfilename": f.path,
                    "size": f.bytes.len(),
                    "blobId": if f.lfs { pointer_blob_id(f) } else { f.blob_id.clone() },
                });
                if f.lfs {
                    v["lfs"] = serde_json::json!({"sha256": f.sha256, "size": f.bytes.len(), "pointerSize": 134});
                }
                if let Some(size) = faults.listed_size {
                    v["size"] = size.into();
                    if f.lfs {
                        v["lfs"]["size"] = size.into();
                    }
                }
                v
            })
            .collect();
        let body =
            serde_json::json!({"id": repo, "modelId": repo, "sha": commit, "siblings": siblings});
        if faults.endless_listing {
            log(200);
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            let pad = vec![b' '; 1 << 20];
            let mut frame = format!("{:x}\r\n", pad.len()).into_bytes();
            frame.extend_from_slice(&pad);
            frame.extend_from_slice(b"\r\n");
            let started = std::time::Instant::now();
            if stream.write_all(head.as_bytes()).is_ok() {
                while !stop.load(Ordering::Relaxed)
                    && started.elapsed() < Duration::from_secs(60)
                    && stream.write_all(&frame).is_ok()
                {}
            }
            return;
        }
        log(200);
        respond(
            &mut stream,
            200,
            &[("Content-Type", "application/json".into())],
            body.to_string().as_bytes(),
            &req.method,
        );
        return;
    }
    // /cdn/{sha256}
    if let Some(sha) = req.path.strip_prefix("/cdn/") {
        let file = state
            .repos
            .values()
            .flat_map(|(_, f)| f.iter())
            .find(|f| f.sha256 == sha)
            .cloned();
        let Some(file) = file else {
            log(404);
            respond(&mut stream, 404, &[], b"no such object", &req.method);
            return;
        };
        let bytes = served_bytes(&file, &faults);
        send_content(&mut stream, &req, &bytes, &[], &faults, stop, &mut log);
        return;
    }
    // /{owner}/{name}/resolve/{rev}/{path}
    let trimmed = req.path.trim_start_matches('/');
    let mut parts = trimmed.splitn(5, '/');
    let (owner, name, resolve, _rev, path) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let repo = format!("{owner}/{name}");
    let Some((commit, files)) = state.repos.get(&repo).filter(|_| resolve == "resolve") else {
        log(404);
        respond(
            &mut stream,
            404,
            &[("X-Error-Code", "RepoNotFound".into())],
            b"Repository not found",
            &req.method,
        );
        return;
    };
    let Some(file) = files.iter().find(|f| f.path == path).cloned() else {
        log(404);
        respond(
            &mut stream,
            404,
            &[
                ("X-Error-Code", "EntryNotFound".into()),
                ("X-Repo-Commit", commit.clone()),
            ],
            b"Entry not found",
            &req.method,
        );
        return;
    };
    if file.lfs {
        let location = format!("http://{}/cdn/{}", state.cdn, file.sha256);
        let headers = [
            ("Location", location),
            ("X-Repo-Commit", commit.clone()),
            ("X-Linked-Etag", format!("\"{}\"", file.sha256)),
            ("X-Linked-Size", file.bytes.len().to_string()),
            ("ETag", format!("\"{}\"", pointer_blob_id(&file))),
        ];
        let headers = with_overrides(&headers, &faults);
        log(302);
        respond(&mut stream, 302, &headers, b"", &req.method);
    } else {
        let bytes = served_bytes(&file, &faults);
        let headers = [
            ("X-Repo-Commit", commit.clone()),
            ("ETag", format!("\"{}\"", file.blob_id)),
        ];
        let headers = with_overrides(&headers, &faults);
        send_content(&mut stream, &req, &bytes, &headers, &faults, stop, &mut log);
    }
}

/// `headers` with [`Faults::resolve_headers`] applied.
fn with_overrides<'a>(headers: &[(&'a str, String)], faults: &'a Faults) -> Vec<(&'a str, String)> {
    let mut out: Vec<(&str, String)> = headers
        .iter()
        .filter(|(k, _)| {
            !faults
                .resolve_headers
                .iter()
                .any(|(o, _)| o.eq_ignore_ascii_case(k))
        })
        .cloned()
        .collect();
    for (k, v) in &faults.resolve_headers {
        if !v.is_empty() {
            out.push((k.as_str(), v.clone()));
        }
    }
    out
}

/// The git blob id of an LFS pointer file (what `blobId` is for LFS files on the hub).
fn pointer_blob_id(f: &HubFile) -> String {
    let pointer = format!(
        "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n",
        f.sha256,
        f.bytes.len()
    );
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", pointer.len()).as_bytes());
    h.update(pointer.as_bytes());
    hex::encode(h.finalize())
}

fn served_bytes(file: &HubFile, faults: &Faults) -> Arc<Vec<u8>> {
    if faults.tamper.iter().any(|t| t == &file.path) && !file.bytes.is_empty() {
        let mut b = (*file.bytes).clone();
        b[0] ^= 0xff;
        Arc::new(b)
    } else {
        Arc::clone(&file.bytes)
    }
}

fn send_content(
    stream: &mut TcpStream,
    req: &Request,
    bytes: &[u8],
    extra: &[(&str, String)],
    faults: &Faults,
    stop: &AtomicBool,
    log: &mut dyn FnMut(u16),
) {
    let size = bytes.len() as u64;
    let mut headers: Vec<(&str, String)> = extra.to_vec();
    headers.push(("Accept-Ranges", "bytes".into()));
    let (status, start, end) = match req.range.as_deref().and_then(parse_range) {
        Some((start, _)) if start >= size => {
            log(416);
            respond(
                stream,
                416,
                &[("Content-Range", format!("bytes */{size}"))],
                b"",
                &req.method,
            );
            return;
        }
        Some(_) if faults.ignore_range => (200, 0, size),
        Some((start, end)) => {
            let end = end.unwrap_or(size - 1).min(size - 1);
            let shift = faults.range_shift.unwrap_or(0);
            let (start, end) = ((start + shift).min(end), (end + shift).min(size - 1));
            headers.push(("Content-Range", format!("bytes {start}-{end}/{size}")));
            (206, start, end + 1)
        }
        None => (200, 0, size),
    };
    log(status);
    let body = &bytes[start as usize..end as usize];
    let head = match faults.extra_body {
        // Close-delimited: the body runs on past the bytes asked for.
        Some(_) => head(status, usize::MAX, &headers),
        None => head(status, body.len(), &headers),
    };
    if stream.write_all(head.as_bytes()).is_err() || req.method == "HEAD" {
        return;
    }
    let mut sent = 0u64;
    for chunk in body.chunks(16 * 1024) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if let Some(limit) = faults.drop_after
            && sent >= limit
        {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if let Some(limit) = faults.stall_after
            && sent >= limit
        {
            // Hang (bounded) without sending; the client's stall timeout must fire first.
            for _ in 0..600 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        if stream.write_all(chunk).is_err() {
            return;
        }
        sent += chunk.len() as u64;
        if let Some(rate) = faults.throttle {
            std::thread::sleep(Duration::from_secs_f64(
                chunk.len() as f64 / rate.max(1) as f64,
            ));
        }
    }
    if let Some(extra) = faults.extra_body {
        let junk = vec![b'x'; 64 * 1024];
        let mut sent = 0u64;
        while sent < extra && !stop.load(Ordering::Relaxed) && stream.write_all(&junk).is_ok() {
            sent += junk.len() as u64;
        }
    }
    let _ = stream.flush();
}

fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = if b.trim().is_empty() {
        None
    } else {
        Some(b.trim().parse().ok()?)
    };
    Some((start, end))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Status line and headers of a response that closes the connection.
/// (`content_length` `usize::MAX`: none, the body ends when the connection closes).
fn head(status: u16, content_length: usize, headers: &[(&str, String)]) -> String {
    let length = if content_length == usize::MAX {
        String::new()
    } else {
        format!("Content-Length: {content_length}\r\n")
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\n{length}Connection: close\r\n",
        reason(status)
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
    method: &str,
) {
    let _ = stream.write_all(head(status, body.len(), headers).as_bytes());
    if method != "HEAD" {
        let _ = stream.write_all(body);
    }
    let _ = stream.flush();
    let mut rest = [0u8; 64];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let _ = stream.read(&mut rest);
}

/// `$PIXELREFER_FIXTURES_HUB`, default `<crate>/.fixtures/hub`; panics with a clear message when
/// missing.
pub fn hub_fixtures() -> PathBuf {
    let root = std::env::var_os("PIXELREFER_FIXTURES_HUB")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".fixtures/hub"));
    assert!(
        root.join("facebook/sam2.1-hiera-tiny").is_dir(),
        "missing hub fixtures in {}: run ./test.sh (or scripts/make_fixtures.sh) to write them",
        root.display()
    );
    root
}

/// Writes `dir/export_sam2.py`, an exporter that checks its `--checkpoint` and `--config` files
/// exist and copies the `sam2-tiny` fixture to `--out`. That fixture was exported by the real
/// exporter from the same seed-0 weights the fake hub serves (`onnx/make_hub_fixtures.py`), so
/// the result is what the real export of the downloaded checkpoint writes, without its minutes
/// of PyTorch reference runs; the download, the reference check on the copy and the install
/// stay the real ones. Returns `dir`.
pub fn write_copy_exporter(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("exporters dir");
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".fixtures/models/sam2-tiny");
    assert!(
        fixture.join("reference/cases.json").is_file(),
        "missing {}: run ./test.sh first",
        fixture.display()
    );
    let script = format!(
        r#"import os, shutil, sys
args = sys.argv
for flag in ("--checkpoint", "--config"):
    assert os.path.isfile(args[args.index(flag) + 1]), flag
out = args[args.index("--out") + 1]
shutil.rmtree(out)
shutil.copytree({fixture:?}, out)
for i, g in enumerate(["image_encoder", "prompt_decoder", "memory_encoder", "memory_attention"]):
    print('[progress] {{"stage": "graph", "index": %d, "total": 4, "name": "%s"}}' % (i + 1, g), flush=True)
"#,
        fixture = fixture.to_str().expect("utf-8 path")
    );
    std::fs::write(dir.join("export_sam2.py"), script).expect("write exporter");
    dir.to_path_buf()
}
