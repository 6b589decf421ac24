"""The Python side of the interleaved benchmark harness (benches/support/harness.rs): one JSON
object per line on stdout, one request per line on stdin."""
from __future__ import annotations

import json
import sys
from typing import Dict, Iterator


def say(obj) -> None:
    """Writes one JSON line to stdout and flushes it (the harness waits for it)."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def requests() -> Iterator[Dict]:
    """The harness's requests, until stdin closes or `{"quit": true}` comes; other lines are skipped."""
    for line in sys.stdin:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        if not isinstance(req, dict):
            continue
        if req.get("quit"):
            return
        yield req
