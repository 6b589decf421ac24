"""SAM 2 exporter + host reference tests.

The main test exports the tiny random-weight model into a temp dir (official predictors compute the
reference outputs) and runs the numpy+onnxruntime host reference against them, with the parity
targets the Rust port must also meet. Takes a few minutes on 2 CPU cores.
"""
import json
import os
import sys

import numpy as np
import pytest

ONNX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ONNX_DIR)

import sam2_host_ref as H  # noqa: E402


def test_preprocessing_matches_official():
    import torch
    from PIL import Image
    from sam2.utils.transforms import SAM2Transforms

    rng = np.random.default_rng(0)
    c = {"image_size": 1024, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    # landscape, small, and portrait frames (Pillow runs the vertical pass first for those)
    for h, w in [(700, 1200), (240, 320), (1280, 720), (1920, 1080)]:
        img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        ours = H.preprocess_image(img, c)
        theirs = SAM2Transforms(1024, 0.0)(img).numpy()
        assert np.abs(ours - theirs).max() < 1e-5
        # video frames: PIL bicubic on uint8 must be bit exact
        assert np.array_equal(H.pil_resize_bicubic_u8(img, 1024, 1024),
                              np.asarray(Image.fromarray(img).resize((1024, 1024))))
    x = (rng.standard_normal((2, 1, 256, 256)) * 5).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=(333, 517), mode="bilinear", align_corners=False)
    assert np.abs(H.resize_bilinear(x, 333, 517) - ref.numpy()).max() < 1e-5
    assert np.array_equal(H.round_to_bf16(x), torch.from_numpy(x).bfloat16().float().numpy())


def test_connected_components_and_fill_holes():
    m = np.ones((8, 8), np.float32)
    m[2, 2] = -1  # 1-pixel hole
    m[5:8, 5:8] = -1  # 9-pixel hole (touching the border, still a background component)
    out = H.fill_holes_in_mask_scores(m, 8)
    assert out[2, 2] == np.float32(0.1) and (out[5:8, 5:8] == -1).all()
    lab, area = H.connected_components_8(np.eye(4, dtype=bool))  # diagonal = one 8-connected comp
    assert lab.max() == 1 and area[0, 0] == 4


def test_tiny_random_seed_is_deterministic():
    import torch

    from sam2_export.build import build_tiny_random

    a = build_tiny_random(3).state_dict()
    b = build_tiny_random(3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_image_encoder_graph_folds_the_high_res_projections():
    """The graph's neck folds conv_s0/conv_s1 into the lateral convolutions of FPN levels 0 and 1;
    its four outputs must equal SAM2Base.forward_image's on the same image."""
    import torch

    from sam2_export.build import build_tiny_random
    from sam2_export.graphs import ImageEncoderGraph

    torch.set_grad_enabled(False)
    m = build_tiny_random(5).eval()
    graph = ImageEncoderGraph(m).eval()
    assert graph.folded == (0, 1)
    n = len(graph.neck.convs) - 1
    assert graph.neck.convs[n].conv.out_channels == m.sam_mask_decoder.conv_s0.out_channels
    img = torch.randn(1, 3, m.image_size, m.image_size, generator=torch.Generator().manual_seed(2))
    fpn = m.forward_image(img)["backbone_fpn"][-m.num_feature_levels:]
    want = (fpn[0], fpn[1], fpn[2] + m.no_mem_embed.reshape(1, -1, 1, 1), fpn[2])
    for got, ref in zip(graph(img), want):
        assert got.shape == ref.shape
        assert (got - ref).abs().max().item() < 1e-5 * max(1.0, ref.abs().max().item())


def test_decoder_and_memory_encoder_graphs_match_the_official_modules():
    """The prompt decoder graph restates MaskDecoder.predict_masks with the per-image tensors
    broadcast (one image row for several objects), the memory encoder graph restates the fuser's
    LayerNorm2d as a last-axis LayerNorm and the binarize select as per-object weights: compare
    both with the official modules on the tiny model, object by object."""
    import torch
    import torch.nn.functional as F

    from sam2_export.build import build_tiny_random
    from sam2_export.graphs import MemoryEncoderGraph, PromptDecoderGraph

    torch.set_grad_enabled(False)
    m = build_tiny_random(4).eval()
    g = torch.Generator().manual_seed(6)
    C, Fs = m.hidden_dim, m.image_size // m.backbone_stride
    pe, md = m.sam_prompt_encoder, m.sam_mask_decoder
    emb = torch.randn(1, C, Fs, Fs, generator=g)
    h0 = torch.randn(1, md.conv_s0.out_channels, 4 * Fs, 4 * Fs, generator=g)
    h1 = torch.randn(1, md.conv_s1.out_channels, 2 * Fs, 2 * Fs, generator=g)
    coords = torch.rand(2, 2, 2, generator=g) * m.image_size
    labels = torch.tensor([[1, 0], [2, 3]], dtype=torch.int32)
    mask_in = torch.randn(2, 1, 4 * Fs, 4 * Fs, generator=g) * 4
    has_mask = torch.tensor([0.0, 1.0])
    masks, iou, _, score = PromptDecoderGraph(m).eval()(emb, h0, h1, coords, labels, mask_in, has_mask)
    for i in range(2):
        sparse, dense = pe(points=(coords[i:i + 1], labels[i:i + 1]), boxes=None,
                           masks=mask_in[i:i + 1] if has_mask[i] > 0.5 else None)
        ref = md.predict_masks(image_embeddings=emb, image_pe=pe.get_dense_pe(),
                               sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                               repeat_image=False, high_res_features=[h0, h1])
        for got, want in zip((masks[i:i + 1], iou[i:i + 1], score[i:i + 1]), (ref[0], ref[1], ref[3])):
            assert got.shape == want.shape
            assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())

    pix = torch.randn(1, C, Fs, Fs, generator=g)
    low = torch.randn(1, 1, 4 * Fs, 4 * Fs, generator=g) * 8
    high = F.interpolate(low, size=(m.image_size, m.image_size), mode="bilinear", align_corners=False)
    graph = MemoryEncoderGraph(m).eval()
    assert m.binarize_mask_from_pts_for_mem_enc
    for binarize in (True, False):
        for s in (2.0, -3.0):
            score = torch.tensor([[s]])
            curr = [pix.flatten(2).permute(2, 0, 1)]
            ref, _ = m._encode_new_memory(curr, [(Fs, Fs)], high, score, binarize)
            got = graph(pix, low, score, torch.tensor([float(binarize)]))
            assert (got - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())


