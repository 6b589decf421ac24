//! One interface for running a graph: a local ONNX Runtime session or a model on a remote Open
//! Inference Protocol server (DESIGN.md §4, "Where graphs run"). Engines build a [`Graph`] per
//! manifest role and call [`Graph::run`]; they cannot tell where it runs.

use super::remote::{RemoteClient, RemoteError, RemoteGraph};
use super::{
    ExecutionProvider, GraphSpec, Manifest, RuntimeError, SessionOptions, build_session_with,
    ensure_initialized, validate_io,
};
use ort::session::{RunOptions, Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorRef};
use parking_lot::Mutex;
use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Cancels running work: a flag checked between graph runs, ONNX Runtime's `RunOptions`
/// terminate flag for a local graph that is running, and the in-flight call of a remote one.
/// Clones share the flag.
#[derive(Clone, Default)]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
    run_options: Arc<Mutex<Option<Arc<RunOptions>>>>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CancelToken(cancelled: {})", self.is_cancelled())
    }
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation and terminates the graph that is running.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(ro) = self.run_options.lock().as_ref()
            && let Err(e) = ro.terminate()
        {
            log::warn!("could not terminate the running graph: {e}");
        }
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// `Err(Cancelled)` once cancelled.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// The run options every local graph run under this token uses (created on first use).
    pub fn run_options(&self) -> Result<Arc<RunOptions>, GraphError> {
        let mut slot = self.run_options.lock();
        if let Some(ro) = slot.as_ref() {
            return Ok(ro.clone());
        }
        ensure_initialized().map_err(|e| GraphError::Run(e.to_string()))?;
        let ro = Arc::new(RunOptions::new().map_err(|e| GraphError::Run(e.to_string()))?);
        *slot = Some(ro.clone());
        drop(slot);
        if self.is_cancelled() {
            let _ = ro.terminate();
        }
        Ok(ro)
    }
}

/// The work was cancelled ([`CancelToken::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

impl From<Cancelled> for GraphError {
    fn from(_: Cancelled) -> Self {
        GraphError::Cancelled
    }
}

/// Errors from running a graph.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// ONNX Runtime failed to run the graph.
    #[error("{0}")]
    Run(String),
    /// An output is missing or not what the host expects.
    #[error("output `{name}` {reason}")]
    Output {
        /// The output name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The remote server failed the call.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// Element types the graphs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    /// `float32`.
    F32,
    /// `float16`.
    F16,
    /// `int64`.
    I64,
    /// `int32`.
    I32,
}

impl ElementType {
    /// The manifest's name (`float32`…).
    pub fn manifest_name(self) -> &'static str {
        match self {
            ElementType::F32 => "float32",
            ElementType::F16 => "float16",
            ElementType::I64 => "int64",
            ElementType::I32 => "int32",
        }
    }

    /// From the manifest's name.
    pub fn from_manifest(name: &str) -> Option<ElementType> {
        [
            ElementType::F32,
            ElementType::F16,
            ElementType::I64,
            ElementType::I32,
        ]
        .into_iter()
        .find(|t| t.manifest_name().eq_ignore_ascii_case(name))
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElementType::F32 | ElementType::I32 => 4,
            ElementType::F16 => 2,
            ElementType::I64 => 8,
        }
    }
}

/// Owned tensor elements.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// float32.
    F32(Vec<f32>),
    /// float16.
    F16(Vec<half::f16>),
    /// int64.
    I64(Vec<i64>),
    /// int32.
    I32(Vec<i32>),
}

/// A tensor in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<i64>,
    /// Elements, row-major.
    pub data: TensorData,
}

impl HostTensor {
    /// The element type.
    pub fn element_type(&self) -> ElementType {
        match self.data {
            TensorData::F32(_) => ElementType::F32,
            TensorData::F16(_) => ElementType::F16,
            TensorData::I64(_) => ElementType::I64,
            TensorData::I32(_) => ElementType::I32,
        }
    }

