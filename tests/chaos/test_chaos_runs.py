"""Whole chaos runs: real etcd and fastkv (3 members, every fault kind) must come out clean; a
planted stale read must be caught; one-member fastkv under kill/pause must come out clean.

CI runs a bounded sample (FASTKV_CHAOS_RUNS seeds, default 2, of FASTKV_CHAOS_DURATION seconds,
default 12). Run many more locally with e.g. FASTKV_CHAOS_RUNS=100.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys

import psutil
import pytest

from fastkv.chaos.runner import RunConfig, run

RUNS = int(os.environ.get("FASTKV_CHAOS_RUNS", "2"))
DURATION = float(os.environ.get("FASTKV_CHAOS_DURATION", "12"))


def _need_etcd():
    if shutil.which("etcd") is None and not os.environ.get("ETCD_BIN"):
        if os.environ.get("FASTKV_ALLOW_NO_ETCD"):
            pytest.skip("real etcd not installed")
        pytest.fail("real etcd is needed: apt-get install -y etcd-server etcd-client")


def _assert_clean(v) -> None:
    """A whole run's verdict: clean on every count, and the run did real work under real faults."""
    assert v.error == ""
    assert v.linearizable is True, (v.violation_keys, v.failing_history, v.report_path)
    assert v.lost_writes == [] and v.durable_acked > 0
    assert v.watch_ok is True and v.watch_events > 0, v.watch_issues
    assert v.converged is True, v.convergence
    # every fault was applied, except that a leader transfer may not happen: the member asked had
    # just stopped leading, or the transferee did not catch up in time (etcd too: 2 of 374 faults
    # in 100 runs; fastkv 10 of 365). Neither is a safety question; the verdict above covers those.
    not_applied = [e for e in v.fault_errors if not e.startswith("transfer ")]
    assert sum(v.faults.values()) >= 2 and not not_applied, (v.faults, v.fault_errors)
    assert v.ops > 1000 and v.clean


def _children():
    return {p.pid for p in psutil.Process().children(recursive=True)}


@pytest.mark.etcd
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", range(100, 100 + RUNS))
def test_real_etcd_comes_out_clean(seed, tmp_path):
    _need_etcd()
    before = _children()
    v = asyncio.run(run(RunConfig(target="etcd", members=3, duration=DURATION, seed=seed,
                                  out_dir=str(tmp_path), progress=False)))
    _assert_clean(v)
    # the saved history is complete and the members, proxies and data dirs are gone
    lines = [json.loads(line) for line in open(v.history_path)]
    assert sum(1 for r in lines if r["type"] == "op") == v.ops
    assert sum(1 for r in lines if r["type"] == "fault") == sum(v.faults.values())
    assert _children() <= before


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", range(200, 200 + RUNS))
def test_three_member_fastkv_comes_out_clean(seed, tmp_path):
    """The same runs against a 3-member fastkv cluster: every fault kind (kill, pause, partitions
    through the peer proxies, one-way loss, leader transfer, remove + re-add)."""
    before = _children()
    v = asyncio.run(run(RunConfig(target="fastkv", members=3, duration=DURATION, seed=seed,
                                  out_dir=str(tmp_path), progress=False)))
    _assert_clean(v)
    assert _children() <= before


@pytest.mark.timeout(300)
def test_slow_disk_on_fastkv_members_is_survived(tmp_path):
    """slowdisk switches a running member's WAL-save and commit failpoints to a 200 ms sleep and
    back (SIGUSR2 + <data-dir>/failpoints): writes slow down, nothing breaks."""
    import glob
    import tempfile

    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "fastkv-chaos-5-*")))
    v = asyncio.run(run(RunConfig(target="fastkv", members=3, duration=8, seed=5, faults=["slowdisk"],
                                  out_dir=str(tmp_path), progress=False, keep_data=True)))
    base = (set(glob.glob(os.path.join(tempfile.gettempdir(), "fastkv-chaos-5-*"))) - before).pop()
    try:
        assert v.clean and v.linearizable is True and v.converged is True, (v.error, v.convergence)
        assert sum(n for k, n in v.faults.items() if k.startswith("slowdisk")) >= 2 and not v.fault_errors
        logs = "".join(open(p).read() for p in glob.glob(os.path.join(base, "*.log")))
        assert "failpoints now: raft.wal_save.before=sleep(200)" in logs and "failpoints now: none" in logs
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.etcd
@pytest.mark.timeout(300)
def test_planted_stale_read_is_caught_and_reported(tmp_path):
    _need_etcd()
    out = subprocess.run(
        [sys.executable, "-m", "fastkv.cli", "chaos", "--duration", "6", "--seed", "3", "--faults", "pause",
         "--out", str(tmp_path), "--corrupt-history", "--json"],
        capture_output=True, text=True, timeout=240)
    assert out.returncode == 1, out.stderr
    v = json.loads(out.stdout.strip().splitlines()[-1])
    assert v["linearizable"] is False and not v["clean"]
    assert v["corrupted_op"].startswith("[client") and v["violation_keys"]
    assert v["failing_history"] and v["seed"] == 3
    page = open(v["report_path"]).read()
    assert "<svg" in page and v["violation_keys"][0] in page


@pytest.mark.timeout(300)
def test_one_member_fastkv_survives_kill_and_pause(tmp_path):
    v = asyncio.run(run(RunConfig(target="fastkv", members=1, duration=8, seed=5, faults=["kill", "pause"],
                                  out_dir=str(tmp_path), progress=False, watchers=1)))
    assert v.error == ""
    assert v.linearizable is True and v.lost_writes == [] and v.watch_ok is True, (v.failing_history, v.watch_issues)
    assert sum(v.faults.values()) >= 1 and v.clean


def test_cli_refuses_what_it_cannot_do():
    def chaos(*args):
        return subprocess.run([sys.executable, "-m", "fastkv.cli", "chaos", *args], capture_output=True,
                              text=True, timeout=60)
    out = chaos("--faults", "kill,meteor")
    assert out.returncode == 2 and "meteor" in out.stderr
    out = chaos("--help")
    assert out.returncode == 0 and "--corrupt-history" in out.stdout and "Exit status 0" in out.stdout