@pytest.fixture(scope="module")
def tiny_dir(sam2_tiny_dir):
    return sam2_tiny_dir  # conftest.py: one export per session, shared with test_hub_fixtures.py


def test_manifest(tiny_dir):
    from common import sha256_file

    with open(os.path.join(tiny_dir, "manifest.json")) as f:
        man = json.load(f)
    assert man["format"] == "pixelrefer-studio-model" and man["kind"] == "sam2"
    assert set(man["graphs"]) == {"image_encoder", "prompt_decoder", "memory_encoder", "memory_attention"}
    for rel, digest in man["files"].items():
        assert sha256_file(os.path.join(tiny_dir, rel)) == digest
    pd = {t["name"]: t for t in man["graphs"]["prompt_decoder"]["inputs"]}
    assert pd["point_labels"]["dtype"] == "int32" and pd["point_coords"]["shape"] == ["B", "N", 2]
    ma = {t["name"]: t for t in man["graphs"]["memory_attention"]["inputs"]}
    assert ma["mem_features"]["shape"][:2] == ["B", "S"] and ma["obj_ptrs"]["shape"][:2] == ["B", "P"]
    c = man["constants"]
    assert c["num_maskmem"] == 7 and c["max_obj_ptrs_in_encoder"] == 16 and c["image_size"] == 1024
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(tiny_dir) for f in fs)
    # graphs + reference; the image encoder holds Hiera's position table precomputed for the 256x256
    # grid (graphs.py _fold_hiera_pos_embed: 2 MB at the tiny width)
    assert total < 20e6, total


def test_memory_attention_without_pointers(tiny_dir):
    m = H.Sam2Model(tiny_dir)
    c = m.c
    pix = np.random.default_rng(0).standard_normal((1, c["hidden_dim"], 64, 64)).astype(np.float32)
    mem = np.zeros((1, 1, c["mem_dim"], 64, 64), np.float32)
    out = m.attend(pix, mem, [0], np.zeros((1, 0, c["hidden_dim"]), np.float32), np.zeros((0,), np.float32))
    assert out.shape == pix.shape and np.isfinite(out).all()


def test_hiera_attention_is_exported_as_multi_head_attention(tiny_dir):
    """Every Hiera attention block runs as ONNX Runtime's MultiHeadAttention (no score matrix, so
    no Softmax node is left); the reference parity tests check the numbers."""
    import onnx

    g = onnx.load(os.path.join(tiny_dir, "image_encoder.onnx")).graph
    ops = [n.op_type for n in g.node]
    assert ops.count("MultiHeadAttention") >= 2 and "Softmax" not in ops


