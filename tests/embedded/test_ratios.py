"""Embedded put speed as a ratio to raw py-lmdb measured in the same run (never absolute times).

`fastkv bench embedded` gives the real figure (target >= 0.5x at 100k puts; see bench/RESULTS.md);
this only catches a collapse of the put path, with a margin wide enough for a loaded 2-core CI box."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from fastkv._native import is_compiled, load
from fastkv.bench import embedded


@pytest.mark.skipif(not is_compiled(load("revwrite")), reason="FASTKV_PURE: the floor is the compiled put path's")
def test_embedded_batched_put_is_not_far_behind_raw_lmdb(tmp_path, capsys):
    args = SimpleNamespace(ops=20_000, key_size=16, val_size=256, rounds=3, dir=str(tmp_path), json=True,
                           breakdown=False)
    assert embedded.run(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["put_ratio"] >= 0.2, result


def test_breakdown_names_every_part(tmp_path):
    parts = embedded_breakdown(tmp_path)
    assert set(parts) >= {"raw_put", "full_put", "fused_put", "index_put", "commit", "db_put_layer"}
    assert all(parts[k] > 0 for k in ("raw_put", "full_put", "fused_put", "index_put", "encode", "commit"))


def embedded_breakdown(tmp_path):
    from fastkv.bench._embedded_breakdown import breakdown

    return breakdown(2000, 16, 64, str(tmp_path), rounds=1)
