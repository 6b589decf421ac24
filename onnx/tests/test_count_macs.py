"""onnx/count_macs.py: the MACs it reads from ONNX Runtime's per-node shapes equal the hand count of a
graph of every counted operator, and a tracked frame of the tiny EdgeTAM export feeds every graph
the sizes of a full memory bank."""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import count_macs  # noqa: E402


def _graph(path):
    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(f(4, 5), "w"), numpy_helper.from_array(f(3, 2, 3, 3), "cw"),
             numpy_helper.from_array(f(2, 3, 2, 2), "tw"), numpy_helper.from_array(f(5, 6), "gw"),
             numpy_helper.from_array(f(6), "gb")]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["mm"], name="mm"),                            # [2,3,5]: 30 outputs x K 4
        helper.make_node("Conv", ["img", "cw"], ["conv"], name="conv", pads=[1, 1, 1, 1]),      # [1,3,5,5] x 2*3*3
        helper.make_node("ConvTranspose", ["small", "tw"], ["up"], name="up", strides=[2, 2]),  # 32 inputs x 3*2*2
        helper.make_node("Gemm", ["g", "gw", "gb"], ["gemm"], name="gemm"),                     # [7,6] x K 5
        helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["att"], name="att", domain="com.microsoft",
                         num_heads=2),
        helper.make_node("Relu", ["mm"], ["relu"], name="relu"),                                # not counted
    ]
    io = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    g = helper.make_graph(nodes, "macs", [io("x", [2, 3, 4]), io("img", [1, 2, 5, 5]), io("small", [1, 2, 4, 4]),
                                          io("g", [7, 5]), io("q", [1, 4, 8]), io("k", [1, 6, 8]), io("v", [1, 6, 10])],
                          [io("relu", None), io("conv", None), io("up", None), io("gemm", None), io("att", None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    onnx.save(m, path)
    feeds = {"x": f(2, 3, 4), "img": f(1, 2, 5, 5), "small": f(1, 2, 4, 4), "g": f(7, 5), "q": f(1, 4, 8),
             "k": f(1, 6, 8), "v": f(1, 6, 10)}
    return feeds


def test_graph_macs_match_the_hand_count(tmp_path):
    path = str(tmp_path / "g.onnx")
    feeds = _graph(path)
    total, by_op = count_macs.graph_macs(path, feeds)
    want = {"MatMul": 2 * 3 * 5 * 4, "Conv": 3 * 5 * 5 * 2 * 3 * 3, "ConvTranspose": 2 * 4 * 4 * 3 * 2 * 2,
            "Gemm": 7 * 6 * 5, "MultiHeadAttention": 1 * 4 * 6 * (8 + 10)}
    assert {k: v for k, v in by_op.items() if v} == want
    assert by_op.get("Relu", 0) == 0
    assert total == sum(want.values())


def test_tracked_frame_of_the_tiny_edgetam(edgetam_tiny_dir):
    with open(os.path.join(edgetam_tiny_dir, "manifest.json")) as f:
        manifest = json.load(f)
    feeds = count_macs.tracking_feeds(manifest, 3)
    c = manifest["constants"]
    mem = feeds["memory_attention"]["mem_features"]
    assert mem.shape[:2] == (3, c["num_maskmem"])
    assert feeds["memory_attention"]["obj_ptrs"].shape[:2] == (3, c["max_obj_ptrs_in_encoder"])
    assert feeds["memory_attention"]["pix_feat"].shape[0] == 1
    assert feeds["memory_encoder"]["pix_feat"].shape[0] == 3
    one, three = (count_macs.tracked_frame_macs(edgetam_tiny_dir, n) for n in (1, 3))
    assert set(one) == set(count_macs.TRACKING_GRAPHS) and all(v > 0 for v in one.values())
    # the image encoder runs once per frame, whatever the number of objects; the object graphs grow
    assert three["image_encoder"] == one["image_encoder"]
    for g in ("prompt_decoder", "memory_encoder", "memory_attention"):
        assert three[g] > one[g]


def test_bank_size_follows_the_official_selection():
    c = {"num_maskmem": 7, "memory_temporal_stride_for_eval": 1, "use_obj_ptrs_in_encoder": True,
         "max_obj_ptrs_in_encoder": 16}
    # the bank fills one memory and one pointer a frame: the prompted frame plus frames 1 .. t-1
    assert [count_macs.bank_size(c, t, 30) for t in (1, 2, 6)] == [(1, 1), (2, 2), (6, 6)]
    # full from frame num_maskmem on; the pointers go on filling to max_obj_ptrs_in_encoder
    assert [count_macs.bank_size(c, t, 30) for t in (7, 8, 16, 29)] == [(7, 7), (7, 8), (7, 16), (7, 16)]
    # a clip shorter than the pointer window: every earlier frame's pointer
    assert count_macs.bank_size(c, 9, 10) == (7, 9)
    # stride 2 at frame 10: the previous frame, then frames 8, 6, 4, 2 (frame 0 is the prompt)
    assert count_macs.bank_size(dict(c, memory_temporal_stride_for_eval=2), 10, 30) == (6, 10)
    assert count_macs.bank_size(dict(c, use_obj_ptrs_in_encoder=False), 20, 30) == (7, 0)


def test_a_clip_counts_each_frame_with_its_bank(edgetam_tiny_dir):
    with open(os.path.join(edgetam_tiny_dir, "manifest.json")) as f:
        manifest = json.load(f)
    path = os.path.join(edgetam_tiny_dir, manifest["graphs"]["memory_attention"]["file"])

    def attention(objects, bank):
        return count_macs.graph_macs(path, count_macs.tracking_feeds(manifest, objects, bank)["memory_attention"])[0]

    one_call, two_calls = (count_macs.clip_macs(edgetam_tiny_dir, 2, 3, b) for b in (None, 1))
    frame = count_macs.tracked_frame_macs(edgetam_tiny_dir, 2)
    for g in ("image_encoder", "prompt_decoder", "memory_encoder"):
        assert one_call[g] == two_calls[g] == 2 * frame[g]  # frames 1 and 2
    assert one_call["memory_attention"] == attention(2, (1, 1)) + attention(2, (2, 2))
    assert two_calls["memory_attention"] == 2 * (attention(1, (1, 1)) + attention(1, (2, 2)))
    # calls of one object each repeat the shared first self-attention; a bigger bank costs more
    assert two_calls["memory_attention"] > one_call["memory_attention"]
    assert attention(2, (2, 2)) > attention(2, (1, 1))
    assert frame["memory_attention"] > attention(2, (2, 2))  # the full bank