def test_memory_attention_shares_one_frame_row(tiny_dir):
    """pix_feat has its own batch dimension (image_batch): one row for every object gives what
    that row repeated per object gives (the first self-attention reads no memory)."""
    import onnxruntime as ort

    with open(os.path.join(tiny_dir, "manifest.json")) as f:
        man = json.load(f)
    ma = {t["name"]: t for t in man["graphs"]["memory_attention"]["inputs"]}
    assert ma["pix_feat"]["shape"][0] == "image_batch"
    c = man["constants"]
    rng = np.random.default_rng(3)
    B, S, P, F = 3, 2, 2, 64
    feeds = {
        "pix_feat": rng.standard_normal((1, c["hidden_dim"], F, F)).astype(np.float32),
        "mem_features": rng.standard_normal((B, S, c["mem_dim"], F, F)).astype(np.float32),
        "mem_tpos_index": np.array([6, 1], np.int64),
        "obj_ptrs": rng.standard_normal((B, P, c["hidden_dim"])).astype(np.float32),
        "obj_ptr_pos": np.array([0.0, 0.25], np.float32),
    }
    sess = ort.InferenceSession(os.path.join(tiny_dir, "memory_attention.onnx"),
                                providers=["CPUExecutionProvider"])
    shared = sess.run(None, feeds)[0]
    per_object = sess.run(None, {**feeds, "pix_feat": np.repeat(feeds["pix_feat"], B, axis=0)})[0]
    assert shared.shape == (B, c["hidden_dim"], F, F)
    # different objects get different outputs (the memories differ), each equal to its repeated-row twin
    assert np.abs(shared[0] - shared[1]).max() > 1e-3
    np.testing.assert_allclose(shared, per_object, rtol=0, atol=1e-5)


def test_host_reference_parity(tiny_dir):
    w = H.run_reference(tiny_dir)
    assert w["image_min_iou"] >= 0.99
    assert w["image_logits_max_abs_diff"] <= 1e-3
    assert w["video_min_iou"] >= 0.98


def test_int8_quantizes_the_image_encoder_only(tiny_dir, edgetam_tiny_dir, tmp_path):
    """quantize_dir on a SAM 2 export: the image encoder's matrices become MatMulInteger, the other
    graphs are copied, the manifest says so with hashes of the new files, no fp32 reference/ is
    carried over; ONNX Runtime runs the encoder with outputs close to (not equal to) fp32. EdgeTAM
    and int4 are refused in a sentence, before anything is written."""
    import onnx
    import onnxruntime as ort
    from common import ExportError, sha256_file
    from common.quantize import quantize_dir

    dst = str(tmp_path / "q")
    quantize_dir(tiny_dir, dst, "int8")
    with open(os.path.join(dst, "manifest.json")) as f:
        m = json.load(f)
    with open(os.path.join(tiny_dir, "manifest.json")) as f:
        src = json.load(f)
    q = m["quantization"]
    assert q["scheme"] == "int8" and m["variant"] == src["variant"] + "-int8"
    assert set(q["graphs"]) == {"image_encoder"} and "MatMulInteger" in q["operators"]
    assert not os.path.exists(os.path.join(dst, "reference"))
    for name, digest in m["files"].items():
        assert sha256_file(os.path.join(dst, name)) == digest, name
    for role in ("prompt_decoder", "memory_encoder", "memory_attention"):
        f = m["graphs"][role]["file"]
        assert m["files"][f] == src["files"][f], role
    ops = {n.op_type for n in onnx.load(os.path.join(dst, "image_encoder.onnx")).graph.node}
    assert "MatMulInteger" in ops
    x = np.random.RandomState(0).rand(1, 3, 1024, 1024).astype(np.float32)
    a = ort.InferenceSession(os.path.join(tiny_dir, "image_encoder.onnx")).run(None, {"image": x})
    b = ort.InferenceSession(os.path.join(dst, "image_encoder.onnx")).run(None, {"image": x})
    for ya, yb in zip(a, b):
        rel = float(np.linalg.norm(ya - yb) / np.linalg.norm(ya))
        assert 0 < rel < 0.1, rel
    with pytest.raises(ExportError, match="EdgeTAM is not quantized"):
        quantize_dir(edgetam_tiny_dir, str(tmp_path / "e"), "int8")
    with pytest.raises(ExportError, match="int8 only"):
        quantize_dir(tiny_dir, str(tmp_path / "i4"), "int4")
    assert not os.path.exists(tmp_path / "e") and not os.path.exists(tmp_path / "i4")
