#!/usr/bin/env python3
"""Test server for the KServe v2 / Open Inference Protocol (OIP) gRPC API.

Serves a Triton model repository (REPO/<name>/config.pbtxt + REPO/<name>/1/model.onnx) on
127.0.0.1 with one of two independent OIP implementations, each model an ONNX Runtime CPU
session:

  --engine triton    a real `tritonserver` (from the nvidia-pytriton wheel) with Python-backend
                     models whose inference functions run ONNX Runtime in this process; Triton
                     itself checks shapes/datatypes and does the dynamic batching, as in
                     production (NVIDIA Triton with its onnxruntime backend).
  --engine mlserver  Seldon MLServer with the custom runtime in oip_mlserver_runtime.py, run as a
                     child process (MLServer's generated protos and tritonclient's share the
                     protobuf package `inference` and cannot be imported into one process).

Inputs, outputs, datatypes, dims, reshape and batching come from config.pbtxt parsed with the
official Triton proto (tritonclient.grpc.model_config_pb2), so a config that does not parse makes
the server fail. When every model is ready for inference, exactly one line `READY <grpc_port>`
is printed to stdout; everything else goes to stderr. Runs until SIGTERM/SIGINT (clean stop) or
SIGKILL (kill the whole process group: the script, tritonserver, its stubs, MLServer).

    python oip_server.py --engine triton|mlserver --repo REPO --grpc-port P [--http-port H]
                         [--delay-ms N] [--models NAME ...] [--workdir DIR] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
# Room for the largest tensors (SAM 2 features are 16 MiB and more at full size).
MAX_MESSAGE_BYTES = 2**31 - 1
READY_TIMEOUT_S = 300.0

# Triton config data types served here -> (OIP datatype, numpy dtype name).
DATATYPES = {
    "TYPE_BOOL": ("BOOL", "bool"),
    "TYPE_UINT8": ("UINT8", "uint8"),
    "TYPE_UINT16": ("UINT16", "uint16"),
    "TYPE_UINT32": ("UINT32", "uint32"),
    "TYPE_UINT64": ("UINT64", "uint64"),
    "TYPE_INT8": ("INT8", "int8"),
    "TYPE_INT16": ("INT16", "int16"),
    "TYPE_INT32": ("INT32", "int32"),
    "TYPE_INT64": ("INT64", "int64"),
    "TYPE_FP16": ("FP16", "float16"),
    "TYPE_FP32": ("FP32", "float32"),
    "TYPE_FP64": ("FP64", "float64"),
}
NUMPY_OF = {oip: np_name for oip, np_name in DATATYPES.values()}
# ONNX Runtime's type strings for the same.
ORT_TYPES = {
    "BOOL": "tensor(bool)",
    "UINT8": "tensor(uint8)",
    "UINT16": "tensor(uint16)",
    "UINT32": "tensor(uint32)",
    "UINT64": "tensor(uint64)",
    "INT8": "tensor(int8)",
    "INT16": "tensor(int16)",
    "INT32": "tensor(int32)",
    "INT64": "tensor(int64)",
    "FP16": "tensor(float16)",
    "FP32": "tensor(float)",
    "FP64": "tensor(double)",
}


class ServeError(Exception):
    """A problem with the repository or the server start: reported on stderr, exit code 1."""


def log(msg: str) -> None:
    print(f"[oip_server] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The repository: config.pbtxt -> a JSON-able spec per model (also handed to the MLServer child).


def load_repo(repo: Path, only: list[str] | None, delay_ms: int) -> list[dict]:
    """Parses every REPO/<name>/config.pbtxt (or only the named models) into model specs."""
    # Imported here: the MLServer runtime imports this module and must not load tritonclient.
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    if not repo.is_dir():
        raise ServeError(f"model repository {repo} is not a directory")
    dirs = sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith("."))
    if only:
        names = {p.name for p in dirs}
        missing = [n for n in only if n not in names]
        if missing:
            raise ServeError(f"no such model in {repo}: {', '.join(missing)}")
        dirs = [p for p in dirs if p.name in set(only)]
    specs = []
    for d in dirs:
        cfg_path = d / "config.pbtxt"
        if not cfg_path.is_file():
            raise ServeError(f"{d}: no config.pbtxt")
        cfg = mc.ModelConfig()
        try:
            text_format.Parse(cfg_path.read_text(), cfg)
        except text_format.ParseError as e:
            raise ServeError(f"{cfg_path}: does not parse as a Triton ModelConfig: {e}") from e
        specs.append(spec_from_config(d, cfg, mc, delay_ms))
    if not specs:
        raise ServeError(f"no models in {repo}")
    return specs


def spec_from_config(d: Path, cfg, mc, delay_ms: int) -> dict:
    where = d / "config.pbtxt"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", d.name):
        raise ServeError(f"{d}: model name {d.name!r} is not [A-Za-z0-9_.-]+")
    if cfg.name and cfg.name != d.name:
        raise ServeError(f"{where}: name {cfg.name!r} differs from the directory name {d.name!r}")
    if cfg.backend != "onnxruntime" and cfg.platform != "onnxruntime_onnx":
        raise ServeError(
            f"{where}: backend {cfg.backend!r} / platform {cfg.platform!r}: only onnxruntime models "
            "are served here"
        )
    onnx_path = d / "1" / "model.onnx"
    if not onnx_path.is_file():
        raise ServeError(f"{d}: no 1/model.onnx")
    if cfg.max_batch_size < 0:
        raise ServeError(f"{where}: max_batch_size {cfg.max_batch_size} < 0")

    def tensors(items, kind):
        out = []
        seen = set()
        for t in items:
            dt = mc.DataType.Name(t.data_type)
            if dt not in DATATYPES:
                raise ServeError(f"{where}: {kind} {t.name!r}: data type {dt} is not served here")
            if not t.name or t.name in seen:
                raise ServeError(f"{where}: {kind} name {t.name!r} empty or repeated")
            seen.add(t.name)
            dims = [int(x) for x in t.dims]
            if not dims:
                # As Triton: a tensor must have dims (a batch-only tensor is dims [1] + reshape []).
                raise ServeError(f"{where}: {kind} {t.name!r} must specify 'dims'")
            if any(x < -1 or x == 0 for x in dims):
                raise ServeError(f"{where}: {kind} {t.name!r}: bad dims {dims}")
            reshape = [int(x) for x in t.reshape.shape] if t.HasField("reshape") else None
            if reshape is not None and any(x < -1 for x in reshape):
                raise ServeError(f"{where}: {kind} {t.name!r}: bad reshape {reshape}")
            out.append({"name": t.name, "datatype": DATATYPES[dt][0], "dims": dims, "reshape": reshape})
        if not out:
            raise ServeError(f"{where}: no {kind}s")
        return out

    batching = None
    if cfg.HasField("dynamic_batching"):
        db = cfg.dynamic_batching
        batching = {
            "max_queue_delay_microseconds": int(db.max_queue_delay_microseconds),
            "preferred_batch_size": [int(x) for x in db.preferred_batch_size],
        }
        if cfg.max_batch_size == 0:
            raise ServeError(f"{where}: dynamic_batching needs max_batch_size > 0")
    return {
        "name": d.name,
        "onnx": str(onnx_path.resolve()),
        "max_batch_size": int(cfg.max_batch_size),
        "dynamic_batching": batching,
        "inputs": tensors(cfg.input, "input"),
        "outputs": tensors(cfg.output, "output"),
        "delay_ms": int(delay_ms),
    }


# ---------------------------------------------------------------------------------------------
# ONNX Runtime, shared by both engines (no tritonclient / pytriton / mlserver imports here).


class OrtRunner:
    """One ONNX Runtime CPU session for one model spec."""

    def __init__(self, spec: dict):
        import numpy as np
        import onnxruntime as ort

        self.np = np
        self.spec = spec
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(spec["onnx"], sess_options=so, providers=["CPUExecutionProvider"])
        self.batch_dims = 1 if spec["max_batch_size"] > 0 else 0
        # As Triton's onnxruntime backend does at load time: names and types must match.
        graph_in = {i.name: i for i in self.session.get_inputs()}
        graph_out = {o.name: o for o in self.session.get_outputs()}
        for kind, tensors, graph in (("input", spec["inputs"], graph_in), ("output", spec["outputs"], graph_out)):
            for t in tensors:
                g = graph.get(t["name"])
                if g is None:
                    raise ServeError(f"{spec['name']}: {kind} {t['name']!r} is not in the ONNX graph ({sorted(graph)})")
                if g.type != ORT_TYPES[t["datatype"]]:
                    raise ServeError(
                        f"{spec['name']}: {kind} {t['name']!r}: config {t['datatype']} but the graph has {g.type}"
                    )
        missing = sorted(set(graph_in) - {t["name"] for t in spec["inputs"]})
        if missing:
            raise ServeError(f"{spec['name']}: graph inputs missing from the config: {missing}")
        self.output_names = [t["name"] for t in spec["outputs"]]

    def run(self, arrays: dict, wanted: list[str] | None = None) -> dict:
        """Runs the graph on arrays shaped as the config's dims (with the batch dimension when
        max_batch_size > 0) and returns outputs shaped likewise."""
        np = self.np
        nb = self.batch_dims
        feeds = {}
        for t in self.spec["inputs"]:
            a = np.ascontiguousarray(arrays[t["name"]], dtype=NUMPY_OF[t["datatype"]])
            if t["reshape"] is not None:
                a = a.reshape(tuple(a.shape[:nb]) + tuple(t["reshape"]))
            feeds[t["name"]] = a
        names = wanted or self.output_names
        results = self.session.run(names, feeds)
        by_name = {t["name"]: t for t in self.spec["outputs"]}
        out = {}
        for name, r in zip(names, results):
            t = by_name[name]
            r = np.ascontiguousarray(r, dtype=NUMPY_OF[t["datatype"]])
            if t["reshape"] is not None:
                r = r.reshape(tuple(r.shape[:nb]) + tuple(t["dims"]))
            out[name] = r
        return out


def check_request(spec: dict, inputs: list[tuple[str, str, list[int]]], outputs: list[str]) -> None:
    """Rejects what Triton rejects: missing/unknown inputs, wrong datatypes, shapes that do not
    match the config (batch rule included), unknown requested outputs. Raises ValueError."""
    name = spec["name"]
    want = {t["name"]: t for t in spec["inputs"]}
    got = {}
    for n, dt, shape in inputs:
        if n in got:
            raise ValueError(f"input '{n}' given twice for model '{name}'")
        got[n] = (dt, list(shape))
    unknown = sorted(set(got) - set(want))
    if unknown:
        raise ValueError(f"unexpected inference input '{unknown[0]}' for model '{name}'")
    missing = sorted(set(want) - set(got))
    if missing:
        raise ValueError(
            f"expected {len(want)} inputs but got {len(got)} inputs for model '{name}'. "
            f"Got input(s) {sorted(got)}, but missing required input(s) {missing}"
        )
    mbs = spec["max_batch_size"]
    batch = None
    for n, (dt, shape) in got.items():
        t = want[n]
        if dt != t["datatype"]:
            raise ValueError(
                f"inference input '{n}' data-type is '{dt}', but model '{name}' expects '{t['datatype']}'"
            )
        dims = list(t["dims"])
        if mbs > 0:
            if not shape:
                raise ValueError(f"inference input '{n}' for model '{name}' has no batch dimension")
            b = shape[0]
            if b < 1 or b > mbs:
                raise ValueError(
                    f"inference request batch-size must be <= {mbs} for '{name}' (input '{n}' has {b})"
                )
            if batch is None:
                batch = b
            elif b != batch:
                raise ValueError(f"input '{n}' batch size {b} does not match {batch} of other inputs")
            rest = shape[1:]
        else:
            rest = shape
        if len(rest) != len(dims) or any(d != -1 and d != s for d, s in zip(dims, rest)):
            full = ([-1] + dims) if mbs > 0 else dims
            raise ValueError(
                f"unexpected shape for input '{n}' for model '{name}'. "
                f"Expected {full}, got {list(shape)}"
            )
        if any(s < 0 for s in shape):
            raise ValueError(f"input '{n}' for model '{name}' has a negative dimension: {shape}")
    known = {t["name"] for t in spec["outputs"]}
    for o in outputs:
        if o not in known:
            raise ValueError(f"unexpected inference output '{o}' for model '{name}'")


# ---------------------------------------------------------------------------------------------
# Readiness, process handling.


def check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError as e:
            raise ServeError(f"port {port} on {HOST} is not free: {e}") from e


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_ready(grpc_port: int, names: list[str], alive, timeout_s: float) -> None:
    """Polls ServerReady and ModelReady(name) over gRPC until all are ready."""
    import tritonclient.grpc as grpcclient

    deadline = time.monotonic() + timeout_s
    client = grpcclient.InferenceServerClient(f"{HOST}:{grpc_port}")
    try:
        while True:
            if not alive():
                raise ServeError("the server exited before it was ready")
            try:
                if client.is_server_ready(client_timeout=2) and all(
                    client.is_model_ready(n, client_timeout=2) for n in names
                ):
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.monotonic() > deadline:
                raise ServeError(f"not ready after {timeout_s:.0f} s")
            time.sleep(0.1)
    finally:
        client.close()


class Stop:
    """SIGTERM/SIGINT/SIGHUP turn into a flag (and an exception while starting); so does the
    death of the process that started this one (a test binary that never drops its server)."""

    def __init__(self):
        self.event = threading.Event()
        self.starting = True
        self.parent = os.getppid()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._handle)

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent

    def wait(self, timeout: float) -> bool:
        """True when it is time to stop."""
        if self.event.wait(timeout):
            return True
        if not self.parent_alive():
            log("the parent process exited: stopping")
            return True
        return False

    def _handle(self, signum, _frame):
        self.event.set()
        if self.starting:
            raise KeyboardInterrupt(f"signal {signum}")


def set_pdeathsig(sig=signal.SIGKILL):
    """preexec_fn: the child gets `sig` when this process dies (Linux)."""

    def _fn():
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(sig))  # PR_SET_PDEATHSIG

    return _fn


def start_reaper(workdir: Path | None) -> None:
    """Starts a tiny watcher outside this process group (so a SIGKILL of the group spares it)
    that, once no process of the group is left, removes what a killed server cannot: the
    /dev/shm segments its processes had mapped (pytriton's tensor store and Triton's Python
    backend regions, some MB each) and the scratch directory (given when it is ours to remove).
    After a clean stop there is nothing left for it to do, and it exits."""
    cmd = [sys.executable, "-I", os.path.abspath(__file__), "--reap-group", str(os.getpgrp())]
    if workdir is not None:
        cmd += ["--reap-dir", str(workdir)]
    subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)


def reap(pgid: int, directory: str | None) -> int:
    shm = set()
    while True:
        members = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if int(fields[2]) != pgid or fields[0] == "Z":
                    continue
                members += 1
                for line in Path(f"/proc/{entry}/maps").read_text().splitlines():
                    i = line.find("/dev/shm/")
                    if i >= 0:
                        shm.add(line[i + len("/dev/shm/") :].removesuffix(" (deleted)"))
            except (OSError, ValueError, IndexError):
                continue
        if members == 0:
            break
        time.sleep(0.5)
    for name in shm:
        # Only what pytriton (multiprocessing's psm_*) and Triton's Python backend (pytrtion*) make.
        if "/" not in name and name.startswith(("psm_", "pytrtion")):
            try:
                os.unlink(f"/dev/shm/{name}")
            except OSError:
                pass
    if directory:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


# ---------------------------------------------------------------------------------------------
# Engine: Triton (pytriton).


def serve_triton(specs: list[dict], args, workdir: Path, ready_out, stop: Stop) -> int:
    import numpy as np
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonLifecyclePolicy, TritonSecurityConfig
    from pytriton.utils.workspace import Workspace

    runners = {s["name"]: OrtRunner(s) for s in specs}
    use_own_libpython()
    patch_pytriton_zero_size()
    workspace = workdir / "pytriton"
    for s in specs:
        sock = workspace / f"{s['name']}_0_0-server.sock"
        if len(str(sock)) > 100:
            raise ServeError(f"workspace path too long for a unix socket: {sock} (use a shorter --workdir)")
    config = TritonConfig(
        grpc_address=HOST,
        grpc_port=args.grpc_port,
        allow_http=args.http_port is not None,
        http_address=HOST,
        http_port=args.http_port,
        allow_metrics=False,
        allow_gpu_metrics=False,
        allow_cpu_metrics=False,
        allow_sagemaker=False,
        allow_vertex_ai=False,
        exit_on_error=True,
        strict_readiness=True,
        exit_timeout_secs=5,
        log_verbose=1 if args.verbose else 0,
    )
    # Stock tritonserver restricts no API; pytriton by default hides model-repository,
    # statistics, ... behind a token. Open them, like production Triton.
    security = TritonSecurityConfig(restricted_endpoints=[])
    # Models generated into the workspace's model store before tritonserver starts, which loads
    # them all (--load-model=*): RepositoryIndex then lists them, as it does in production.
    policy = TritonLifecyclePolicy(launch_triton_on_startup=True, local_model_store=True)
    triton = Triton(config=config, workspace=Workspace(workspace), triton_lifecycle_policy=policy,
                    security_config=security)
    try:
        for s in specs:
            nb = s["max_batch_size"]
            def tensor(t):
                return Tensor(name=t["name"], dtype=np.dtype(NUMPY_OF[t["datatype"]]).type, shape=tuple(t["dims"]))

            inputs = [tensor(t) for t in s["inputs"]]
            outputs = [tensor(t) for t in s["outputs"]]
            if nb > 0:
                batcher = None
                if s["dynamic_batching"] is not None:
                    batcher = DynamicBatcher(
                        max_queue_delay_microseconds=s["dynamic_batching"]["max_queue_delay_microseconds"],
                        preferred_batch_size=s["dynamic_batching"]["preferred_batch_size"] or None,
                    )
                mconf = ModelConfig(batching=True, max_batch_size=nb, batcher=batcher)
            else:
                mconf = ModelConfig(batching=False, max_batch_size=0)
            triton.bind(
                model_name=s["name"],
                infer_func=make_triton_infer(s, runners[s["name"]]),
                inputs=inputs,
                outputs=outputs,
                model_version=1,
                config=mconf,
                strict=True,
            )
        patch_model_store(workspace / "model-store")
        try:
            triton.run()
        except Exception as e:  # noqa: BLE001
            logs = triton._triton_server.logs() if getattr(triton, "_triton_server", None) else ""
            raise ServeError(f"tritonserver did not start: {e}\n--- tritonserver log ---\n{logs}") from e
        wait_ready(args.grpc_port, [s["name"] for s in specs],
                   lambda: triton.is_alive() and stop.parent_alive(), READY_TIMEOUT_S)
        stop.starting = False
        ready_out.write(f"READY {args.grpc_port}\n")
        ready_out.flush()
        while not stop.wait(0.5):
            if not triton.is_alive():
                logs = triton._triton_server.logs() if getattr(triton, "_triton_server", None) else ""
                log(f"tritonserver or a model proxy died\n--- tritonserver log ---\n{logs}")
                return 1
        return 0
    finally:
        stop.starting = False
        triton.stop()


def use_own_libpython() -> None:
    """The Python-backend stub embeds libpython3.X.so, found through the dynamic loader, but runs
    this interpreter's standard library: when this Python is not the system's (pyenv, say) the
    system libpython would be a different patch release (e.g. 3.11.2 against a 3.11.7 stdlib,
    which fails on import). Put this interpreter's own shared libpython first."""
    import sysconfig

    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if not libdir or not soname or libdir in ("/usr/lib", "/lib") or libdir.startswith(("/usr/lib/", "/lib/")):
        return
    if not (Path(libdir) / soname).is_file():
        log(f"warning: {sys.executable} has no shared {soname} in {libdir}; the Triton Python stub "
            "will use the system's, which must be the same Python release")
        return
    old = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = libdir + (os.pathsep + old if old else "")


