"""unix:// client URLs as etcd takes them: the URL's host:port names a socket file in the working
directory; etcdctl reaches fastkv and real etcd through it alike (beside a TCP URL)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.etcd


def _start(kind, workdir, tcp, sock):
    peer = f"http://127.0.0.1:{free_port()}"
    urls = f"http://127.0.0.1:{tcp},unix://{sock}"
    common = ["--data-dir", "data", "--listen-client-urls", urls, "--advertise-client-urls", f"http://127.0.0.1:{tcp}",
              "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}"]
    argv = (["etcd", "--name", "default"] if kind == "etcd" else [sys.executable, "-m", "fastkv.cli", "serve"]) + common
    log = open(os.path.join(workdir, "log"), "ab")
    return subprocess.Popen(argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)


def _ctl(workdir, sock, *args):
    return subprocess.run(["etcdctl", "--endpoints", f"unix://{sock}", "--command-timeout", "5s", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})


@pytest.mark.parametrize("frontend", ["native", "grpcio"])
def test_unix_socket_client_url_like_etcd(tmp_path, frontend):
    if shutil.which("etcd") is None:
        pytest.fail("real etcd is needed: apt-get install -y etcd-server etcd-client")
    out = {}
    for kind in ("etcd", "fastkv"):
        workdir = tmp_path / kind
        workdir.mkdir()
        sock = f"localhost:{free_port()}"
        env_front = os.environ.get("FASTKV_CLIENT_FRONTEND")
        os.environ["FASTKV_CLIENT_FRONTEND"] = frontend
        try:
            proc = _start(kind, str(workdir), free_port(), sock)
        finally:
            if env_front is None:
                os.environ.pop("FASTKV_CLIENT_FRONTEND")
            else:
                os.environ["FASTKV_CLIENT_FRONTEND"] = env_front
        try:
            deadline = time.monotonic() + 30
            while _ctl(str(workdir), sock, "endpoint", "health").returncode != 0:
                assert proc.poll() is None, (workdir / "log").read_text()[-2000:]
                assert time.monotonic() < deadline, "no answer on the unix socket"
                time.sleep(0.2)
            assert (workdir / sock).exists()  # the socket file is named by the URL's host:port
            steps = [_ctl(str(workdir), sock, "put", "k", "v"), _ctl(str(workdir), sock, "get", "k"),
                     _ctl(str(workdir), sock, "del", "k"), _ctl(str(workdir), sock, "get", "k", "-w", "json")]
            out[kind] = [(p.returncode, p.stdout if "json" not in p.args else "json") for p in steps]
        finally:
            proc.terminate()
            proc.wait(20)
    assert out["fastkv"] == out["etcd"]
    assert out["etcd"][1] == (0, "k\nv\n")
