#!/usr/bin/env python3
"""Multiply-accumulates of one tracked frame of a SAM 2-family model directory (SAM 2, EdgeTAM),
counted from the tensor shapes ONNX Runtime records for every node while it runs each graph once
with optimisations off (so the exported operators are counted, not ORT's fusions):

  image_encoder once, prompt_decoder / memory_encoder / memory_attention once for OBJECTS objects
  with a full memory bank (num_maskmem memories, max_obj_ptrs_in_encoder pointers).

With --frames N it counts a whole clip instead, as benches/sam2.rs tracks it: OBJECTS objects
prompted on frame 0 and tracked forward, frames 1 .. N-1 averaged. Frame t attends to the prompted
frame and the earlier tracked frames the official selection keeps (the bank fills up over the
first num_maskmem - 1 frames, the pointers over the first max_obj_ptrs_in_encoder - 1), and
memory attention runs in calls of at most BATCH objects (--batch; default all in one call), each
call with its own first self-attention, as the tracker's batch budget splits them.

Counted: MatMul, Gemm, Conv, ConvTranspose and com.microsoft.MultiHeadAttention (q k^T and the
weighted values); element-wise work, normalisations and activations are not. With two
directories it prints the ratio B / A: what one tracked frame per object would cost if both ran
at the same arithmetic rate.

  python onnx/count_macs.py DIR_A [DIR_B] [--objects 2] [--frames N [--batch K | --batch-b K]]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np
import onnx

TRACKING_GRAPHS = ("image_encoder", "memory_attention", "prompt_decoder", "memory_encoder")
_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32}


def node_macs(op: str, inputs: list, outputs: list) -> int:
    """MACs of one node from its input and output shapes (0 for operators not counted)."""
    if op in ("MatMul", "FusedMatMul", "Gemm"):
        return int(np.prod(outputs[0], dtype=np.int64)) * int(inputs[0][-1])
    if op == "Conv":  # every output reads Cin/group * kernel inputs
        return int(np.prod(outputs[0], dtype=np.int64)) * int(np.prod(inputs[1][1:], dtype=np.int64))
    if op == "ConvTranspose":  # every input scatters into Cout/group * kernel outputs
        return int(np.prod(inputs[0], dtype=np.int64)) * int(np.prod(inputs[1][1:], dtype=np.int64))
    if op == "MultiHeadAttention":  # q [B,Lq,h*d], k [B,Lk,h*d], v [B,Lk,h*dv]
        q, k, v = inputs[0], inputs[1], inputs[2]
        return int(q[0]) * int(q[1]) * int(k[1]) * (int(q[2]) + int(v[2]))
    return 0


def _shape(spec: dict, dims: dict) -> tuple:
    out = []
    for d in spec["shape"]:
        if isinstance(d, int):
            out.append(d)
        elif d in dims:
            out.append(dims[d])
        else:
            raise ValueError(f"input {spec['name']}: no size chosen for dimension {d!r}")
    return tuple(out)


def tracking_feeds(manifest: dict, objects: int, bank: tuple[int, int] | None = None) -> dict:
    """Inputs of the four graphs for one tracked frame: random floats, zero integers (indices
    and labels stay in range), the symbolic sizes of a memory bank of `bank` = (memories,
    pointers), a full one by default."""
    c = manifest["constants"]
    spatial, pointers = bank or (int(c["num_maskmem"]), int(c["max_obj_ptrs_in_encoder"]))
    dims = {"batch": 1, "image_batch": 1, "B": objects, "S": spatial, "P": pointers, "N": 1}
    rng = np.random.default_rng(0)
    feeds = {}
    for name in TRACKING_GRAPHS:
        g = {}
        for spec in manifest["graphs"][name]["inputs"]:
            shp, dt = _shape(spec, dims), _DTYPES[spec["dtype"]]
            g[spec["name"]] = (rng.standard_normal(shp).astype(dt) if np.issubdtype(dt, np.floating)
                               else np.zeros(shp, dt))
        feeds[name] = g
    return feeds


def graph_macs(path: str, feeds: dict) -> tuple[int, dict]:
    """(total, per operator type) MACs of one run of the graph at `path` on `feeds`."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "macs")
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        sess.run(None, feeds)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    # ONNX Runtime leaves out the shapes of inputs it pre-packed (ConvTranspose's weights): those
    # are initializers, whose shapes the model file has
    model = onnx.load(path, load_external_data=False)
    init_dims = {t.name: list(t.dims) for t in model.graph.initializer}
    node_inputs = {n.name: list(n.input) for n in model.graph.node}
    total, by_op = 0, {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        args = e["args"]
        recorded = [next(iter(x.values())) for x in args.get("input_type_shape", [])]
        names = node_inputs.get(e["name"][: -len("_kernel_time")], [])
        inputs = recorded + [init_dims.get(n, []) for n in names[len(recorded):]]
        outputs = [next(iter(x.values())) for x in args.get("output_type_shape", [])]
        try:
            m = node_macs(args["op_name"], inputs, outputs)
        except (IndexError, TypeError) as err:
            raise ValueError(f"{path}: node {e['name']} ({args['op_name']}) has no recorded shapes") from err
        total += m
        by_op[args["op_name"]] = by_op.get(args["op_name"], 0) + m
    return total, by_op


def tracked_frame_macs(model_dir: str, objects: int) -> dict:
    """MACs per graph of one tracked frame of `objects` objects."""
    with open(os.path.join(model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    feeds = tracking_feeds(manifest, objects)
    return {name: graph_macs(os.path.join(model_dir, manifest["graphs"][name]["file"]), feeds[name])[0]
            for name in TRACKING_GRAPHS}


def bank_size(constants: dict, t: int, frames: int) -> tuple[int, int]:
    """(memories, pointers) frame `t` of a clip of `frames` frames attends to when one prompt on
    frame 0 is tracked forward: the prompted frame plus the tracked frames of the official
    selection (SAM2Base._prepare_memory_conditioned_features, as src/segment/video.rs
    memory_bank), given the memory stride and the pointer window."""
    n_mem = int(constants["num_maskmem"])
    r = max(int(constants.get("memory_temporal_stride_for_eval", 1)), 1)
    prev = []
    for t_pos in range(1, n_mem):
        t_rel = n_mem - t_pos
        prev.append(t - 1 if t_rel == 1 else ((t - 2) // r) * r - (t_rel - 2) * r)
    memories = 1 + sum(1 for p in prev if 1 <= p < t)
    if not constants.get("use_obj_ptrs_in_encoder", True):
        return memories, 0
    window = min(frames, int(constants["max_obj_ptrs_in_encoder"]))
    return memories, 1 + sum(1 for d in range(1, window) if t - d >= 1)


def clip_macs(model_dir: str, objects: int, frames: int, batch: int | None = None) -> dict:
    """MACs per graph of tracking `objects` objects from frame 0 through frames 1 .. frames-1,
    memory attention in calls of at most `batch` objects (all in one call by default)."""
    with open(os.path.join(model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    c = manifest["constants"]
    batch = min(batch or objects, objects)
    calls = [batch] * (objects // batch) + ([objects % batch] if objects % batch else [])
    path = lambda name: os.path.join(model_dir, manifest["graphs"][name]["file"])  # noqa: E731
    feeds = tracking_feeds(manifest, objects)
    # the other graphs do not read the bank, and their work grows with the objects alone
    per_frame = {name: graph_macs(path(name), feeds[name])[0]
                 for name in ("image_encoder", "prompt_decoder", "memory_encoder")}
    cache: dict = {}
    total = {name: 0 for name in TRACKING_GRAPHS}
    for t in range(1, frames):
        bank = bank_size(c, t, frames)
        for name, m in per_frame.items():
            total[name] += m
        for b in calls:
            if (b, bank) not in cache:
                cache[(b, bank)] = graph_macs(path("memory_attention"),
                                              tracking_feeds(manifest, b, bank)["memory_attention"])[0]
            total["memory_attention"] += cache[(b, bank)]
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", metavar="DIR")
    ap.add_argument("--objects", type=int, default=2)
    ap.add_argument("--frames", type=int, help="count a whole clip of this many frames (at least 2)")
    ap.add_argument("--batch", type=int, help="with --frames: objects per memory-attention call (default all)")
    ap.add_argument("--batch-b", type=int, help="with --frames: the same for DIR_B (default --batch)")
    a = ap.parse_args(argv)
    if len(a.dirs) > 2 or a.objects < 1:
        ap.error("one or two model directories, and at least one object")
    if a.frames is not None and a.frames < 2:
        ap.error("--frames needs a clip of at least 2 frames (frame 0 is the prompted one)")
    if (a.batch is not None or a.batch_b is not None) and a.frames is None:
        ap.error("--batch and --batch-b count a clip: give --frames")
    if any(b is not None and b < 1 for b in (a.batch, a.batch_b)):
        ap.error("a memory-attention call takes at least one object")
    per_object = []
    for i, d in enumerate(a.dirs):
        if a.frames is None:
            macs = tracked_frame_macs(d, a.objects)
            frame = sum(macs.values())
            what = f"{a.objects} objects, full memory bank"
        else:
            batch = a.batch_b if i == 1 and a.batch_b is not None else a.batch
            macs = {k: v / (a.frames - 1) for k, v in clip_macs(d, a.objects, a.frames, batch).items()}
            frame = sum(macs.values())
            what = (f"{a.objects} objects, mean of frames 1-{a.frames - 1}, "
                    f"memory attention {min(batch or a.objects, a.objects)} objects a call")
        per_object.append(frame / a.objects)
        parts = ", ".join(f"{k} {v / 1e9:.2f}" for k, v in macs.items())
        print(f"{d}: {parts} GMAC; tracked frame {frame / 1e9:.1f} GMAC, "
              f"{frame / a.objects / 1e9:.1f} GMAC per object ({what})")
    if len(per_object) == 2:
        print(f"B / A per tracked frame per object: {per_object[1] / per_object[0]:.2f}x")


if __name__ == "__main__":
    main()
