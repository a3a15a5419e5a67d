"""Differential CORRUPT alarm test: the alarm raised through the Alarm API on a real etcd and on
fastkv; then the same requests must behave alike (which are refused with "etcdserver: corrupt
cluster", which still pass, alarm list, Status errors, disarm). How a member finds corruption
(HashKV compared with its peers) is tested on fastkv clusters in tests/cluster/test_corrupt.py."""
from __future__ import annotations

import pytest

from fastkv.api.etcdpb import rpc_pb2
from fastkv.client import ops
from fastkv.client.sync import EtcdClient
from tests.compat.test_grpc_vs_etcd import call
from tests.compat.test_restart_vs_etcd import _start_etcd
from tests.conftest import free_port, start_fastkv, stop_process

pytestmark = pytest.mark.etcd


def _session(cli) -> list:
    def rel(r):
        if isinstance(r, tuple):
            return r
        return ("ok", r.header.revision - base)

    def alarms():
        a = cli.maintenance.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=10)
        return [(m.memberID == me, rpc_pb2.AlarmType.Name(m.alarm)) for m in a.alarms]

    def alarm(action, alarm_type):
        r = cli.maintenance.Alarm(rpc_pb2.AlarmRequest(action=action, memberID=me, alarm=alarm_type), timeout=10)
        return [rpc_pb2.AlarmType.Name(m.alarm) for m in r.alarms]

    me = cli.status().header.member_id
    cli.put(b"a", b"1")
    cli.lease_grant(300, 5)
    base = cli.put(b"b", b"2").header.revision
    obs = [("raised", alarm(rpc_pb2.AlarmRequest.ACTIVATE, rpc_pb2.CORRUPT)), ("alarms", alarms()),
           ("status errors", [e.replace(str(me), "ME") for e in cli.status().errors]),
           rel(call(cli.put, b"new", b"v")),
           rel(call(cli.txn, success=[ops.put(b"t", b"v")])),
           rel(call(cli.txn, success=[ops.range_(b"a")])),      # read-only: not through the applier
           rel(call(cli.get, b"a")),
           rel(call(cli.delete, b"a")),
           rel(call(cli.lease_grant, 100, 9)),
           rel(call(cli.lease_revoke, 5)),
           rel(call(cli.compact, base)),
           ("again", alarm(rpc_pb2.AlarmRequest.ACTIVATE, rpc_pb2.CORRUPT)), ("alarms", alarms()),
           ("disarmed", alarm(rpc_pb2.AlarmRequest.DEACTIVATE, rpc_pb2.CORRUPT)), ("alarms", alarms()),
           rel(call(cli.put, b"new", b"v")),
           ("status errors", list(cli.status().errors))]
    return obs


def test_corrupt_alarm_behaves_like_etcd(tmp_path):
    ecport = free_port()
    etcd = _start_etcd(tmp_path / "etcd", ecport, free_port())
    fkv, fep = start_fastkv(tmp_path / "fastkv")
    try:
        obs = []
        for ep in (f"http://127.0.0.1:{ecport}", fep):
            with EtcdClient(ep) as cli:
                obs.append(_session(cli))
        diffs = [f"{i}\n  etcd:   {w}\n  fastkv: {g}" for i, (w, g) in enumerate(zip(*obs)) if w != g]
        assert not diffs, "\n".join(diffs)
        print(*obs[0], sep="\n")
        assert obs[0][3] == ("error", "DATA_LOSS", "etcdserver: corrupt cluster"), obs[0]
    finally:
        stop_process(etcd)
        stop_process(fkv)
