//! The interleaved benchmark harness shared by `benches/{sam2,sam2_long,refer,remote}.rs`.
//!
//! Two sides (Rust and PyTorch, or two Rust models) run the same work in rounds, A B A B …, on
//! the same inputs with the same thread count, so that load from other processes on a shared
//! machine falls on both sides alike. Each side is a separate worker process that loads its model
//! once and answers one JSON line per round on stdout (`{"metrics": {"name": [values…]},
//! "peak_rss_mib": x}`), after a first `{"ready": true, …}` line; the orchestrator sends one JSON
//! line per round on the worker's stdin. The report gives min and median of every metric per
//! side, the ratio of medians, and the load average (1 min) seen at every round.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// Command-line options common to every bench: `--quick`, `--rounds N`, `--a SPEC`, `--b SPEC`,
/// and `--worker …` (the bench binary re-executed as a Rust side).
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// A few minutes of work instead of the full run.
    pub quick: bool,
    /// Rounds per side (None: the bench's default).
    pub rounds: Option<usize>,
    /// Side A spec (`rust:DIR`, `torch:DIR`), None: the bench's default.
    pub a: Option<String>,
    /// Side B spec.
    pub b: Option<String>,
    /// Environment for side A's worker (`--a-env "K=V K2=V2"`), e.g. a runtime setting to
    /// compare against the default on the same model.
    pub a_env: Vec<(String, String)>,
    /// Environment for side B's worker.
    pub b_env: Vec<(String, String)>,
    /// Set when this process is a worker: the arguments after `--worker`.
    pub worker: Option<Vec<String>>,
}

impl Args {
    /// Parses `std::env::args` (cargo adds `--bench`, ignored).
    pub fn parse() -> Self {
        let mut out = Args::default();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => out.quick = true,
                "--rounds" => out.rounds = it.next().and_then(|v| v.parse().ok()),
                "--a" => out.a = it.next(),
                "--b" => out.b = it.next(),
                "--a-env" => out.a_env = parse_env(&it.next().unwrap_or_default()),
                "--b-env" => out.b_env = parse_env(&it.next().unwrap_or_default()),
                "--worker" => {
                    out.worker = Some(it.by_ref().collect());
                    break;
                }
                _ => {}
            }
        }
        out
    }
}

/// An environment variable as a number, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `K=V K2=V2` pairs.
fn parse_env(s: &str) -> Vec<(String, String)> {
    s.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The 1-minute load average now.
pub fn load_1min() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// `/proc/loadavg`'s three averages, as printed.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// This process's peak resident set (VmHWM) in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Minor page faults of this process so far (`/proc/self/stat`, all threads): pages the kernel
/// had to map and zero, which a process that reuses its buffers stops taking.
pub fn minor_faults() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // fields after the command name (which may hold spaces): state is field 3, minflt 10
            let rest = &s[s.rfind(')')? + 1..];
            rest.split_whitespace().nth(7)?.parse::<f64>().ok()
        })
        .unwrap_or(f64::NAN)
}

/// Min and median of samples (NaN for none).
pub fn min_median(v: &[f64]) -> (f64, f64) {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    };
    (s[0], med)
}

/// The execution provider of a Rust worker: `PIXELREFER_BENCH_DEVICE=cuda` (per side, with
/// `--a-env`/`--b-env`) asks for CUDA, anything else or unset is the CPU. A CUDA request that
/// cannot start falls back to the CPU; the worker's ready line names the provider it got.
pub fn bench_provider() -> pixelrefer_studio::runtime::ExecutionProvider {
    use pixelrefer_studio::runtime::ExecutionProvider;
    match std::env::var("PIXELREFER_BENCH_DEVICE").as_deref() {
        Ok("cuda") => ExecutionProvider::Cuda,
        _ => ExecutionProvider::Cpu,
    }
}

/// The project venv's python (`$PIXELREFER_PYTHON` overrides).
pub fn python() -> PathBuf {
    std::env::var_os("PIXELREFER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::cache_dir()
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("pixelrefer-studio/venv/bin/python")
        })
}

/// A side's label in the report: `rust:NAME` / `torch:NAME` from a `KIND:DIR` spec, NAME the
/// directory's last component.
pub fn label(spec: &str) -> String {
    let (kind, dir) = spec.split_once(':').unwrap_or(("rust", spec));
    let name = Path::new(dir)
        .file_name()
        .map_or(dir.into(), |f| f.to_string_lossy());
    format!("{kind}:{name}")
}

