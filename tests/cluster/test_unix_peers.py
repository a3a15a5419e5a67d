"""unix:// peer URLs, as etcd takes them (the URL's host:port names a socket file in the working
directory): a 3-member cluster whose members talk over unix sockets replicates, and a member list
shows the same URLs as a real etcd cluster started the same way."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from fastkv.netutil import free_port

from .conftest import etcdctl, wait_for

pytestmark = pytest.mark.timeout(180)


def _cluster(kind: str, base) -> tuple[list, list]:
    base.mkdir()
    names = ["u0", "u1", "u2"]
    peers = {n: f"unix://localhost:{free_port()}" for n in names}
    initial = ",".join(f"{n}={u}" for n, u in peers.items())
    procs, endpoints = [], []
    for n in names:
        client = f"http://127.0.0.1:{free_port()}"
        flags = ["--name", n, "--data-dir", n, "--listen-client-urls", client, "--advertise-client-urls", client,
                 "--listen-peer-urls", peers[n], "--initial-advertise-peer-urls", peers[n],
                 "--initial-cluster", initial, "--initial-cluster-token", "unix-peers"]
        argv = (["etcd"] if kind == "etcd" else [sys.executable, "-m", "fastkv.cli", "serve"]) + flags
        log = open(base / f"{n}.log", "ab")
        procs.append(subprocess.Popen(argv, cwd=base, stdout=log, stderr=subprocess.STDOUT))
        endpoints.append(client.split("://", 1)[1])
    return procs, endpoints


@pytest.mark.parametrize("kind", ["fastkv", "etcd"])
def test_members_talk_over_unix_sockets(tmp_path, kind):
    if kind == "etcd" and shutil.which("etcd") is None:
        pytest.fail("real etcd is needed: apt-get install -y etcd-server etcd-client")
    procs, eps = _cluster(kind, tmp_path / kind)
    try:
        wait_for(lambda: etcdctl(eps[0], "put", "over", "unix", check=False, command_timeout="2s").returncode == 0,
                 timeout=60, what="a write on a cluster with unix peer URLs")
        for e in eps:
            wait_for(lambda e=e: "unix" in etcdctl(e, "get", "over", "--consistency=s", check=False).stdout,
                     what="every member applied the write")
        members = json.loads(etcdctl(eps, "member", "list", "-w", "json").stdout)["members"]
        urls = sorted(u for m in members for u in m["peerURLs"])
        assert len(urls) == 3 and all(u.startswith("unix://localhost:") for u in urls), urls
        assert all(os.path.exists(tmp_path / kind / u.split("://", 1)[1]) for u in urls)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
