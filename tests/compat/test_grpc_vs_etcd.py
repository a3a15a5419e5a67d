"""Differential tests over gRPC (fastkv.client.sync.EtcdClient): the same scenario runs against a
fresh real etcd and a fresh `fastkv serve`; each scenario returns a list of observations that must
be equal. Normalised: cluster/member ids and raft terms (cleared from headers), hashes and db sizes
(checked for presence only), the server version string. Revisions, values, watch ids, counts, error
texts and codes are compared exactly.

Both servers run with their default election timeout (1000 ms), so both raise lease TTLs below
2 s to 2 s (ceil(1.5 x election timeout)).

Not compared: progress_notify, because etcd 3.4 sends it every 10 minutes and no flag of both
servers shortens it; request_progress (a progress request on a synced stream) is compared instead.
"""
from __future__ import annotations

import os
import queue
import threading
import time

import grpc
import pytest

from fastkv.api.etcdpb import rpc_pb2
from fastkv.client import ops
from fastkv.client.sync import EtcdClient

pytestmark = pytest.mark.etcd


def run_both(etcd_endpoint, fastkv_endpoint, scenario):
    results = []
    for ep in (etcd_endpoint, fastkv_endpoint):
        with EtcdClient(ep) as cli:
            results.append(scenario(cli))
    want, got = results
    if os.environ.get("FASTKV_COMPAT_PRINT"):
        print(*want, sep="\n")
    diffs = [f"observation {i}\n  etcd:   {w}\n  fastkv: {g}" for i, (w, g) in enumerate(zip(want, got)) if g != w]
    assert not diffs, "\n".join(diffs)
    assert len(got) == len(want)
    return want


def call(fn, *args, **kw):
    """Result of one unary call, or ('error', code name, details)."""
    try:
        return fn(*args, **kw)
    except grpc.RpcError as exc:
        return ("error", exc.code().name, exc.details())


def kv(k) -> tuple:
    return (k.key, k.value, k.create_revision, k.mod_revision, k.version, k.lease)


def range_obs(r) -> tuple:
    if isinstance(r, tuple):
        return r
    return (r.header.revision, [kv(k) for k in r.kvs], r.count, r.more)


def watch_obs(r) -> tuple:
    events = [(e.type, kv(e.kv), kv(e.prev_kv) if e.HasField("prev_kv") else None) for e in r.events]
    return (r.header.revision, r.watch_id, r.created, r.canceled, r.compact_revision, r.cancel_reason,
            r.fragment, events)


