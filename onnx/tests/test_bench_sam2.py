"""The PyTorch worker of the SAM 2 benchmark (onnx/bench_sam2.py, started by benches/sam2.rs) on the
tiny fixtures: it must run the model family the directory holds (an EdgeTAM directory once ran SAM
2.1 here), and report every metric the Rust side compares, the steady-state frames included."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ONNX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ONNX_DIR, "bench_sam2.py")
N_FRAMES = 10  # more than num_maskmem (7): the last frames attend to a full memory bank


def _scene(w, h, t):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([90 + 60 * np.sin(x / w * 3.1), 110 + 40 * np.cos(y / h * 2.5),
                    140 + 30 * np.sin((x + y) / 9)], -1)
    img[(x - (0.25 + 0.3 * t) * w) ** 2 + (y - 0.35 * h) ** 2 < (0.12 * w) ** 2] = [210, 50, 40]
    img[(abs(x - (0.7 - 0.2 * t) * w) < 0.08 * w) & (abs(y - 0.6 * h) < 0.1 * h)] = [235, 210, 60]
    return Image.fromarray(img.astype(np.uint8))


def _inputs(root):
    os.makedirs(root / "frames")
    _scene(200, 120, 0.3).save(root / "image.png")
    for i in range(N_FRAMES):
        _scene(160, 96, i / (N_FRAMES - 1)).save(root / "frames" / f"{i:05}.png")


def _serve_one_round(model_dir, inputs):
    r = subprocess.run([sys.executable, WORKER, "--model-dir", model_dir, "--inputs", str(inputs),
                        "--threads", "1", "--clicks", "2"],
                       input='{"round": 0}\n', capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 2, r.stdout[-2000:]
    return lines[0], lines[1]


@pytest.mark.parametrize("family", ["sam2", "edgetam"])
def test_worker_runs_the_directory_model_and_reports_bank_frames(family, sam2_tiny_dir, edgetam_tiny_dir,
                                                                  tmp_path):
    model_dir = sam2_tiny_dir if family == "sam2" else edgetam_tiny_dir
    _inputs(tmp_path)
    ready, answer = _serve_one_round(model_dir, tmp_path)
    assert ready["ready"] is True
    expected = "EdgeTAMVideoPredictor" if family == "edgetam" else "SAM2VideoPredictor"
    assert ready["model_class"] == expected, ready
    m = answer["metrics"]
    assert len(m["encoder_ms"]) == 2 and len(m["decoder_ms"]) == 2
    assert len(m["propagation_ms_per_frame_per_object"]) == 1
    # one sample per frame: frames 1 .. num_maskmem - 1 fill the bank, the later ones find it full
    # (the Rust side's bank_frames)
    filling = m["filling_propagation_ms_per_frame_per_object"]
    steady = m["steady_propagation_ms_per_frame_per_object"]
    assert len(filling) == ready["num_maskmem"] - 1, (len(filling), ready["num_maskmem"])
    assert len(steady) == N_FRAMES - ready["num_maskmem"], (len(steady), ready["num_maskmem"])
    assert all(v > 0 for v in filling + steady)
    # fresh pages the process took per click and per tracked frame: present and never negative
    for k in ("minor_page_faults_per_click", "minor_page_faults_per_tracked_frame"):
        assert len(m[k]) == 1 and m[k][0] >= 0, (k, m[k])
    assert answer["peak_rss_mib"] > 0
