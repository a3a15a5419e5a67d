"""export_etcd_snapshot over real fastkv storage (KVStore + Lessor + alarms on LMDB and memory
backends), read back with the bbolt reader and decoded with etcd's protobufs. The end-to-end proof
that real etcd reads these files is tests/compat/test_snapshot_restore_vs_etcd.py; this file pins
each bucket's encoding and the consistency contract, including rows etcd's test does not reach
(alarms, learners, buffered writes)."""
from __future__ import annotations

import io
import json
import struct

import pytest

from fastkv.api.etcdpb import rpc_pb2
from fastkv.api.etcdpb.leasepb import lease_pb2
from fastkv.api.etcdpb.mvccpb import kv_pb2
from fastkv.backend import open_backend
from fastkv.backend.bbolt import check_bbolt, read_bbolt
from fastkv.lease import Lessor
from fastkv.mvcc import DeleteOp, KVStore, PutOp
from fastkv.server.apply import Alarms
from fastkv.server.snapshot_export import export_etcd_snapshot

ETCD_BUCKETS = [b"alarm", b"auth", b"authRoles", b"authUsers", b"cluster", b"key", b"lease", b"members",
                b"members_removed", b"meta"]


@pytest.fixture(params=["lmdb", "memory"])
def storage(request, tmp_path):
    # a long batch interval: nothing commits on its own, so the export's forced commit is what
    # makes buffered writes part of the snapshot
    be = open_backend(request.param, str(tmp_path / "db") if request.param == "lmdb" else None,
                      batch_interval=3600)
    lessor = Lessor(be, min_ttl=2)
    kv = KVStore(be, lessor=lessor)
    yield be, kv, lessor
    be.close()


def _export(be, **kw) -> dict:
    f = io.BytesIO()
    n = export_etcd_snapshot(be, f, **kw)
    data = f.getvalue()
    assert n == len(data) and check_bbolt(data) == []
    return read_bbolt(data)


def test_fresh_store_has_etcds_buckets_and_nothing_else(storage):
    be, _kv, _lessor = storage
    got = _export(be)
    assert sorted(got) == ETCD_BUCKETS
    assert got[b"key"] == got[b"lease"] == got[b"alarm"] == got[b"members"] == []
    assert got[b"cluster"] == [(b"clusterVersion", b"3.4.0")]
    assert got[b"auth"] == [(b"authRevision", struct.pack(">Q", 1))]
    # no compaction yet: etcd has no compaction keys either
    assert [k for k, _ in got[b"meta"]] in ([], [b"consistent_index"])


def test_keys_tombstones_leases_compaction_and_alarms(storage):
    be, kv, lessor = storage
    lessor.grant(7, 60)
    kv.put(PutOp(b"a", b"1"))                      # rev 2
    kv.put(PutOp(b"a", b"2", lease=7))             # rev 3
    kv.put(PutOp(b"b", b""))                       # rev 4
    kv.delete_range(DeleteOp(b"b"))                # rev 5, tombstone
    kv.compact(3)
    lessor.apply_checkpoint(7, 42)  # a checkpointed remaining TTL travels as RemainingTTL
    alarms = Alarms(be)
    alarms.activate(0xABC, rpc_pb2.NOSPACE)
    kv.set_consistent_index(99)

    got = _export(be)
    rows = [(k, kv_pb2.KeyValue.FromString(v)) for k, v in got[b"key"]]
    rev = lambda main, t=b"": struct.pack(">Q", main) + b"_" + struct.pack(">Q", 0) + t  # noqa: E731
    assert [k for k, _ in rows] == [rev(3), rev(4), rev(5, b"t")]
    assert rows[0][1] == kv_pb2.KeyValue(key=b"a", create_revision=2, mod_revision=3, version=2, value=b"2",
                                         lease=7)
    assert rows[1][1] == kv_pb2.KeyValue(key=b"b", create_revision=4, mod_revision=4, version=1)
    assert got[b"key"][2][1] == kv_pb2.KeyValue(key=b"b").SerializeToString()  # etcd's tombstone value

    meta = dict(got[b"meta"])
    assert meta[b"finishedCompactRev"] == meta[b"scheduledCompactRev"] == rev(3)
    assert meta[b"consistent_index"] == struct.pack(">Q", 99)

    ((lkey, lval),) = got[b"lease"]
    assert lkey == struct.pack(">q", 7)
    lease = lease_pb2.Lease.FromString(lval)
    assert (lease.ID, lease.TTL, lease.RemainingTTL) == (7, 60, 42)

    ((akey, aval),) = got[b"alarm"]
    assert aval == b""
    assert rpc_pb2.AlarmMember.FromString(akey) == rpc_pb2.AlarmMember(memberID=0xABC, alarm=rpc_pb2.NOSPACE)


def test_members_as_etcds_json(storage):
    be, _kv, _lessor = storage
    members = [rpc_pb2.Member(ID=0x8E9E05C52164694D, name="default", peerURLs=["http://127.0.0.1:2380"],
                              clientURLs=["http://127.0.0.1:2379"]),
               rpc_pb2.Member(ID=0x1F, name="", peerURLs=["http://10.0.0.2:2380"], isLearner=True)]
    got = dict(_export(be, members=members)[b"members"])
    # key: the id in hex without padding; value: Go's encoding of membership.Member (field order,
    # omitted empties) exactly as a real etcd 3.4 stores it
    assert got[b"8e9e05c52164694d"] == (b'{"id":10276657743932975437,"peerURLs":["http://127.0.0.1:2380"],'
                                        b'"name":"default","clientURLs":["http://127.0.0.1:2379"]}')
    assert json.loads(got[b"1f"]) == {"id": 31, "peerURLs": ["http://10.0.0.2:2380"], "isLearner": True}


def test_snapshot_is_one_commit_point_including_buffered_writes(storage):
    be, kv, _lessor = storage
    for i in range(50):
        kv.put(PutOp(b"k%02d" % i, b"v"))
    assert be.batch_tx().pending() > 0  # still buffered: the export must commit them first
    got = _export(be)
    assert len(got[b"key"]) == 50
    assert be.batch_tx().pending() == 0
    # the LMDB copy kept for fastkv's own uses still works alongside
    if hasattr(be, "path"):
        f = io.BytesIO()
        assert be.write_snapshot(f) > 0
