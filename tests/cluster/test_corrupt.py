"""Corruption detection on a 3-member fastkv cluster (etcd 3.4's corrupt checks): a follower whose
stored value was changed behind raft's back refuses to start with --experimental-initial-corrupt-check,
and without it the leader's periodic check (--experimental-corrupt-check-time) raises the CORRUPT
alarm for it, after which the cluster refuses writes as etcd does. What the alarm does is compared
with real etcd in tests/compat/test_corrupt_vs_etcd.py."""
from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import etcdctl, leader_index, wait_for

pytestmark = pytest.mark.timeout(240)


def _corrupt_one_value(data_dir: str) -> bytes:
    """Change the last byte of one stored value in a stopped member's backend (its key stays
    decodable, so the member starts; only its HashKV differs). Returns the key."""
    import os

    from fastkv.backend import KEY
    from fastkv.backend.lmdb_backend import LMDBBackend
    from fastkv.mvcc.kvstore import decode_record

    be = LMDBBackend(os.path.join(data_dir, "member", "db"))
    try:
        with be.batch_tx() as tx:
            for k, v in tx.unsafe_range(KEY, b"", b"", limit=1000):
                kv = decode_record(v)
                if kv.key.startswith(b"k") and kv.value:
                    tx.unsafe_put(KEY, k, bytes(v[:-1]) + bytes([v[-1] ^ 0x55]))
                    break
            else:
                raise AssertionError("no value to corrupt")
        be.force_commit()
        return kv.key
    finally:
        be.close()


def test_a_corrupted_follower_is_refused_at_start_and_alarmed_by_the_leader(tmp_path):
    from fastkv.chaos.cluster import FastkvCluster

    with FastkvCluster(str(tmp_path / "c"), 3, extra_flags=("--experimental-corrupt-check-time", "1s")) as c:
        c.start()
        eps = c.endpoints()
        for i in range(20):
            etcdctl(eps, "put", f"k{i:02d}", f"value-{i}")
        lead = leader_index(c)
        victim = (lead + 1) % 3
        wait_for(lambda: len({h["HashKV"]["hash"] for h in json.loads(
            etcdctl(eps, "endpoint", "hashkv", "-w", "json").stdout)}) == 1, what="equal hashes before")
        victim_id = json.loads(etcdctl(c.members[victim].endpoint, "endpoint", "status", "-w", "json").stdout
                               )[0]["Status"]["header"]["member_id"]
        c.kill(victim)
        _corrupt_one_value(c.members[victim].data_dir)
        # the initial check: the member compares its HashKV with its peers' and will not serve
        p = subprocess.run(c.members[victim].argv + ["--experimental-initial-corrupt-check"],
                           capture_output=True, text=True, timeout=120, env=c.env())
        assert p.returncode != 0, p.stderr[-2000:]
        assert f"{victim_id:x} found data inconsistency with peers" in p.stderr, p.stderr[-2000:]
        # (while that process was up, the leader may already have found it: the alarm is then raised)
        # started without the initial check, it serves, and the leader's periodic check finds it
        c.restart(victim)
        wait_for(lambda: "alarm:CORRUPT" in etcdctl(eps[lead], "alarm", "list").stdout, timeout=60,
                 what="the leader raising the CORRUPT alarm")
        listed = etcdctl(eps[lead], "alarm", "list").stdout
        assert f"memberID:{victim_id} alarm:CORRUPT" in listed, listed
        p = etcdctl(eps[lead], "put", "after", "alarm", check=False)
        assert p.returncode != 0 and "etcdserver: corrupt cluster" in p.stderr, p.stderr
        assert "value-19" in etcdctl(eps[lead], "get", "k19").stdout  # reads still pass


def test_healthy_members_pass_the_initial_check(tmp_path):
    from fastkv.chaos.cluster import FastkvCluster

    with FastkvCluster(str(tmp_path / "c"), 3, extra_flags=("--experimental-initial-corrupt-check",
                                                           "--experimental-corrupt-check-time", "1s")) as c:
        c.start()
        eps = c.endpoints()
        for i in range(10):
            etcdctl(eps, "put", f"k{i}", "v")
        c.kill(0)
        c.restart(0)   # a restart runs the initial check against live peers
        wait_for(lambda: etcdctl(c.members[0].endpoint, "get", "k9", check=False).returncode == 0,
                 timeout=60, what="the restarted member serving")
        import time

        time.sleep(3)  # a few rounds of the leader's check on a healthy cluster
        assert "CORRUPT" not in etcdctl(eps, "alarm", "list").stdout
        logs = open(c.members[0].log_path).read()
        assert "succeeded on initial corruption checking: no corruption" in logs
