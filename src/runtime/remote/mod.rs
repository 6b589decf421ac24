//! Graphs on a remote inference server speaking the KServe v2 / Open Inference Protocol over gRPC
//! (NVIDIA Triton with its ONNX Runtime backend in production; any OIP server works).
//!
//! The client is generated from `proto/inference.proto` (`tonic` + `prost`, see `build.rs`).
//! One [`RemoteClient`] per server address is shared by every graph and job of the process: one
//! HTTP/2 channel, which reconnects by itself after the server restarts. Tensors travel as raw
//! little-endian bytes (`raw_input_contents`); answers are read raw or from typed contents. Each
//! call has a deadline; cancelling drops the in-flight call (the stream is reset, the server
//! stops waiting for us). Calls that fail because the connection broke are retried a bounded
//! number of times (graphs are pure functions, so a retry is safe).
//!
//! A graph's model name on the server is derived from the manifest: kind, role and the graph
//! file's sha256 ([`model_name`]), so the client can only ever run the very graph its manifest
//! describes, and [`triton_repo`] writes repositories under the same names.

pub mod proto;
pub mod triton_repo;

use super::graph::{CancelToken, ElementType, HostTensor, Input, InputData, Placement, TensorData};
use super::{GraphSpec, Manifest, RuntimeError, TensorSpec};
use proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The URL scheme of a remote server.
pub const SCHEME: &str = "grpc://";
/// Port used when the URL gives none (Triton's default gRPC port).
pub const DEFAULT_PORT: u16 = 8001;
/// Default per-call deadline; `PIXELREFER_REMOTE_DEADLINE_SECS` changes it.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
/// Deadline of calls that ask for metadata or readiness (no model runs).
pub const CONTROL_DEADLINE: Duration = Duration::from_secs(15);
/// Longest per-call deadline accepted from `PIXELREFER_REMOTE_DEADLINE_SECS` (a day).
pub const MAX_DEADLINE_SECS: f64 = 86_400.0;

/// A per-call deadline from its text (seconds, 0.1 to [`MAX_DEADLINE_SECS`]).
fn deadline_from(text: &str) -> Option<Duration> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| (0.1..=MAX_DEADLINE_SECS).contains(s))
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// Largest message either way: a SAM 2 memory bank or a PixelRefer KV cache is tens of MiB.
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;
/// Attempts of a call whose connection failed (the first included).
const ATTEMPTS: usize = 3;

/// Errors talking to a remote server. Each reads as one sentence for the person.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// Not a `grpc://HOST:PORT` URL.
    #[error("`{url}` is not a server address: {reason} (write grpc://HOST:PORT)")]
    BadUrl {
        /// What was given.
        url: String,
        /// Why.
        reason: String,
    },
    /// No connection.
    #[error("the server at {url} cannot be reached ({reason}); local models stay available")]
    Unreachable {
        /// The server.
        url: String,
        /// The transport's words.
        reason: String,
    },
    /// The call took longer than the deadline.
    #[error("the server at {url} did not answer `{model}` within {secs} s")]
    Deadline {
        /// The server.
        url: String,
        /// The model (or call) that timed out.
        model: String,
        /// The deadline.
        secs: u64,
    },
    /// The server has no such model.
    #[error(
        "the server at {url} has no model `{model}`: serve this model directory (pixelrefer-studio serve triton-repo) or run it locally"
    )]
    ModelMissing {
        /// The server.
        url: String,
        /// The model name asked for.
        model: String,
    },
    /// The server's model differs from the manifest.
    #[error(
        "the server's model `{model}` at {url} differs from the manifest: tensor `{tensor}` {reason}"
    )]
    Interface {
        /// The server.
        url: String,
        /// The model.
        model: String,
        /// The tensor.
        tensor: String,
        /// What differs.
        reason: String,
    },
    /// The server refused or failed the request.
    #[error("the server at {url} refused `{model}`: {message}")]
    Rejected {
        /// The server.
        url: String,
        /// The model or call.
        model: String,
        /// The server's message.
        message: String,
    },
    /// The server does not implement the call (an optional part of the protocol).
    #[error("the server at {url} does not implement this call ({call})")]
    Unimplemented {
        /// The server.
        url: String,
        /// The call, or the model it was for.
        call: String,
    },
    /// An answer this client cannot read.
    #[error("the server at {url} sent an answer this client cannot read: {reason}")]
    Protocol {
        /// The server.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The call was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// A server address with its per-call deadline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteEndpoint {
    host: String,
    port: u16,
    /// Deadline of each call.
    pub deadline: Duration,
}