fn with_env(label: &str, env: &[(String, String)]) -> String {
    let mut out = label.to_string();
    for (k, v) in env {
        out.push_str(&format!(" {k}={v}"));
    }
    out
}

/// One side: a worker process speaking the line protocol.
pub struct Worker {
    /// Label in the report (`rust`, `torch`, `rust:int4` …).
    pub label: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The worker's ready line.
    pub ready: serde_json::Value,
}

impl Worker {
    /// Starts `cmd` (stdout piped, stderr inherited) and waits for its ready line.
    pub fn start(label: &str, mut cmd: Command) -> Result<Self, String> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {label} side ({cmd:?}): {e}"))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(format!("the {label} side has no pipes"));
        };
        let mut w = Worker {
            label: label.to_string(),
            child,
            stdin,
            stdout: BufReader::new(stdout),
            ready: serde_json::Value::Null,
        };
        w.ready = w.read_json()?;
        Ok(w)
    }

    /// The bench binary itself as a Rust worker: `current_exe --worker ARGS…`, with `env`.
    pub fn rust(label: &str, args: &[String], env: &[(String, String)]) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg("--worker").args(args).envs(env.iter().cloned());
        Self::start(&with_env(label, env), cmd)
    }

    /// A python script in its serve mode, with `env`.
    pub fn python(
        label: &str,
        script: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Result<Self, String> {
        let mut cmd = Command::new(python());
        cmd.arg(script).args(args).envs(env.iter().cloned());
        Self::start(&with_env(label, env), cmd)
    }

    fn read_json(&mut self) -> Result<serde_json::Value, String> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .map_err(|e| format!("{} side: {e}", self.label))?;
            if n == 0 {
                let status = self.child.wait().ok();
                return Err(format!(
                    "the {} side ended before answering (status {status:?})",
                    self.label
                ));
            }
            // Anything that is not a JSON object is a library's chatter: pass it on.
            match serde_json::from_str::<serde_json::Value>(line.trim()) {
                Ok(v) if v.is_object() => {
                    if let Some(e) = v.get("error") {
                        return Err(format!("{} side failed: {e}", self.label));
                    }
                    return Ok(v);
                }
                _ => eprint!("[{}] {line}", self.label),
            }
        }
    }

    /// Runs one round: sends `request`, returns the worker's answer.
    pub fn round(&mut self, request: &serde_json::Value) -> Result<serde_json::Value, String> {
        writeln!(self.stdin, "{request}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("{} side: {e}", self.label))?;
        self.read_json()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing stdin ends a well-behaved worker; kill one that does not.
        let _ = writeln!(self.stdin, "{{\"quit\": true}}");
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The worker side of the protocol: prints the ready line, then answers each request line with
/// `round(request)` until stdin closes or a `{"quit": true}` arrives. Errors are answered as
/// `{"error": "…"}` and end the worker.
pub fn serve(
    ready: serde_json::Value,
    mut round: impl FnMut(&serde_json::Value) -> Result<serde_json::Value, String>,
) {
    let stdout = std::io::stdout();
    let say = |v: &serde_json::Value| {
        let mut out = stdout.lock();
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    };
    say(&ready);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let Ok(req) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if req.get("quit").is_some() {
            break;
        }
        match round(&req) {
            Ok(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.insert("peak_rss_mib".into(), peak_rss_mib().into());
                }
                say(&v);
            }
            Err(e) => {
                say(&serde_json::json!({ "error": e }));
                break;
            }
        }
    }
}

/// What a metric means for the ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// A time: the ratio is B / A (> 1: A faster).
    Lower,
    /// A rate: the ratio is A / B (> 1: A faster).
    Higher,
}

/// Samples per metric per side, and the load average at every round.
#[derive(Debug, Default)]
pub struct Rounds {
    metrics: BTreeMap<String, [Vec<f64>; 2]>,
    order: Vec<String>,
    peak_rss: [f64; 2],
    load: Vec<f64>,
}

