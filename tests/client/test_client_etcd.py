"""fastkv's stubs and client round-trip real requests against a real etcd 3.4.

Each test asserts etcd's own answers (revisions, counts, errors), so a wrong field number or a
wrong builder shows up as a wrong value or a rejected request, not as a silent pass.
"""
import asyncio

import grpc
import pytest

from fastkv.api.etcdpb import kv_pb2
from fastkv.client import AsyncEtcdClient, EtcdClient, ops, prefix_range_end

pytestmark = pytest.mark.etcd


@pytest.fixture
def client(etcd_endpoint):
    with EtcdClient(etcd_endpoint) as c:
        yield c


def test_prefix_range_end():
    assert prefix_range_end(b"a") == b"b"
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\0"


def test_put_range_delete_compact(client):
    r1 = client.put(b"foo/a", b"1")
    assert r1.header.revision == 2  # a fresh store is at revision 1
    client.put(b"foo/b", b"2")
    r3 = client.put(b"foo/a", b"3", prev_kv=True)
    assert r3.prev_kv.value == b"1" and r3.header.revision == 4
    got = client.get(b"foo/", prefix=True, sort_order="descend", sort_target="key", limit=1)
    assert [kv.key for kv in got.kvs] == [b"foo/b"] and got.more and got.count == 2
    a = client.get(b"foo/a").kvs[0]
    assert (a.create_revision, a.mod_revision, a.version, a.value) == (2, 4, 2, b"3")
    assert client.get(b"foo/", prefix=True, count_only=True).count == 2
    assert client.get(b"foo/a", revision=2).kvs[0].value == b"1"
    assert client.get(b"foo/", prefix=True, serializable=True, keys_only=True).kvs[0].value == b""
    assert client.get(b"foo/", prefix=True, min_mod_revision=4).count == 2
    assert [kv.key for kv in client.get(b"foo/", prefix=True, min_mod_revision=4).kvs] == [b"foo/a"]
    d = client.delete(b"foo/", prefix=True, prev_kv=True)
    assert d.deleted == 2 and sorted(kv.key for kv in d.prev_kvs) == [b"foo/a", b"foo/b"]
    client.compact(d.header.revision)
    with pytest.raises(grpc.RpcError) as err:
        client.get(b"foo/a", revision=2)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "required revision has been compacted" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.put(b"", b"x")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_txn_compare_and_nested(client):
    client.put(b"t", b"v1")
    ok = client.txn(compare=[ops.cmp_version(b"t", "=", 1), ops.cmp_value(b"t", "=", b"v1")],
                    success=[ops.put(b"t", b"v2"), ops.range_(b"t")], failure=[ops.delete(b"t")])
    assert ok.succeeded
    assert ok.responses[1].response_range.kvs[0].value == b"v2"
    assert ok.responses[0].response_put.header.revision == ok.header.revision  # one main revision
    miss = client.txn(compare=[ops.cmp_mod(b"t", "<", 1)], success=[],
                      failure=[ops.txn(success=[ops.put(b"u", b"x")])])
    assert not miss.succeeded and miss.responses[0].response_txn.succeeded
    assert client.get(b"u").kvs[0].value == b"x"
    # version == 0 means "absent": the zero must still be sent as the set oneof member
    create = client.txn(compare=[ops.cmp_version(b"new", "=", 0)], success=[ops.put(b"new", b"1")])
    again = client.txn(compare=[ops.cmp_version(b"new", "=", 0)], success=[ops.put(b"new", b"2")])
    assert create.succeeded and not again.succeeded
    assert client.txn(compare=[ops.cmp_lease(b"new", "=", 0), ops.cmp_value(b"new", "!=", b"x")]).succeeded
    with pytest.raises(grpc.RpcError) as err:
        client.txn(success=[ops.put(b"d", b"1"), ops.put(b"d", b"2")])
    assert err.value.details() == "etcdserver: duplicate key given in txn request"


def test_watch_history_and_live(client):
    first = client.put(b"w/1", b"a").header.revision
    with client.watch(b"w/", prefix=True, start_revision=first, prev_kv=True) as w:
        created = next(w)
        assert created.created
        client.put(b"w/1", b"b")
        client.delete(b"w/1")
        events = []
        for resp in w:
            events.extend(resp.events)
            if len(events) >= 3:
                break
    assert [(e.type, e.kv.key) for e in events] == [
        (kv_pb2.Event.PUT, b"w/1"), (kv_pb2.Event.PUT, b"w/1"), (kv_pb2.Event.DELETE, b"w/1")]
    assert events[1].prev_kv.value == b"a"
    assert [e.kv.mod_revision for e in events] == [first, first + 1, first + 2]


def test_lease_grant_keepalive_revoke(client):
    lease = client.lease_grant(30)
    assert lease.ID != 0 and lease.TTL == 30
    client.put(b"l", b"v", lease=lease.ID)
    ka = client.lease_keepalive_once(lease.ID)
    assert ka.ID == lease.ID and ka.TTL == 30
    ttl = client.lease_time_to_live(lease.ID, keys=True)
    assert ttl.keys == [b"l"] and 0 < ttl.TTL <= 30
    assert lease.ID in [l.ID for l in client.lease_leases().leases]
    client.lease_revoke(lease.ID)
    assert client.get(b"l").count == 0
    with pytest.raises(grpc.RpcError) as err:
        client.lease_revoke(lease.ID)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    st = client.status()
    assert st.version.startswith("3.") and st.leader == st.header.member_id
    members = client.member_list().members
    assert [m.ID for m in members] == [st.header.member_id] and members[0].name == "default"
    from fastkv.api.etcdpb import rpc_pb2
    assert list(client.auth.RoleList(rpc_pb2.AuthRoleListRequest()).roles) == []
    with pytest.raises(grpc.RpcError) as err:  # AuthStatus is etcd 3.5+; 3.4 does not know it
        client.auth.AuthStatus(rpc_pb2.AuthStatusRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_async_client_roundtrip(etcd_endpoint):
    async def main():
        async with AsyncEtcdClient(etcd_endpoint) as c:
            w = await c.watch(b"aio/", prefix=True)
            assert (await w.recv()).created
            await c.put(b"aio/x", b"1")
            ev = (await w.recv()).events[0]
            w.close()
            lease = await c.lease_grant(20)
            ka = c.keepalive_stream()
            assert (await ka.keepalive(lease.ID)).TTL == 20
            ka.close()
            txn = await c.txn(compare=[ops.cmp_create(b"aio/x", ">", 0)], success=[ops.range_(b"aio/x")])
            return ev, txn, (await c.get(b"aio/", prefix=True)).count

    ev, txn, count = asyncio.run(main())
    assert ev.kv.key == b"aio/x" and ev.kv.value == b"1"
    assert txn.succeeded and count == 1
