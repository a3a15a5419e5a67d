"""`fastkv serve --client-frontend native` through three independent clients: grpcio (Python),
etcdctl (grpc-go) and plain HTTP/1.1 on the same port; and the same unary sequence against real
etcd, compared response by response."""
from __future__ import annotations

import json
import subprocess
import threading
import urllib.request

import grpc
import pytest

from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from tests.conftest import start_fastkv, stop_process


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    proc, endpoint = start_fastkv(tmp_path_factory.mktemp("native") / "data", "--client-frontend", "native")
    try:
        yield endpoint
    finally:
        stop_process(proc)


def stubs(endpoint):
    ch = grpc.insecure_channel(endpoint.replace("http://", ""))
    return ch, rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.LeaseStub(ch), rpc_pb2_grpc.MaintenanceStub(ch), \
        rpc_pb2_grpc.ClusterStub(ch), rpc_pb2_grpc.WatchStub(ch)


def code_of(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return None


def test_grpcio_unary_kv_lease_cluster_maintenance(native):
    ch, kv, lease, maint, cluster, _w = stubs(native)
    with ch:
        put = kv.Put(rpc_pb2.PutRequest(key=b"g/a", value=b"1"), timeout=10)
        assert put.header.revision >= 2 and put.header.member_id and put.header.cluster_id
        got = kv.Range(rpc_pb2.RangeRequest(key=b"g/a"), timeout=10)
        assert [(k.key, k.value, k.version) for k in got.kvs] == [(b"g/a", b"1", 1)]
        ser = kv.Range(rpc_pb2.RangeRequest(key=b"g/a", serializable=True), timeout=10)
        assert ser.kvs[0].value == b"1"
        txn = kv.Txn(rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=b"g/a", target=rpc_pb2.Compare.VALUE, result=rpc_pb2.Compare.EQUAL,
                                     value=b"1")],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"g/b", value=b"2"))]), timeout=10)
        assert txn.succeeded
        assert code_of(kv.Put, rpc_pb2.PutRequest(key=b"", value=b"x"), timeout=10) == \
            (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
        assert code_of(kv.Range, rpc_pb2.RangeRequest(key=b"g/a", revision=10**9), timeout=10) == \
            (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
        deleted = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"g/", range_end=b"g0", prev_kv=True), timeout=10)
        assert deleted.deleted == 2 and sorted(k.key for k in deleted.prev_kvs) == [b"g/a", b"g/b"]
        kv.Compact(rpc_pb2.CompactionRequest(revision=deleted.header.revision), timeout=10)
        assert code_of(kv.Range, rpc_pb2.RangeRequest(key=b"g/a", revision=1), timeout=10) == \
            (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")

        g = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=10)
        ttl = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=g.ID), timeout=10)
        assert ttl.grantedTTL == 30 and 0 < ttl.TTL <= 30
        assert g.ID in [l.ID for l in lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=10).leases]
        lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=g.ID), timeout=10)
        assert code_of(lease.LeaseRevoke, rpc_pb2.LeaseRevokeRequest(ID=g.ID), timeout=10) == \
            (grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")

        members = cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=10)
        assert len(members.members) == 1 and members.header.revision == 0
        st = maint.Status(rpc_pb2.StatusRequest(), timeout=10)
        assert st.version == "3.4.23" and st.leader == st.header.member_id
        assert not maint.Alarm(rpc_pb2.AlarmRequest(), timeout=10).HasField("header")
        kv.Put(rpc_pb2.PutRequest(key=b"g/h", value=b"h"), timeout=10)
        hkv = maint.HashKV(rpc_pb2.HashKVRequest(), timeout=10)
        assert hkv.hash and hkv.compact_revision == deleted.header.revision
        assert maint.Hash(rpc_pb2.HashRequest(), timeout=10).hash
        maint.Defragment(rpc_pb2.DefragmentRequest(), timeout=10)
        assert code_of(maint.MoveLeader, rpc_pb2.MoveLeaderRequest(targetID=12345), timeout=10) == \
            (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: bad leader transferee")


def test_grpcio_many_concurrent_calls_on_one_channel(native):
    ch, kv, *_ = stubs(native)
    with ch:
        futures = [kv.Put.future(rpc_pb2.PutRequest(key=b"c/%d" % i, value=b"v"), timeout=30) for i in range(300)]
        revs = sorted(f.result().header.revision for f in futures)
        assert len(set(revs)) == 300
        assert kv.Range(rpc_pb2.RangeRequest(key=b"c/", range_end=b"c0", count_only=True), timeout=10).count == 300


def test_grpcio_unknown_method_is_unimplemented(native):
    with grpc.insecure_channel(native.replace("http://", "")) as ch:
        fn = ch.unary_unary("/etcdserverpb.KV/NoSuchMethod")
        with pytest.raises(grpc.RpcError) as err:
            fn(b"", timeout=10)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpcio_message_over_limit_is_resource_exhausted(native):
    ch, kv, *_ = stubs(native)
    with ch:
        big = b"v" * (1572864 + 512 * 1024 + 1)
        got = code_of(kv.Put, rpc_pb2.PutRequest(key=b"big", value=big), timeout=30)
        assert got is not None and got[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        # just under the gRPC limit but over --max-request-bytes: etcd's own error
        mid = b"v" * (1572864 + 1024)
        assert code_of(kv.Put, rpc_pb2.PutRequest(key=b"mid", value=mid), timeout=30) == \
            (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")
        assert kv.Put(rpc_pb2.PutRequest(key=b"after", value=b"ok"), timeout=10).header.revision


def test_grpcio_watch_and_keepalive_streams(native):
    ch, kv, lease, _m, _c, watch = stubs(native)
    with ch:
        reqs = [rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"w/", range_end=b"w0"))]
        got = []
        done = threading.Event()
        sent = threading.Event()

        def req_iter():
            yield from reqs
            done.wait(30)

        def reader():
            for resp in watch.Watch(req_iter(), timeout=30):
                got.append(resp)
                if resp.created:
                    sent.set()
                if sum(len(r.events) for r in got) >= 3:
                    break
            done.set()

        t = threading.Thread(target=reader)
        t.start()
        assert sent.wait(20)
        for i in range(3):
            kv.Put(rpc_pb2.PutRequest(key=b"w/%d" % i, value=b"x"), timeout=10)
        t.join(30)
        events = [(e.kv.key, e.kv.value) for r in got for e in r.events]
        assert events == [(b"w/0", b"x"), (b"w/1", b"x"), (b"w/2", b"x")]
        assert got[0].created

        g = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=20), timeout=10)
        answers = list(lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=g.ID)] * 3), timeout=20))
        assert [(a.ID, a.TTL) for a in answers] == [(g.ID, 20)] * 3
        gone = list(lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=424242)]), timeout=20))
        assert [(a.ID, a.TTL) for a in gone] == [(424242, 0)]


