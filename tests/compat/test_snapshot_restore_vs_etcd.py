"""`etcdctl snapshot save` from fastkv gives a real etcd snapshot: the proof is real etcd itself.

The same requests go to a fresh real etcd and a fresh `fastkv serve` (puts, overwrites, deletes, a
txn, leases with attached keys, enough keys for branch pages, a value that needs overflow pages, a
compaction). Then:
  1. `etcdctl snapshot status` reads both snapshots (running bbolt's consistency check) and reports
     the same revision and entry count for both; the revision is fastkv's current revision. The
     files hold the same buckets, and the key and lease buckets are byte for byte etcd's.
  2. `etcdctl snapshot restore` turns fastkv's snapshot into a data dir, real etcd starts on it, and
     it serves exactly fastkv's data: every key with value, create/mod revision, version and lease;
     the same leases with the same attached keys; the same history at the compaction boundary
     (and "compacted" below it); the next write gets the same revision.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from fastkv.backend.bbolt import read_bbolt
from fastkv.client import ops
from fastkv.client.sync import EtcdClient
from tests.conftest import free_port, stop_process, wait_port

pytestmark = pytest.mark.etcd

LEASES = {0x1234: 600, 0x5678: 900}


def _ctl(endpoint: str | None, *args, timeout: float = 60) -> subprocess.CompletedProcess:
    argv = ["etcdctl", *(["--endpoints", endpoint.replace("http://", "")] if endpoint else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"},
                          timeout=timeout)


def _ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, (p.args, p.stdout, p.stderr)
    return p.stdout


def _last_json(text: str):
    return json.loads(text.strip().splitlines()[-1])


def _workload(c: EtcdClient) -> int:
    """The same request sequence on either server; returns the compacted revision."""
    c.put(b"a", b"1")
    c.put(b"b", b"2")
    c.put(b"a", b"3")
    c.delete(b"b")
    for lease_id, ttl in LEASES.items():
        c.lease_grant(ttl, lease_id)
    c.put(b"leased/1", b"x", lease=0x1234)
    c.put(b"leased/2", b"y", lease=0x1234)
    c.put(b"leased/3", b"z", lease=0x5678)
    for i in range(300):  # several leaf pages in the key bucket, so a branch page above them
        c.put(b"many/%04d" % i, (b"value %d " % i) * 8)
    c.put(b"big", bytes(range(256)) * 800)  # ~200 KB: one leaf with overflow pages
    c.txn(success=[ops.put(b"t/1", b"1"), ops.put(b"t/2", b"2"), ops.delete(b"many/0000")])
    c.delete(b"many/01", prefix=True)  # ten tombstones in one revision
    c.put(b"leased/2", b"y2", lease=0x5678)  # moves between leases
    compact_at = c.get(b"a").header.revision - 3
    c.compact(compact_at, physical=True)  # physical: the snapshot sees the compaction finished
    c.put(b"a", b"after compaction")
    c.put(b"empty", b"")
    return compact_at


def _snapshot(endpoint: str, path) -> dict:
    assert _ok(_ctl(endpoint, "snapshot", "save", str(path))).strip() == f"Snapshot saved at {path}"
    return _last_json(_ok(_ctl(None, "snapshot", "status", str(path), "-w", "json")))


def _start_restored_etcd(snapshot, data_dir):
    cport, pport = free_port(), free_port()
    peer = f"http://127.0.0.1:{pport}"
    _ok(_ctl(None, "snapshot", "restore", str(snapshot), "--data-dir", str(data_dir), "--name", "default",
             "--initial-cluster", f"default={peer}", "--initial-advertise-peer-urls", peer))
    proc = subprocess.Popen(
        [shutil.which("etcd"), "--name", "default", "--data-dir", str(data_dir),
         "--listen-client-urls", f"http://127.0.0.1:{cport}", "--advertise-client-urls", f"http://127.0.0.1:{cport}",
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(cport)
    return proc, f"http://127.0.0.1:{cport}"


def _everything(endpoint: str, *flags) -> dict:
    out = _last_json(_ok(_ctl(endpoint, "get", "", "--prefix", "-w", "json", *flags)))
    return {"revision": out["header"]["revision"], "count": out.get("count", 0), "kvs": out.get("kvs", [])}


def _leases(endpoint: str) -> dict:
    listed = _last_json(_ok(_ctl(endpoint, "lease", "list", "-w", "json")))
    out = {}
    for lease in listed.get("leases", []):
        ttl = _last_json(_ok(_ctl(endpoint, "lease", "timetolive", "%x" % lease["id"], "--keys", "-w", "json")))
        out[lease["id"]] = (ttl["granted-ttl"], sorted(ttl.get("keys") or []))
    return out


def test_fastkv_snapshot_is_read_and_restored_by_real_etcd(etcd_endpoint, fastkv_endpoint, tmp_path):
    compacted = {}
    for name, endpoint in (("etcd", etcd_endpoint), ("fastkv", fastkv_endpoint)):
        with EtcdClient(endpoint) as c:
            compacted[name] = _workload(c)
    assert compacted["etcd"] == compacted["fastkv"]
    compact_at = compacted["fastkv"]
    fastkv_now = _everything(fastkv_endpoint)
    assert fastkv_now == _everything(etcd_endpoint)  # same starting point (ids of leases chosen)

    # 1. status: bbolt's check passes and both snapshots hold the same revision and entry count
    etcd_status = _snapshot(etcd_endpoint, tmp_path / "etcd.db")
    fastkv_status = _snapshot(fastkv_endpoint, tmp_path / "fastkv.db")
    assert fastkv_status["revision"] == etcd_status["revision"] == fastkv_now["revision"]
    assert fastkv_status["totalKey"] == etcd_status["totalKey"]
    # file level: etcd's SHA-256 trailer, etcd's buckets with as many rows each, and the key and
    # lease buckets byte for byte as etcd wrote them (same revision keys, same protobufs)
    files = {name: (tmp_path / f"{name}.db").read_bytes() for name in ("etcd", "fastkv")}
    for data in files.values():
        assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    ours, theirs = read_bbolt(files["fastkv"][:-32]), read_bbolt(files["etcd"][:-32])
    assert {b: len(rows) for b, rows in ours.items()} == {b: len(rows) for b, rows in theirs.items()}
    assert ours[b"key"] == theirs[b"key"] and len(ours[b"key"]) > 300
    assert ours[b"lease"] == theirs[b"lease"]
    assert [k for k, _ in ours[b"meta"]] == [k for k, _ in theirs[b"meta"]]
    assert dict(ours[b"meta"])[b"finishedCompactRev"] == dict(theirs[b"meta"])[b"finishedCompactRev"]

    # 2. restore into a fresh data dir and serve it with real etcd
    proc, restored = _start_restored_etcd(tmp_path / "fastkv.db", tmp_path / "restored.etcd")
    try:
        assert _everything(restored) == fastkv_now
        assert _leases(restored) == _leases(fastkv_endpoint)
        assert set(_leases(restored)) == set(LEASES)
        # history survives: readable at the compaction, "compacted" below it
        for rev in (compact_at, compact_at + 1):
            assert _everything(restored, "--rev", str(rev)) == _everything(fastkv_endpoint, "--rev", str(rev))
        below = [_ctl(ep, "get", "a", "--rev", str(compact_at - 1)) for ep in (restored, fastkv_endpoint)]
        assert [(p.returncode, p.stderr.strip().splitlines()[-1]) for p in below] == \
            [(1, "Error: etcdserver: mvcc: required revision has been compacted")] * 2
        # the restored etcd continues at fastkv's revision
        revs = [_last_json(_ok(_ctl(ep, "put", "next", "v", "-w", "json")))["header"]["revision"]
                for ep in (restored, fastkv_endpoint)]
        assert revs == [fastkv_now["revision"] + 1] * 2
        # and revoking a restored lease deletes its keys there as on fastkv
        for ep in (restored, fastkv_endpoint):
            _ok(_ctl(ep, "lease", "revoke", "%x" % 0x1234))
        assert _everything(restored) == _everything(fastkv_endpoint)
    finally:
        stop_process(proc)


def _random_workload(c: EtcdClient, rng) -> None:
    """Seeded random puts, deletes (key, range, prefix), txns, leases and compactions; the same
    seed gives the same requests on either server."""
    keys = [b"r/%02d" % i for i in range(24)]
    leases: list[int] = []
    compacted = 0
    for step in range(160):
        kind = rng.random()
        if kind < 0.45:
            size = rng.choice([0, 1, 10, 100, 5000]) if rng.random() < 0.9 else 60_000
            lease = rng.choice(leases) if leases and rng.random() < 0.3 else 0
            c.put(rng.choice(keys), rng.randbytes(size), lease=lease)
        elif kind < 0.6:
            a, b = sorted(rng.sample(keys, 2))
            c.delete(a, b if rng.random() < 0.5 else None)
        elif kind < 0.72:
            picked = rng.sample(keys, rng.randint(1, 5))
            c.txn(success=[ops.put(k, b"txn %d" % step) if rng.random() < 0.7 else ops.delete(k) for k in picked])
        elif kind < 0.8:
            lease_id = 0x1000 + step
            c.lease_grant(600, lease_id)
            leases.append(lease_id)
        elif kind < 0.85 and leases:
            c.lease_revoke(leases.pop(rng.randrange(len(leases))))
        elif kind < 0.9:
            current = c.get(b"r/").header.revision
            if current > compacted + 1:
                compacted = rng.randint(compacted + 1, current)
                c.compact(compacted, physical=True)
    c.put(b"r/last", b"end")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_histories_snapshot_like_etcds(etcd_endpoint, fastkv_endpoint, tmp_path, seed):
    """After the same random history, fastkv's snapshot holds etcd's exact key and lease buckets
    (every surviving revision, tombstone and protobuf byte) and `snapshot status` agrees."""
    import random

    files, status = {}, {}
    for name, endpoint in (("etcd", etcd_endpoint), ("fastkv", fastkv_endpoint)):
        with EtcdClient(endpoint) as c:
            _random_workload(c, random.Random(seed))
        status[name] = _snapshot(endpoint, tmp_path / f"{name}.db")
        files[name] = read_bbolt((tmp_path / f"{name}.db").read_bytes()[:-32])
    assert (status["fastkv"]["revision"], status["fastkv"]["totalKey"]) == \
        (status["etcd"]["revision"], status["etcd"]["totalKey"]), f"seed {seed}"
    for bucket in (b"key", b"lease"):
        assert files["fastkv"][bucket] == files["etcd"][bucket], f"seed {seed}, bucket {bucket!r}"
    assert dict(files["fastkv"][b"meta"]).get(b"finishedCompactRev") == \
        dict(files["etcd"][b"meta"]).get(b"finishedCompactRev"), f"seed {seed}"
