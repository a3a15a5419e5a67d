"""Differential: the lessor's client-visible lease facts against real etcd 3.4 (etcdctl -w json).

The same sequence goes to a fresh real etcd (default election timeout 1000 ms, hence minimum TTL
ceil(1.5 s) = 2) and to a Lessor with min_ttl=2 on a real KVStore: granted TTLs after raising to
the minimum, the MaxLeaseTTL boundary, error texts, TimeToLive truncation and attached keys, and a
revoke deleting the attached keys in one revision.
"""
from __future__ import annotations

import base64
import json
import subprocess
import time

import pytest

from fastkv.errors import ErrLeaseNotFound, ErrLeaseTTLTooLarge, EtcdError
from fastkv.mvcc import PutOp


def etcdctl(endpoint: str, *args: str):
    """(parsed JSON or None, error text or None) of one etcdctl call."""
    proc = subprocess.run(["etcdctl", "--endpoints", endpoint, "-w", "json", *args], capture_output=True,
                          text=True, timeout=30, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    if proc.returncode != 0:
        return None, next(line for line in proc.stderr.splitlines() if line.startswith("Error:"))
    return json.loads(proc.stdout), None


def ours(fn, *args):
    try:
        return fn(*args), None
    except EtcdError as exc:
        return None, str(exc)


@pytest.mark.etcd
def test_lease_facts_match_real_etcd(etcd_endpoint, wire_member):
    from fastkv.backend import open_backend

    be = open_backend("memory", batch_interval=0)
    member = wire_member(be, min_ttl=2)
    lessor = member.lessor
    lessor.clock = time.monotonic  # wall time on both sides for TimeToLive
    lessor.promote(0.0)
    try:
        # TTL raised to the minimum; the maximum is allowed; one more is refused with etcd's text.
        for n, ttl in enumerate((1, 2, 9_000_000_000), start=1):
            theirs, err = etcdctl(etcd_endpoint, "lease", "grant", str(ttl))
            assert err is None
            assert lessor.grant(n, ttl).ttl == theirs["TTL"]
        theirs, err = etcdctl(etcd_endpoint, "lease", "grant", "9000000001")
        _, our_err = ours(lessor.grant, 99, 9_000_000_001)
        assert err == "Error: failed to grant lease (etcdserver: too large lease TTL)"
        assert our_err == ErrLeaseTTLTooLarge.message and our_err in err

        # Unknown lease: revoke and keep-alive fail with the same text.
        _, err = etcdctl(etcd_endpoint, "lease", "revoke", "1234")
        _, our_err = ours(lessor.revoke, 0x1234)
        assert our_err == ErrLeaseNotFound.message and our_err in err
        _, err = etcdctl(etcd_endpoint, "lease", "keep-alive", "--once", "1234")
        _, our_err = ours(lessor.renew, 0x1234)
        assert our_err == ErrLeaseNotFound.message and our_err in err

        # TimeToLive right after grant: remaining is truncated (10 s granted -> 9 s), keys listed.
        granted, _ = etcdctl(etcd_endpoint, "lease", "grant", "10")
        lease_hex = "%x" % granted["ID"]
        for key in ("zz", "aa"):
            _, err = etcdctl(etcd_endpoint, "put", "--lease=" + lease_hex, key, "v")
            assert err is None
        lessor.grant(10, 10)
        for key in (b"zz", b"aa"):
            member.kv.put(PutOp(key, b"v", lease=10))
        ttl_resp, _ = etcdctl(etcd_endpoint, "lease", "timetolive", lease_hex, "--keys")
        granted_ttl, remaining, keys = lessor.time_to_live(10, keys=True)
        assert granted_ttl == ttl_resp["granted-ttl"] == 10
        # Truncated, never rounded up to 10 (9 unless the machine stalled a second in between).
        assert remaining in (8, 9) and ttl_resp["ttl"] in (8, 9)
        # etcd lists keys in map order; ours are sorted. Same set.
        assert sorted(base64.b64decode(k) for k in ttl_resp["keys"]) == keys

        # Revoke deletes both keys in one revision.
        before, _ = etcdctl(etcd_endpoint, "get", "aa")
        _, err = etcdctl(etcd_endpoint, "lease", "revoke", lease_hex)
        assert err is None
        after, _ = etcdctl(etcd_endpoint, "get", "aa")
        our_before = member.kv.current_revision
        lessor.revoke(10)
        assert after["header"]["revision"] - before["header"]["revision"] == 1
        assert member.kv.current_revision - our_before == 1
        assert after.get("kvs") is None and member.get(b"aa") is None and member.get(b"zz") is None

        # Leases listed: etcd has the three grants from the start (and not the revoked one).
        listed, _ = etcdctl(etcd_endpoint, "lease", "list")
        assert len(listed["leases"]) == len(lessor.leases()) == 3
    finally:
        be.close()
