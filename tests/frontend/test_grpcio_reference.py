"""The grpcio reference front end stays proven: native is `fastkv serve`'s default, and this runs a
bounded sample of the server and differential suites with `--client-frontend grpcio` (pytest's
option, tests/conftest.py), so both front ends are checked in every CI run. The whole suites run
over grpcio with `python -m pytest --client-frontend grpcio tests/server tests/compat`.

First it checks that the switch reaches the servers the tests start: the grpcio front end does not
serve etcd's JSON gateway, the native one does.
"""
from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import start_fastkv, stop_process

pytestmark = pytest.mark.etcd

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = [
    "tests/compat/test_grpc_vs_etcd.py",
    "tests/compat/test_nospace_vs_etcd.py",
    "tests/server/test_client_port_http.py",
    "tests/server/test_limits.py",
]


def _gateway_status(endpoint: str) -> int:
    req = urllib.request.Request(endpoint + "/v3/kv/range", data=b'{"key":"Zm9v"}', method="POST")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.parametrize("frontend, gateway_status", [(None, 200), ("grpcio", 404)])
def test_the_environment_picks_the_front_end(tmp_path, frontend, gateway_status):
    env = {k: v for k, v in os.environ.items() if k != "FASTKV_CLIENT_FRONTEND"}
    if frontend:
        env["FASTKV_CLIENT_FRONTEND"] = frontend
    proc, endpoint = start_fastkv(tmp_path / "data", env=env)
    try:
        assert _gateway_status(endpoint) == gateway_status
    finally:
        stop_process(proc)


def test_sample_of_server_and_differential_suites_over_grpcio(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FASTKV_CLIENT_FRONTEND"}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--client-frontend", "grpcio",
                        "--basetemp", str(tmp_path / "runs"), *SAMPLE],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    tail = "\n".join(p.stdout.splitlines()[-30:])
    assert p.returncode == 0, f"the grpcio sample failed:\n{tail}\n{p.stderr[-2000:]}"
    assert " passed" in tail, tail
