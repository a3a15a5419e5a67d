"""A backend commit never holds part of an applied entry, nor an entry without its consistent index.

With batch_limit=1 the backend wants to commit after every write; the applier's single tx block per
entry must still make each commit hold whole entries together with their index, so a restart
replays exactly the entries after it (found by the SIGKILL test: a put applied twice on restart)."""
from __future__ import annotations

from fastkv.api.etcdpb import rpc_pb2
from fastkv.backend import open_backend
from fastkv.lease.lessor import Lessor
from fastkv.mvcc import KVStore, RangeOp
from fastkv.server import request as rq
from fastkv.server.apply import Alarms, Applier


class _NoWait:
    def trigger(self, request_id, result):
        pass


def _open(path):
    be = open_backend("lmdb", path, batch_limit=1, batch_interval=0)
    lessor = Lessor(be, min_ttl=1)
    kv = KVStore(be, lessor=lessor)
    lessor.set_range_deleter(kv.delete_keys)
    return be, kv, Applier(kv, lessor, Alarms(be), _NoWait())


def test_every_commit_holds_whole_entries_with_their_index(tmp_path):
    path = str(tmp_path / "db")
    be, kv, applier = _open(path)
    snapshots = []

    def record():  # after each commit: what a crash right now would leave on disk
        snapshots.append(kv.consistent_index)

    be.add_post_commit_hook(record)
    applier.apply_normal(1, rq.encode(1, rq.LEASE_GRANT, rpc_pb2.LeaseGrantRequest(ID=7, TTL=100)))
    applier.apply_normal(2, rq.encode(2, rq.PUT, rpc_pb2.PutRequest(key=b"a", value=b"1", lease=7)))
    applier.apply_normal(3, rq.encode(3, rq.PUT, rpc_pb2.PutRequest(key=b"b", value=b"2", lease=7)))
    txn = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=b"x"))
                                      for k in (b"c", b"d", b"e")])
    applier.apply_normal(4, rq.encode(4, rq.TXN, txn))
    applier.apply_normal(5, rq.encode(5, rq.LEASE_REVOKE, rpc_pb2.LeaseRevokeRequest(ID=7)))
    assert snapshots == [1, 2, 3, 4, 5]  # one commit per entry, each at the entry's own index
    be.close()
    be, kv, applier = _open(path)
    assert kv.consistent_index == 5
    assert [x.key for x in kv.range(RangeOp(b"\x00", b"\x00")).kvs] == [b"c", b"d", b"e"]
    assert kv.current_revision == 5  # 2 puts + 1 txn + 1 revoke, from revision 1
    # replaying the same entries (as raft re-delivers them after a restart) changes nothing
    applier.apply_normal(4, rq.encode(4, rq.TXN, txn))
    assert kv.current_revision == 5
    be.close()
