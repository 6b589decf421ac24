"""Tests of the EdgeTAM exporter (onnx/export_edgetam.py). EdgeTAM's reference code installs its own
top-level `sam2` package, so everything that imports it runs in a subprocess of its own (this pytest
process imports the official sam2 for the SAM 2 tests)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

ONNX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTER = os.path.join(ONNX_DIR, "export_edgetam.py")


def _run(args, **kw):
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, cwd=ONNX_DIR, **kw)


def _script(code):
    return _run(["-c", "import sys; sys.path.insert(0, %r)\n" % ONNX_DIR + textwrap.dedent(code)])


def test_usage_errors_are_one_sentence(tmp_path):
    r = _run([EXPORTER, "--checkpoint", str(tmp_path / "missing.pt"), "--config", "edgetam.yaml",
              "--out", str(tmp_path / "out")])
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: checkpoint not found"), r.stderr
    r = _run([EXPORTER, "--checkpoint", "x.pt"])
    assert r.returncode == 2 and "--checkpoint needs --config and --out" in r.stderr


def test_refuses_a_process_that_imported_the_official_sam2():
    r = _script("""
        import sam2  # the official package of the venv
        from common import ExportError
        from edgetam_export.package import use_edgetam_sam2
        try:
            use_edgetam_sam2()
        except ExportError as e:
            print("refused:", e)
    """)
    assert r.returncode == 0, r.stderr
    assert "refused: another `sam2` package" in r.stdout


def test_bad_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "edgetam.pt"
    bad.write_bytes(b"not a checkpoint")
    r = _run([EXPORTER, "--checkpoint", str(bad), "--config", "edgetam.yaml", "--out", str(tmp_path / "o"),
              "--no-verify"])
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: cannot read checkpoint"), r.stderr


def test_memory_graphs_match_the_official_modules():
    """The graph wrappers restate the perceiver (reshape for view), the prompt encoder (torch.where
    for boolean indexing) and RoPEAttentionv2 (real-valued RoPE); compare each with the official
    edgetam-dimos module on the tiny model (the export's own check compares ORT with the wrappers)."""
    r = _script("""
        from edgetam_export.package import use_edgetam_sam2
        use_edgetam_sam2()
        import torch
        torch.set_grad_enabled(False)
        import torch.nn.functional as F
        from edgetam_export.build import build_tiny_random
        from edgetam_export.graphs import (EdgeTAMMemoryAttentionGraph, EdgeTAMMemoryEncoderGraph,
                                           EdgeTAMPromptDecoderGraph, latents_pos)
        m = build_tiny_random(0)
        g = torch.Generator().manual_seed(3)
        C, Cm, Fs = m.hidden_dim, m.mem_dim, m.image_size // m.backbone_stride
        # prompt encoder points
        dec = EdgeTAMPromptDecoderGraph(m)
        pts = torch.rand(2, 3, 2, generator=g) * 1024
        lab = torch.tensor([[1, 0, -1], [2, 3, 1]], dtype=torch.int32)
        ref = m.sam_prompt_encoder._embed_points(pts, lab, pad=True)
        d_pe = (dec._embed_points(pts, lab) - ref).abs().max().item()
        # memory encoder (official: SAM2Base._encode_new_memory on one object)
        pix = torch.randn(1, C, Fs, Fs, generator=g)
        low = torch.randn(1, 1, 4 * Fs, 4 * Fs, generator=g) * 8
        score = torch.tensor([[2.0]])
        high = F.interpolate(low, size=(m.image_size, m.image_size), mode="bilinear", align_corners=False)
        feats_ref, pos_ref = m._encode_new_memory([pix.flatten(2).permute(2, 0, 1)], [(Fs, Fs)], high, score, True)
        menc = EdgeTAMMemoryEncoderGraph(m)
        mem = menc(pix, low, score, torch.tensor([1.0]))  # [1,Cm,T]
        d_me = (mem.transpose(1, 2) - feats_ref).abs().max().item()
        pos = latents_pos(m, Fs)
        d_pos = (pos.t() - pos_ref[0][0]).abs().max().item()
        # memory attention (official: MemoryAttention.forward with the bank assembled as in
        # SAM2Base._prepare_memory_conditioned_features): 2 memories + 3 pointers
        vpos = m.image_encoder.neck.position_encoding(torch.zeros(1, C, Fs, Fs))
        mem2 = torch.stack([mem[0], mem[0].flip(-1)], 0)[None]  # [1,2,Cm,T]
        tidx = torch.tensor([6, 1])
        ptrs = torch.randn(1, 3, C, generator=g)
        matt = EdgeTAMMemoryAttentionGraph(m, vpos[0], pos)
        out = matt(pix, mem2, tidx, ptrs, torch.zeros(3))
        tpos = m.maskmem_tpos_enc.reshape(m.num_maskmem, Cm)
        memory = torch.cat([mem2[0, 0].t(), mem2[0, 1].t(),
                            ptrs.reshape(3, C // Cm, Cm).reshape(-1, Cm)], 0)[:, None]
        mpos = torch.cat([pos.t() + tpos[6], pos.t() + tpos[1], torch.zeros(3 * C // Cm, Cm)], 0)[:, None]
        ref = m.memory_attention(curr=[pix.flatten(2).permute(2, 0, 1)], curr_pos=[vpos.flatten(2).permute(2, 0, 1)],
                                 memory=memory, memory_pos=mpos, num_obj_ptr_tokens=3 * C // Cm, num_spatial_mem=2)
        d_ma = (out.flatten(2).permute(2, 0, 1) - ref).abs().max().item()
        print("diffs", d_pe, d_me, d_pos, d_ma)
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    d = [float(x) for x in r.stdout.split("diffs")[1].split()]
    assert d[0] < 1e-5 and d[1] < 1e-4 and d[2] < 1e-6 and d[3] < 1e-4, d


def test_image_encoder_graph_folds_the_high_res_projections():
    """As the SAM 2 test of the same name, on EdgeTAM's RepViT trunk and neck; the graph's trunk also
    has RepViT's token mixers merged (timm RepVggDw.fuse), with batch-norm statistics made random
    so that merging them is tested too, while the model keeps the official modules."""
    r = _script("""
        from edgetam_export.package import use_edgetam_sam2
        use_edgetam_sam2()
        import torch
        torch.set_grad_enabled(False)
        from edgetam_export.build import build_tiny_random
        from sam2_export.graphs import ImageEncoderGraph
        m = build_tiny_random(5).eval()
        g = torch.Generator().manual_seed(3)
        for mod in m.image_encoder.trunk.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
        graph = ImageEncoderGraph(m).eval()
        mixers = lambda t: sum(type(x).__name__ == "RepVggDw" for x in t.modules())
        print("mixers", mixers(m.image_encoder.trunk), mixers(graph.trunk))
        n = len(graph.neck.convs) - 1
        print("folded", list(graph.folded), graph.neck.convs[n].conv.out_channels,
              m.sam_mask_decoder.conv_s0.out_channels)
        img = torch.randn(1, 3, m.image_size, m.image_size, generator=torch.Generator().manual_seed(2))
        fpn = m.forward_image(img)["backbone_fpn"][-m.num_feature_levels:]
        want = (fpn[0], fpn[1], fpn[2] + m.no_mem_embed.reshape(1, -1, 1, 1), fpn[2])
        rel = [((g - w).abs().max() / w.abs().max().clamp(min=1.0)).item() for g, w in zip(graph(img), want)]
        print("diffs", *rel)
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "folded [0, 1]" in r.stdout, r.stdout
    official, merged = (int(x) for x in r.stdout.split("mixers")[1].split()[:2])
    assert official > 0 and merged == 0, r.stdout
    head = r.stdout.split("folded")[1].split("\n")[0].split("]")[1].split()
    assert head[0] == head[1], r.stdout
    d = [float(x) for x in r.stdout.split("diffs")[1].split()]
    assert len(d) == 4 and max(d) < 1e-5, d


@pytest.mark.slow
def test_tiny_export_manifest_and_reference(edgetam_tiny_dir):
    with open(os.path.join(edgetam_tiny_dir, "manifest.json")) as f:
        man = json.load(f)
    assert man["kind"] == "sam2" and man["family"] == "edgetam"
    c = man["constants"]
    assert c["family"] == "edgetam"
    assert c["mem_tokens"] == c["mem_latents_global"] + c["mem_latents_2d"] < c["feat_size"] ** 2
    ins = {t["name"]: t for t in man["graphs"]["memory_attention"]["inputs"]}
    assert len(ins["mem_features"]["shape"]) == 4 and ins["mem_features"]["shape"][-1] == c["mem_tokens"]
    outs = {t["name"]: t for t in man["graphs"]["memory_encoder"]["outputs"]}
    assert outs["maskmem_features"]["shape"][1:] == [c["mem_dim"], c["mem_tokens"]]
    assert "spatial perceiver" in man["notes"]
    with open(os.path.join(edgetam_tiny_dir, "reference", "cases.json")) as f:
        cases = json.load(f)
    steps = cases["video"]["steps"]
    assert [s["op"] for s in steps] == ["add", "add", "propagate", "propagate", "add", "propagate", "propagate"]
    assert "sam2==1.1.0" in cases["video"]["predictor"]
    # the video reference is not trivial: the objects are visible on tracked frames
    import numpy as np
    from safetensors.numpy import load_file

    vt = load_file(os.path.join(edgetam_tiny_dir, "reference", "video.safetensors"))
    fg = [np.unpackbits(v).mean() for k, v in vt.items() if k.startswith("s2.") and k.endswith("mask_packed")]
    assert len(fg) == 14 and min(fg) > 0.01, fg
