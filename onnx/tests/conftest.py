"""Shared fixtures of the exporter tests.

Markers: `slow` (a test that runs an exporter end to end for more than about a minute on 2 CPU cores);
deselect with `-m "not slow"`.
"""
import os
import subprocess
import sys

import pytest

ONNX_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ONNX_DIR not in sys.path:
    sys.path.insert(0, ONNX_DIR)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs an exporter end to end (a minute or more on 2 CPU cores)")


@pytest.fixture(scope="session")
def sam2_tiny_dir(tmp_path_factory):
    """`export_sam2.py --tiny-random DIR --seed 0` (graphs + reference/).
    ./test.sh exports the same model (same exporter code, seed 0) into $PIXELREFER_FIXTURES before the
    suite runs; reuse it rather than spend minutes exporting it twice."""
    shared = os.path.join(os.environ.get("PIXELREFER_FIXTURES", ""), "sam2-tiny")
    if os.environ.get("PIXELREFER_FIXTURES") and os.path.isfile(os.path.join(shared, ".stamp")):
        return shared
    out = str(tmp_path_factory.mktemp("sam2tiny") / "model")
    subprocess.run([sys.executable, os.path.join(ONNX_DIR, "export_sam2.py"), "--tiny-random", out, "--seed", "0"],
                   check=True)
    return out


@pytest.fixture(scope="session")
def edgetam_tiny_dir(tmp_path_factory):
    """`export_edgetam.py --tiny-random DIR --seed 0`, shared with ./test.sh's fixtures as above."""
    shared = os.path.join(os.environ.get("PIXELREFER_FIXTURES", ""), "edgetam-tiny")
    if os.environ.get("PIXELREFER_FIXTURES") and os.path.isfile(os.path.join(shared, ".stamp")):
        return shared
    out = str(tmp_path_factory.mktemp("edgetamtiny") / "model")
    subprocess.run([sys.executable, os.path.join(ONNX_DIR, "export_edgetam.py"), "--tiny-random", out, "--seed", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="session")
def hub_dir(tmp_path_factory):
    """The fake hub of onnx/make_hub_fixtures.py (default seeds): $PIXELREFER_FIXTURES_HUB when
    scripts/make_fixtures.sh wrote it (stamped), else written here (a few seconds)."""
    shared = os.environ.get("PIXELREFER_FIXTURES_HUB", "")
    if shared and os.path.isfile(os.path.join(shared, ".stamp")):
        return shared
    out = str(tmp_path_factory.mktemp("hub") / "hub")
    subprocess.run([sys.executable, os.path.join(ONNX_DIR, "make_hub_fixtures.py"), out], check=True,
                   stdout=subprocess.DEVNULL)
    return out
