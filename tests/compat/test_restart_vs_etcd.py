"""Differential restart test: the same writes, leases and compaction on a real etcd and on fastkv,
then both restarted on their data dirs (SIGTERM) and compared again: revisions, keys, leases (with
their keys), the compaction, and the revision the next write gets must all carry over alike."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from fastkv.client.sync import EtcdClient
from tests.compat.test_grpc_vs_etcd import _lease_obs, call, range_obs
from tests.conftest import free_port, start_fastkv, stop_process, wait_port

pytestmark = pytest.mark.etcd


def _start_etcd(data_dir, cport, pport, *extra):
    binary = shutil.which("etcd")
    assert binary, "real etcd is needed: apt-get install -y etcd-server etcd-client"
    proc = subprocess.Popen(
        [binary, "--name", "default", "--data-dir", str(data_dir),
         "--listen-client-urls", f"http://127.0.0.1:{cport}", "--advertise-client-urls", f"http://127.0.0.1:{cport}",
         "--listen-peer-urls", f"http://127.0.0.1:{pport}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
         "--initial-cluster", f"default=http://127.0.0.1:{pport}", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(cport)
    return proc


def _before(cli):
    cli.put(b"a", b"1")                       # 2
    cli.put(b"b", b"2")                       # 3
    cli.lease_grant(300, 77)
    cli.put(b"l1", b"x", lease=77)            # 4
    cli.put(b"a", b"3")                       # 5
    cli.delete(b"b")                          # 6
    cli.compact(4)
    return [range_obs(cli.get(b"\0", from_key=True))]


def _after(cli):
    ttl = cli.lease_time_to_live(77, keys=True)
    return [range_obs(cli.get(b"\0", from_key=True)),
            _lease_obs(cli.lease_leases()),
            ("ttl", ttl.ID, ttl.grantedTTL, list(ttl.keys), 250 < ttl.TTL <= 300),
            range_obs(call(cli.get, b"a", revision=3)),      # compacted before the restart
            range_obs(call(cli.get, b"a", revision=4)),
            ("put", cli.put(b"c", b"after").header.revision),
            range_obs(cli.get(b"\0", from_key=True)),
            _lease_obs(cli.lease_revoke(77)),
            range_obs(cli.get(b"\0", from_key=True))]


def _until_ready(endpoint):
    """A restarted server may take a moment to elect itself: retry the first read."""
    import time

    import grpc

    deadline = time.monotonic() + 15
    with EtcdClient(endpoint, timeout=2) as cli:
        while True:
            try:
                cli.get(b"a")
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def test_state_survives_restart_like_etcd(tmp_path):
    ecport = free_port()
    etcd = _start_etcd(tmp_path / "etcd", ecport, free_port())
    fkv, fep = start_fastkv(tmp_path / "fastkv")
    fport = int(fep.rsplit(":", 1)[1])
    eep = f"http://127.0.0.1:{ecport}"
    try:
        obs, ids = [], []
        for ep in (eep, fep):
            with EtcdClient(ep) as cli:
                obs.append(_before(cli))
                ids.append(cli.status().header.member_id)
        assert obs[1] == obs[0]
        stop_process(etcd)
        stop_process(fkv)
        # both restart with new peer URLs (fresh ports): the member keeps its id, taken from the
        # WAL, not derived again from the flags
        etcd = _start_etcd(tmp_path / "etcd", ecport, free_port())
        fkv, fep = start_fastkv(tmp_path / "fastkv", port=fport)
        obs = []
        for ep, member_id in zip((eep, fep), ids):
            _until_ready(ep)
            with EtcdClient(ep) as cli:
                obs.append(_after(cli))
                assert cli.status().header.member_id == member_id
                assert [m.ID for m in cli.member_list().members] == [member_id]
        diffs = [f"{i}\n  etcd:   {w}\n  fastkv: {g}" for i, (w, g) in enumerate(zip(*obs)) if w != g]
        assert not diffs, "\n".join(diffs)
        assert obs[0][5] == ("put", 7)
    finally:
        stop_process(etcd)
        stop_process(fkv)
