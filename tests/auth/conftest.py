"""Servers for the auth tests: real etcd and `fastkv serve` started with the same auth flags.

bcrypt cost 4 (the minimum, on both) keeps user changes fast; the flags under test (token type,
token TTL) are passed to both servers alike.

Front ends: a differential module marks itself `pytest.mark.usefixtures("client_frontend")` and
each of its tests then runs once over fastkv's native front end and once over the grpcio reference
(FASTKV_CLIENT_FRONTEND, which `fastkv serve` takes as its --client-frontend default).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager

import pytest

from tests.conftest import free_port, start_fastkv, stop_process, wait_port

FAST_BCRYPT = ("--bcrypt-cost", "4")


FRONTENDS = ("native", "grpcio")


@pytest.fixture(params=FRONTENDS)
def client_frontend(request, monkeypatch):
    """Every fastkv this test starts serves its clients through this front end."""
    monkeypatch.setenv("FASTKV_CLIENT_FRONTEND", request.param)
    return request.param


@contextmanager
def real_etcd(data_dir, *extra):
    binary = shutil.which("etcd")
    if binary is None:
        if os.environ.get("FASTKV_ALLOW_NO_ETCD"):
            pytest.skip("real etcd not installed")
        pytest.fail("real etcd is needed: apt-get install -y etcd-server etcd-client")
    cport, pport = free_port(), free_port()
    proc = subprocess.Popen(
        [binary, "--name", "default", "--data-dir", str(data_dir),
         "--listen-client-urls", f"http://127.0.0.1:{cport}", "--advertise-client-urls", f"http://127.0.0.1:{cport}",
         "--listen-peer-urls", f"http://127.0.0.1:{pport}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
         "--initial-cluster", f"default=http://127.0.0.1:{pport}", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(cport)
        yield f"http://127.0.0.1:{cport}"
    finally:
        stop_process(proc)


@contextmanager
def fastkv(data_dir, *extra):
    proc, endpoint = start_fastkv(data_dir, *extra)
    try:
        yield endpoint
    finally:
        stop_process(proc)


@contextmanager
def both(tmp_path, *extra):
    """(etcd endpoint, fastkv endpoint), both fresh, both with `extra` flags and bcrypt cost 4."""
    with real_etcd(tmp_path / "etcd", *FAST_BCRYPT, *extra) as e, fastkv(tmp_path / "fkv", *FAST_BCRYPT, *extra) as f:
        yield e, f


@pytest.fixture
def endpoints(tmp_path):
    with both(tmp_path) as eps:
        yield eps