    /// The elements as raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            TensorData::F32(v) => bytemuck::cast_slice(v),
            TensorData::F16(v) => bytemuck::cast_slice(v),
            TensorData::I64(v) => bytemuck::cast_slice(v),
            TensorData::I32(v) => bytemuck::cast_slice(v),
        }
    }
}

/// Borrowed input elements.
#[derive(Debug, Clone, Copy)]
pub enum InputData<'a> {
    /// float32.
    F32(&'a [f32]),
    /// float16.
    F16(&'a [half::f16]),
    /// int64.
    I64(&'a [i64]),
    /// int32.
    I32(&'a [i32]),
}

impl InputData<'_> {
    /// The element type.
    pub fn element_type(&self) -> ElementType {
        match self {
            InputData::F32(_) => ElementType::F32,
            InputData::F16(_) => ElementType::F16,
            InputData::I64(_) => ElementType::I64,
            InputData::I32(_) => ElementType::I32,
        }
    }

    /// The elements as raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            InputData::F32(v) => bytemuck::cast_slice(v),
            InputData::F16(v) => bytemuck::cast_slice(v),
            InputData::I64(v) => bytemuck::cast_slice(v),
            InputData::I32(v) => bytemuck::cast_slice(v),
        }
    }
}

/// One input of a run: borrowed host data, or a value an earlier run returned (a KV cache stays
/// where it is: an ONNX Runtime value locally, host memory for a remote graph).
pub enum Input<'a> {
    /// Host data with its shape.
    Borrowed {
        /// Dimensions.
        shape: Vec<i64>,
        /// Elements.
        data: InputData<'a>,
    },
    /// A value from an earlier run (or built on the host).
    Value(Value),
}

impl<'a> Input<'a> {
    /// float32 input.
    pub fn f32(shape: Vec<i64>, data: &'a [f32]) -> Self {
        Input::Borrowed {
            shape,
            data: InputData::F32(data),
        }
    }

    /// float16 input.
    pub fn f16(shape: Vec<i64>, data: &'a [half::f16]) -> Self {
        Input::Borrowed {
            shape,
            data: InputData::F16(data),
        }
    }

    /// int64 input.
    pub fn i64(shape: Vec<i64>, data: &'a [i64]) -> Self {
        Input::Borrowed {
            shape,
            data: InputData::I64(data),
        }
    }

    /// int32 input.
    pub fn i32(shape: Vec<i64>, data: &'a [i32]) -> Self {
        Input::Borrowed {
            shape,
            data: InputData::I32(data),
        }
    }
}

enum Repr {
    Ort(DynValue),
    Host(HostTensor),
}

/// A graph output: an ONNX Runtime value for a local graph, a host tensor for a remote one.
pub struct Value(Repr);

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Repr::Ort(_) => f.write_str("Value(onnxruntime)"),
            Repr::Host(t) => write!(f, "Value({:?}, {:?})", t.element_type(), t.shape),
        }
    }
}

impl From<HostTensor> for Value {
    fn from(t: HostTensor) -> Self {
        Value(Repr::Host(t))
    }
}

fn ort_output_err(e: ort::Error) -> GraphError {
    GraphError::Output {
        name: "value".into(),
        reason: e.to_string(),
    }
}

impl Value {
    /// The dimensions.
    pub fn shape(&self) -> Vec<i64> {
        match &self.0 {
            Repr::Host(t) => t.shape.clone(),
            Repr::Ort(v) => v
                .dtype()
                .tensor_shape()
                .map(|s| s.to_vec())
                .unwrap_or_default(),
        }
    }

    /// The elements as f32 (float16 widened); an error for integer tensors.
    pub fn to_f32(&self) -> Result<Vec<f32>, GraphError> {
        match &self.0 {
            Repr::Host(t) => match &t.data {
                TensorData::F32(v) => Ok(v.clone()),
                TensorData::F16(v) => Ok(v.iter().map(|x| x.to_f32()).collect()),
                _ => Err(GraphError::Output {
                    name: "value".into(),
                    reason: "is not a float tensor".into(),
                }),
            },
            Repr::Ort(v) => {
                if let Ok((_, data)) = v.try_extract_tensor::<half::f16>() {
                    return Ok(data.iter().map(|x| x.to_f32()).collect());
                }
                let (_, data) = v.try_extract_tensor::<f32>().map_err(ort_output_err)?;
                Ok(data.to_vec())
            }
        }
    }

