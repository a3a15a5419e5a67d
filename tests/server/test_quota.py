"""Quota: with --quota-backend-bytes 1 MiB, the same sequence against real etcd and fastkv.

Puts of 10 kB values eventually fail with "etcdserver: mvcc: database space exceeded"
(RESOURCE_EXHAUSTED); a NOSPACE alarm shows in `etcdctl alarm list` and in Status errors; reads and
deletes still work while puts keep failing; after compaction + defrag, `etcdctl alarm disarm`
clears it and puts work again at the next revision. Where the two servers fail differs (their
databases grow differently), so outcomes are compared relative to that point; member ids are
normalised, everything else must be equal."""
from __future__ import annotations

import re
import time

import grpc
import pytest

from fastkv.api.etcdpb import rpc_pb2
from fastkv.client.sync import EtcdClient
from tests.server._util import Member, etcdctl, free_port, start_etcd, stop_process

QUOTA = 1 << 20
VALUE = b"x" * 10000


def _norm(text: str) -> str:
    return re.sub(r"memberID:\d+", "memberID:<id>", text)


def _err(fn):
    try:
        fn()
    except grpc.RpcError as exc:
        return (exc.code().name, exc.details())
    return None


def _health(base: str) -> tuple:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(base + "/health", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _run(endpoint: str, http_base: str) -> dict:
    out: dict = {}
    c = EtcdClient(endpoint)
    try:
        accepted, failure = 0, None
        for i in range(1000):
            failure = _err(lambda: c.put(b"big/%04d" % i, VALUE))
            if failure:
                break
            accepted += 1
        out["first_failure"] = failure
        assert 10 < accepted < 1000, f"{endpoint}: {accepted} puts accepted under a 1 MiB quota"
        # the alarm is raised by a proposal of its own: wait for it (longer on a loaded machine)
        deadline = time.monotonic() + 10
        st = c.status()
        while not st.errors and time.monotonic() < deadline:
            time.sleep(0.05)
            st = c.status()
        out["db_in_use_over_quota"] = st.dbSizeInUse / QUOTA
        out["status_errors"] = [_norm(e) for e in st.errors]
        out["alarm_list"] = _norm(etcdctl(endpoint, "alarm", "list").stdout)
        out["health_during_alarm"] = _health(http_base)
        out["get_still_works"] = c.get(b"big/0000").kvs[0].value == VALUE
        out["serializable_get"] = c.get(b"big/0001", serializable=True).kvs[0].value == VALUE
        out["small_put_fails"] = _err(lambda: c.put(b"small", b"1"))
        out["lease_grant_fails"] = _err(lambda: c.lease_grant(60))
        rev = c.get(b"any").header.revision
        out["deleted_minus_accepted"] = c.delete(b"big/", prefix=True).deleted - accepted
        out["delete_rev_is_next"] = c.get(b"any").header.revision == rev + 1
        out["put_after_delete_fails"] = _err(lambda: c.put(b"small", b"1"))
        rev = c.get(b"any").header.revision
        out["compact"] = etcdctl(endpoint, "compact", str(rev)).stdout.strip() == f"compacted revision {rev}"
        out["defrag_rc"] = etcdctl(endpoint, "defrag").returncode
        out["alarm_survives_defrag"] = [_norm(e) for e in c.status().errors]
        out["put_before_disarm_fails"] = _err(lambda: c.put(b"small", b"1"))
        disarm = etcdctl(endpoint, "alarm", "disarm")
        out["disarm"] = (disarm.returncode, _norm(disarm.stdout))
        out["alarm_list_after"] = etcdctl(endpoint, "alarm", "list").stdout
        out["status_errors_after"] = list(c.status().errors)
        out["put_after_disarm_rev"] = c.put(b"small", b"1").header.revision - rev
        out["health_after"] = _health(http_base)
        return out
    finally:
        c.close()


@pytest.mark.etcd
def test_nospace_alarm_matches_real_etcd(tmp_path):
    etcd, etcd_ep = start_etcd(tmp_path / "etcd", "--quota-backend-bytes", str(QUOTA))
    metrics_url = f"http://127.0.0.1:{free_port()}"  # fastkv serves HTTP there only (known gap)
    m = Member(tmp_path / "fastkv", "--quota-backend-bytes", str(QUOTA), "--listen-metrics-urls", metrics_url).start()
    try:
        want = _run(etcd_ep, etcd_ep)
        got = _run(m.endpoint, metrics_url)
    finally:
        m.stop()
        stop_process(etcd)
    print("etcd:", want, "\nfastkv:", got)
    # how far past the quota each lets the database grow is theirs; fastkv must stay in reach of it
    assert got.pop("db_in_use_over_quota") < 2.0
    want.pop("db_in_use_over_quota")
    # every accepted put is deleted once; real etcd was seen once to differ here (a put rejected to
    # the client but applied, or the reverse, around the alarm): fastkv must be exact
    assert got.pop("deleted_minus_accepted") == 0
    want.pop("deleted_minus_accepted")
    assert want["first_failure"] == ("RESOURCE_EXHAUSTED", "etcdserver: mvcc: database space exceeded")
    assert want["status_errors"] == ["memberID:<id> alarm:NOSPACE "]
    assert got == want


def test_nospace_alarm_survives_restart(tmp_path):
    """Alarms are stored in the backend (as etcd's alarm bucket): after SIGKILL and restart the
    NOSPACE alarm is still raised and puts still fail, until it is disarmed."""
    m = Member(tmp_path / "data", "--quota-backend-bytes", str(QUOTA)).start()
    try:
        c = m.client()
        for i in range(1000):
            if _err(lambda: c.put(b"big/%04d" % i, VALUE)):
                break
        deadline = time.monotonic() + 5
        while not c.status().errors and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [_norm(e) for e in c.status().errors] == ["memberID:<id> alarm:NOSPACE "]
        member_id = c.status().header.member_id
        c.close()
        m.kill9()  # at once: if the alarm's backend batch was not committed, WAL replay must bring it back
        m.start()
        c = m.client()
        assert list(c.status().errors) == [f"memberID:{member_id} alarm:NOSPACE "]
        assert _err(lambda: c.put(b"small", b"1")) == ("RESOURCE_EXHAUSTED", "etcdserver: mvcc: database space exceeded")
        c.delete(b"big/", prefix=True)
        c.compact(c.get(b"x").header.revision)
        c.maintenance.Defragment(rpc_pb2.DefragmentRequest(), timeout=30)
        assert etcdctl(m.endpoint, "alarm", "disarm").returncode == 0
        assert list(c.status().errors) == []
        assert c.put(b"small", b"1").header.revision > 0
        c.close()
    finally:
        m.stop()
