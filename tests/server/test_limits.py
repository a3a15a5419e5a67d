"""Reads and request limits, the same sequence against real etcd and fastkv started with the same
--max-request-bytes / --max-txn-ops: linearizable and serializable reads see every acknowledged
write; too large requests and too many txn ops fail with etcd's text and code and change nothing.
Revisions, values and errors must be equal."""
from __future__ import annotations

import grpc
import pytest

from fastkv.api.etcdpb import rpc_pb2
from fastkv.client.sync import EtcdClient
from tests.server._util import Member, start_etcd, stop_process

FLAGS = ("--max-request-bytes", "4096", "--max-txn-ops", "4")


def _call(fn):
    try:
        r = fn()
    except grpc.RpcError as exc:
        return ("error", exc.code().name, exc.details())
    return ("ok", r.header.revision)


def _puts(n: int, size: int = 1):
    return [rpc_pb2.PutRequest(key=b"t%d" % i, value=b"v" * size) for i in range(n)]


def _sequence(endpoint: str) -> list:
    c = EtcdClient(endpoint)
    out = []
    try:
        for i in range(5):
            r = c.put(b"k", b"v%d" % i)
            lin, ser = c.get(b"k"), c.get(b"k", serializable=True)
            # a read issued after the ack sees it, either way
            out.append(("read", r.header.revision, lin.kvs[0].value, lin.kvs[0].mod_revision,
                        ser.kvs[0].value, ser.kvs[0].mod_revision, lin.header.revision, ser.header.revision))
        out.append(_call(lambda: c.put(b"small", b"x" * 1000)))
        out.append(_call(lambda: c.put(b"large", b"x" * 8000)))
        out.append(_call(lambda: c.put(b"large", b"x" * 400000)))
        out.append(_call(lambda: c.txn([], _puts(1, 8000))))
        out.append(_call(lambda: c.txn([], _puts(4))))
        out.append(_call(lambda: c.txn([], _puts(5))))
        out.append(_call(lambda: c.txn([], [], _puts(5))))
        out.append(_call(lambda: c.txn([], [rpc_pb2.RangeRequest(key=b"k%d" % i) for i in range(5)])))
        nested = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=p) for p in _puts(3)])
        out.append(_call(lambda: c.txn([], [nested])))
        out.append(_call(lambda: c.get(b"large")))
        out.append(("large-absent", len(c.get(b"large").kvs)))
        out.append(("serializable-range", [(kv.key, kv.mod_revision) for kv in c.get(b"\0", b"\0", serializable=True).kvs]))
        return out
    finally:
        c.close()


@pytest.mark.etcd
def test_reads_and_limits_match_real_etcd(tmp_path):
    etcd, etcd_ep = start_etcd(tmp_path / "etcd", *FLAGS)
    m = Member(tmp_path / "fastkv", *FLAGS).start()
    try:
        want = _sequence(etcd_ep)
        got = _sequence(m.endpoint)
    finally:
        m.stop()
        stop_process(etcd)
    print(*want, sep="\n")
    assert ("error", "INVALID_ARGUMENT", "etcdserver: request is too large") in want
    assert ("error", "INVALID_ARGUMENT", "etcdserver: too many operations in txn request") in want
    assert got == want


@pytest.mark.etcd
def test_grpc_message_limit_is_max_request_bytes_plus_512k_as_etcd(tmp_path):
    """Past --max-request-bytes + 512 KiB the gRPC layer refuses the message (RESOURCE_EXHAUSTED)
    at the same limit as etcd. Known difference: the text comes from grpc-core here ("SERVER:
    Received message larger than max (N vs. M)") and from grpc-go in etcd ("grpc: received message
    larger than max (N vs. M)"); the sizes in it are compared, the prefix is not."""
    import re

    etcd, etcd_ep = start_etcd(tmp_path / "etcd", "--max-request-bytes", "4096")
    m = Member(tmp_path / "fastkv", "--max-request-bytes", "4096").start()
    try:
        out = {}
        for name, ep in (("etcd", etcd_ep), ("fastkv", m.endpoint)):
            c = EtcdClient(ep)
            res = []
            for size in (500000, 530000):
                try:
                    c.put(b"k", b"x" * size)
                    res.append("ok")
                except grpc.RpcError as exc:
                    sizes = re.search(r"larger than max \((\d+ vs\. \d+)\)", exc.details())
                    res.append((exc.code().name, sizes.group(1) if sizes else exc.details()))
            c.close()
            out[name] = res
    finally:
        m.stop()
        stop_process(etcd)
    assert out["etcd"] == [("INVALID_ARGUMENT", "etcdserver: request is too large"),
                           ("RESOURCE_EXHAUSTED", "530007 vs. 528384")]
    assert out["fastkv"] == out["etcd"]