impl RemoteEndpoint {
    /// Parses `grpc://HOST[:PORT]` (port 8001 when left out). The deadline is
    /// [`DEFAULT_DEADLINE`] or `$PIXELREFER_REMOTE_DEADLINE_SECS`.
    pub fn parse(url: &str) -> Result<RemoteEndpoint, RemoteError> {
        let bad = |reason: &str| RemoteError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = url.trim();
        let rest = if let Some(rest) = trimmed.strip_prefix(SCHEME) {
            rest
        } else if trimmed.starts_with("grpcs://") || trimmed.starts_with("https://") {
            return Err(bad(
                "TLS is not supported yet; reach the server through an SSH tunnel or a trusted network",
            ));
        } else if trimmed.contains("://") {
            return Err(bad("only grpc:// is supported"));
        } else {
            trimmed
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(bad("expected a host and a port"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, tail) = v6.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
                None if tail.is_empty() => DEFAULT_PORT,
                None => return Err(bad("unexpected text after the address")),
            };
            (format!("[{h}]"), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse::<u16>()
                        .map_err(|_| bad("the port is not a number from 1 to 65535"))?,
                ),
                None => (rest.to_string(), DEFAULT_PORT),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(bad("expected a host and a port"));
        }
        let deadline = match std::env::var("PIXELREFER_REMOTE_DEADLINE_SECS") {
            Ok(text) => deadline_from(&text).unwrap_or_else(|| {
                log::warn!(
                    "PIXELREFER_REMOTE_DEADLINE_SECS={text:?} is not a number of seconds from \
                     0.1 to {MAX_DEADLINE_SECS}; using {} s",
                    DEFAULT_DEADLINE.as_secs()
                );
                DEFAULT_DEADLINE
            }),
            Err(_) => DEFAULT_DEADLINE,
        };
        Ok(RemoteEndpoint {
            host,
            port,
            deadline,
        })
    }

    /// The same server with another deadline.
    pub fn with_deadline(mut self, deadline: Duration) -> RemoteEndpoint {
        self.deadline = deadline;
        self
    }

    /// `grpc://host:port`.
    pub fn url(&self) -> String {
        format!("{SCHEME}{}", self.address())
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for RemoteEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

/// What a server says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Name (`triton`, `mlserver`…).
    pub name: String,
    /// Version.
    pub version: String,
    /// Protocol extensions.
    pub extensions: Vec<String>,
}

/// One model the server lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedModel {
    /// Name.
    pub name: String,
    /// State as the server words it (`READY`, `UNAVAILABLE`…; empty when unknown).
    pub state: String,
}

/// Bytes and calls through one client so far (protobuf message sizes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Inference calls.
    pub calls: u64,
    /// Bytes of requests sent.
    pub sent: u64,
    /// Bytes of answers received.
    pub received: u64,
}

/// A connection to one server, shared process-wide ([`RemoteClient::shared`]).
pub struct RemoteClient {
    endpoint: RemoteEndpoint,
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    server: OnceLock<ServerInfo>,
    calls: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteClient({})", self.endpoint)
    }
}

fn registry() -> &'static parking_lot::Mutex<HashMap<RemoteEndpoint, Arc<RemoteClient>>> {
    static CLIENTS: OnceLock<parking_lot::Mutex<HashMap<RemoteEndpoint, Arc<RemoteClient>>>> =
        OnceLock::new();
    CLIENTS.get_or_init(Default::default)
}

impl RemoteClient {
    /// The process's client for `endpoint` (created on first use; the connection is made lazily
    /// by the first call).
    pub fn shared(endpoint: &RemoteEndpoint) -> Result<Arc<RemoteClient>, RemoteError> {
        let mut clients = registry().lock();
        if let Some(c) = clients.get(endpoint) {
            return Ok(c.clone());
        }
        let client = Arc::new(RemoteClient::connect(endpoint)?);
        clients.insert(endpoint.clone(), client.clone());
        Ok(client)
    }

