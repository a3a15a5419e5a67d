"""Clusters of real member processes on loopback: fastkv members (`fastkv serve`) and real etcd
members, started with the same etcd flags by fastkv.chaos.cluster, always torn down."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from fastkv.chaos.cluster import EtcdCluster, FastkvCluster

ETCDCTL = shutil.which("etcdctl") or "etcdctl"


def etcdctl(endpoints, *args, timeout: float = 20, check: bool = True,
            command_timeout: str = "10s") -> subprocess.CompletedProcess:
    env = {**os.environ, "ETCDCTL_API": "3"}
    eps = ",".join(endpoints) if isinstance(endpoints, (list, tuple)) else endpoints
    p = subprocess.run([ETCDCTL, "--endpoints", eps, "--command-timeout", command_timeout, *args],
                       capture_output=True, text=True, env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"etcdctl {' '.join(args)} failed: {p.stderr}")
    return p


def status(endpoints) -> list[dict]:
    return json.loads(etcdctl(endpoints, "endpoint", "status", "-w", "json").stdout)


def wait_for(cond, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
            if last:
                return last
        except (AssertionError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def leader_index(cluster) -> int:
    """Index of the member that says it leads (polled until exactly one does)."""
    def one_leader():
        live = [i for i, m in enumerate(cluster.members) if m.running]
        sts = status([cluster.members[i].endpoint for i in live])
        ids = {s["Status"]["header"]["member_id"]: live[k] for k, s in enumerate(sts)}
        leaders = {s["Status"]["leader"] for s in sts}
        if len(leaders) == 1 and next(iter(leaders)) in ids:
            return ids[next(iter(leaders))] + 1
        return None
    return wait_for(one_leader, what="one agreed leader") - 1


def _need_etcd():
    if shutil.which("etcd") is None:
        if os.environ.get("FASTKV_ALLOW_NO_ETCD"):
            pytest.skip("real etcd not installed")
        pytest.fail("real etcd is needed: apt-get install -y etcd-server etcd-client")


@pytest.fixture
def fastkv3(tmp_path):
    with FastkvCluster(str(tmp_path / "fastkv"), 3) as c:
        c.start()
        leader_index(c)
        yield c


@pytest.fixture
def etcd3(tmp_path):
    _need_etcd()
    with EtcdCluster(str(tmp_path / "etcd"), 3) as c:
        c.start()
        leader_index(c)
        yield c