def etcdctl(endpoint, *args, input=None):
    return subprocess.run(["etcdctl", "--endpoints", endpoint.replace("http://", ""), "--command-timeout=20s",
                           *args], capture_output=True, text=True, input=input, timeout=60)


def test_etcdctl_grpc_go_client(native, tmp_path):
    assert etcdctl(native, "put", "ctl/k", "v1").stdout.strip() == "OK"
    out = json.loads(etcdctl(native, "get", "ctl/k", "-w", "json").stdout)
    assert out["kvs"][0]["value"] == "djE="  # base64 "v1"
    r = etcdctl(native, "get", "ctl/k", "--rev=999999")
    assert r.returncode != 0 and "required revision is a future revision" in r.stderr
    assert etcdctl(native, "txn", input="\n\nput ctl/t 1\n\n").stdout.startswith("SUCCESS")
    lease = etcdctl(native, "lease", "grant", "30").stdout.split()[1]
    once = etcdctl(native, "lease", "keep-alive", "--once", lease)
    assert once.returncode == 0 and "keepalived with TTL(30)" in once.stdout
    snap = tmp_path / "snap.db"
    saved = etcdctl(native, "snapshot", "save", str(snap))
    assert saved.returncode == 0, saved.stderr
    status = subprocess.run(["etcdctl", "snapshot", "status", str(snap), "-w", "json"], capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0 and json.loads(status.stdout)["totalKey"] >= 2
    watcher = subprocess.Popen(["etcdctl", "--endpoints", native.replace("http://", ""), "watch", "ctl/w"],
                               stdout=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            etcdctl(native, "put", "ctl/w", "seen")
            watcher.stdout.flush()
            import select

            if select.select([watcher.stdout], [], [], 0.5)[0]:
                line = watcher.stdout.readline().strip()
                break
        assert line == "PUT"
    finally:
        watcher.terminate()
        watcher.wait(10)


def test_http1_on_the_same_port(native):
    assert json.loads(urllib.request.urlopen(native + "/health", timeout=10).read()) == {"health": "true"}
    assert json.loads(urllib.request.urlopen(native + "/version", timeout=10).read())["etcdserver"] == "3.4.23"
    assert b"etcd_server_has_leader 1" in urllib.request.urlopen(native + "/metrics", timeout=10).read()


@pytest.fixture
def fresh_native(tmp_path):
    proc, endpoint = start_fastkv(tmp_path / "fresh", "--client-frontend", "native")
    try:
        yield endpoint
    finally:
        stop_process(proc)


@pytest.mark.etcd
def test_unary_sequence_matches_real_etcd(fresh_native, etcd_endpoint):
    """Fresh servers; responses compared byte for byte without cluster/member ids and raft terms."""
    native = fresh_native

    def scenario(endpoint, prefix):
        ch, kv, lease, maint, *_ = stubs(endpoint)
        out = []
        with ch:
            base = kv.Put(rpc_pb2.PutRequest(key=prefix + b"x", value=b"0"), timeout=10).header.revision

            def obs(fn, req):
                try:
                    r = fn(req, timeout=10)
                except grpc.RpcError as exc:
                    return ("error", exc.code().name, exc.details())
                d = r.__class__()
                d.CopyFrom(r)
                if d.HasField("header"):
                    d.header.revision -= base
                    d.header.ClearField("cluster_id")
                    d.header.ClearField("member_id")
                    d.header.ClearField("raft_term")
                for k in getattr(d, "kvs", []):
                    k.create_revision -= base
                    k.mod_revision -= base
                if hasattr(d, "prev_kv") and d.HasField("prev_kv"):
                    d.prev_kv.create_revision -= base
                    d.prev_kv.mod_revision -= base
                return d.SerializeToString(deterministic=True)

            p = prefix
            out.append(obs(kv.Put, rpc_pb2.PutRequest(key=p + b"a", value=b"1", prev_kv=True)))
            out.append(obs(kv.Put, rpc_pb2.PutRequest(key=p + b"a", value=b"2", prev_kv=True)))
            out.append(obs(kv.Put, rpc_pb2.PutRequest(key=p + b"a", ignore_value=True)))
            out.append(obs(kv.Put, rpc_pb2.PutRequest(key=p + b"nope", ignore_value=True)))
            out.append(obs(kv.Put, rpc_pb2.PutRequest(key=b"", value=b"1")))
            out.append(obs(kv.Range, rpc_pb2.RangeRequest(key=p, range_end=p[:-1] + b"0")))
            out.append(obs(kv.Range, rpc_pb2.RangeRequest(key=p, range_end=p[:-1] + b"0", limit=1, count_only=True)))
            out.append(obs(kv.Range, rpc_pb2.RangeRequest(key=p + b"a", revision=10**9)))
            out.append(obs(kv.Txn, rpc_pb2.TxnRequest(
                compare=[rpc_pb2.Compare(key=p + b"a", target=rpc_pb2.Compare.VERSION,
                                         result=rpc_pb2.Compare.GREATER, version=5)],
                success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=p + b"s", value=b"s"))],
                failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=p + b"a"))])))
            out.append(obs(kv.Txn, rpc_pb2.TxnRequest(success=[
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=p + b"d", value=b"1")),
                rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=p + b"d", value=b"2"))])))
            out.append(obs(kv.DeleteRange, rpc_pb2.DeleteRangeRequest(key=p + b"a", prev_kv=True)))
            out.append(obs(kv.DeleteRange, rpc_pb2.DeleteRangeRequest(key=b"")))
            out.append(obs(lease.LeaseRevoke, rpc_pb2.LeaseRevokeRequest(ID=99)))
            out.append(obs(lease.LeaseTimeToLive, rpc_pb2.LeaseTimeToLiveRequest(ID=99)))
            out.append(obs(kv.Put, rpc_pb2.PutRequest(key=p + b"l", value=b"1", lease=99)))
            out.append(obs(maint.Alarm, rpc_pb2.AlarmRequest()))
            out.append(obs(maint.MoveLeader, rpc_pb2.MoveLeaderRequest(targetID=7)))
        return out

    want = scenario(etcd_endpoint, b"seq/")
    got = scenario(native, b"seq/")
    assert got == want
