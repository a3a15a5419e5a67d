"""`fastkv bench auth-put` runs end to end (tiny load): both servers, auth off and on, no errors,
the ratios it reports are the ones its own runs give. Also `fastkv bench put --user` against a
server with auth on (every put must carry a valid token, or it would be refused)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.etcd


def _bench(*argv):
    p = subprocess.run([sys.executable, "-m", "fastkv.cli", "bench", *argv, "--json"], capture_output=True,
                       text=True, timeout=600, env=os.environ)
    assert p.returncode == 0, p.stderr + p.stdout
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_auth_put_reports_paired_ratios():
    r = _bench("auth-put", "--rounds", "1", "--total", "300", "--clients", "8")
    for name in ("etcd", "fastkv"):
        runs = r["servers"][name]["runs"]
        assert runs["errors"] == 0
        assert r[f"{name}_on_off_rps"] == pytest.approx(runs["on_rps"][0] / runs["off_rps"][0])


def test_bench_put_with_user_against_auth_enabled_fastkv(tmp_path):
    from tests.auth.conftest import FAST_BCRYPT, fastkv

    with fastkv(tmp_path / "f", *FAST_BCRYPT) as ep:
        env = {**os.environ, "ETCDCTL_API": "3"}
        for args in (["user", "add", "root:pw"], ["auth", "enable"]):
            subprocess.run(["etcdctl", "--endpoints", ep.replace("http://", ""), *args], check=True, env=env,
                           capture_output=True, timeout=30)
        r = _bench("put", "--endpoints", ep, "--total", "200", "--clients", "4", "--user", "root:pw")
        assert r["errors_total"] == 0
        refused = _bench_fail("put", "--endpoints", ep, "--total", "20", "--clients", "2")
        assert refused["errors_total"] == 20  # without --user every put is refused


def _bench_fail(*argv):
    p = subprocess.run([sys.executable, "-m", "fastkv.cli", "bench", *argv, "--json"], capture_output=True,
                       text=True, timeout=600, env=os.environ)
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_auth_checks_bench_prices_the_auth_path():
    r = _bench("auth-checks", "--ops", "2000", "--rounds", "1")
    assert r["on_us_per_put"] > r["off_us_per_put"] > 0
    assert r["auth_us_per_put"] == pytest.approx(r["on_us_per_put"] - r["off_us_per_put"])
