"""pytest-benchmark suite: the compiled revision index against its pure-Python twin.

    PYTHONPATH=src python -m pytest bench/test_index_bench.py --benchmark-group-by=param:workload

Each group holds one workload for both implementations; pytest-benchmark's table then shows the
twin's time relative to the native one (the ratio), measured in the same run. The same workloads
back `fastkv bench index-speed`, which prints the ratios directly.
"""
from __future__ import annotations

import pytest

from fastkv._native import load
from fastkv.bench.index_speed import WORKLOADS, Workloads, make_keys

N = 20_000
KEYS = make_keys(N)


@pytest.mark.parametrize("impl", ["native", "twin"])
@pytest.mark.parametrize("workload", WORKLOADS)
def test_index(benchmark, impl, workload):
    wl = Workloads(load("revindex", pure=(impl == "twin")), KEYS)
    benchmark.group = workload
    benchmark.extra_info["keys"] = N
    benchmark.pedantic(lambda op: op(), setup=lambda: ((wl.prepare(workload),), {}),
                       rounds=5 if impl == "twin" else 20, iterations=1)
