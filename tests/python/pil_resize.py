"""Runs Pillow's Image.resize(BICUBIC) for tests/media_resample_pillow.rs (bit-exactness of the
Rust port in src/media/resample.rs).

Usage: pil_resize.py WORKDIR

Reads WORKDIR/cases.json (a list of {"w", "h", "out_w", "out_h", "offset"}) and WORKDIR/inputs.bin
(the RGB8 inputs, row-major, at their byte offsets), resizes each with
Image.fromarray(img).resize((out_w, out_h), Image.BICUBIC) and writes the outputs back to back to
WORKDIR/outputs.bin, and WORKDIR/info.json with PIL.__version__.
"""

import json
import os
import sys

import numpy as np
import PIL
from PIL import Image


def main():
    work = sys.argv[1]
    with open(os.path.join(work, "cases.json")) as f:
        cases = json.load(f)
    with open(os.path.join(work, "inputs.bin"), "rb") as f:
        data = f.read()
    out = bytearray()
    for c in cases:
        w, h = c["w"], c["h"]
        img = np.frombuffer(data, np.uint8, count=w * h * 3, offset=c["offset"]).reshape(h, w, 3)
        r = np.asarray(Image.fromarray(img).resize((c["out_w"], c["out_h"]), Image.BICUBIC))
        assert r.shape == (c["out_h"], c["out_w"], 3), r.shape
        out += r.tobytes()
    with open(os.path.join(work, "outputs.bin"), "wb") as f:
        f.write(out)
    with open(os.path.join(work, "info.json"), "w") as f:
        json.dump({"version": PIL.__version__}, f)
    print("ok:", len(cases), "cases, Pillow", PIL.__version__)


if __name__ == "__main__":
    main()
