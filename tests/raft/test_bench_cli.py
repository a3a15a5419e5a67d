"""`fastkv bench raft` runs end to end and prints its figures as the last JSON line."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import fastkv

from fastkv.bench.raft import run_cluster


def test_bench_raft_json_last_line():
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(fastkv.__file__).parents[1]))
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from fastkv.cli import main; sys.exit(main())",
         "bench", "raft", "--entries", "3000", "--batch", "32", "--window", "256", "--repeat", "1",
         "--encode", "--json"],
        capture_output=True, text=True, timeout=120, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bench"] == "raft" and result["members"] == 3
    assert result["compiled_built"] is True
    assert result["compiled_entries_per_s"] > 0 and result["twin_entries_per_s"] > 0
    assert result["ratio_compiled_over_twin"] > 0


def test_bench_cluster_commits_on_every_member():
    r = run_cluster(False, 2000, 16, 8, True, 128)
    assert r["entries"] >= 2000 and r["compiled"] is True