_COPY_LINE = 'shm.buf[offset + total_size : offset + total_size + frame.nbytes] = frame.cast("B")'


def patch_pytriton_zero_size() -> None:
    """pytriton 0.7.0 moves tensors between the Triton stub and this process through shared
    memory, and its copy fails on zero-size arrays (memoryview.cast refuses a 0 in the shape), e.g.
    an empty KV cache [1, 2, 0, 16]; stock Triton accepts those. Skip the copy of empty frames in
    this process (and, with patch_model_store, in the stub)."""
    import struct

    import pytriton.proxy.data as data

    src = Path(data.__file__).read_text()
    if _COPY_LINE not in src or not hasattr(data.TensorStore, "_copy_frames"):
        raise ServeError("pytriton's proxy/data.py changed: the zero-size tensor patch does not apply")

    def _copy_frames(self, frames, shm, offset):
        total_size = struct.calcsize("<I")
        for frame in frames:
            if isinstance(frame, bytes):
                frame = memoryview(frame)
            assert frame.contiguous, "Only contiguous arrays are supported"
            struct.pack_into("<I", shm.buf, offset + total_size, frame.nbytes)
            total_size += struct.calcsize("<I")
            if frame.nbytes:
                shm.buf[offset + total_size : offset + total_size + frame.nbytes] = frame.cast("B")
            total_size += frame.nbytes
        struct.pack_into("<I", shm.buf, offset, total_size)
        return total_size

    data.TensorStore._copy_frames = _copy_frames


