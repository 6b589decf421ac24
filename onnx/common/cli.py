"""Command-line plumbing shared by the exporters: machine-readable progress lines on stdout and
one-sentence errors on stderr, so that a parent process (`pixelrefer-studio models fetch`) can show
progress and report a failure without parsing the human-readable log.

Progress: one line per step on stdout, flushed:

    [progress] {"stage": "graph", "index": 2, "total": 4, "name": "prompt_decoder"}

  stage  load | graph | reference | verify | done
  index  1-based position of this step within its stage; total = number of steps of that stage
  name   what the step works on: the checkpoint (load), the graph role (graph, verify), the
         reference case (reference), the output directory (done)

Errors: the process exits non-zero and the last stderr line is `error: <one sentence>`; an
unexpected exception prints its traceback first and then `error: <ExceptionType>: <message>`.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Callable, Optional, Sequence

PROGRESS_PREFIX = "[progress] "
STAGES = ("load", "graph", "reference", "verify", "quantize", "done")
# Longest error line we print (a state-dict mismatch can otherwise list thousands of names).
_MAX_ERROR_CHARS = 2000


class ExportError(Exception):
    """An expected failure (missing checkpoint, unreadable config, mismatched weights): reported as
    `error: <message>` without a traceback."""


def progress(stage: str, index: int, total: int, name: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"unknown progress stage {stage!r}")
    line = json.dumps({"stage": stage, "index": int(index), "total": int(total), "name": str(name)})
    sys.stdout.write(PROGRESS_PREFIX + line + "\n")
    sys.stdout.flush()


def parse_progress_line(line: str) -> Optional[dict]:
    """The JSON object of a progress line, or None for any other line (used by the tests)."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    return json.loads(line[len(PROGRESS_PREFIX):])


def one_line(message: str) -> str:
    text = " ".join(str(message).split())
    if len(text) > _MAX_ERROR_CHARS:
        text = text[:_MAX_ERROR_CHARS - 3] + "..."
    return text


def _print_error(message: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"error: {one_line(message)}\n")
    sys.stderr.flush()


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the exporters' error convention: usage, then `error: <message>`, exit code 2."""

    def error(self, message):  # noqa: D401  (argparse API)
        self.print_usage(sys.stderr)
        _print_error(message)
        sys.exit(2)


def run_main(main: Callable[[Optional[Sequence[str]]], object], argv: Optional[Sequence[str]] = None) -> int:
    """Run an exporter's main() and turn failures into the exit-code / last-stderr-line convention.
    Returns the process exit code (0 on success)."""
    try:
        main(argv)
    except ExportError as e:
        _print_error(str(e))
        return 1
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    except SystemExit as e:  # argparse (--help, usage errors) and explicit exits
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code != 0 and not isinstance(e.code, int):
            _print_error(str(e.code))
        return code
    except BaseException as e:  # noqa: BLE001  (the whole point: no failure escapes unreported)
        sys.stdout.flush()
        traceback.print_exc()
        msg = str(e)
        _print_error(f"{type(e).__name__}: {msg}" if msg else type(e).__name__)
        return 1
    sys.stdout.flush()
    return 0
