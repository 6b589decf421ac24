"""Where the EdgeTAM reference code comes from, and how it is imported.

The official EdgeTAM code is the PyPI package `edgetam-dimos==1.0.1` (Apache-2.0). It installs a
top-level package named `sam2`, which clashes with the official `sam2==1.1.0` of the venv, so
scripts/setup.sh installs it apart (`pip install --no-deps --target <cache>/edgetam-pkg`) and the
EdgeTAM exporter puts that directory first on sys.path before anything imports `sam2`. A process
that exports EdgeTAM must therefore never import the official `sam2` package.
"""
from __future__ import annotations

import os
import sys

from common import ExportError

PACKAGE = "edgetam-dimos==1.0.1"
TIMM = "timm==1.0.15"


def package_dir() -> str:
    """$PIXELREFER_EDGETAM_PKG, else <cache>/pixelrefer-studio/edgetam-pkg (scripts/setup.sh)."""
    env = os.environ.get("PIXELREFER_EDGETAM_PKG")
    if env:
        return os.path.abspath(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "pixelrefer-studio", "edgetam-pkg")


def use_edgetam_sam2() -> str:
    """Put the EdgeTAM package first on sys.path; returns its `sam2` directory. Raises ExportError
    when it is not installed or when another `sam2` was already imported in this process."""
    d = package_dir()
    pkg = os.path.join(d, "sam2")
    if not os.path.isfile(os.path.join(pkg, "modeling", "perceiver.py")):
        raise ExportError(f"the EdgeTAM reference code ({PACKAGE}) is not installed in {d}: run scripts/setup.sh "
                          f"(or pip install --no-deps --target {d} {PACKAGE})")
    loaded = sys.modules.get("sam2")
    if loaded is not None:
        where = os.path.dirname(os.path.abspath(getattr(loaded, "__file__", "") or ""))
        if where != pkg:
            raise ExportError(f"another `sam2` package ({where}) is already imported in this process; "
                              "EdgeTAM must be exported in a process of its own")
    if d not in sys.path:
        sys.path.insert(0, d)
    try:
        import timm  # noqa: F401
    except ImportError as e:
        raise ExportError(f"EdgeTAM's RepViT image encoder needs {TIMM} (run scripts/setup.sh)") from e
    import sam2

    got = os.path.dirname(os.path.abspath(sam2.__file__))
    if got != pkg:
        raise ExportError(f"`import sam2` found {got}, not the EdgeTAM package in {pkg}")
    return pkg
