"""Quantized CPU copies of an exported model directory: PixelRefer / PixelRefer-Lite (int8, int4)
and SAM 2 (int8).

PixelRefer: the LLM's matrices (decoder MatMuls, lm_head, and for int4 the embedding table) become ONNX Runtime's
`com.microsoft` MatMulNBits / GatherBlockQuantized with int8 or int4 weight blocks of 32
(`accuracy_level` 4: MLAS computes with int8 activations where the CPU has the kernels,
onnxruntime docs/ContribOperators.md); the vision encoder's MatMuls and Gemms become int8
MatMulInteger with per-channel weights and activations quantized per call (DynamicQuantizeLinear):
measured on 2 cores, 8-bit MatMulNBits made the vision encoder 1.4x slower than fp32 while this
path is about 1.5x faster. The small projector and region graphs stay fp32. The result changes
outputs: it is opt-in, and the manifest says so (`quantization`, variant suffix), so the app labels it.

SAM 2: only the image encoder (Hiera's linear layers, most of its time) becomes int8 in the same
dynamic way; measured on 2 cores with full-size random SAM 2.1-tiny, that made the encoder about
1.7x faster, while the prompt decoder (1.03x) and memory attention (0.99x, its time is in the
attention products, which stay fp32) gained nothing, so they stay fp32. EdgeTAM is refused: its
image encoder is convolutional (RepViT), which dynamic int8 does not cover, and the same int8 on its
full-size random memory attention and memory encoder (two objects, a full bank, 2 cores of a Zen 5
with VNNI, ONNX Runtime 1.31.1) was only 1.09x and 1.14x faster: too little to trade outputs for.

Quantizers: onnxruntime.quantization's matmul_nbits_quantizer and quantize_dynamic (the ONNX
Runtime team's own tools).
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Dict

from common import ExportError, graph_io_spec, progress, write_manifest

# scheme -> bits of the LLM graphs (decoder, embed_tokens); the vision encoder is always 8-bit.
SCHEMES = {"int8": 8, "int4": 4}
BLOCK_SIZE = 32
ACCURACY_LEVEL = 4
LLM_GRAPHS = ("decoder", "embed_tokens")
VISION_GRAPHS = ("vision_encoder",)
EDGETAM_REFUSAL = ("EdgeTAM is not quantized: its image encoder is convolutional (RepViT), which dynamic int8 "
                   "does not cover, and int8 makes its other graphs at most about 1.1x faster; "
                   "use the fp32 export")
# SAM 2 (family sam2): the graphs quantized like a vision encoder; the others are copied.
SAM2_INT8_GRAPHS = ("image_encoder",)
# Above this many bytes a graph's weights go to one external file (protobuf's 2 GiB limit).
EXTERNAL_DATA_BYTES = 1 << 30


def _quantize_vision(src: str, dst: str) -> Dict[str, int]:
    """int8 weights per output channel, activations quantized per call (quantize_dynamic)."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # its "consider pre-processing" advice
    size = os.path.getsize(src)
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=_batched_weight_matmuls(src),
                     use_external_data_format=size > 4 * EXTERNAL_DATA_BYTES)
    counts: Dict[str, int] = {}
    for n in onnx.load(dst, load_external_data=False).graph.node:
        if n.op_type in ("MatMulInteger", "DynamicQuantizeLinear"):
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    if "MatMulInteger" not in counts:
        raise ExportError(f"{os.path.basename(src)}: no MatMul or Gemm with constant weights to quantize")
    return counts


def _batched_weight_matmuls(path: str):
    """Names of the MatMuls whose constant weight is not a matrix (e.g. [heads, d, k]): ONNX
    Runtime's MatMulInteger takes per-channel zero points only for a 2-D weight."""
    import onnx

    g = onnx.load(path, load_external_data=False).graph
    dims = {t.name: len(t.dims) for t in g.initializer}
    return [n.name for n in g.node if n.op_type == "MatMul" and len(n.input) > 1
            and dims.get(n.input[1], 2) != 2]


def _quantize_graph(src: str, dst: str, bits: int, ops) -> Dict[str, int]:
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    model = onnx.load(src)  # pulls external data in
    opsets = {o.domain: o.version for o in model.opset_import}
    ir_version = model.ir_version
    q = MatMulNBitsQuantizer(model, bits=bits, block_size=BLOCK_SIZE, is_symmetric=True,
                             accuracy_level=ACCURACY_LEVEL, op_types_to_quantize=tuple(ops))
    q.process()
    out = q.model.model
    # The 4-bit quantizer lifts every model to opset 21 / IR 10 for the int4 tensor type, without
    # converting the graph's own nodes (ReduceMean's `axes` moved to an input in opset 18). Only
    # GatherBlockQuantized stores int4 tensors: a graph without them keeps its original opset.
    int4 = {onnx.TensorProto.INT4, onnx.TensorProto.UINT4}
    if not any(t.data_type in int4 for t in out.graph.initializer):
        for o in out.opset_import:
            if o.domain in opsets:
                o.version = opsets[o.domain]
        out.ir_version = ir_version
    counts: Dict[str, int] = {}
    for n in out.graph.node:
        if n.op_type in ("MatMulNBits", "GatherBlockQuantized"):
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    if not counts:
        raise ExportError(f"{os.path.basename(src)}: no MatMul or Gather with constant weights to quantize")
    size = sum(t.ByteSize() for t in out.graph.initializer)
    if size > EXTERNAL_DATA_BYTES:
        onnx.save_model(out, dst, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(dst) + ".data", size_threshold=1024)
    else:
        onnx.save_model(out, dst)
    return counts


