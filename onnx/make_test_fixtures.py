"""Writes the tiny hand-made ONNX graphs used by the Rust runtime tests.

Run from the repository root:  python onnx/make_test_fixtures.py
Output: tests/fixtures/onnx/add.onnx  (c = a + b, float32 [N, 3], dynamic N)
"""
from pathlib import Path

import onnx
from onnx import TensorProto, helper

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "onnx"


def add_graph() -> onnx.ModelProto:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 3])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, ["n", 3])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["c"])], "add", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pixelrefer-studio")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(add_graph(), OUT / "add.onnx")
    print(f"wrote {OUT / 'add.onnx'}")