def patch_model_store(store: Path) -> None:
    """The same fix in the proxy sources pytriton wrote for the stub (REPO/<model>/1/data.py)."""
    for f in sorted(store.glob("*/*/data.py")):
        src = f.read_text()
        if _COPY_LINE not in src:
            raise ServeError(f"{f}: the zero-size tensor patch does not apply")
        f.write_text(src.replace(_COPY_LINE, "if frame.nbytes: " + _COPY_LINE))


def make_triton_infer(spec: dict, runner: OrtRunner):
    import numpy as np

    delay = spec["delay_ms"] / 1000.0
    batched = spec["max_batch_size"] > 0

    def infer(requests):
        if delay:
            time.sleep(delay)
        reqs = [{name: np.asarray(req[name]) for name in req} for req in requests]
        if batched and len(reqs) > 1:
            # Triton's dynamic batcher only groups requests whose shapes agree (beyond the batch).
            shapes = {tuple((n, a.shape[1:]) for n, a in sorted(r.items())) for r in reqs}
            if len(shapes) == 1:
                sizes = [next(iter(r.values())).shape[0] for r in reqs]
                joint = {n: np.concatenate([r[n] for r in reqs]) for n in reqs[0]}
                out = runner.run(joint)
                results, start = [], 0
                for b in sizes:
                    results.append({n: a[start : start + b] for n, a in out.items()})
                    start += b
                return results
        return [runner.run(r) for r in reqs]

    return infer