    /// The value in host memory: moved when it is there already (a remote graph's output),
    /// copied out of ONNX Runtime otherwise.
    pub fn into_host(self) -> Result<HostTensor, GraphError> {
        match self.0 {
            Repr::Host(t) => Ok(t),
            Repr::Ort(v) => {
                let shape = v
                    .dtype()
                    .tensor_shape()
                    .map(|s| s.to_vec())
                    .unwrap_or_default();
                let data = if let Ok((_, d)) = v.try_extract_tensor::<f32>() {
                    TensorData::F32(d.to_vec())
                } else if let Ok((_, d)) = v.try_extract_tensor::<half::f16>() {
                    TensorData::F16(d.to_vec())
                } else if let Ok((_, d)) = v.try_extract_tensor::<i64>() {
                    TensorData::I64(d.to_vec())
                } else {
                    let (_, d) = v.try_extract_tensor::<i32>().map_err(ort_output_err)?;
                    TensorData::I32(d.to_vec())
                };
                Ok(HostTensor { shape, data })
            }
        }
    }

    fn into_ort(self) -> Result<DynValue, GraphError> {
        let err = |e: ort::Error| GraphError::Run(format!("could not build an input: {e}"));
        match self.0 {
            Repr::Ort(v) => Ok(v),
            Repr::Host(t) => {
                let shape = t.shape;
                match t.data {
                    TensorData::F32(d) => Tensor::from_array((shape, d)).map(|t| t.into_dyn()),
                    TensorData::F16(d) => Tensor::from_array((shape, d)).map(|t| t.into_dyn()),
                    TensorData::I64(d) => Tensor::from_array((shape, d)).map(|t| t.into_dyn()),
                    TensorData::I32(d) => Tensor::from_array((shape, d)).map(|t| t.into_dyn()),
                }
                .map_err(err)
            }
        }
    }
}

/// Where a graph (or a model) runs, as the status bar says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A local ONNX Runtime session.
    Local(ExecutionProvider),
    /// A remote OIP server.
    Remote {
        /// The server's name from its metadata (`triton`, `mlserver`…).
        server: String,
        /// `host:port`.
        address: String,
    },
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Local(ep) => ep.fmt(f),
            Placement::Remote { server, address } => write!(f, "{server}@{address}"),
        }
    }
}

impl Placement {
    /// Whether it runs on a server.
    pub fn is_remote(&self) -> bool {
        matches!(self, Placement::Remote { .. })
    }
}

enum Backend {
    Local(Mutex<Session>),
    Remote(RemoteGraph),
}

/// One graph of a model directory, ready to run where [`SessionOptions`] said.
pub struct Graph {
    role: String,
    backend: Backend,
    placement: Placement,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Graph({}, {})", self.role, self.placement)
    }
}

/// Whether the sessions of a model spin while idle ([`super::session::build_session_with`]).
/// SAM 2 runs four graphs per tracked frame and object, so its sessions sleep: on 2 cores the
/// decoder took 29 ms a click instead of 36 and propagation 1.24 s a frame and object instead of
/// 1.39 (`cargo bench --bench sam2`, issue 10). PixelRefer's decoding runs one graph per token
/// and keeps ONNX Runtime's default.
fn spins(manifest: &Manifest) -> bool {
    manifest.kind != super::ModelKind::Sam2
}

/// A graph opened by [`Graph::open`], with the warning of a CUDA fallback if there was one.
pub struct Opened {
    /// The graph.
    pub graph: Graph,
    /// Why it runs elsewhere than asked (CUDA unavailable), never silent.
    pub warning: Option<String>,
}

