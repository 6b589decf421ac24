"""The Python side of `pixelrefer-studio models fetch`: config files next to official checkpoints,
--reference on a checkpoint export, progress lines, one-sentence errors, and the fake hub of
onnx/make_hub_fixtures.py exported through the --checkpoint paths.

Run:  ~/.cache/pixelrefer-studio/venv/bin/python -m pytest onnx/tests/test_hub_fixtures.py -q
The SAM 2 end-to-end export is marked `slow` (with --reference: about 5 minutes on 2 cores, mostly the
official video predictor) and ./test.sh deselects it: the Rust suite runs the same export of the same
hub checkpoint end to end (tests/models_fetch.rs) and checks it with `models verify`. Each PixelRefer
variant takes about 30 s and always runs.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

ONNX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ONNX_DIR)

from common import parse_progress_line  # noqa: E402

SAM2_REPO = os.path.join("facebook", "sam2.1-hiera-tiny")
PIXELREFER_REPOS = {"full": os.path.join("Alibaba-DAMO-Academy", "PixelRefer-2B"),
                    "lite": os.path.join("Alibaba-DAMO-Academy", "PixelRefer-Lite-2B")}
PIXELREFER_FILES = ["README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                    "tokenizer_config.json"]
SAM2_FILES = ["README.md", "sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"]


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _run(script, *args):
    t0 = time.time()
    p = subprocess.run([sys.executable, os.path.join(ONNX_DIR, script), *map(str, args)],
                       capture_output=True, text=True)
    return p, time.time() - t0


def _last_stderr_line(p):
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _progress_events(stdout):
    events = []
    for line in stdout.splitlines():
        ev = parse_progress_line(line)
        if ev is None:
            assert "[progress]" not in line, line
            continue
        assert set(ev) == {"stage", "index", "total", "name"}, ev
        assert ev["stage"] in ("load", "graph", "reference", "verify", "done"), ev
        assert isinstance(ev["index"], int) and isinstance(ev["total"], int) and isinstance(ev["name"], str), ev
        assert 1 <= ev["index"] <= ev["total"], ev
        events.append(ev)
    return events


def _check_progress(events, graphs, references, verify=True):
    """load first, done last; graph (and verify) once per graph in order; reference once per case."""
    assert events[0]["stage"] == "load" and (events[0]["index"], events[0]["total"]) == (1, 1)
    assert events[-1]["stage"] == "done" and (events[-1]["index"], events[-1]["total"]) == (1, 1)
    by = lambda st: [e for e in events if e["stage"] == st]  # noqa: E731
    assert len(by("load")) == 1 and len(by("done")) == 1
    for stage in ("graph",) + (("verify",) if verify else ()):
        assert [e["name"] for e in by(stage)] == list(graphs), stage
        assert [(e["index"], e["total"]) for e in by(stage)] == [(i + 1, len(graphs)) for i in range(len(graphs))]
    if not verify:
        assert not by("verify")
    assert [e["name"] for e in by("reference")] == list(references)
    assert [(e["index"], e["total"]) for e in by("reference")] == [(i + 1, len(references)) for i in range(len(references))]
    # every graph is announced before it is verified, and all graphs come before the reference cases
    order = [(e["stage"], e["name"]) for e in events]
    for g in graphs:
        if verify:
            assert order.index(("graph", g)) < order.index(("verify", g))
    if references:
        first_ref = order.index(("reference", references[0]))
        assert all(order.index(("graph", g)) < first_ref for g in graphs)


# ---------------------------------------------------------------------------------------------
# progress lines and errors (units)
# ---------------------------------------------------------------------------------------------
def test_progress_line_format(capsys):
    from common import progress

    progress("graph", 2, 4, "prompt_decoder")
    out = capsys.readouterr().out
    assert out == '[progress] {"stage": "graph", "index": 2, "total": 4, "name": "prompt_decoder"}\n'
    assert parse_progress_line(out.strip()) == {"stage": "graph", "index": 2, "total": 4, "name": "prompt_decoder"}
    assert parse_progress_line("[export] something else") is None
    with pytest.raises(ValueError):
        progress("export", 1, 1, "x")


def test_run_main_error_lines(capsys):
    from common import ArgumentParser, ExportError, run_main

    def expected(argv):
        raise ExportError("checkpoint not found:\n  /x.pt")

    assert run_main(expected) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "error: checkpoint not found: /x.pt" and "Traceback" not in err

    def unexpected(argv):
        raise RuntimeError("boom\nsecond line")

    assert run_main(unexpected) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1] == "error: RuntimeError: boom second line"

    def usage(argv):
        ap = ArgumentParser(prog="x")
        ap.add_argument("--n", type=int, required=True)
        ap.parse_args(argv)

    assert run_main(usage, ["--n", "nan"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: argument --n: invalid int value")
    assert run_main(lambda argv: None) == 0


def test_error_exits(tmp_path, hub_dir):
    """Missing checkpoint, missing config file, mismatched weights: non-zero exit, `error:` last."""
    sam = os.path.join(hub_dir, SAM2_REPO)
    ck, cfg = os.path.join(sam, "sam2.1_hiera_tiny.pt"), os.path.join(sam, "sam2.1_hiera_t.yaml")
    cases = [
        ("export_sam2.py", ["--checkpoint", tmp_path / "nope.pt", "--config", cfg, "--out", tmp_path / "o1"],
         "error: checkpoint not found: "),
        ("export_sam2.py", ["--checkpoint", ck, "--config", tmp_path / "nope" / "x.yaml", "--out", tmp_path / "o2"],
         "error: config file not found: "),
        # the tiny weights against the packaged full-size config
        ("export_sam2.py", ["--checkpoint", ck, "--config", "sam2.1_hiera_t.yaml", "--out", tmp_path / "o3"],
         "error: the state dict keys of checkpoint sam2.1_hiera_tiny.pt do not match config sam2.1_hiera_t.yaml"),
        ("export_pixelrefer.py", ["--checkpoint", tmp_path / "nope", "--out", tmp_path / "o4"],
         "error: checkpoint folder not found: "),
        ("export_sam2.py", ["--checkpoint", ck], "error: --checkpoint needs --config and --out"),
    ]
    # PixelRefer weights whose names do not match config.json
    bad = tmp_path / "bad"
    shutil.copytree(os.path.join(hub_dir, PIXELREFER_REPOS["full"]), bad)
    from safetensors.torch import load_file, save_file
    sd = load_file(bad / "model.safetensors")
    sd["model.region_encoder.pos_proj.weight"] = sd.pop("model.region_encoder.pos_linear.weight")
    save_file(sd, bad / "model.safetensors")
    cases.append(("export_pixelrefer.py", ["--checkpoint", bad, "--out", tmp_path / "o5"],
                  "error: the state dict keys of checkpoint"))
    for script, args, want in cases:
        p, _ = _run(script, *args)
        assert p.returncode != 0, (script, args, p.stdout[-2000:])
        last = _last_stderr_line(p)
        assert last.startswith(want), (last, p.stderr[-3000:])
        assert "Traceback" not in p.stderr, p.stderr[-3000:]
        assert not os.path.exists(tmp_path / "o1" / "manifest.json")


def test_checkpoint_name_of_a_hub_snapshot():
    import export_pixelrefer

    snap = os.path.join("cache", "models--Alibaba-DAMO-Academy--PixelRefer-Lite-2B", "snapshots", "0123abcd")
    assert export_pixelrefer.checkpoint_name(snap) == "PixelRefer-Lite-2B"
    assert export_pixelrefer.checkpoint_name(os.path.join("x", "PixelRefer-2B") + os.sep) == "PixelRefer-2B"


# ---------------------------------------------------------------------------------------------
# SAM 2 config files
# ---------------------------------------------------------------------------------------------
def test_sam2_config_file_equals_packaged_build(tmp_path):
    """The yaml of the fake hub, read from disk, builds exactly the model that the packaged config name
    + TINY_OVERRIDES builds (and that --tiny-random exports), with the official predictor overrides."""
    import torch
    from hydra import compose
    from omegaconf import OmegaConf

    from sam2_export.build import TINY_OVERRIDES, build_tiny_random, build_video_model, config_path
    from sam2_export.export import host_constants
    from sam2_export.hub import write_tiny_repo

    # as the hub cache lays it out: snapshots/<revision>/<file> -> ../../blobs/<hash>
    blobs, snap = tmp_path / "blobs", tmp_path / "snapshots" / "0123abcd"
    files = write_tiny_repo(str(blobs), seed=0)
    snap.mkdir(parents=True)
    for name, path in files.items():
        os.symlink(os.path.relpath(path, snap), snap / name)
    ck, cfg = str(snap / "sam2.1_hiera_tiny.pt"), str(snap / "sam2.1_hiera_t.yaml")
    with torch.no_grad():
        from_file = build_video_model(cfg, ck)
        from_name = build_video_model("sam2.1_hiera_t.yaml", ck, TINY_OVERRIDES)
        tiny = build_tiny_random(0)
    a, b, c = from_file.state_dict(), from_name.state_dict(), tiny.state_dict()
    assert list(a) == list(b) == list(c)
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    assert host_constants(from_file) == host_constants(from_name) == host_constants(tiny)
    assert repr(from_file) == repr(from_name)
    assert type(from_file).__name__ == "SAM2VideoPredictor"
    assert from_file.fill_hole_area == 8 and from_file.binarize_mask_from_pts_for_mem_enc
    assert from_file.sam_mask_decoder.dynamic_multimask_via_stability
    # the file is one complete config: the packaged one with the overrides applied
    with open(cfg) as f:
        assert f.readline().strip() == "# @package _global_"
    packaged = compose(config_name=config_path("sam2.1_hiera_t.yaml"), overrides=list(TINY_OVERRIDES))
    assert OmegaConf.to_container(OmegaConf.load(cfg)) == OmegaConf.to_container(packaged)
    # hydra's global search path is the sam2 package again (a later packaged build still works)
    assert compose(config_name=config_path("sam2.1_hiera_t.yaml")).model.image_encoder.trunk.embed_dim == 96


def test_sam2_config_rejects_foreign_targets(tmp_path):
    from common import ExportError
    from sam2_export.build import build_video_model
    from sam2_export.hub import tiny_config_yaml

    p = tmp_path / "evil.yaml"
    p.write_text(tiny_config_yaml().replace("sam2.modeling.memory_encoder.Fuser", "os.system"))
    with pytest.raises(ExportError, match="only sam2.* classes"):
        build_video_model(str(p))


def test_fast_connected_components_match_the_host_reference():
    """reference.py replaces the sam2 CUDA connected components by cv2; the host reference's
    pure-Python version (the spec the Rust port follows) must agree."""
    import torch

    import sam2.utils.misc as misc
    import sam2_host_ref as H
    from sam2_export.reference import _patch_connected_components

    _patch_connected_components()
    rng = np.random.default_rng(0)
    masks = [rng.random((40, 56)) < p for p in (0.2, 0.5, 0.8)] + [np.eye(9, dtype=bool), np.zeros((7, 5), bool)]
    for m in masks:
        lab, area = misc.get_connected_components(torch.from_numpy(m)[None, None])
        lab_ref, area_ref = H.connected_components_8(m)
        assert np.array_equal(lab[0, 0].numpy() > 0, lab_ref > 0)
        assert np.array_equal(area[0, 0].numpy(), area_ref)


# ---------------------------------------------------------------------------------------------
# the fake hub
# ---------------------------------------------------------------------------------------------
def test_hub_layout_and_determinism(hub_dir, tmp_path):
    import torch

    import make_hub_fixtures
    from pixelrefer_export.tiny import write_random_checkpoint
    from sam2_export.build import build_tiny_random

    assert sorted(os.listdir(os.path.join(hub_dir, SAM2_REPO))) == SAM2_FILES
    for repo in PIXELREFER_REPOS.values():
        assert sorted(os.listdir(os.path.join(hub_dir, repo))) == PIXELREFER_FILES
    # deterministic and idempotent: a second run (twice into the same folder) gives the same bytes
    again = str(tmp_path / "again")
    make_hub_fixtures.main([again])
    make_hub_fixtures.main([again])
    for repo, names in [(SAM2_REPO, SAM2_FILES)] + [(r, PIXELREFER_FILES) for r in PIXELREFER_REPOS.values()]:
        assert sorted(os.listdir(os.path.join(again, repo))) == names
        for n in names:
            assert _sha(os.path.join(again, repo, n)) == _sha(os.path.join(hub_dir, repo, n)), (repo, n)
    assert not [n for n in os.listdir(os.path.join(again, "facebook")) if n.startswith(".")]
    # official checkpoint format, the weights of --tiny-random (SAM 2 seed 0, PixelRefer seed 3)
    obj = torch.load(os.path.join(hub_dir, SAM2_REPO, "sam2.1_hiera_tiny.pt"), map_location="cpu", weights_only=True)
    assert list(obj) == ["model"]
    ref = build_tiny_random(0).state_dict()
    assert list(obj["model"]) == list(ref) and all(torch.equal(obj["model"][k], ref[k]) for k in ref)
    for variant, repo in PIXELREFER_REPOS.items():
        ck = str(tmp_path / f"tiny-{variant}")
        write_random_checkpoint(ck, variant, 3)
        for n in PIXELREFER_FILES[1:]:
            assert _sha(os.path.join(ck, n)) == _sha(os.path.join(hub_dir, repo, n)), (variant, n)


@pytest.mark.parametrize("variant", ["full", "lite"])
def test_hub_pixelrefer_checkpoint_export(hub_dir, tmp_path, variant):
    """export_pixelrefer.py --checkpoint <fake hub repo> --reference: progress lines, manifest, and the
    reference cases of --tiny-random (same weights), ORT-checked."""
    from pixelrefer_export.cases import cases_for
    from pixelrefer_export.export import graph_roles

    ck = os.path.join(hub_dir, PIXELREFER_REPOS[variant])
    out = tmp_path / "model"
    p, secs = _run("export_pixelrefer.py", "--checkpoint", ck, "--out", out, "--reference")
    assert p.returncode == 0, p.stderr[-4000:]
    print(f"[timing] PixelRefer {variant} --checkpoint --reference: {secs:.1f}s")
    names = [c["name"] for c in cases_for(variant)]
    _check_progress(_progress_events(p.stdout), graph_roles(variant), names)
    with open(out / "manifest.json") as f:
        m = json.load(f)
    assert m["kind"] == ("pixelrefer-lite" if variant == "lite" else "pixelrefer")
    assert m["variant"] == os.path.basename(ck) + "-fp32"
    assert m["upstream"]["checkpoint_files"]["model.safetensors"] == _sha(os.path.join(ck, "model.safetensors"))
    for rel, sha in m["files"].items():
        assert _sha(out / rel) == sha, rel
    with open(out / "reference" / "cases.json") as f:
        cases = json.load(f)["cases"]
    assert [c["name"] for c in cases] == names
    for c in cases:
        assert c["ort_check"]["same_generated_ids"] and c["ort_check"]["max_abs_diff_first_logits"] < 1e-3, c["name"]
    assert (out / "reference" / "host_vectors.json").is_file()
    # the same reference as --tiny-random writes for these weights (when ./test.sh exported it)
    tiny = os.path.join(os.environ.get("PIXELREFER_FIXTURES", "/nonexistent"),
                        "pixelrefer-lite-tiny" if variant == "lite" else "pixelrefer-tiny")
    if os.path.isfile(os.path.join(tiny, ".stamp")):
        from safetensors.numpy import load_file
        with open(os.path.join(tiny, "reference", "cases.json")) as f:
            tcases = json.load(f)["cases"]
        assert [c["turns"] for c in cases] == [c["turns"] for c in tcases]
        for c in cases:
            a, b = load_file(out / c["file"]), load_file(os.path.join(tiny, c["file"]))
            assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a), c["name"]


@pytest.mark.slow
def test_hub_sam2_checkpoint_export_with_reference(hub_dir, sam2_tiny_dir, tmp_path):
    """export_sam2.py --checkpoint <fake hub .pt> --config <its yaml> --reference writes the graphs and the
    reference/ that --tiny-random writes for the same weights (seed 0), with progress lines."""
    from safetensors.numpy import load_file

    import sam2_host_ref as H
    from sam2_export.export import GRAPH_ROLES
    from sam2_export.reference import case_names

    repo = os.path.join(hub_dir, SAM2_REPO)
    ck, cfg = os.path.join(repo, "sam2.1_hiera_tiny.pt"), os.path.join(repo, "sam2.1_hiera_t.yaml")
    out = tmp_path / "model"
    p, secs = _run("export_sam2.py", "--checkpoint", ck, "--config", cfg, "--out", out, "--reference")
    assert p.returncode == 0, p.stderr[-4000:]
    print(f"[timing] SAM 2.1 tiny --checkpoint --config FILE --reference: {secs:.1f}s")
    _check_progress(_progress_events(p.stdout), GRAPH_ROLES, case_names())
    with open(out / "manifest.json") as f:
        m = json.load(f)
    with open(os.path.join(sam2_tiny_dir, "manifest.json")) as f:
        t = json.load(f)
    up = m["upstream"]
    assert up["checkpoint"] == "sam2.1_hiera_tiny.pt" and up["sha256"] == _sha(ck)
    assert up["config"] == "sam2.1_hiera_t.yaml" and up["config_sha256"] == _sha(cfg) and up["config_source"] == "file"
    assert m["variant"] == "sam2.1_hiera_t" and m["constants"] == t["constants"]
    assert m["graphs"] == t["graphs"]
    # reference/: same files, same cases, same tensors as --tiny-random
    ref, tref = out / "reference", os.path.join(sam2_tiny_dir, "reference")
    files = lambda d: sorted(os.path.relpath(os.path.join(dp, f), d) for dp, _, fs in os.walk(d) for f in fs)  # noqa: E731
    assert files(ref) == files(tref)
    with open(ref / "cases.json") as f, open(os.path.join(tref, "cases.json")) as g:
        assert json.load(f) == json.load(g)
    for name in ("image.safetensors", "video.safetensors"):
        a, b = load_file(ref / name), load_file(os.path.join(tref, name))
        assert set(a) == set(b)
        for k in a:
            assert a[k].shape == b[k].shape and np.allclose(a[k], b[k], atol=1e-5), (name, k)
    for rel in files(ref):
        if rel.endswith(".png"):
            assert _sha(ref / rel) == _sha(os.path.join(tref, rel)), rel
    # the ORT host reference passes on it (the same graphs as --tiny-random: skip the re-run then)
    if any(m["files"][g] != t["files"][g] for g in m["files"]):
        w = H.run_reference(str(out))
        assert w["image_min_iou"] >= 0.99 and w["image_logits_max_abs_diff"] <= 1e-3 and w["video_min_iou"] >= 0.98
