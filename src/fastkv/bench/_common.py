"""Output conventions shared by every `fastkv bench` workload.

- human-readable lines on stdout while running (progress on stderr when it is a terminal);
- with --json, the *last* line of stdout is a single JSON object (scripts read only that line);
- every figure that claims speed comes with a reference measured in the same run and the ratio.
"""
from __future__ import annotations

import json
import platform
import sys
import time


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def machine_info() -> dict:
    import os

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def emit(result: dict, as_json: bool) -> None:
    """Print `result` as the final JSON line when asked (after the human lines)."""
    if as_json:
        print(json.dumps(result, sort_keys=True), flush=True)


class Progress:
    """A minimal progress line on stderr, shown only on a terminal so pipes and CI stay clean."""

    def __init__(self, label: str, total: int):
        self.label, self.total = label, max(total, 1)
        self.enabled = sys.stderr.isatty()
        self._last = 0.0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < self.total:
            return
        self._last = now
        pct = 100.0 * done / self.total
        sys.stderr.write(f"\r{self.label}: {done}/{self.total} ({pct:5.1f}%)")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
