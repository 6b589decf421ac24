//! KServe v2 / Open Inference Protocol (OIP) gRPC servers for tests, on 127.0.0.1: runs
//! `tests/python/oip_server.py` over a Triton model repository (`REPO/<name>/config.pbtxt`,
//! `REPO/<name>/1/model.onnx`), each model an ONNX Runtime CPU session, with one of two
//! independent servers:
//!
//! * [`Engine::Triton`]: a real `tritonserver` (the nvidia-pytriton wheel) that checks shapes and
//!   datatypes against the config and batches dynamically, as NVIDIA Triton does in production;
//! * [`Engine::Mlserver`]: Seldon MLServer with a custom runtime that checks the same.
//!
//! Python: `$PIXELREFER_SERVE_PYTHON`, else `${XDG_CACHE_HOME:-$HOME/.cache}/pixelrefer-studio/
//! serve-venv/bin/python` (made by `scripts/setup.sh`). The server runs in its own process
//! group, which [`OipServer::kill`] (and drop) ends with SIGKILL: tritonserver, its Python stubs
//! and MLServer go with it (a watcher the script leaves outside the group then frees their
//! shared memory). Its stderr goes to a log in a temporary directory, quoted in errors.
//! Start-up takes seconds (Triton: about 7 s plus 1-2 s per model on two cores; MLServer about
//! 6 s): serve only the models a test needs ([`ServerOpts::models`]).
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long a start may take before it is given up (tritonserver with many models is slow).
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Which OIP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Triton,
    Mlserver,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Triton => "triton",
            Engine::Mlserver => "mlserver",
        }
    }
}

/// Options of a server.
#[derive(Debug, Clone, Default)]
pub struct ServerOpts {
    /// Sleep this long in every inference (to test client deadlines).
    pub delay_ms: u64,
    /// Serve only these models of the repository (all of them when empty).
    pub models: Vec<String>,
}

/// A running server; killed when dropped.
pub struct OipServer {
    engine: Engine,
    repo: PathBuf,
    opts: ServerOpts,
    grpc_port: u16,
    http_port: u16,
    /// Logs and scratch directories (`w<n>`, one per start).
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
    log: PathBuf,
}

/// The Python of the serve venv.
pub fn serve_python() -> PathBuf {
    if let Some(p) = std::env::var_os("PIXELREFER_SERVE_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("pixelrefer-studio/serve-venv/bin/python")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

fn python_checked() -> Result<PathBuf, String> {
    let python = serve_python();
    if python.exists() {
        Ok(python)
    } else {
        Err(format!(
            "no Python for the OIP test servers at {}: run scripts/setup.sh (it makes the serve \
             venv from tests/python/requirements-serve.txt) or set PIXELREFER_SERVE_PYTHON",
            python.display()
        ))
    }
}

/// Runs `tests/python/check_triton_repo.py` on a repository: Ok, or its report of problems.
pub fn check_repo(repo: &Path) -> Result<(), String> {
    let out = Command::new(python_checked()?)
        .arg(script("check_triton_repo.py"))
        .arg(repo)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run check_triton_repo.py: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "check_triton_repo.py {} ({}):\n{}{}",
            repo.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Two distinct ports that were free on 127.0.0.1 a moment ago.
fn free_ports() -> Result<(u16, u16), String> {
    let bind = || TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"));
    let (a, b) = (bind()?, bind()?);
    let port = |l: &TcpListener| {
        l.local_addr()
            .map(|a| a.port())
            .map_err(|e| format!("local_addr: {e}"))
    };
    Ok((port(&a)?, port(&b)?))
}

/// The last `lines` lines of a file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether any process of group `pgid` (zombies included) is left.
fn group_alive(pgid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks for existence/permission.
    let r = unsafe { libc::kill(-pgid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

impl OipServer {
    /// Starts `engine` on two free ports of 127.0.0.1 (gRPC and HTTP) and waits until every
    /// model is ready for inference (at most [`READY_TIMEOUT`]).
    pub fn start(engine: Engine, repo: &Path, opts: &ServerOpts) -> Result<OipServer, String> {
        python_checked()?;
        let dir = tempfile::Builder::new()
            .prefix("oip-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let (grpc_port, http_port) = free_ports()?;
        let mut server = OipServer {
            engine,
            repo: repo.to_path_buf(),
            opts: opts.clone(),
            grpc_port,
            http_port,
            dir,
            child: None,
            starts: 0,
            log: PathBuf::new(),
        };
        server.spawn()?;
        Ok(server)
    }

    /// `grpc://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.grpc_port)
    }

    /// The gRPC port.
    pub fn port(&self) -> u16 {
        self.grpc_port
    }

    /// The HTTP (REST) port.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The server's stderr so far (this start's).
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL to the whole process group (a crash, as far as clients can tell); waits until no
    /// process of the group is left (at most 10 s), so the ports are free again.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id() as i32;
        // SAFETY: plain kill(2) on the group this server leads (process_group(0) at spawn).
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_alive(pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(self.workdir());
    }

    /// SIGTERM and a clean stop (at most 60 s; then [`OipServer::kill`]).
    pub fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        // SAFETY: plain kill(2) on the server's own pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// Kills the server and starts it again on the same ports, with the same models.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        self.spawn()
    }

    fn workdir(&self) -> PathBuf {
        self.dir.path().join(format!("w{}", self.starts))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let python = python_checked()?;
        self.starts += 1;
        self.log = self.dir.path().join(format!("server-{}.log", self.starts));
        let stderr =
            File::create(&self.log).map_err(|e| format!("create {}: {e}", self.log.display()))?;
        let mut cmd = Command::new(&python);
        cmd.arg(script("oip_server.py"))
            .args(["--engine", self.engine.name()])
            .arg("--repo")
            .arg(&self.repo)
            .args(["--grpc-port", &self.grpc_port.to_string()])
            .args(["--http-port", &self.http_port.to_string()])
            .arg("--workdir")
            .arg(self.workdir());
        if self.opts.delay_ms > 0 {
            cmd.args(["--delay-ms", &self.opts.delay_ms.to_string()]);
        }
        if !self.opts.models.is_empty() {
            cmd.arg("--models").args(&self.opts.models);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", python.display()))?;
        let stdout = child.stdout.take();
        self.child = Some(child);
        let Some(stdout) = stdout else {
            return Err(self.failed("no stdout pipe"));
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let ready = format!("READY {}", self.grpc_port);
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut stray = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.trim() == ready => return Ok(()),
                Ok(line) => stray.push(line),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self
                        .child
                        .as_mut()
                        .and_then(|c| c.wait().ok())
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    return Err(self.failed(&format!(
                        "exited ({status}) before it was ready; stdout {stray:?}"
                    )));
                }
                Err(RecvTimeoutError::Timeout) => {
                    if Instant::now() > deadline {
                        return Err(self.failed(&format!(
                            "not ready after {} s; stdout {stray:?}",
                            READY_TIMEOUT.as_secs()
                        )));
                    }
                }
            }
        }
    }

    /// Kills what is left and describes the failure with the end of the log.
    fn failed(&mut self, what: &str) -> String {
        self.kill();
        format!(
            "OIP server ({}, {}, gRPC port {}) {what}\n--- {} (last lines) ---\n{}",
            self.engine.name(),
            self.repo.display(),
            self.grpc_port,
            self.log.display(),
            tail(&self.log, 60)
        )
    }
}

impl Drop for OipServer {
    fn drop(&mut self) {
        self.kill();
    }
}
