"""Cross-checks PixelRefer Studio's COCO RLE against pycocotools (run by tests/coco_pycocotools.rs).

Usage: check_coco.py WORKDIR

Reads what the Rust side wrote into WORKDIR:
  rust_masks.json    masks with their raw bytes (*.bin, row-major 0/1), PNGs and RLE strings
  instances.json     a COCO export, with expected.json mapping annotation ids to PNG files
  regions.json       a regions export, with the same expected PNGs per (object, frame)
  polygons.json      polygons for pycocotools to rasterise
Checks every Rust RLE decodes (pycocotools mask.decode) to the same pixels as the raw bytes
and the PNGs, that areas and boxes agree, and that pycocotools encodes the raw bytes to the
very same compressed string. Then writes py_out.json: masks encoded by pycocotools (compressed
and uncompressed counts) and rasterised polygons, for the Rust side to decode.
Exits non-zero with a message on the first disagreement.
"""

import json
import os
import sys

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO


def fail(message):
    print("MISMATCH: " + message, file=sys.stderr)
    sys.exit(1)


def read_raw(path, h, w):
    data = np.fromfile(path, dtype=np.uint8)
    if data.size != h * w:
        fail(f"{path}: {data.size} bytes, expected {h}x{w}")
    return data.reshape((h, w))


def read_png(path):
    img = np.array(Image.open(path))
    if img.ndim != 2:
        fail(f"{path}: not a grayscale PNG (shape {img.shape})")
    if not set(np.unique(img).tolist()) <= {0, 255}:
        fail(f"{path}: values other than 0 and 255")
    return (img > 127).astype(np.uint8)


def decode(rle):
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return mask_utils.decode({"size": rle["size"], "counts": counts})


def same(name, got, want):
    if got.shape != want.shape:
        fail(f"{name}: shape {got.shape} != {want.shape}")
    diff = int(np.count_nonzero(got != want))
    if diff:
        fail(f"{name}: {diff} pixels differ")


def check_rust_masks(work):
    masks = json.load(open(os.path.join(work, "rust_masks.json")))
    for m in masks:
        h, w, name = m["height"], m["width"], m["name"]
        raw = read_raw(os.path.join(work, m["raw"]), h, w)
        rle = m["rle"]
        same(name + " decode", decode(rle), raw)
        if h > 0 and w > 0:
            same(name + " png", read_png(os.path.join(work, m["png"])), raw)
        encoded = mask_utils.encode(np.asfortranarray(raw))
        if encoded["counts"].decode("ascii") != rle["counts"]:
            fail(f"{name}: pycocotools encodes {encoded['counts']!r}, Rust wrote {rle['counts']!r}")
        coded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        if int(mask_utils.area(coded)) != m["area"]:
            fail(f"{name}: area {mask_utils.area(coded)} != {m['area']}")
        if m["area"] > 0 and [int(v) for v in mask_utils.toBbox(coded)] != m["bbox"]:
            fail(f"{name}: bbox {mask_utils.toBbox(coded)} != {m['bbox']}")
    return len(masks)


def check_coco_export(work):
    expected = json.load(open(os.path.join(work, "expected.json")))
    coco = COCO(os.path.join(work, "instances.json"))
    n = 0
    for ann_id, png in expected["annotations"].items():
        ann = coco.anns[int(ann_id)]
        want = read_png(os.path.join(work, png))
        same(f"annotation {ann_id}", coco.annToMask(ann), want)
        rle = coco.annToRLE(ann)
        if int(mask_utils.area(rle)) != ann["area"]:
            fail(f"annotation {ann_id}: area {ann['area']} but pycocotools says {mask_utils.area(rle)}")
        if [int(v) for v in mask_utils.toBbox(rle)] != [int(v) for v in ann["bbox"]]:
            fail(f"annotation {ann_id}: bbox {ann['bbox']} but pycocotools says {mask_utils.toBbox(rle)}")
        img = coco.imgs[ann["image_id"]]
        if want.shape != (img["height"], img["width"]):
            fail(f"annotation {ann_id}: image size differs from the mask")
        n += 1
    if n != len(coco.anns):
        fail(f"{len(coco.anns)} annotations exported, {n} expected")
    regions = json.load(open(os.path.join(work, "regions.json")))
    for item in regions["items"]:
        for obj in item["objects"]:
            for frame in obj["frames"]:
                key = f"{item['index']}/{obj['id']}/{frame['index']}"
                want = read_png(os.path.join(work, expected["regions"][key]))
                same("regions " + key, decode(frame["rle"]), want)
                coded = {"size": frame["rle"]["size"], "counts": frame["rle"]["counts"].encode("ascii")}
                if int(mask_utils.area(coded)) != frame["area"]:
                    fail(f"regions {key}: area")
                if frame["area"] and [int(v) for v in mask_utils.toBbox(coded)] != frame["bbox"]:
                    fail(f"regions {key}: bbox {frame['bbox']} vs {mask_utils.toBbox(coded)}")
                n += 1
    return n