class Stream:
    """A Watch stream whose responses are pumped into a queue by a thread."""

    def __init__(self, cli: EtcdClient, first: rpc_pb2.WatchRequest):
        from fastkv.client.sync import Watch

        self.w = Watch(cli.watch_stub, first, None)
        self.q: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        try:
            for r in self.w:
                self.q.put(r)
        except grpc.RpcError:
            pass

    def send(self, req):
        self.w.send(req)

    def take(self, n: int = 1, timeout: float = 10) -> list:
        out = []
        for _ in range(n):
            out.append(watch_obs(self.q.get(timeout=timeout)))
        return out

    def take_until(self, revision: int, timeout: float = 10) -> list:
        """Responses until one carries an event at `revision`; events then flattened, since how
        many revisions one response batches is not part of etcd's contract (order and atomicity are)."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            r = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            out.append(watch_obs(r))
            if any(e.kv.mod_revision >= revision for e in r.events):
                return out

    def quiet(self, seconds: float = 0.5) -> list:
        """Whatever arrives within `seconds` (expected: nothing)."""
        time.sleep(seconds)
        out = []
        while not self.q.empty():
            out.append(watch_obs(self.q.get()))
        return out

    def close(self):
        self.w.close()


def _seed(cli):
    cli.put(b"a", b"1")                     # 2
    cli.put(b"b", b"2")                     # 3
    cli.put(b"a", b"3")                     # 4
    cli.delete(b"b")                        # 5
    cli.txn(success=[ops.put(b"c", b"4"), ops.put(b"ab", b"5")])  # 6


def test_watch_history_filters_cancel_progress_and_compaction(etcd_endpoint, fastkv_endpoint):
    def scenario(cli):
        obs = []
        _seed(cli)
        s = Stream(cli, ops.watch_create(b"a", prefix=True, start_revision=1, prev_kv=True))
        try:
            obs += s.take(1)                       # created
            obs.append(s.take_until(6))            # history replay with prev_kv
            s.send(ops.watch_create(b"b", start_revision=1, no_put=True))
            obs += s.take(1)
            obs.append(s.take_until(5))            # only the delete of b
            s.send(ops.watch_create(b"a", b"c", start_revision=2, no_delete=True))  # range [a, c)
            obs += s.take(1)
            obs.append(s.take_until(6))
            s.send(ops.watch_create(b"c"))         # from now
            obs += s.take(1)
            obs.append(s.quiet(0.3))
            # live events for every watcher on the stream
            cli.put(b"b", b"x")                    # 7: watcher 1 (NOPUT) skips it, watcher 2 sees it
            cli.delete(b"a", prefix=True)          # 8
            cli.put(b"c", b"y")                    # 9
            got = []
            deadline = time.monotonic() + 10
            expected = {(0, 8), (2, 7), (3, 9)}  # (watch id, revision) each watcher must see
            while time.monotonic() < deadline and not expected <= {(w[1], e[1][3]) for w in got for e in w[7]}:
                got += s.take(1)
            got += s.quiet(0.3)
            obs.append(sorted(got, key=lambda w: (w[1], w[0])))  # per-watcher order is what matters
            s.send(ops.watch_cancel(1))
            obs += s.take(1)                       # canceled
            cli.delete(b"b")                       # 10: watcher 1 is gone
            obs.append(s.quiet(0.5))
            s.send(ops.watch_progress())           # synced stream: a progress bookmark
            obs += s.take(1)
            s.send(ops.watch_cancel(77))           # unknown id: etcd answers nothing
            obs.append(s.quiet(0.3))
            c = call(cli.compact, 8)
            obs.append(c if isinstance(c, tuple) else ("compacted", c.header.revision))
            s.send(ops.watch_create(b"a", start_revision=3))
            obs += s.take(1)                       # created, then canceled with compact_revision
            obs += s.take(1)
            s.send(ops.watch_create(b"a", start_revision=8, prev_kv=True))  # exactly at compaction
            obs += s.take(1)
            obs.append(s.quiet(0.3))
        finally:
            s.close()
        return obs

    run_both(etcd_endpoint, fastkv_endpoint, scenario)


def test_watch_fragment_splits_one_large_revision(etcd_endpoint, fastkv_endpoint):
    big = b"v" * (450 * 1024)

    def scenario(cli):
        obs = []
        for i in range(6):
            cli.put(b"f%d" % i, big)               # 2..7
        frag = Stream(cli, ops.watch_create(b"f", prefix=True, prev_kv=True, fragment=True))
        whole = Stream(cli, ops.watch_create(b"f", prefix=True, prev_kv=True))
        try:
            obs += frag.take(1)
            obs += whole.take(1)
            # 8: six deletes with 450 KiB prev values each: 2.7 MB, over etcd's limit of
            # --max-request-bytes (1.5 MiB) + 512 KiB gRPC overhead for one watch response
            cli.delete(b"f", prefix=True)
            for s in (frag, whole):
                got = s.take_until(8)
                got += s.quiet(0.3)
                # the value bytes are compared through their lengths to keep failure output readable
                obs.append([(w[0], w[6], [(e[0], e[1][0], e[1][3], len(e[2][1])) for e in w[7]]) for w in got])
        finally:
            frag.close()
            whole.close()
        return obs

    obs = run_both(etcd_endpoint, fastkv_endpoint, scenario)
    assert len(obs[2]) > 1 and obs[2][0][1] is True, "the fragmenting watcher got one response"
    assert len(obs[3]) == 1, "the non-fragmenting watcher must get the revision in one response"


def test_range_count_only_and_bounds(etcd_endpoint, fastkv_endpoint):
    def scenario(cli):
        _seed(cli)
        return [range_obs(call(cli.get, b"", from_key=True, count_only=True)),
                range_obs(call(cli.get, b"a", prefix=True, count_only=True, revision=4)),
                range_obs(call(cli.get, b"", from_key=True, count_only=True, limit=1)),
                range_obs(call(cli.get, b"", from_key=True, keys_only=True, min_mod_revision=5)),
                range_obs(call(cli.get, b"", from_key=True, max_create_revision=2, serializable=True))]

    run_both(etcd_endpoint, fastkv_endpoint, scenario)


def _lease_obs(r):
    if isinstance(r, tuple):
        return r
    if isinstance(r, rpc_pb2.LeaseGrantResponse):
        return ("grant", r.header.revision, r.ID, r.TTL, r.error)
    if isinstance(r, rpc_pb2.LeaseTimeToLiveResponse):
        return ("ttl", r.header.revision, r.ID, r.TTL if r.TTL <= 0 else "live", r.grantedTTL, sorted(r.keys))
    if isinstance(r, rpc_pb2.LeaseLeasesResponse):
        return ("leases", r.header.revision, sorted(lease.ID for lease in r.leases))
    if isinstance(r, rpc_pb2.LeaseRevokeResponse):
        return ("revoke", r.header.revision)
    if isinstance(r, rpc_pb2.PutResponse):
        return ("put", r.header.revision)
    raise TypeError(type(r))


def test_lease_errors_keepalive_and_expiry(etcd_endpoint, fastkv_endpoint):
    def scenario(cli):
        obs = [_lease_obs(call(cli.lease_grant, 100, 1000)),
               _lease_obs(call(cli.lease_grant, 100, 1000)),          # duplicate id
               _lease_obs(call(cli.lease_grant, 9_000_000_001, 1001)),  # above etcd's MaxLeaseTTL
               _lease_obs(call(cli.lease_grant, 1, 1002)),            # raised to the minimum TTL
               _lease_obs(call(cli.lease_revoke, 424242)),
               _lease_obs(call(cli.lease_time_to_live, 424242, keys=True)),
               _lease_obs(call(cli.put, b"k", b"v", lease=424242)),
               _lease_obs(call(cli.put, b"k1", b"v", lease=1000)),
               _lease_obs(call(cli.put, b"k2", b"v", lease=1000)),
               _lease_obs(call(cli.put, b"k3", b"v", lease=1002)),
               _lease_obs(call(cli.put, b"k4", b"v", lease=1002)),
               _lease_obs(call(cli.lease_time_to_live, 1000, keys=True)),
               _lease_obs(call(cli.lease_leases))]
        # keep-alive: a live lease renews to its TTL; a missing one answers TTL 0 on the stream
        requests = [rpc_pb2.LeaseKeepAliveRequest(ID=i) for i in (1000, 424242, 1000)]
        stream = cli.lease.LeaseKeepAlive(iter(requests), timeout=10)
        try:
            obs.append([(r.ID, r.TTL, r.header.revision) for r in stream])
        except grpc.RpcError as exc:
            obs.append(("error", exc.code().name, exc.details()))
        # 1002 (TTL 2 s) expires: both its keys go in one revision, proposed by the leader
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and cli.get(b"k3").count:
            time.sleep(0.1)
        obs.append(range_obs(cli.get(b"k", prefix=True)))
        obs.append(_lease_obs(call(cli.lease_time_to_live, 1002)))
        obs.append(range_obs(call(cli.get, b"k", prefix=True, revision=6)))
        # revoking 1000 deletes k1, k2 in one revision
        obs.append(_lease_obs(call(cli.lease_revoke, 1000)))
        obs.append(range_obs(cli.get(b"k", prefix=True)))
        obs.append(_lease_obs(call(cli.lease_leases)))
        s = Stream(cli, ops.watch_create(b"k", prefix=True, start_revision=2))
        try:
            obs += s.take(1)
            obs.append(s.take_until(7))
        finally:
            s.close()
        return obs

    obs = run_both(etcd_endpoint, fastkv_endpoint, scenario)
    deletes = [(e[0], e[1][3]) for w in obs[-1] for e in w[7] if e[0] == 1]
    assert deletes == [(1, 6), (1, 6), (1, 7), (1, 7)], deletes


def test_maintenance_status_hashkv_alarm_fields(etcd_endpoint, fastkv_endpoint):
    def scenario(cli):
        _seed(cli)
        obs = []
        st = cli.status()
        obs.append(("status", st.header.revision, bool(st.version), st.dbSize > 0, st.leader == st.header.member_id,
                    st.raftIndex > 0, st.raftAppliedIndex == st.raftIndex, st.raftTerm > 0, list(st.errors),
                    st.isLearner, st.dbSizeInUse > 0))
        for rev in (0, 4, 6, 100):
            h = call(cli.maintenance.HashKV, rpc_pb2.HashKVRequest(revision=rev), timeout=10)
            obs.append(h if isinstance(h, tuple) else ("hashkv", h.header.revision, h.hash != 0, h.compact_revision))
        cli.compact(4)
        for rev in (3, 4, 0):
            h = call(cli.maintenance.HashKV, rpc_pb2.HashKVRequest(revision=rev), timeout=10)
            obs.append(h if isinstance(h, tuple) else ("hashkv", h.header.revision, h.hash != 0, h.compact_revision))
        a = cli.maintenance.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=10)
        obs.append(("alarm", a.HasField("header"), a.header.revision, list(a.alarms)))
        m = cli.member_list()
        obs.append(("members", m.header.revision, len(m.members), m.members[0].name, m.members[0].isLearner))
        for rev in (4, 50, 6):
            c = call(cli.kv.Compact, rpc_pb2.CompactionRequest(revision=rev), timeout=10)
            obs.append(c if isinstance(c, tuple) else ("compacted", c.header.revision))
        return obs

    run_both(etcd_endpoint, fastkv_endpoint, scenario)


def test_watch_ids_future_start_and_bad_requests(etcd_endpoint, fastkv_endpoint):
    def scenario(cli):
        obs = []
        _seed(cli)
        s = Stream(cli, ops.watch_create(b"a", watch_id=7))      # client-chosen id
        try:
            obs += s.take(1)
            s.send(ops.watch_create(b"b", watch_id=7))           # duplicate id on the stream
            obs += s.take(1)
            s.send(ops.watch_create(b"b"))                       # server-chosen id after 7
            obs += s.take(1)
            s.send(ops.watch_create(b"z", start_revision=9))     # future start: waits for rev 9
            obs += s.take(1)
            s.send(ops.watch_create(b"", range_end=b""))         # empty key
            obs += s.quiet(0.5)
            s.send(ops.watch_create(b"d", range_end=b"c"))       # range_end < key
            obs += s.quiet(0.5)
            cli.put(b"z", b"7")                                  # 7
            cli.put(b"z", b"8")                                  # 8
            cli.put(b"z", b"9")                                  # 9
            cli.put(b"a", b"10")                                 # 10
            got = s.take_until(10)
            got += s.quiet(0.3)
            obs.append(sorted(got, key=lambda w: (w[1], w[0])))
            s.send(ops.watch_cancel(7))
            obs += s.take(1)
            s.send(ops.watch_cancel(7))                          # already canceled
            obs.append(s.quiet(0.3))
        finally:
            s.close()
        return obs

    run_both(etcd_endpoint, fastkv_endpoint, scenario)


def test_lease_edge_cases(etcd_endpoint, fastkv_endpoint):
    def scenario(cli):
        obs = [_lease_obs(call(cli.lease_grant, 0, 2000)),          # TTL 0: raised to the minimum
               _lease_obs(call(cli.lease_grant, -5, 2001)),
               _lease_obs(call(cli.lease_grant, 9_000_000_000, 2002)),  # exactly MaxLeaseTTL
               _lease_obs(call(cli.lease_grant, 10, -1)),
               _lease_obs(call(cli.lease_time_to_live, 2002)),
               _lease_obs(call(cli.put, b"x", b"1", lease=2002)),
               _lease_obs(call(cli.put, b"x", b"2", ignore_lease=True)),
               range_obs(cli.get(b"x")),
               _lease_obs(call(cli.put, b"x", b"3", lease=2002, ignore_lease=True)),
               _lease_obs(call(cli.put, b"x", b"3")),                  # detaches the lease
               _lease_obs(call(cli.lease_time_to_live, 2002, keys=True)),
               _lease_obs(call(cli.lease_revoke, 2002)),
               range_obs(cli.get(b"x")),
               _lease_obs(call(cli.lease_revoke, 0)),
               _lease_obs(call(cli.lease_leases))]
        return obs

    run_both(etcd_endpoint, fastkv_endpoint, scenario)


def _hdr(resp) -> tuple:
    """Which header fields a response carries (ids and term values differ legitimately)."""
    if not resp.HasField("header"):
        return ("no header",)
    h = resp.header
    return (h.revision, h.cluster_id != 0, h.member_id != 0, h.raft_term != 0)


def test_maintenance_headers_limits_and_snapshot_stream(etcd_endpoint, fastkv_endpoint):
    import hashlib

    from fastkv.backend.bbolt import check_bbolt

    def scenario(cli):
        _seed(cli)
        m = cli.maintenance
        obs = [("defrag", _hdr(m.Defragment(rpc_pb2.DefragmentRequest(), timeout=30))),
               ("hash", _hdr(m.Hash(rpc_pb2.HashRequest(), timeout=10))),
               ("status", _hdr(cli.status())),
               ("members", _hdr(cli.member_list())),
               ("grant", _hdr(cli.lease_grant(100, 5))),
               ("ttl", _hdr(cli.lease_time_to_live(5))),
               ("keepalive", _hdr(cli.lease_keepalive_once(5))),
               ("revoke", _hdr(cli.lease_revoke(5)))]
        me = cli.status().header.member_id
        obs.append(("moveleader-self", _hdr(m.MoveLeader(rpc_pb2.MoveLeaderRequest(targetID=me), timeout=10))))
        obs.append(call(m.MoveLeader, rpc_pb2.MoveLeaderRequest(targetID=me + 1), timeout=10))
        # a leased key deleted before its lease is revoked: the revoke changes nothing, no new revision
        cli.lease_grant(100, 6)
        cli.put(b"leased", b"v", lease=6)
        cli.delete(b"leased")
        obs.append(("revoke-empty", _hdr(cli.lease_revoke(6)), cli.get(b"x").header.revision))
        # request size limits: over --max-request-bytes (1.5 MiB) is etcd's error; over the gRPC
        # receive limit (+512 KiB) is gRPC's
        for size in (1024 * 1024, 1600 * 1024):
            r = call(cli.put, b"big", b"x" * size)
            obs.append(r if isinstance(r, tuple) else ("put", r.header.revision))
        r = call(cli.txn, success=[ops.put(b"t%d" % i, b"") for i in range(129)])
        obs.append(r if isinstance(r, tuple) else ("txn", r.header.revision))
        # Snapshot: chunks with decreasing remaining_bytes, last chunk is the SHA-256 of the rest
        chunks = list(m.Snapshot(rpc_pb2.SnapshotRequest(), timeout=30))
        data = b"".join(c.blob for c in chunks)
        obs.append(("snapshot", chunks[-1].remaining_bytes, all(c.HasField("header") for c in chunks),
                    hashlib.sha256(data[:-32]).digest() == data[-32:], len(data) > 32,
                    # both are bbolt files that pass the checks bbolt's tx.Check makes
                    check_bbolt(data[:-32])))
        return obs

    run_both(etcd_endpoint, fastkv_endpoint, scenario)
