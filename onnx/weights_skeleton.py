"""Ship a full-size benchmark model without its weights, and give it random weights where it runs.

A `--full-random` export is gigabytes of random numbers that do not compress; a machine that can
only be reached through a small transfer (a lent GPU machine) gets the graphs alone and draws new
weights there. Timing does not depend on the values, only on shapes and types, so the filled model
is a benchmark model like the exported one; its outputs are not the exporter's and are never
compared with anything.

  python onnx/weights_skeleton.py strip MODEL_DIR SKELETON_DIR   # graphs without large weights
  python onnx/weights_skeleton.py fill SKELETON_DIR              # in place: weights back, manifest updated

`strip` keeps every small initializer (shapes, indices, tables under 4096 values) and records, for
each float initializer it drops, its type, shape, mean and standard deviation in `skeleton.json`;
`fill` draws normal values with those moments, writes each graph with its weights beside it as the
export did (one external data file under the same name, or inside the graph), and rewrites the
sha256 of every file in `manifest.json`, since the files changed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common.manifest import sha256_file  # noqa: E402

SMALL = 4096  # initializers with fewer values travel as they are
FLOATS = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16}


def _external_location(model: onnx.ModelProto):
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for kv in t.external_data:
                if kv.key == "location":
                    return kv.value
    return None


def strip(src: str, dst: str) -> None:
    os.makedirs(dst, exist_ok=True)
    graphs = sorted(f for f in os.listdir(src) if f.endswith(".onnx"))
    data_files = set()
    record = {}
    for name in graphs:
        model = onnx.load(os.path.join(src, name), load_external_data=False)
        location = _external_location(model)
        if location:
            data_files.add(location)
        onnx.load_external_data_for_model(model, src)
        kept, dropped = [], []
        for t in model.graph.initializer:
            n = int(np.prod(t.dims)) if len(t.dims) else 1
            if t.data_type in FLOATS and n >= SMALL:
                a = numpy_helper.to_array(t).astype(np.float64)
                dropped.append({"name": t.name, "type": int(t.data_type), "dims": list(t.dims),
                                "mean": float(a.mean()), "std": float(a.std())})
            else:
                kept.append(t)
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        onnx.save_model(model, os.path.join(dst, name))
        record[name] = {"external_data": location, "dropped": dropped}
        print(f"[strip] {name}: {len(dropped)} initializers dropped, {len(kept)} kept", flush=True)
    for f in os.listdir(src):
        p = os.path.join(src, f)
        if os.path.isfile(p) and not f.endswith(".onnx") and f not in data_files:
            shutil.copy2(p, os.path.join(dst, f))
    with open(os.path.join(dst, "skeleton.json"), "w") as fh:
        json.dump(record, fh)


def fill(dir_: str, seed: int = 0) -> None:
    with open(os.path.join(dir_, "skeleton.json")) as fh:
        record = json.load(fh)
    rng = np.random.default_rng(seed)
    for name, info in record.items():
        path = os.path.join(dir_, name)
        model = onnx.load(path)
        for d in info["dropped"]:
            dtype = FLOATS[d["type"]]
            a = rng.standard_normal(d["dims"], dtype=np.float32)
            a = (a * np.float32(d["std"]) + np.float32(d["mean"])).astype(dtype)
            model.graph.initializer.append(numpy_helper.from_array(a, d["name"]))
        location = info["external_data"]
        if location:
            onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=location, size_threshold=1024)
        else:
            onnx.save_model(model, path)
        print(f"[fill] {name}: {len(info['dropped'])} initializers drawn", flush=True)
    manifest_path = os.path.join(dir_, "manifest.json")
    with open(manifest_path) as fh:
        manifest = json.load(fh)
    files = manifest.get("files") or {}
    for f in list(files):
        if os.path.isfile(os.path.join(dir_, f)):
            files[f] = sha256_file(os.path.join(dir_, f))
    with open(manifest_path, "w") as fh:
        json.dump(manifest, fh, indent=2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("strip")
    s.add_argument("model_dir")
    s.add_argument("skeleton_dir")
    f = sub.add_parser("fill")
    f.add_argument("skeleton_dir")
    f.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.cmd == "strip":
        strip(args.model_dir, args.skeleton_dir)
    else:
        fill(args.skeleton_dir, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
