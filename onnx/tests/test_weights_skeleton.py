"""onnx/weights_skeleton.py: a model directory loses its large weights on `strip` (small tensors,
integers and the other files stay), and `fill` gives it weights of the same names, types and shapes
with the recorded moments, inside the graph or in the external data file the export used, and
rewrites the manifest's sha256 so the Rust loader accepts the changed files."""
import hashlib
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import weights_skeleton  # noqa: E402


def _graph(path, external):
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((64, 128)) * 0.5 + 0.25).astype(np.float32)
    h = rng.standard_normal((128, 128)).astype(np.float16)
    small = np.arange(16, dtype=np.float32)
    shape = np.array([1, 128], dtype=np.int64)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(h, "h"),
             numpy_helper.from_array(small, "small"), numpy_helper.from_array(shape, "shape")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]),
             helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["y", "hf"], ["z"]),
             helper.make_node("Reshape", ["z", "shape"], ["out"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 128])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    if external:
        onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=os.path.basename(path) + ".data", size_threshold=1024)
    else:
        onnx.save_model(m, path)
    return w, h


def _sha(p):
    return hashlib.sha256(open(p, "rb").read()).hexdigest()


def test_strip_then_fill_restores_every_weight_with_its_moments(tmp_path):
    src, skel = tmp_path / "model", tmp_path / "skel"
    src.mkdir()
    w, h = _graph(str(src / "inline.onnx"), external=False)
    _graph(str(src / "big.onnx"), external=True)
    (src / "tokenizer.json").write_text("{}")
    files = ["inline.onnx", "big.onnx", "big.onnx.data", "tokenizer.json"]
    (src / "manifest.json").write_text(json.dumps({"files": {f: _sha(src / f) for f in files}}))

    weights_skeleton.strip(str(src), str(skel))
    assert sorted(os.listdir(skel)) == ["big.onnx", "inline.onnx", "manifest.json", "skeleton.json",
                                        "tokenizer.json"]
    kept = {t.name for t in onnx.load(str(skel / "big.onnx")).graph.initializer}
    assert kept == {"small", "shape"}  # under 4096 values, or not float: travel as they are
    assert os.path.getsize(skel / "big.onnx") < 2000

    weights_skeleton.fill(str(skel), seed=5)
    assert os.path.getsize(skel / "big.onnx.data") >= w.nbytes + h.nbytes
    for name in ["inline.onnx", "big.onnx"]:
        model = onnx.load(str(skel / name))
        got = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        assert got["w"].dtype == np.float32 and got["w"].shape == w.shape
        assert got["h"].dtype == np.float16 and got["h"].shape == h.shape
        assert abs(got["w"].mean() - w.mean()) < 0.05 and abs(got["w"].std() - w.std()) < 0.05
        assert not np.array_equal(got["w"], w)  # new values, not the old ones
        np.testing.assert_array_equal(got["small"], np.arange(16, dtype=np.float32))
        sess = ort.InferenceSession(str(skel / name), providers=["CPUExecutionProvider"])
        out = sess.run(None, {"x": np.ones((1, 64), np.float32)})[0]
        assert out.shape == (1, 128) and np.isfinite(out).all()
    manifest = json.loads((skel / "manifest.json").read_text())
    for f in files:
        assert manifest["files"][f] == _sha(skel / f), f
