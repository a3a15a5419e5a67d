"""The `fastkv bench index-memory` and `index-speed` subcommands, run for real.

Memory figures are allocator byte counts, not times, so the targets are asserted directly:
<= 60 bytes per key beyond the key bytes at 1,000,000 keys of 16 bytes, <= 16 bytes per extra
version (etcd documents ~120 + key and ~30).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import fastkv

SRC = os.path.dirname(os.path.dirname(os.path.abspath(fastkv.__file__)))


def fastkv_cli(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-m", "fastkv.cli", *args], env=env, check=True,
                         stdout=subprocess.PIPE, text=True, timeout=240).stdout
    lines = out.strip().splitlines()
    assert len(lines) > 1  # human-readable lines come first
    return json.loads(lines[-1])


def test_index_memory_per_key_target_at_1m_keys():
    res = fastkv_cli("bench", "index-memory", "--keys", "1000000", "--json")
    assert res["method"].startswith("glibc mallinfo2")
    assert (res["keys"], res["versions"], res["key_size"]) == (1_000_000, 1, 16)
    assert res["bytes_per_key_beyond_key"] == res["bytes_per_key"] - 16
    assert 16 < res["bytes_per_key"]  # the key bytes are stored
    assert res["bytes_per_key_beyond_key"] <= 60, res
    assert res["bytes_per_extra_version"] is None


def test_index_memory_per_extra_version_target():
    res = fastkv_cli("bench", "index-memory", "--keys", "200000", "--versions", "4", "--json")
    assert 0 < res["bytes_per_extra_version"] <= 16, res
    assert res["bytes_per_key_beyond_key"] <= 60, res


def test_index_memory_with_twin_reference():
    res = fastkv_cli("bench", "index-memory", "--keys", "20000", "--versions", "4", "--with-twin",
                     "--json")
    assert res["twin"]["method"].startswith("tracemalloc")
    assert res["ratio_twin_over_native_per_key"] > 2  # Python objects per key and per revision
    assert res["ratio_twin_over_native_per_extra_version"] > 2


def test_index_memory_twin_and_sorted_order_report():
    res = fastkv_cli("bench", "index-memory", "--impl", "twin", "--keys", "3000", "--versions", "2",
                     "--order", "sorted", "--key-size", "24", "--json")
    assert res["method"].startswith("tracemalloc")
    assert res["bytes_per_key"] > 24 and res["bytes_per_extra_version"] > 0


def test_index_speed_reports_ratios():
    res = fastkv_cli("bench", "index-speed", "--keys", "2000", "--repeat", "1",
                     "--workload", "get", "--workload", "range", "--json")
    assert set(res["ratio_twin_over_native"]) == {"get", "range"}
    assert all(r > 0 for r in res["ratio_twin_over_native"].values())
    assert res["geomean_ratio"] > 0


def test_help_explains_itself():
    env = dict(os.environ, PYTHONPATH=SRC)
    for sub in ("index-memory", "index-speed"):
        out = subprocess.run([sys.executable, "-m", "fastkv.cli", "bench", sub, "--help"], env=env,
                             check=True, stdout=subprocess.PIPE, text=True).stdout
        assert "twin" in out and "--json" in out
