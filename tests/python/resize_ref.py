"""Runs the reference resizes for the bit-exactness tests of the Rust ports: OpenCV's cv2.resize
(tests/refer_cv2.rs) and Pillow's Image.resize(BICUBIC) (tests/media_resample_pillow.rs).

Usage: resize_ref.py WORKDIR

Reads WORKDIR/cases.json (a list of {"w", "h", "out_w", "out_h", "interp", "offset"}, interp one
of "linear" / "area" (cv2.INTER_LINEAR / INTER_AREA) or "pil_bicubic") and WORKDIR/inputs.bin (the
RGB8 inputs, row-major, at their byte offsets), resizes each and writes the outputs back to back
to WORKDIR/outputs.bin, and WORKDIR/info.json with cv2.__version__, PIL.__version__ and the IPP
setting that decides whether OpenCV's own (exact) code runs.
"""

import json
import os
import sys

import cv2
import numpy as np
import PIL
from PIL import Image


def main():
    work = sys.argv[1]
    with open(os.path.join(work, "cases.json")) as f:
        cases = json.load(f)
    with open(os.path.join(work, "inputs.bin"), "rb") as f:
        data = f.read()
    flags = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}
    out = bytearray()
    for c in cases:
        w, h, size = c["w"], c["h"], (c["out_w"], c["out_h"])
        img = np.frombuffer(data, np.uint8, count=w * h * 3, offset=c["offset"]).reshape(h, w, 3)
        if c["interp"] == "pil_bicubic":
            r = np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))
        else:
            r = cv2.resize(img, size, interpolation=flags[c["interp"]])
        assert r.shape == (c["out_h"], c["out_w"], 3), r.shape
        out += r.tobytes()
    with open(os.path.join(work, "outputs.bin"), "wb") as f:
        f.write(out)
    info = {"cv2": cv2.__version__, "ipp_not_exact": bool(cv2.ipp.useIPP_NotExact()),
            "pillow": PIL.__version__}
    with open(os.path.join(work, "info.json"), "w") as f:
        json.dump(info, f)
    print("ok:", len(cases), "cases, cv2", cv2.__version__, "Pillow", PIL.__version__)


if __name__ == "__main__":
    main()