def python_encodings(work):
    rng = np.random.default_rng(1234)
    out = {"masks": [], "polygons": []}
    shapes = [(1, 1), (1, 17), (17, 1), (5, 7), (32, 31), (64, 48), (3, 300)]
    for i, (h, w) in enumerate(shapes):
        for kind in ["random", "blob", "empty", "full"]:
            if kind == "random":
                raw = (rng.random((h, w)) < rng.random()).astype(np.uint8)
            elif kind == "blob":
                yy, xx = np.mgrid[0:h, 0:w]
                raw = (((yy - h / 2) / max(h, 1)) ** 2 + ((xx - w / 3) / max(w, 1)) ** 2 < 0.08).astype(np.uint8)
            elif kind == "empty":
                raw = np.zeros((h, w), np.uint8)
            else:
                raw = np.ones((h, w), np.uint8)
            name = f"py_{kind}_{i}"
            raw.tofile(os.path.join(work, name + ".bin"))
            rle = mask_utils.encode(np.asfortranarray(raw))
            # Uncompressed counts, as pycocotools' own toolchain would write for iscrowd=1.
            runs, prev, run = [], 0, 0
            for v in raw.flatten(order="F").tolist():
                if v != prev:
                    runs.append(run)
                    run, prev = 0, v
                run += 1
            runs.append(run)
            uncompressed = mask_utils.frPyObjects({"size": [h, w], "counts": runs}, h, w)
            same(name + " uncompressed self-check", mask_utils.decode(uncompressed), raw)
            out["masks"].append({
                "name": name, "height": h, "width": w, "raw": name + ".bin",
                "counts": rle["counts"].decode("ascii"), "uncompressed": runs,
                "area": int(mask_utils.area(rle)),
            })
    polys = json.load(open(os.path.join(work, "polygons.json")))
    for k in range(60):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        group = []
        for _ in range(int(rng.integers(1, 3))):
            n = int(rng.integers(3, 9))
            pts = rng.uniform(-3, max(h, w) + 3, size=2 * n)
            if k % 3 == 0:
                pts = np.round(pts * 2) / 2  # half-pixel vertices hit the rounding cases
            group.append(pts.tolist())
        polys.append({"name": f"py_poly_{k}", "height": h, "width": w, "polygons": group})
    for p in polys:
        h, w = p["height"], p["width"]
        rles = mask_utils.frPyObjects(p["polygons"], h, w)
        rle = mask_utils.merge(rles)
        raw = mask_utils.decode(rle)
        name = p["name"]
        raw.tofile(os.path.join(work, name + ".bin"))
        out["polygons"].append({
            "name": name, "height": h, "width": w, "polygons": p["polygons"],
            "raw": name + ".bin", "counts": rle["counts"].decode("ascii"),
        })
    json.dump(out, open(os.path.join(work, "py_out.json"), "w"))
    return len(out["masks"]), len(out["polygons"])


def main():
    work = sys.argv[1]
    n_masks = check_rust_masks(work)
    n_exported = check_coco_export(work)
    n_py, n_poly = python_encodings(work)
    print(f"ok: {n_masks} Rust masks, {n_exported} exported masks, {n_py} Python masks, {n_poly} polygons")


if __name__ == "__main__":
    main()