impl Graph {
    /// Opens graph `role` of the model in `dir`: a local session checked with [`validate_io`],
    /// or, with `options.remote`, the server's model for this exact graph file
    /// ([`super::remote::model_name`]) checked against the manifest from its metadata.
    pub fn open(
        dir: &Path,
        manifest: &Manifest,
        role: &str,
        options: &SessionOptions,
    ) -> Result<Opened, RuntimeError> {
        let spec = manifest.graph(dir, role)?;
        if let Some(endpoint) = &options.remote {
            let name = super::remote::model_name(manifest, dir, role)?;
            let client = RemoteClient::shared(endpoint)?;
            let remote = RemoteGraph::open(client.clone(), name, spec)?;
            return Ok(Opened {
                graph: Graph {
                    role: role.to_string(),
                    placement: client.placement(),
                    backend: Backend::Remote(remote),
                },
                warning: None,
            });
        }
        let file = dir.join(&spec.file);
        let (session, ep, warning) = build_session_with(&file, options, spins(manifest))?;
        validate_io(&session, &file, spec)?;
        Ok(Opened {
            graph: Graph {
                role: role.to_string(),
                placement: Placement::Local(ep),
                backend: Backend::Local(Mutex::new(session)),
            },
            warning,
        })
    }

    /// The manifest role.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Where it runs.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// Runs the graph with named inputs and returns the named outputs in order. With a token,
    /// checks it before and maps a terminated or abandoned run to [`GraphError::Cancelled`].
    pub fn run(
        &self,
        inputs: Vec<(&str, Input<'_>)>,
        outputs: &[&str],
        cancel: Option<&CancelToken>,
    ) -> Result<Vec<Value>, GraphError> {
        let cancelled = || cancel.is_some_and(CancelToken::is_cancelled);
        if cancelled() {
            return Err(GraphError::Cancelled);
        }
        match &self.backend {
            Backend::Remote(remote) => remote
                .run(inputs, outputs, cancel)
                .map(|tensors| tensors.into_iter().map(Value::from).collect()),
            Backend::Local(session) => {
                let result = run_local(session, inputs, outputs, cancel);
                if result.is_err() && cancelled() {
                    return Err(GraphError::Cancelled);
                }
                result
            }
        }
    }
}

fn run_local(
    session: &Mutex<Session>,
    inputs: Vec<(&str, Input<'_>)>,
    outputs: &[&str],
    cancel: Option<&CancelToken>,
) -> Result<Vec<Value>, GraphError> {
    let err = |e: ort::Error| GraphError::Run(e.to_string());
    let mut feed: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
    for (name, input) in inputs {
        let value: SessionInputValue<'_> = match input {
            Input::Borrowed { shape, data } => match data {
                InputData::F32(d) => TensorRef::from_array_view((shape, d)).map_err(err)?.into(),
                InputData::F16(d) => TensorRef::from_array_view((shape, d)).map_err(err)?.into(),
                InputData::I64(d) => TensorRef::from_array_view((shape, d)).map_err(err)?.into(),
                InputData::I32(d) => TensorRef::from_array_view((shape, d)).map_err(err)?.into(),
            },
            Input::Value(v) => v.into_ort()?.into(),
        };
        feed.push((Cow::Owned(name.to_string()), value));
    }
    let run_options = cancel.map(CancelToken::run_options).transpose()?;
    let mut session = session.lock();
    let mut out = match &run_options {
        Some(ro) => session.run_with_options(feed, ro),
        None => session.run(feed),
    }
    .map_err(err)?;
    outputs
        .iter()
        .map(|name| {
            out.remove(name)
                .map(|v| Value(Repr::Ort(v)))
                .ok_or_else(|| GraphError::Output {
                    name: (*name).to_string(),
                    reason: "is missing".into(),
                })
        })
        .collect()
}

/// The spec of an input, by name (for remote type checks).
pub(crate) fn spec_input<'s>(spec: &'s GraphSpec, name: &str) -> Option<&'s super::TensorSpec> {
    spec.inputs.iter().find(|t| t.name == name)
}