def quantize_dir(src: str, dst: str, scheme: str) -> str:
    """Writes a quantized copy of model directory `src` to `dst` (staged in `dst`.tmp, renamed at
    the end). The `reference/` cases and the `checkpoint/` stay behind: they describe fp32 outputs."""
    if scheme not in SCHEMES:
        raise ExportError(f"unknown quantization {scheme!r}: choose one of {', '.join(SCHEMES)}")
    with open(os.path.join(src, "manifest.json")) as f:
        manifest = json.load(f)
    kind = manifest.get("kind")
    if kind == "sam2":
        if manifest.get("family") == "edgetam":
            raise ExportError(EDGETAM_REFUSAL)
        if scheme != "int8":
            raise ExportError(f"SAM 2 models are quantized int8 only (the image encoder), not {scheme}")
    elif kind not in ("pixelrefer", "pixelrefer-lite"):
        raise ExportError(f"{src} holds a {kind} model; only PixelRefer and SAM 2 models are quantized")
    if manifest.get("quantization"):
        raise ExportError(f"{src} is already quantized ({manifest['quantization'].get('scheme')})")
    if any(t["dtype"] == "float16" for g in manifest["graphs"].values() for t in g["inputs"]):
        raise ExportError(f"{src} is a float16 export; quantize the fp32 export")
    stage = dst.rstrip("/") + ".tmp"
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    bits_llm = SCHEMES[scheme]
    graphs = {}
    done: Dict[str, Dict[str, int]] = {}
    roles = list(manifest["graphs"])
    for i, role in enumerate(roles):
        spec = dict(manifest["graphs"][role])
        progress("quantize", i + 1, len(roles), role)
        src_file = os.path.join(src, spec["file"])
        dst_file = os.path.join(stage, spec["file"])
        bits = bits_llm if role in LLM_GRAPHS else 8
        # GatherBlockQuantized is 4-bit only: the int8 scheme keeps the embedding table fp32.
        if kind == "sam2":
            counts = _quantize_vision(src_file, dst_file) if role in SAM2_INT8_GRAPHS else None
        elif role in VISION_GRAPHS:
            counts = _quantize_vision(src_file, dst_file)
        elif role in LLM_GRAPHS and not (role == "embed_tokens" and bits != 4):
            counts = _quantize_graph(src_file, dst_file, bits, ("MatMul", "Gather") if bits == 4 else ("MatMul",))
        else:
            counts = None
        if counts is None:  # kept as exported
            shutil.copy2(src_file, dst_file)
            if spec.get("external_data"):
                shutil.copy2(os.path.join(src, spec["external_data"]), stage)
        else:
            done[role] = dict(counts, bits=bits)
            print(f"[quantize] {role}: {counts} at {bits} bits", flush=True)
            spec.pop("external_data", None)
            if os.path.exists(dst_file + ".data"):
                spec["external_data"] = spec["file"] + ".data"
            io = graph_io_spec(dst_file)
            if [t["name"] for t in io["inputs"]] != [t["name"] for t in spec["inputs"]]:
                raise ExportError(f"{role}: quantization changed the graph's inputs")
        graphs[role] = spec
    graph_files = {g["file"] for g in graphs.values()} | {g["external_data"] for g in graphs.values()
                                                         if g.get("external_data")}
    src_graph_files = {g["file"] for g in manifest["graphs"].values()} | {
        g["external_data"] for g in manifest["graphs"].values() if g.get("external_data")}
    extra = [f for f in manifest.get("files", {}) if f not in src_graph_files and os.path.isfile(os.path.join(src, f))]
    for f in extra:
        shutil.copy2(os.path.join(src, f), os.path.join(stage, f))
    out = dict(manifest)
    out["variant"] = f"{manifest['variant']}-{scheme}"
    out["graphs"] = graphs
    if kind == "sam2":
        method = {"method": "image encoder: int8 per-channel weights, dynamic int8 activations (quantize_dynamic); "
                            "prompt decoder, memory encoder and memory attention fp32",
                  "vision_bits": 8}
    else:
        method = {"method": "LLM: weight-only, symmetric blocks of 32 (MatMulNBitsQuantizer); vision encoder: "
                            "int8 per-channel weights, dynamic int8 activations (quantize_dynamic)",
                  "block_size": BLOCK_SIZE, "accuracy_level": ACCURACY_LEVEL, "llm_bits": bits_llm, "vision_bits": 8}
    out["quantization"] = {
        "scheme": scheme,
        **method,
        "graphs": done,
        "operators": sorted({op for c in done.values() for op in c if op != "bits"}),
        "source_variant": manifest["variant"],
        "note": "outputs differ from fp32; quality on real checkpoints is not measured by the exporter",
    }
    out.pop("verification", None)
    write_manifest(stage, out, sorted(graph_files) + extra)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(stage, dst)
    return dst
