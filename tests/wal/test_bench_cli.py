"""`fastkv bench wal` runs end to end and keeps its --json contract."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bench_wal_json_last_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    out = subprocess.run(
        [sys.executable, "-m", "fastkv.cli", "bench", "wal", "--entries", "3000", "--batch", "100",
         "--entry-size", "50", "--dir", str(tmp_path), "--json"],
        capture_output=True, text=True, env=env, timeout=240, check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["fsyncs"] == 30 and result["append"]["fsyncs"] == 30
    assert result["entries_per_s"] > 0 and result["mb_per_s"] > 0
    for section in ("decode", "crc32c", "codec", "raftlog"):
        assert "ratio_vs_twin" in result[section]
    assert os.listdir(tmp_path) == []  # the temporary WAL is removed


def test_bench_wal_help_explains_itself():
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    out = subprocess.run([sys.executable, "-m", "fastkv.cli", "bench", "wal", "--help"],
                         capture_output=True, text=True, env=env, check=True).stdout
    for flag in ("--entries", "--entry-size", "--batch", "--json", "--what"):
        assert flag in out
