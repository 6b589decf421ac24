#!/usr/bin/env python3
"""Summarise ONNX Runtime profiles (Chrome-trace JSON files written with PIXELREFER_ORT_PROFILE=DIR,
one per graph session): per graph, the number of runs, the time per run, and the operator types
that take the time; the largest single nodes.

  python onnx/ort_profile_summary.py DIR [--top 8]
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--top", type=int, default=8)
    a = ap.parse_args(argv)
    for path in sorted(glob.glob(os.path.join(a.dir, "*.json"))):
        with open(path) as f:
            events = json.load(f)
        runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
        nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
        if not runs:
            continue
        by_op = collections.Counter()
        by_node = collections.Counter()
        for e in nodes:
            args = e.get("args", {})
            by_op[args.get("op_name", "?")] += e.get("dur", 0)
            by_node[(e["name"][: -len("_kernel_time")], args.get("op_name", "?"))] += e.get("dur", 0)
        total_run = sum(e["dur"] for e in runs)
        total_nodes = sum(by_op.values()) or 1
        name = os.path.basename(path).rsplit("_", 2)[0]
        print(f"{name}: {len(runs)} runs, {total_run / len(runs) / 1e3:.1f} ms per run "
              f"(nodes {total_nodes / len(runs) / 1e3:.1f} ms; the rest is input/output copies and scheduling)")
        for op, us in by_op.most_common(a.top):
            print(f"    {op:<28} {100 * us / total_nodes:5.1f}%  {us / len(runs) / 1e3:8.1f} ms/run")
        print("    largest nodes: " + "; ".join(
            f"{n} ({op}) {us / len(runs) / 1e3:.1f} ms" for (n, op), us in by_node.most_common(3)))


if __name__ == "__main__":
    main()
