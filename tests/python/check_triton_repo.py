#!/usr/bin/env python3
"""Checks a Triton model repository of ONNX models against Triton's rules and the ONNX files:

    python check_triton_repo.py REPO

For every REPO/<name>/: config.pbtxt parses as Triton's ModelConfig (the official proto,
tritonclient.grpc.model_config_pb2), its name is the directory's, the backend is onnxruntime,
1/model.onnx exists, and the config's inputs and outputs match the graph's: the same names,
data types, and dims (symbolic ONNX dimensions are -1). With max_batch_size > 0 every tensor's
first ONNX dimension is the (dynamic, shared) batch dimension and the config's dims leave it
out; with max_batch_size 0 the dims are the full shape. A `reshape` gives the shape the model
sees instead of `dims`. Prints every problem found; exit status 0 when there is none, else 1.
Needs the serve venv (tritonclient, protobuf, onnx).
"""

from __future__ import annotations

import re
import sys
from math import prod
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

import onnx

# ONNX TensorProto element type -> Triton config data type.
ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: "TYPE_FP32",
    onnx.TensorProto.FLOAT16: "TYPE_FP16",
    onnx.TensorProto.DOUBLE: "TYPE_FP64",
    onnx.TensorProto.BFLOAT16: "TYPE_BF16",
    onnx.TensorProto.INT8: "TYPE_INT8",
    onnx.TensorProto.INT16: "TYPE_INT16",
    onnx.TensorProto.INT32: "TYPE_INT32",
    onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.UINT8: "TYPE_UINT8",
    onnx.TensorProto.UINT16: "TYPE_UINT16",
    onnx.TensorProto.UINT32: "TYPE_UINT32",
    onnx.TensorProto.UINT64: "TYPE_UINT64",
    onnx.TensorProto.BOOL: "TYPE_BOOL",
    onnx.TensorProto.STRING: "TYPE_STRING",
}


def onnx_tensors(values, initializers) -> dict:
    """name -> (triton data type, [dims with symbolic/unknown as str or None])."""
    out = {}
    for v in values:
        if v.name in initializers:
            continue
        tt = v.type.tensor_type
        dims = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                dims.append(d.dim_param or None)  # symbolic (named) or unknown
        out[v.name] = (ONNX_TO_TRITON.get(tt.elem_type, f"onnx elem_type {tt.elem_type}"), dims)
    return out


def as_config_dims(dims) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in dims]


def check_model(d: Path) -> list[str]:
    problems = []

    def bad(msg):
        problems.append(f"{d.name}: {msg}")

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", d.name):
        bad("directory name is not [A-Za-z0-9_.-]+")
    cfg_path = d / "config.pbtxt"
    if not cfg_path.is_file():
        bad("no config.pbtxt")
        return problems
    cfg = mc.ModelConfig()
    try:
        text_format.Parse(cfg_path.read_text(), cfg)
    except text_format.ParseError as e:
        bad(f"config.pbtxt does not parse as a Triton ModelConfig: {e}")
        return problems
    if cfg.name != d.name:
        bad(f"config name {cfg.name!r} is not the directory name {d.name!r}")
    if cfg.backend != "onnxruntime" and cfg.platform != "onnxruntime_onnx":
        bad(f"backend {cfg.backend!r} / platform {cfg.platform!r}: expected backend \"onnxruntime\"")
    mbs = cfg.max_batch_size
    if mbs < 0:
        bad(f"max_batch_size {mbs} < 0")
    if cfg.HasField("dynamic_batching") and mbs <= 0:
        bad("dynamic_batching needs max_batch_size > 0")
    if not cfg.input:
        bad("no inputs in config")
    if not cfg.output:
        bad("no outputs in config")
    onnx_path = d / "1" / "model.onnx"
    if not onnx_path.is_file():
        bad("no 1/model.onnx")
        return problems
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # noqa: BLE001
        bad(f"1/model.onnx does not load: {e}")
        return problems
    inits = {i.name for i in model.graph.initializer}
    graph = {
        "input": onnx_tensors(model.graph.input, inits),
        "output": onnx_tensors(model.graph.output, inits),
    }
    batch_symbols = set()
    for kind, items in (("input", cfg.input), ("output", cfg.output)):
        g = graph[kind]
        seen = set()
        for t in items:
            where = f"{kind} {t.name!r}"
            if t.name in seen:
                bad(f"{where} listed twice")
                continue
            seen.add(t.name)
            if t.name not in g:
                bad(f"{where} is not a graph {kind} (graph {kind}s: {sorted(g)})")
                continue
            gtype, gdims = g[t.name]
            ctype = mc.DataType.Name(t.data_type)
            if ctype != gtype:
                bad(f"{where}: data_type {ctype}, graph has {gtype}")
            dims = [int(x) for x in t.dims]
            if not dims:
                bad(f"{where}: empty dims (Triton requires dims; a batch-only tensor is dims [1] "
                    "with reshape { shape: [ ] })")
            if any(x == 0 or x < -1 for x in dims):
                bad(f"{where}: invalid dims {dims}")
            model_dims = [int(x) for x in t.reshape.shape] if t.HasField("reshape") else dims
            if t.HasField("reshape") and -1 not in dims + model_dims and prod(dims) != prod(model_dims):
                bad(f"{where}: reshape {model_dims} has not the element count of dims {dims}")
            if mbs > 0:
                if not gdims:
                    bad(f"{where}: max_batch_size {mbs} but the graph tensor is a scalar")
                    continue
                if isinstance(gdims[0], int):
                    bad(f"{where}: max_batch_size {mbs} but the graph's first dimension is fixed "
                        f"({gdims[0]}), not a batch dimension")
                else:
                    batch_symbols.add(gdims[0])
                rest = gdims[1:]
            else:
                rest = gdims
            want = as_config_dims(rest)
            if model_dims != want:
                what = "reshape" if t.HasField("reshape") else "dims"
                full = ["batch"] + want if mbs > 0 else want
                hint = " (a batch-only tensor is dims [1] with reshape { shape: [ ] })" if mbs > 0 and not want else ""
                bad(f"{where}: {what} {model_dims} do not match the graph's shape {gdims} (expected {what} {want}"
                    f"{' after the batch dimension' if mbs > 0 else ''}; full {full}){hint}")
        missing = sorted(set(g) - seen)
        if missing:
            bad(f"graph {kind}s missing from config: {missing}")
    if len(batch_symbols) > 1:
        bad(f"max_batch_size {mbs} but the tensors' first dimensions differ: {sorted(map(str, batch_symbols))} "
            "(one batch dimension must be shared by every input and output)")
    return problems


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    repo = Path(sys.argv[1])
    if not repo.is_dir():
        print(f"{repo}: not a directory")
        return 1
    dirs = sorted(p for p in repo.iterdir() if not p.name.startswith("."))
    problems = []
    for p in dirs:
        if not p.is_dir():
            problems.append(f"{p.name}: not a model directory")
            continue
        problems += check_model(p)
    if not dirs:
        problems.append(f"{repo}: no models")
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) in {repo}")
        return 1
    print(f"ok: {len(dirs)} model(s) in {repo}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
