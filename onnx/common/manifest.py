"""Model-directory manifest helpers (DESIGN.md section 4).

A model directory holds `manifest.json`, its ONNX graphs and any side files. The manifest names the
kind and variant, each graph with its input/output names, dtypes and shapes (symbolic dims are
strings), the constants the host needs, the upstream checkpoint, and a sha256 per file.
Nothing in here is specific to one model family.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Dict, Iterable, List

MANIFEST_FORMAT = "pixelrefer-studio-model"

_ONNX_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
    10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16",
}


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _value_info_spec(vi) -> Dict[str, Any]:
    t = vi.type.tensor_type
    dims: List[Any] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(str(d.dim_param))
        else:
            dims.append("?")
    return {"name": vi.name, "dtype": _ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), "shape": dims}


def graph_io_spec(onnx_path: str) -> Dict[str, List[Dict[str, Any]]]:
    """Input/output names, dtypes and shapes of an ONNX file (initializers excluded)."""
    import onnx

    m = onnx.load(onnx_path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return {
        "inputs": [_value_info_spec(v) for v in m.graph.input if v.name not in inits],
        "outputs": [_value_info_spec(v) for v in m.graph.output],
    }


def write_manifest(model_dir: str, manifest: Dict[str, Any], hash_files: Iterable[str] = ()) -> str:
    """Fill `files` with a sha256 for every listed file (relative to model_dir) and write manifest.json
    atomically (write to a temp file, fsync, rename)."""
    files = {}
    for rel in sorted(set(hash_files)):
        files[rel] = sha256_file(os.path.join(model_dir, rel))
    manifest = dict(manifest)
    manifest["files"] = files
    path = os.path.join(model_dir, "manifest.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def dedupe_large_constants(onnx_path: str, min_bytes: int = 1024) -> int:
    """The TorchScript exporter emits one `Constant` node per use of a buffer (e.g. a position
    table used by every layer). Replace large Constant nodes by shared initializers, one per distinct
    content. Returns the number of bytes saved. Graph semantics are unchanged."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(onnx_path)
    g = m.graph
    by_hash: Dict[str, str] = {}
    rename: Dict[str, str] = {}
    keep = []
    saved = 0
    for node in g.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            t = node.attribute[0].t
            arr = numpy_helper.to_array(t)
            if arr.nbytes >= min_bytes:
                key = hashlib.sha256(arr.tobytes() + str(arr.dtype).encode() + str(arr.shape).encode()).hexdigest()
                if key not in by_hash:
                    name = f"const_{len(by_hash)}_{key[:8]}"
                    g.initializer.append(numpy_helper.from_array(arr, name))
                    by_hash[key] = name
                else:
                    saved += arr.nbytes
                rename[node.output[0]] = by_hash[key]
                continue
        keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    for out in g.output:
        assert out.name not in rename
    del g.node[:]
    g.node.extend(keep)
    onnx.save(m, onnx_path)
    return saved