    /// A new client with its own channel (tests; use [`Self::shared`] otherwise).
    pub fn connect(endpoint: &RemoteEndpoint) -> Result<RemoteClient, RemoteError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("oip-client")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Unreachable {
                url: endpoint.url(),
                reason: format!("could not start the network runtime: {e}"),
            })?;
        let uri = format!("http://{}", endpoint.address());
        let channel = {
            let _guard = runtime.enter();
            tonic::transport::Endpoint::from_shared(uri)
                .map_err(|e| RemoteError::BadUrl {
                    url: endpoint.url(),
                    reason: e.to_string(),
                })?
                .connect_timeout(Duration::from_secs(5).min(endpoint.deadline))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(20))
                .connect_lazy()
        };
        Ok(RemoteClient {
            endpoint: endpoint.clone(),
            runtime,
            channel,
            server: OnceLock::new(),
            calls: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        })
    }

    /// The server's address.
    pub fn endpoint(&self) -> &RemoteEndpoint {
        &self.endpoint
    }

    /// Traffic so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            calls: self.calls.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
        }
    }

    /// Where graphs of this client run, for the status bar (`triton@host:port`).
    pub fn placement(&self) -> Placement {
        Placement::Remote {
            server: self
                .server
                .get()
                .map_or_else(|| "server".to_string(), |s| s.name.clone()),
            address: self.endpoint.address(),
        }
    }

    fn stub(&self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn map_status(&self, status: &tonic::Status, model: &str) -> RemoteError {
        let url = self.endpoint.url();
        let message = status.message().to_string();
        let lower = message.to_lowercase();
        let missing = lower.contains("unknown model")
            || (lower.contains("model") && lower.contains("not found"))
            || lower.contains("is not found");
        match status.code() {
            tonic::Code::Unimplemented => RemoteError::Unimplemented {
                url,
                call: model.to_string(),
            },
            tonic::Code::NotFound => RemoteError::ModelMissing {
                url,
                model: model.to_string(),
            },
            _ if missing => RemoteError::ModelMissing {
                url,
                model: model.to_string(),
            },
            tonic::Code::DeadlineExceeded => RemoteError::Deadline {
                url,
                model: model.to_string(),
                secs: self.endpoint.deadline.as_secs().max(1),
            },
            tonic::Code::Unavailable | tonic::Code::Unknown
                if is_transport_failure(status) || lower.is_empty() =>
            {
                RemoteError::Unreachable {
                    url,
                    reason: transport_reason(status),
                }
            }
            tonic::Code::Cancelled if is_transport_failure(status) => RemoteError::Unreachable {
                url,
                reason: transport_reason(status),
            },
            _ => RemoteError::Rejected {
                url,
                model: model.to_string(),
                message: if message.is_empty() {
                    format!("{:?}", status.code())
                } else {
                    clean_text(&message)
                },
            },
        }
    }

    /// Runs one call with the deadline, cancellation and bounded retries on a broken connection.
    fn call<T, F, Fut>(
        &self,
        what: &str,
        cancel: Option<&CancelToken>,
        deadline: Duration,
        make: F,
    ) -> Result<T, RemoteError>
    where
        F: Fn(GrpcInferenceServiceClient<Channel>, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let past_deadline = || RemoteError::Deadline {
            url: self.endpoint.url(),
            model: what.to_string(),
            secs: deadline.as_secs().max(1),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            if cancel.is_some_and(CancelToken::is_cancelled) {
                return Err(RemoteError::Cancelled);
            }
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(past_deadline());
            }
            let fut = make(self.stub(), left);
            let outcome = self.runtime.block_on(async {
                let watch = async {
                    loop {
                        if cancel.is_some_and(CancelToken::is_cancelled) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                tokio::select! {
                    r = tokio::time::timeout(left, fut) => Some(r),
                    () = watch => None,
                }
            });
            let status = match outcome {
                None => return Err(RemoteError::Cancelled),
                Some(Err(_elapsed)) => return Err(past_deadline()),
                Some(Ok(Ok(response))) => return Ok(response.into_inner()),
                Some(Ok(Err(status))) => status,
            };
            let err = self.map_status(&status, what);
            let unreachable = matches!(err, RemoteError::Unreachable { .. });
            if unreachable && started.elapsed() >= deadline {
                // The transport gave up with the deadline (a connection never answered).
                return Err(past_deadline());
            }
            let retry = unreachable && attempt < ATTEMPTS;
            if !retry {
                return Err(err);
            }
            log::warn!("{err}; trying again");
            let pause = Duration::from_millis(250 * attempt as u64)
                .min(deadline.saturating_sub(started.elapsed()));
            std::thread::sleep(pause);
        }
    }

    /// The deadline of a call that only asks the server something (metadata, readiness): a
    /// server that accepts the connection but never answers is reported within
    /// [`CONTROL_DEADLINE`], not after an inference's deadline.
    fn control_deadline(&self) -> Duration {
        self.endpoint.deadline.min(CONTROL_DEADLINE)
    }

    /// The server's metadata (kept for [`Self::placement`]).
    pub fn server_info(&self) -> Result<ServerInfo, RemoteError> {
        let r = self.call(
            "server metadata",
            None,
            self.control_deadline(),
            |mut c, left| async move {
                c.server_metadata(with_timeout(proto::ServerMetadataRequest {}, left))
                    .await
            },
        )?;
        let info = ServerInfo {
            name: if r.name.trim().is_empty() {
                "server".into()
            } else {
                clean_text(&r.name)
            },
            version: clean_text(&r.version),
            extensions: r
                .extensions
                .iter()
                .take(64)
                .map(|e| clean_text(e))
                .collect(),
        };
        let _ = self.server.set(info.clone());
        Ok(info)
    }

    /// Whether the server says it is ready.
    pub fn server_ready(&self) -> Result<bool, RemoteError> {
        self.call(
            "server ready",
            None,
            self.control_deadline(),
            |mut c, left| async move {
                c.server_ready(with_timeout(proto::ServerReadyRequest {}, left))
                    .await
            },
        )
        .map(|r| r.ready)
    }

    /// Whether model `name` is ready.
    pub fn model_ready(&self, name: &str) -> Result<bool, RemoteError> {
        let name = name.to_string();
        // A missing model: Triton answers not ready, MLServer an error naming it.
        match self.call(
            &name.clone(),
            None,
            self.control_deadline(),
            move |mut c, left| {
                let name = name.clone();
                async move {
                    c.model_ready(with_timeout(
                        proto::ModelReadyRequest {
                            name,
                            version: String::new(),
                        },
                        left,
                    ))
                    .await
                }
            },
        ) {
            Ok(r) => Ok(r.ready),
            Err(
                RemoteError::ModelMissing { .. }
                | RemoteError::Rejected { .. }
                | RemoteError::Unimplemented { .. },
            ) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Model `name`'s inputs and outputs.
    pub fn model_metadata(&self, name: &str) -> Result<proto::ModelMetadataResponse, RemoteError> {
        let owned = name.to_string();
        self.call(name, None, self.control_deadline(), move |mut c, left| {
            let name = owned.clone();
            async move {
                c.model_metadata(with_timeout(
                    proto::ModelMetadataRequest {
                        name,
                        version: String::new(),
                    },
                    left,
                ))
                .await
            }
        })
    }

    /// The models the server lists, or `None` when it does not implement the repository index.
    pub fn repository_index(&self) -> Result<Option<Vec<ServedModel>>, RemoteError> {
        match self.call(
            "repository index",
            None,
            self.control_deadline(),
            |mut c, left| async move {
                c.repository_index(with_timeout(
                    proto::RepositoryIndexRequest {
                        repository_name: String::new(),
                        ready: false,
                    },
                    left,
                ))
                .await
            },
        ) {
            Ok(r) => Ok(Some(
                r.models
                    .into_iter()
                    .map(|m| ServedModel {
                        name: m.name,
                        state: m.state,
                    })
                    .collect(),
            )),
            // KServe's protocol has no repository index: ask model by model instead.
            Err(RemoteError::Unimplemented { .. }) => Ok(None),
            Err(RemoteError::Rejected { message, .. })
                if message.to_lowercase().contains("unimplemented")
                    || message.to_lowercase().contains("not implemented") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs model `model` on raw inputs and returns the requested outputs in order.
    pub fn infer(
        &self,
        model: &str,
        inputs: &[RawInput<'_>],
        outputs: &[&str],
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<HostTensor>, RemoteError> {
        let request = proto::ModelInferRequest {
            model_name: model.to_string(),
            model_version: String::new(),
            id: String::new(),
            parameters: HashMap::new(),
            inputs: inputs
                .iter()
                .map(|i| proto::model_infer_request::InferInputTensor {
                    name: i.name.to_string(),
                    datatype: datatype(i.element).to_string(),
                    shape: i.shape.clone(),
                    parameters: HashMap::new(),
                    contents: None,
                })
                .collect(),
            outputs: outputs
                .iter()
                .map(|o| proto::model_infer_request::InferRequestedOutputTensor {
                    name: (*o).to_string(),
                    parameters: HashMap::new(),
                })
                .collect(),
            raw_input_contents: inputs
                .iter()
                .map(|i| prost::bytes::Bytes::copy_from_slice(i.bytes))
                .collect(),
        };
        let sent = prost::Message::encoded_len(&request) as u64;
        let response = self.call(model, cancel, self.endpoint.deadline, |mut c, left| {
            let request = request.clone();
            async move { c.model_infer(with_timeout(request, left)).await }
        });
        let response = match response {
            Err(RemoteError::Cancelled) => return Err(RemoteError::Cancelled),
            r => r?,
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.received.fetch_add(
            prost::Message::encoded_len(&response) as u64,
            Ordering::Relaxed,
        );
        decode_outputs(&self.endpoint.url(), model, response, outputs)
    }
}

/// Longest text from a server that is shown (a name, a version, an error message).
const MAX_SERVER_TEXT_CHARS: usize = 300;

/// Text a server sent, made safe to print on one line: control characters (terminal escapes,
/// line breaks) become spaces and it is cut to [`MAX_SERVER_TEXT_CHARS`].
pub fn clean_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_SERVER_TEXT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_SERVER_TEXT_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn with_timeout<T>(message: T, left: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(left);
    request
}

/// Whether a status comes from the transport (no connection, connection reset) rather than
/// from the server's answer.
fn is_transport_failure(status: &tonic::Status) -> bool {
    use std::error::Error;
    let mut source: Option<&dyn Error> = status.source();
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        let text = e.to_string().to_lowercase();
        if text.contains("connect") || text.contains("connection") || text.contains("broken pipe") {
            return true;
        }
        source = e.source();
    }
    let lower = status.message().to_lowercase();
    lower.contains("transport error")
        || lower.contains("connection")
        || lower.contains("tcp connect")
        || lower.contains("h2 protocol error")
}

fn transport_reason(status: &tonic::Status) -> String {
    use std::error::Error;
    let mut deepest = status.message().to_string();
    let mut source: Option<&dyn Error> = status.source();
    while let Some(e) = source {
        deepest = e.to_string();
        source = e.source();
    }
    if deepest.is_empty() {
        "no answer".into()
    } else {
        deepest
    }
}

/// One input of [`RemoteClient::infer`].
#[derive(Debug, Clone)]
pub struct RawInput<'a> {
    /// Tensor name.
    pub name: &'a str,
    /// Element type.
    pub element: ElementType,
    /// Dimensions.
    pub shape: Vec<i64>,
    /// Little-endian elements.
    pub bytes: &'a [u8],
}

/// The OIP datatype of an element type.
pub fn datatype(t: ElementType) -> &'static str {
    match t {
        ElementType::F32 => "FP32",
        ElementType::F16 => "FP16",
        ElementType::I64 => "INT64",
        ElementType::I32 => "INT32",
    }
}

/// The element type of an OIP datatype.
pub fn element_of(datatype: &str) -> Option<ElementType> {
    match datatype.to_ascii_uppercase().as_str() {
        "FP32" => Some(ElementType::F32),
        "FP16" => Some(ElementType::F16),
        "INT64" => Some(ElementType::I64),
        "INT32" => Some(ElementType::I32),
        _ => None,
    }
}

fn decode_outputs(
    url: &str,
    model: &str,
    response: proto::ModelInferResponse,
    wanted: &[&str],
) -> Result<Vec<HostTensor>, RemoteError> {
    let bad = |reason: String| RemoteError::Protocol {
        url: url.to_string(),
        reason: format!("`{model}`: {reason}"),
    };
    // An answer for another model (a proxy or a server mixing up requests) is not this one's.
    if !response.model_name.is_empty() && response.model_name != model {
        return Err(bad(format!(
            "the answer is for model `{}`",
            clean_text(&response.model_name)
        )));
    }
    let raw = response.raw_output_contents;
    let use_raw = !raw.is_empty();
    if use_raw && raw.len() != response.outputs.len() {
        return Err(bad(format!(
            "{} raw outputs for {} tensors",
            raw.len(),
            response.outputs.len()
        )));
    }
    let mut outputs: Vec<Option<HostTensor>> = vec![None; wanted.len()];
    for (index, out) in response.outputs.into_iter().enumerate() {
        let Some(slot) = wanted.iter().position(|w| *w == out.name) else {
            continue;
        };
        let element = element_of(&out.datatype)
            .ok_or_else(|| bad(format!("output `{}` has type {}", out.name, out.datatype)))?;
        if out.shape.iter().any(|&d| d < 0) {
            return Err(bad(format!(
                "output `{}` has shape {:?}",
                out.name, out.shape
            )));
        }
        let count = out
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
            .ok_or_else(|| bad(format!("output `{}` is too large", out.name)))?;
        let data = if use_raw {
            let bytes = &raw[index];
            let want = count
                .checked_mul(element.size())
                .ok_or_else(|| bad(format!("output `{}` is too large", out.name)))?;
            if bytes.len() != want {
                return Err(bad(format!(
                    "output `{}` has {} bytes for shape {:?}",
                    out.name,
                    bytes.len(),
                    out.shape
                )));
            }
            from_le_bytes(element, bytes)
        } else {
            let contents = out.contents.unwrap_or_default();
            let data = match element {
                ElementType::F32 => TensorData::F32(contents.fp32_contents),
                ElementType::I64 => TensorData::I64(contents.int64_contents),
                ElementType::I32 => TensorData::I32(contents.int_contents),
                ElementType::F16 => {
                    return Err(bad(format!(
                        "output `{}` is FP16 but came without raw contents",
                        out.name
                    )));
                }
            };
            let len = match &data {
                TensorData::F32(v) => v.len(),
                TensorData::I64(v) => v.len(),
                TensorData::I32(v) => v.len(),
                TensorData::F16(v) => v.len(),
            };
            if len != count {
                return Err(bad(format!(
                    "output `{}` has {len} values for shape {:?}",
                    out.name, out.shape
                )));
            }
            data
        };
        outputs[slot] = Some(HostTensor {
            shape: out.shape,
            data,
        });
    }
    outputs
        .into_iter()
        .zip(wanted)
        .map(|(o, name)| o.ok_or_else(|| bad(format!("output `{name}` is missing"))))
        .collect()
}

fn from_le_bytes(element: ElementType, bytes: &[u8]) -> TensorData {
    match element {
        ElementType::F32 => TensorData::F32(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        ElementType::F16 => TensorData::F16(
            bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        ElementType::I64 => TensorData::I64(
            bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        ElementType::I32 => TensorData::I32(
            bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
    }
}

/// The server-side model name of graph `role` in the model directory `dir`:
/// `{kind}-{role}-{first 12 hex digits of the graph file's sha256}`. Content-addressed, so two
/// models never collide and a server can only answer for the exact graph of the manifest.
pub fn model_name(manifest: &Manifest, dir: &Path, role: &str) -> Result<String, RuntimeError> {
    let spec = manifest.graph(dir, role)?;
    let sha = manifest
        .files
        .get(&spec.file)
        .filter(|s| s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| RuntimeError::Manifest {
            path: dir.to_path_buf(),
            reason: format!(
                "{} has no sha256 for {}; remote models are named by it",
                super::MANIFEST_FILE,
                spec.file
            ),
        })?;
    let role: String = role
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(format!(
        "{}-{role}-{}",
        manifest.kind,
        sha[..12].to_ascii_lowercase()
    ))
}

/// A graph served remotely: the model name and the manifest's interface.
pub struct RemoteGraph {
    client: Arc<RemoteClient>,
    model: String,
    spec: GraphSpec,
}

impl RemoteGraph {
    /// Checks that the server has `model` with the manifest's tensors (names, types, ranks,
    /// fixed sizes) and returns the graph.
    pub fn open(
        client: Arc<RemoteClient>,
        model: String,
        spec: &GraphSpec,
    ) -> Result<RemoteGraph, RemoteError> {
        if client.server.get().is_none() {
            client.server_info()?;
        }
        let meta = client.model_metadata(&model)?;
        let url = client.endpoint.url();
        check_tensors(&url, &model, &spec.inputs, &meta.inputs, "input")?;
        check_tensors(&url, &model, &spec.outputs, &meta.outputs, "output")?;
        Ok(RemoteGraph {
            client,
            model,
            spec: spec.clone(),
        })
    }

    /// Runs the graph on the server.
    pub(crate) fn run(
        &self,
        inputs: Vec<(&str, Input<'_>)>,
        outputs: &[&str],
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<HostTensor>, super::graph::GraphError> {
        let mut owned = Vec::new();
        let mut borrowed: Vec<(&str, Vec<i64>, InputData<'_>)> = Vec::new();
        for (name, input) in inputs {
            match input {
                Input::Borrowed { shape, data } => borrowed.push((name, shape, data)),
                Input::Value(v) => owned.push((name, v.into_host()?)),
            }
        }
        let mut raw: Vec<RawInput<'_>> = borrowed
            .iter()
            .map(|(name, shape, data)| RawInput {
                name,
                element: data.element_type(),
                shape: shape.clone(),
                bytes: data.bytes(),
            })
            .collect();
        raw.extend(owned.iter().map(|(name, t)| RawInput {
            name,
            element: t.element_type(),
            shape: t.shape.clone(),
            bytes: t.bytes(),
        }));
        for r in &raw {
            if let Some(want) = super::graph::spec_input(&self.spec, r.name)
                && ElementType::from_manifest(&want.dtype) != Some(r.element)
            {
                return Err(super::graph::GraphError::Run(format!(
                    "input `{}` is {:?}, the graph takes {}",
                    r.name, r.element, want.dtype
                )));
            }
        }
        let tensors = self
            .client
            .infer(&self.model, &raw, outputs, cancel)
            .map_err(|e| match e {
                RemoteError::Cancelled => super::graph::GraphError::Cancelled,
                e => super::graph::GraphError::Remote(e),
            })?;
        check_outputs(&self.spec.outputs, outputs, &tensors).map_err(|reason| {
            super::graph::GraphError::Remote(RemoteError::Protocol {
                url: self.client.endpoint.url(),
                reason: format!("`{}`: {reason}", self.model),
            })
        })?;
        Ok(tensors)
    }
}

/// What a server sent must be what the graph makes: the manifest's element type, rank and
/// fixed sizes for each requested output (the host indexes by them; a shorter tensor would be
/// read past its end, a wrong type misread), and no NaN in a float output (a server whose
/// arithmetic failed, e.g. an fp16 overflow, would otherwise give empty masks or nonsense
/// tokens without a word).
fn check_outputs(
    specs: &[TensorSpec],
    names: &[&str],
    tensors: &[HostTensor],
) -> Result<(), String> {
    for (name, tensor) in names.iter().zip(tensors) {
        let Some(want) = specs.iter().find(|o| o.name == *name) else {
            continue;
        };
        if ElementType::from_manifest(&want.dtype) != Some(tensor.element_type()) {
            return Err(format!(
                "output `{name}` is {:?}, the graph makes {}",
                tensor.element_type(),
                want.dtype
            ));
        }
        crate::runtime::session::check_shape(want, &tensor.shape)
            .map_err(|why| format!("output `{name}` {why}"))?;
        let (nan, of) = match &tensor.data {
            TensorData::F32(v) => (v.iter().filter(|x| x.is_nan()).count(), v.len()),
            TensorData::F16(v) => (v.iter().filter(|x| x.is_nan()).count(), v.len()),
            TensorData::I64(_) | TensorData::I32(_) => (0, 0),
        };
        if nan > 0 {
            return Err(format!(
                "output `{name}` holds {nan} NaN value(s) of {of}: the server's arithmetic failed"
            ));
        }
    }
    Ok(())
}

fn check_tensors(
    url: &str,
    model: &str,
    want: &[TensorSpec],
    have: &[proto::model_metadata_response::TensorMetadata],
    what: &str,
) -> Result<(), RemoteError> {
    for w in want {
        let err = |reason: String| RemoteError::Interface {
            url: url.to_string(),
            model: model.to_string(),
            tensor: w.name.clone(),
            reason,
        };
        let Some(h) = have.iter().find(|h| h.name == w.name) else {
            return Err(err(format!("is not an {what} of the served model")));
        };
        let expected = ElementType::from_manifest(&w.dtype)
            .map(datatype)
            .unwrap_or(w.dtype.as_str());
        if !h.datatype.eq_ignore_ascii_case(expected) {
            return Err(err(format!("has type {}, expected {expected}", h.datatype)));
        }
        // Servers that batch report the batch dimension as -1 in front; some report no shape.
        if !h.shape.is_empty() {
            crate::runtime::session::check_shape(w, &h.shape).map_err(err)?;
        }
    }
    Ok(())
}

/// Whether a repository-index state means ready: Triton says `READY`, MLServer `State.READY`;
/// a server that gives no state lists only what it serves.
pub fn state_is_ready(state: &str) -> bool {
    let state = state.trim();
    let state = state.strip_prefix("State.").unwrap_or(state);
    state.is_empty() || state.eq_ignore_ascii_case("READY")
}

/// A local model directory as a server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModelOnServer {
    /// The directory.
    pub dir: std::path::PathBuf,
    /// `folder (kind variant)`.
    pub label: String,
    /// Graph roles the server has (by model name).
    pub served: Vec<String>,
    /// Graph roles it lacks.
    pub missing: Vec<String>,
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReport {
    /// The server.
    pub url: String,
    /// Its metadata.
    pub info: ServerInfo,
    /// Whether it says it is ready.
    pub ready: bool,
    /// Its model list (`None`: the server does not list models).
    pub models: Option<Vec<ServedModel>>,
    /// The local model directories, each with the graphs the server has.
    pub local: Vec<LocalModelOnServer>,
    /// Round-trip time of the metadata call.
    pub latency: Duration,
}

impl ServerReport {
    /// One line about the server: name, version, address, readiness, latency.
    pub fn summary(&self) -> String {
        format!(
            "{} {} at {}: {}, answered in {:.0} ms.",
            self.info.name,
            self.info.version,
            self.url,
            if self.ready { "ready" } else { "not ready" },
            self.latency.as_secs_f64() * 1e3
        )
    }
}

impl LocalModelOnServer {
    /// One line: whether the server runs this model, or which graphs it lacks.
    pub fn summary(&self) -> String {
        if self.missing.is_empty() {
            format!("Runs on the server: {}", self.label)
        } else {
            format!(
                "Local only: {} (the server lacks {})",
                self.label,
                self.missing.join(", ")
            )
        }
    }
}

/// Connects to `endpoint`, reads its metadata and model list, and checks which of the local
/// model directories `dirs` it can run (every graph served under [`model_name`]).
pub fn probe(
    endpoint: &RemoteEndpoint,
    dirs: &[std::path::PathBuf],
) -> Result<ServerReport, RemoteError> {
    let client = RemoteClient::shared(endpoint)?;
    let started = Instant::now();
    let info = client.server_info()?;
    let latency = started.elapsed();
    let ready = client.server_ready()?;
    let models = client.repository_index()?;
    let mut local = Vec::new();
    for dir in dirs {
        let Ok(manifest) = Manifest::load(dir) else {
            continue;
        };
        let mut served = Vec::new();
        let mut missing = Vec::new();
        for role in manifest.graphs.keys() {
            let Ok(name) = model_name(&manifest, dir, role) else {
                missing.push(role.clone());
                continue;
            };
            let listed = models.as_ref().map(|list| {
                list.iter()
                    .any(|m| m.name == name && state_is_ready(&m.state))
            });
            let have = match listed {
                Some(have) => have,
                None => client.model_ready(&name)?,
            };
            if have {
                served.push(role.clone());
            } else {
                missing.push(role.clone());
            }
        }
        local.push(LocalModelOnServer {
            dir: dir.clone(),
            label: format!(
                "{} ({} {})",
                dir.file_name().map_or_else(
                    || dir.display().to_string(),
                    |n| n.to_string_lossy().into_owned()
                ),
                manifest.kind,
                manifest.variant
            ),
            served,
            missing,
        });
    }
    Ok(ServerReport {
        url: endpoint.url(),
        info,
        ready,
        models,
        local,
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(
        model: &str,
        name: &str,
        shape: Vec<i64>,
        bytes: Vec<u8>,
    ) -> proto::ModelInferResponse {
        proto::ModelInferResponse {
            model_name: model.into(),
            outputs: vec![proto::model_infer_response::InferOutputTensor {
                name: name.into(),
                datatype: "FP32".into(),
                shape,
                ..Default::default()
            }],
            raw_output_contents: vec![bytes.into()],
            ..Default::default()
        }
    }

    #[test]
    fn answers_that_do_not_fit_are_refused_in_one_sentence() {
        let url = "grpc://127.0.0.1:1";
        let ok = decode_outputs(url, "m", response("m", "y", vec![2], vec![0; 8]), &["y"]);
        assert_eq!(ok.expect("fits")[0].shape, vec![2]);
        // A declared size whose byte count overflows, an answer for another model.
        let huge = 1i64 << 31;
        let cases = [
            (
                response("m", "y", vec![huge, huge, huge], vec![]),
                "too large",
            ),
            (
                response("other", "y", vec![2], vec![0; 8]),
                "the answer is for model `other`",
            ),
            (
                response("m", "y", vec![3], vec![0; 8]),
                "8 bytes for shape [3]",
            ),
        ];
        for (r, says) in cases {
            let err = decode_outputs(url, "m", r, &["y"])
                .expect_err(says)
                .to_string();
            assert!(err.contains(says), "{err}");
        }
        // Against the manifest: the rank, the fixed sizes and the element type.
        let spec = TensorSpec {
            name: "y".into(),
            dtype: "float32".into(),
            shape: vec!["n".into(), 4.into()],
        };
        let tensor = |shape: Vec<i64>, data: TensorData| HostTensor { shape, data };
        let fine = tensor(vec![3, 4], TensorData::F32(vec![0.0; 12]));
        assert!(check_outputs(std::slice::from_ref(&spec), &["y"], &[fine]).is_ok());
        let bad = [
            (
                tensor(vec![12], TensorData::F32(vec![0.0; 12])),
                "has rank 1",
            ),
            (
                tensor(vec![4, 3], TensorData::F32(vec![0.0; 12])),
                "size 3 on axis 1",
            ),
            (
                tensor(vec![3, 4], TensorData::F16(vec![half::f16::ZERO; 12])),
                "is F16, the graph makes float32",
            ),
            (
                tensor(vec![3, 4], {
                    let mut v = vec![0.5; 12];
                    v[7] = f32::NAN;
                    TensorData::F32(v)
                }),
                "holds 1 NaN value(s) of 12",
            ),
        ];
        for (t, says) in bad {
            let err = check_outputs(std::slice::from_ref(&spec), &["y"], &[t]).expect_err(says);
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn server_text_is_one_bounded_line_and_deadlines_are_bounded() {
        assert_eq!(clean_text("tri\x1b[2Jton\r\nok"), "tri [2Jton  ok");
        let long = clean_text(&"x".repeat(10_000));
        assert_eq!(long.chars().count(), MAX_SERVER_TEXT_CHARS + 1);
        assert!(long.ends_with('…'));
        assert_eq!(deadline_from("2.5"), Some(Duration::from_millis(2500)));
        for bad in ["1e20", "0", "-5", "abc", "inf", "NaN", "0.01"] {
            assert_eq!(deadline_from(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_server_that_never_answers_is_reported_within_the_control_deadline() {
        // The kernel completes the TCP handshake for a bound listener nobody accepts from: the
        // client's HTTP/2 preface is never answered.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = silent.local_addr().expect("address").port();
        let endpoint = RemoteEndpoint::parse(&format!("grpc://127.0.0.1:{port}"))
            .expect("valid")
            .with_deadline(Duration::from_secs(600));
        let client = RemoteClient::connect(&endpoint).expect("client");
        let started = Instant::now();
        let err = client.server_info().expect_err("no answer");
        let took = started.elapsed();
        assert!(
            matches!(err, RemoteError::Deadline { secs, .. } if secs == CONTROL_DEADLINE.as_secs()),
            "{err}"
        );
        assert!(
            took >= CONTROL_DEADLINE && took < CONTROL_DEADLINE * 2,
            "{took:?}"
        );
        drop(silent);
    }

    #[test]
    fn urls_parse_or_say_why() {
        let e = RemoteEndpoint::parse("grpc://gpu-box:8001").expect("valid");
        assert_eq!(e.address(), "gpu-box:8001");
        assert_eq!(
            RemoteEndpoint::parse("127.0.0.1").expect("valid").url(),
            "grpc://127.0.0.1:8001"
        );
        assert_eq!(
            RemoteEndpoint::parse("grpc://[::1]:9000/")
                .expect("valid")
                .address(),
            "[::1]:9000"
        );
        for bad in [
            "",
            "grpc://",
            "grpc://host:0",
            "grpc://host:99999",
            "grpc://host:port",
            "http://host:8001",
            "grpcs://host:8001",
            "grpc://host:8001/v2/models",
        ] {
            let err = RemoteEndpoint::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("grpc://HOST:PORT"), "{err}");
        }
    }

    #[test]
    fn raw_bytes_round_trip_every_type() {
        let cases = [
            TensorData::F32(vec![1.5, -0.0, f32::MIN_POSITIVE]),
            TensorData::F16(vec![half::f16::from_f32(0.25), half::f16::MAX]),
            TensorData::I64(vec![i64::MIN, 7]),
            TensorData::I32(vec![-3, i32::MAX]),
        ];
        for data in cases {
            let t = HostTensor {
                shape: vec![1, 2],
                data: data.clone(),
            };
            assert_eq!(from_le_bytes(t.element_type(), t.bytes()), data);
            assert_eq!(
                element_of(datatype(t.element_type())),
                Some(t.element_type())
            );
        }
    }
}
