"""Snapshot catch-up of a follower 100k entries behind (issue 9's target), fastkv against a real
3-member etcd cluster in the same run.

Each cluster: 3 members with default flags (snapshot every 100,000 entries, 5,000 entries kept for
slow followers), one follower stopped, 105,000 puts through the leader (so the leader snapshots and
compacts its log past the follower: only a snapshot can bring it back), the follower restarted.
Reported: seconds from restart to the follower serving the last key (serializable read, polled
every 20 ms through the JSON gateway so no client backoff is measured), leader
changes while it caught up (must be 0: the snapshot travels on its own connection and must not
delay heartbeats), and that it needed a snapshot (fastkv: the member's log says so).

Run: python -m pytest bench/test_cluster_catchup.py -s   (a few minutes; not part of the suite)
"""
from __future__ import annotations

import asyncio
import json
import time

import pytest

from fastkv.chaos.cluster import EtcdCluster, FastkvCluster
from tests.cluster.conftest import etcdctl, leader_index

ENTRIES = 105_000
CONCURRENCY = 64


async def _load(endpoint: str, n: int) -> float:
    from fastkv.client.aio import AsyncEtcdClient

    value = b"v" * 100
    t0 = time.perf_counter()
    async with AsyncEtcdClient(endpoint, timeout=30) as cli:
        nxt = iter(range(n))

        async def worker():
            for i in nxt:
                await cli.put(b"catchup/%06d" % i, value)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - t0


def _serves(endpoint: str, key: bytes) -> bool:
    """Whether the member answers a serializable read of `key` with a value, asked through etcd's
    JSON gateway (plain HTTP, 0.2 s timeout): a member still starting refuses at once, where a
    gRPC client would wait out its reconnect backoff and add up to seconds to the figure."""
    import base64
    import urllib.request

    body = json.dumps({"key": base64.b64encode(key).decode(), "serializable": True}).encode()
    try:
        with urllib.request.urlopen(f"http://{endpoint}/v3/kv/range", data=body, timeout=0.2) as r:
            return bool(json.loads(r.read()).get("kvs"))
    except OSError:
        return False


def _leader_changes(endpoint: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=10).read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
               if l.startswith("etcd_server_leader_changes_seen_total"))


def _run(cls, base) -> dict:
    with cls(str(base), 3) as c:
        c.start()
        lead = leader_index(c)
        follower = (lead + 1) % 3
        c.kill(follower)
        changes_before = _leader_changes(c.members[lead].endpoint)
        load_s = asyncio.run(_load(c.members[lead].endpoint, ENTRIES))
        term = json.loads(etcdctl(c.members[lead].endpoint, "endpoint", "status", "-w", "json").stdout
                          )[0]["Status"]["raftTerm"]
        c.restart(follower)
        t0 = time.monotonic()
        last = b"catchup/%06d" % (ENTRIES - 1)
        deadline = t0 + 600
        while not _serves(c.members[follower].endpoint, last):
            assert time.monotonic() < deadline, "the follower did not catch up in 600 s"
            time.sleep(0.02)
        took = time.monotonic() - t0
        term_after = json.loads(etcdctl(c.members[lead].endpoint, "endpoint", "status", "-w", "json").stdout
                                )[0]["Status"]["raftTerm"]
        log = open(c.members[follower].log_path, errors="replace").read()
        return {"load_puts_per_s": ENTRIES / load_s, "catchup_s": took,
                "leader_changes": _leader_changes(c.members[lead].endpoint) - changes_before,
                "term_changed": term_after != term,
                "snapshot_installed": ("applied snapshot at index" in log) if cls is FastkvCluster else None}


@pytest.mark.timeout(1800)
def test_snapshot_catchup_100k_behind(tmp_path):
    fk = _run(FastkvCluster, tmp_path / "fastkv")
    et = _run(EtcdCluster, tmp_path / "etcd")
    print(f"\nfastkv: {fk}\netcd:   {et}\ncatch-up time fastkv/etcd: {fk['catchup_s'] / et['catchup_s']:.2f}")
    assert fk["leader_changes"] == 0 and not fk["term_changed"] and fk["snapshot_installed"]
