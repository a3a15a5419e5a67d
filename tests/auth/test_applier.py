"""The applier's auth layer on a real LMDB backend, entry by entry as raft would hand them over:
auth proposals change the store, writes are checked against the username and auth revision their
proposal carries, and a proposal checked at an older auth revision is refused without touching
the key space (the in-flight write after a permission change)."""
from __future__ import annotations

from fastkv.api.etcdpb import rpc_pb2
from fastkv.api.etcdpb.authpb import auth_pb2
from fastkv.auth.store import AuthStore
from fastkv.auth.tokens import SimpleTokens
from fastkv.backend import open_backend
from fastkv.lease.lessor import Lessor
from fastkv.mvcc import KVStore, RangeOp
from fastkv.server import request as rq
from fastkv.server.apply import Alarms, Applier
from fastkv.server.auth_checks import AuthApplier


class _Results:
    def __init__(self):
        self.by_id = {}

    def trigger(self, request_id, result):
        self.by_id[request_id] = result


def test_writes_are_checked_with_the_revision_their_proposal_carries(tmp_path):
    be = open_backend("lmdb", str(tmp_path / "db"))
    lessor = Lessor(be, min_ttl=1)
    kv = KVStore(be, lessor=lessor)
    lessor.set_range_deleter(kv.delete_keys)
    results = _Results()
    applier = Applier(kv, lessor, Alarms(be), results)
    store = AuthStore(be, SimpleTokens(), 4)
    applier.auth = AuthApplier(store, lessor)
    index = [0]

    def apply(kind, msg, user="", rev=0):
        index[0] += 1
        applier.apply_normal(index[0], rq.encode(index[0], kind, msg, user, rev))
        return results.by_id[index[0]]

    for kind, msg in [
        (rq.USER_ADD, rpc_pb2.AuthUserAddRequest(name="root", hashedPassword="h")),
        (rq.USER_GRANT_ROLE, rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root")),
        (rq.ROLE_ADD, rpc_pb2.AuthRoleAddRequest(name="r")),
        (rq.ROLE_GRANT_PERMISSION, rpc_pb2.AuthRoleGrantPermissionRequest(name="r", perm=auth_pb2.Permission(
            permType=auth_pb2.Permission.READWRITE, key=b"k/", range_end=b"k0"))),
        (rq.USER_ADD, rpc_pb2.AuthUserAddRequest(name="u", hashedPassword="h")),
        (rq.USER_GRANT_ROLE, rpc_pb2.AuthUserGrantRoleRequest(user="u", role="r")),
        (rq.AUTH_ENABLE, rpc_pb2.AuthEnableRequest()),
    ]:
        assert not isinstance(apply(kind, msg), Exception)
    rev = store.revision
    assert isinstance(apply(rq.PUT, rpc_pb2.PutRequest(key=b"k/1", value=b"1"), "u", rev), rpc_pb2.PutResponse)
    assert apply(rq.PUT, rpc_pb2.PutRequest(key=b"x", value=b"1"), "u", rev).message == "etcdserver: permission denied"
    assert apply(rq.PUT, rpc_pb2.PutRequest(key=b"k/2", value=b"1")).message == "etcdserver: user name is empty"
    # an admin proposal from a non-root user, and from nobody
    assert apply(rq.ROLE_ADD, rpc_pb2.AuthRoleAddRequest(name="z"), "u", rev).message == "etcdserver: permission denied"
    assert apply(rq.USER_LIST, rpc_pb2.AuthUserListRequest()).message == "etcdserver: user name is empty"
    # root revokes u's permission; a put u's credentials were checked for before that is refused
    assert not isinstance(apply(rq.ROLE_REVOKE_PERMISSION, rpc_pb2.AuthRoleRevokePermissionRequest(
        role="r", key=b"k/", range_end=b"k0"), "root", rev), Exception)
    before = kv.current_revision
    stale = apply(rq.PUT, rpc_pb2.PutRequest(key=b"k/3", value=b"1"), "u", rev)
    assert stale.message == "etcdserver: revision of auth store is old"
    assert apply(rq.PUT, rpc_pb2.PutRequest(key=b"k/3", value=b"1"), "u", store.revision).message == \
        "etcdserver: permission denied"
    assert kv.current_revision == before
    assert [k.key for k in kv.range(RangeOp(b"k/", b"k0")).kvs] == [b"k/1"]
    # authenticate: the token's index is the entry's, its prefix the proposal's
    resp = apply(rq.AUTHENTICATE, rpc_pb2.AuthenticateRequest(name="u", password="prefixprefixpref"))
    assert resp.token == f"prefixprefixpref.{index[0]}"
    assert store.tokens.info(resp.token, store.revision) == ("u", store.revision)
    be.close()
