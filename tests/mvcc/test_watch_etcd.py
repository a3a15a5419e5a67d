"""Differential: the same writes and watch requests against real etcd 3.4 (over gRPC) and against
our KVStore + WatchableStore; the normalised watch responses must be equal.

Covers created responses, duplicate ids and empty ranges (created+canceled with etcd's reason),
history replay with prev_kv and filters, compacted start revisions (canceled with
compact_revision), live events of a txn, cancel, and a progress request when every watcher is synced.
"""
from __future__ import annotations

import queue
import threading
import time

import grpc
import pytest

from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from fastkv.mvcc import DeleteOp, PutOp, TxnOp
from fastkv.mvcc.watchable import WatchableStore

pytestmark = pytest.mark.etcd


def norm(watch_id, created, canceled, compact_revision, cancel_reason, revision, events):
    return (watch_id, created, canceled, compact_revision, cancel_reason, revision,
            tuple((int(e[0]),) + tuple(e[1:]) for e in events))


def ev_etcd(e):
    kv = e.kv
    prev = None
    if e.HasField("prev_kv"):
        p = e.prev_kv
        prev = (p.key, p.value, p.create_revision, p.mod_revision, p.version)
    return (e.type, kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, prev)


def ev_ours(e):
    kv = e.kv
    prev = None
    if e.prev_kv is not None:
        p = e.prev_kv
        prev = (p.key, p.value, p.create_revision, p.mod_revision, p.version)
    return (e.type, kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, prev)


class EtcdWatch:
    """A real etcd Watch stream: send requests, collect responses."""

    def __init__(self, channel):
        self.requests: queue.Queue = queue.Queue()
        self.responses: queue.Queue = queue.Queue()
        stub = rpc_pb2_grpc.WatchStub(channel)
        self.call = stub.Watch(iter(self.requests.get, None))
        threading.Thread(target=self._recv, daemon=True).start()

    def _recv(self):
        try:
            for r in self.call:
                self.responses.put(r)
        except grpc.RpcError:
            pass

    def send(self, **create):
        if "cancel" in create:
            self.requests.put(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=create["cancel"])))
        elif "progress" in create:
            self.requests.put(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
        else:
            self.requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(**create)))

    def collect(self, n: int, timeout: float = 10.0) -> list:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            try:
                r = self.responses.get(timeout=0.05)
            except queue.Empty:
                continue
            out.append(norm(r.watch_id, r.created, r.canceled, r.compact_revision, r.cancel_reason,
                            r.header.revision, [ev_etcd(e) for e in r.events]))
        return out

    def close(self):
        self.requests.put(None)
        self.call.cancel()


def ours_collect(stream, ws) -> list:
    ws.sync_unsynced()
    return [norm(r.watch_id, r.created, r.canceled, r.compact_revision, r.cancel_reason, r.revision,
                 [ev_ours(e) for e in r.events]) for r in stream.take()]


def test_watch_responses_match_real_etcd(etcd_endpoint, store):
    channel = grpc.insecure_channel(etcd_endpoint.replace("http://", ""))
    kvstub = rpc_pb2_grpc.KVStub(channel)
    ws = WatchableStore(store, sync_interval=0)

    def both_put(k, v):
        kvstub.Put(rpc_pb2.PutRequest(key=k, value=v))
        store.put(PutOp(k, v))

    for i in range(4):
        both_put(b"foo", b"v%d" % i)  # revs 2..5
    both_put(b"foo/a", b"x")  # 6
    kvstub.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"foo"))  # 7
    store.delete_range(DeleteOp(b"foo"))
    kvstub.Compact(rpc_pb2.CompactionRequest(revision=3, physical=True))
    store.compact(3)

    etcd = EtcdWatch(channel)
    ours = ws.new_stream()
    requests = [
        dict(key=b"foo", start_revision=2),  # compacted -> canceled with compact_revision
        dict(key=b"foo", start_revision=4, prev_kv=True),  # history with prev_kv
        dict(key=b"foo", range_end=b"fop", start_revision=4, filters=[rpc_pb2.WatchCreateRequest.NODELETE]),
        dict(key=b"foo", watch_id=7),
        dict(key=b"foo", watch_id=7),  # duplicate id
        dict(key=b"b", range_end=b"a"),  # empty range
        dict(key=b"", range_end=b"\x00"),  # everything, from now
    ]
    for req in requests:
        etcd.send(**req)
        time.sleep(0.05)  # keep etcd's created responses in request order with the history sends
    for req in requests:
        ours.watch(req["key"], req.get("range_end", b""), req.get("start_revision", 0), req.get("prev_kv", False),
                   req.get("filters", ()), watch_id=req.get("watch_id", 0))
    want = etcd.collect(7 + 3)  # 7 created + compacted cancel + two history replays
    got = ours_collect(ours, ws)
    assert len(want) == 10
    # etcd sends created responses on a control channel and history from another goroutine, so
    # only the order within one watch id is defined; compare per watch id.
    assert sorted(got, key=lambda r: (r[0], not r[1])) == sorted(want, key=lambda r: (r[0], not r[1]))

    # live: one txn, seen atomically by the watchers still alive, then a cancel
    kvstub.Txn(rpc_pb2.TxnRequest(success=[
        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"foo", value=b"t1")),
        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"foo/b", value=b"t2")),
    ]))
    store.txn(TxnOp(success=[PutOp(b"foo", b"t1"), PutOp(b"foo/b", b"t2")]))
    etcd.send(cancel=7)
    ours.cancel(7)
    want = etcd.collect(5)
    got = ours_collect(ours, ws)
    assert len(want) == 5
    assert sorted(got, key=lambda r: (r[0], r[2])) == sorted(want, key=lambda r: (r[0], r[2]))

    # every watcher is synced: a progress request answers at once with watch id -1
    etcd.send(progress=True)
    ours.request_progress()
    assert ours_collect(ours, ws) == etcd.collect(1)
    etcd.close()
    ws.close()
    channel.close()
