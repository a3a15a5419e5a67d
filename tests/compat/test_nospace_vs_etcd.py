"""Differential NOSPACE test: both servers with a small --quota-backend-bytes are filled until the
quota alarm fires; then the same requests must behave alike (error texts and codes, which requests
the alarm blocks, alarm list, disarm). The revision at which the quota is hit depends on the backend
file layout (bbolt vs LMDB), so revisions are compared relative to the first rejected put."""
from __future__ import annotations

import grpc
import pytest

from fastkv.api.etcdpb import rpc_pb2
from fastkv.client import ops
from fastkv.client.sync import EtcdClient
from tests.compat.test_grpc_vs_etcd import call
from tests.compat.test_restart_vs_etcd import _start_etcd
from tests.conftest import free_port, start_fastkv, stop_process

pytestmark = pytest.mark.etcd

QUOTA = 256 * 1024


def _fill(cli) -> int:
    """Put 16 KiB values until the quota refuses one; returns the revision then."""
    for i in range(400):
        try:
            cli.put(b"fill/%04d" % i, b"x" * 16384)
        except grpc.RpcError as exc:
            assert (exc.code(), exc.details()) == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                                   "etcdserver: mvcc: database space exceeded")
            return cli.get(b"fill/", prefix=True, count_only=True).header.revision
    raise AssertionError("the quota never filled up")


def _after_alarm(cli, base: int) -> list:
    def rel(r):
        if isinstance(r, tuple):
            return r
        return ("ok", r.header.revision - base)

    def alarms():
        a = cli.maintenance.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=10)
        return [(m.memberID == me, rpc_pb2.AlarmType.Name(m.alarm)) for m in a.alarms]

    me = cli.status().header.member_id
    def status_errors():  # etcd's text names the member that raised the alarm
        return [e.replace(str(me), "ME") for e in cli.status().errors]

    obs = [("alarms", alarms()), ("status errors", status_errors()),
           rel(call(cli.put, b"new", b"v")),
           rel(call(cli.txn, success=[ops.put(b"t", b"v")])),
           rel(call(cli.txn, success=[ops.range_(b"fill/0000")])),          # a read-only txn passes
           rel(call(cli.get, b"fill/", prefix=True, count_only=True)),
           rel(call(cli.delete, b"fill/", prefix=True)),                     # deletes are allowed
           rel(call(cli.lease_grant, 100, 9)),
           ("still", alarms()),
           rel(call(cli.put, b"new", b"v"))]
    # compacting everything (the deletes included) and defragmenting frees the space
    obs.append(rel(call(cli.compact, cli.get(b"x").header.revision)))
    cli.maintenance.Defragment(rpc_pb2.DefragmentRequest(), timeout=60)
    disarm = cli.maintenance.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.DEACTIVATE, memberID=me,
                                                        alarm=rpc_pb2.NOSPACE), timeout=10)
    obs += [("disarmed", [rpc_pb2.AlarmType.Name(m.alarm) for m in disarm.alarms]), ("alarms", alarms()),
            rel(call(cli.put, b"new", b"v")), ("status errors", status_errors())]
    return obs


def test_nospace_alarm_behaves_like_etcd(tmp_path):
    ecport = free_port()
    etcd = _start_etcd(tmp_path / "etcd", ecport, free_port(), "--quota-backend-bytes", str(QUOTA))
    fkv, fep = start_fastkv(tmp_path / "fastkv", "--quota-backend-bytes", str(QUOTA))
    try:
        obs = []
        for ep in (f"http://127.0.0.1:{ecport}", fep):
            with EtcdClient(ep) as cli:
                base = _fill(cli)
                obs.append(_after_alarm(cli, base))
        diffs = [f"{i}\n  etcd:   {w}\n  fastkv: {g}" for i, (w, g) in enumerate(zip(*obs)) if w != g]
        assert not diffs, "\n".join(diffs)
        assert obs[0][0] == ("alarms", [(True, "NOSPACE")]), obs[0]
    finally:
        stop_process(etcd)
        stop_process(fkv)