# ---------------------------------------------------------------------------------------------
# Engine: MLServer (child process).


# grpcio servers set SO_REUSEPORT by default, so a second server could bind a port already in
# use and share it silently; MLServer offers no setting for it (tritonserver leaves it off).
MLSERVER_MAIN = """
import sys
import grpc.aio

_server = grpc.aio.server
def _no_reuseport(*args, options=None, **kwargs):
    return _server(*args, options=list(options or []) + [("grpc.so_reuseport", 0)], **kwargs)
grpc.aio.server = _no_reuseport

from mlserver.cli import main
sys.argv[0] = "mlserver"
sys.exit(main())
"""


def serve_mlserver(specs: list[dict], args, workdir: Path, ready_out, stop: Stop) -> int:
    root = workdir / "mlserver"
    models_dir = root / "models"
    models_dir.mkdir(parents=True)
    http_port = args.http_port if args.http_port is not None else free_port()
    settings = {
        "debug": False,
        "host": HOST,
        "grpc_port": args.grpc_port,
        "http_port": http_port,
        "grpc_max_message_length": MAX_MESSAGE_BYTES,
        "parallel_workers": 0,
        "metrics_endpoint": None,
        "metrics_dir": str(root / "metrics"),
        "model_repository_root": str(models_dir),
        "load_models_at_startup": True,
        "server_name": "mlserver",
        "gzip_enabled": False,
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    for s in specs:
        md = models_dir / s["name"]
        md.mkdir()
        nb = s["max_batch_size"]

        def meta(t, nb=nb):
            return {
                "name": t["name"],
                "datatype": t["datatype"],
                "shape": ([-1] + t["dims"]) if nb > 0 else t["dims"],
            }

        model_settings = {
            "name": s["name"],
            "implementation": "oip_mlserver_runtime.OnnxRuntimeModel",
            "platform": "onnxruntime_onnx",
            "versions": ["1"],
            "inputs": [meta(t) for t in s["inputs"]],
            "outputs": [meta(t) for t in s["outputs"]],
            # Adaptive batching off: every request is run on its own.
            "max_batch_size": 0,
            "parallel_workers": 0,
            "parameters": {"version": "1", "uri": s["onnx"], "extra": {"oip_spec": s}},
        }
        (md / "model-settings.json").write_text(json.dumps(model_settings, indent=2))

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in tests/python
    cmd = [sys.executable, "-c", MLSERVER_MAIN, "start", str(root)]
    # The child's stdout joins our stderr: stdout carries only the READY line.
    child = subprocess.Popen(
        cmd, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(),
        preexec_fn=set_pdeathsig(signal.SIGKILL),
    )
    try:
        wait_ready(args.grpc_port, [s["name"] for s in specs],
                   lambda: child.poll() is None and stop.parent_alive(), READY_TIMEOUT_S)
        stop.starting = False
        ready_out.write(f"READY {args.grpc_port}\n")
        ready_out.flush()
        while not stop.wait(0.5):
            rc = child.poll()
            if rc is not None:
                log(f"mlserver exited with status {rc}")
                return 1
        return 0
    finally:
        stop.starting = False
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=["triton", "mlserver"], required="--reap-group" not in sys.argv)
    ap.add_argument("--repo", type=Path, required="--reap-group" not in sys.argv)
    ap.add_argument("--grpc-port", type=int, required="--reap-group" not in sys.argv)
    ap.add_argument("--http-port", type=int, default=None,
                    help="HTTP/REST port (triton: HTTP is off without it; mlserver: a free port)")
    ap.add_argument("--delay-ms", type=int, default=0, help="sleep this long in every inference")
    ap.add_argument("--models", nargs="+", default=None, help="serve only these models")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="scratch directory (created; default: a temporary one, removed at exit)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--reap-group", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--reap-dir", default=None, help=argparse.SUPPRESS)
    if "--reap-group" in sys.argv:
        a, _ = ap.parse_known_args()
        return reap(a.reap_group, a.reap_dir)
    args = ap.parse_args()

    # stdout is for the READY line alone: keep a private handle, point fd 1 at stderr so that
    # libraries and child processes print there.
    ready_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import logging

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")

    stop = Stop()
    own_workdir = args.workdir is None
    if own_workdir:
        workdir = Path(tempfile.mkdtemp(prefix="oip", dir="/tmp" if os.path.isdir("/tmp") else None))
    else:
        workdir = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        specs = load_repo(args.repo.resolve(), args.models, args.delay_ms)
        for port in (args.grpc_port, args.http_port):
            if port is not None:
                check_port_free(port)
        start_reaper(workdir if own_workdir else None)
        if args.engine == "triton":
            return serve_triton(specs, args, workdir, ready_out, stop)
        return serve_mlserver(specs, args, workdir, ready_out, stop)
    except ServeError as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        log("stopped before it was ready")
        return 1
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