impl Rounds {
    /// Records a worker's answer for side 0 (A) or 1 (B): every `metrics` entry (a number or a
    /// list of numbers) and the peak RSS.
    pub fn record(&mut self, side: usize, answer: &serde_json::Value) {
        self.load.push(load_1min());
        if let Some(m) = answer.get("metrics").and_then(|m| m.as_object()) {
            for (k, v) in m {
                let values: Vec<f64> = match v {
                    serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_f64()).collect(),
                    other => other.as_f64().into_iter().collect(),
                };
                self.push(side, k, &values);
            }
        }
        if let Some(r) = answer.get("peak_rss_mib").and_then(|v| v.as_f64()) {
            self.peak_rss[side] = self.peak_rss[side].max(r);
        }
    }

    /// Records the load average now (one per side run; [`Self::record`] does it itself).
    pub fn sample_load(&mut self) {
        self.load.push(load_1min());
    }

    /// Adds samples of `metric` for a side.
    pub fn push(&mut self, side: usize, metric: &str, values: &[f64]) {
        if !self.metrics.contains_key(metric) {
            self.order.push(metric.to_string());
        }
        self.metrics.entry(metric.to_string()).or_default()[side].extend_from_slice(values);
    }

    /// Sets a side's peak RSS in MiB (the larger of what was seen).
    pub fn peak(&mut self, side: usize, mib: f64) {
        self.peak_rss[side] = self.peak_rss[side].max(mib);
    }

    /// A side's peak RSS in MiB.
    pub fn peak_rss(&self, side: usize) -> f64 {
        self.peak_rss[side]
    }

    /// Samples of a metric for a side.
    pub fn samples(&self, side: usize, metric: &str) -> &[f64] {
        self.metrics.get(metric).map_or(&[], |m| &m[side])
    }

    /// Median of a metric for a side.
    pub fn median(&self, side: usize, metric: &str) -> f64 {
        min_median(self.samples(side, metric)).1
    }

    /// Minimum of a metric for a side.
    pub fn min(&self, side: usize, metric: &str) -> f64 {
        min_median(self.samples(side, metric)).0
    }

    /// Prints the table: per metric, min / median / n per side and the ratio of medians;
    /// `better` says, per metric name, which way is faster (default: lower is better).
    pub fn report(&self, a: &str, b: &str, better: &dyn Fn(&str) -> Better) {
        println!("A = {a}, B = {b}");
        println!(
            "{:<36} {:>24} {:>24} {:>8}",
            "metric", "A min / median", "B min / median", "ratio"
        );
        for k in &self.order {
            let [sa, sb] = &self.metrics[k];
            if sa.is_empty() && sb.is_empty() {
                continue; // e.g. a steady-state metric on a clip too short to have one
            }
            let ((amin, amed), (bmin, bmed)) = (min_median(sa), min_median(sb));
            let ratio = match better(k) {
                Better::Lower => bmed / amed,
                Better::Higher => amed / bmed,
            };
            // a count that is zero on a side (page faults) has no ratio
            let ratio = if ratio.is_finite() {
                format!("{ratio:.2}x")
            } else {
                "-".to_string()
            };
            println!(
                "{k:<36} {:>24} {:>24} {ratio:>8}",
                format!("{amin:.2} / {amed:.2} (n={})", sa.len()),
                format!("{bmin:.2} / {bmed:.2} (n={})", sb.len()),
            );
        }
        let [ra, rb] = self.peak_rss;
        println!(
            "{:<36} {:>24} {:>24} {:>7.2}  (A / B)",
            "peak RSS MiB",
            format!("{ra:.0}"),
            format!("{rb:.0}"),
            ra / rb
        );
        println!("ratio: median of B / median of A for times (> 1: A faster), A / B for rates");
        let (lmin, lmed) = min_median(&self.load);
        let lmax = self.load.iter().copied().fold(f64::NAN, f64::max);
        println!(
            "load average (1 min) over {} rounds: min {lmin:.2}, median {lmed:.2}, max {lmax:.2} on {} cores",
            self.load.len(),
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        );
    }
}

/// Runs `rounds` rounds over two workers, A then B in each round, sending `request(round)`;
/// a warm-up request (`{"warmup": true}`) goes to each side first and is not recorded.
pub fn interleave(
    workers: &mut [Worker; 2],
    rounds: usize,
    request: &dyn Fn(usize) -> serde_json::Value,
) -> Result<Rounds, String> {
    let mut out = Rounds::default();
    for w in workers.iter_mut() {
        w.round(&serde_json::json!({ "warmup": true }))?;
    }
    for r in 0..rounds {
        // Alternate which side opens the round, so neither always runs first after the other.
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let answer = workers[side].round(&request(r))?;
            out.record(side, &answer);
        }
        eprintln!("[bench] round {}/{rounds} done", r + 1);
    }
    Ok(out)
}
