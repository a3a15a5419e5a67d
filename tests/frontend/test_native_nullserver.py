"""`fastkv bench ... --null-server native`: the native front end with nothing behind it answers the
load generator's calls (unary and the keep-alive stream), and the run reports its CPU per call."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import fastkv

SRC = str(pathlib.Path(fastkv.__file__).resolve().parents[1])


def bench_json(*argv) -> dict:
    proc = subprocess.run([sys.executable, "-m", "fastkv.cli", "bench", *argv, "--json"], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=SRC), timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_native_null_server_answers_put_and_keepalive():
    for wl in ("put", "lease-keepalive"):
        # enough calls that the server's CPU time is above the clock-tick resolution (10 ms)
        r = bench_json(wl, "--null-server", "native", "--total", "5000", "--clients", "8")
        assert r["ok"] == 5000 and r["errors_total"] == 0
        assert r["null_server"] and r["null_server_kind"] == "native" and r["server_cpu_us_per_op"] > 0
