"""Unit tests of the auth pieces without servers: permission coverage (etcd's range permission
cache rules), the proposal header (new layout, the pre-auth layout, hostile bytes), the store's
revision and persistence rules on a real LMDB backend, simple-token lifetime, --auth-token parsing.
"""
from __future__ import annotations

import struct

import pytest

from fastkv.api.etcdpb import rpc_pb2
from fastkv.api.etcdpb.authpb import auth_pb2
from fastkv.auth import errors as E
from fastkv.auth.identity import auth_info_from_request
from fastkv.auth.perms import READ, READWRITE, WRITE, UnifiedPermissions
from fastkv.auth.store import AuthInfo, AuthStore
from fastkv.auth.tokens import InvalidAuthOptions, SimpleTokens, parse_go_duration, provider_from_option
from fastkv.backend import AUTH, AUTH_USERS
from fastkv.backend.lmdb_backend import LMDBBackend
from fastkv.server import request as rq


def perm(t, key, end=b""):
    return auth_pb2.Permission(permType=t, key=key, range_end=end)


@pytest.mark.parametrize("perms,key,end,write,ok", [
    ([perm(READ, b"a")], b"a", b"", False, True),
    ([perm(READ, b"a")], b"a", b"", True, False),
    ([perm(READ, b"a")], b"ab", b"", False, False),
    ([perm(READ, b"a")], b"a", b"a\x00", False, True),           # the key as a range
    ([perm(READWRITE, b"a", b"c")], b"b", b"", True, True),
    ([perm(READWRITE, b"a", b"c")], b"c", b"", False, False),     # end is exclusive
    ([perm(READ, b"a", b"c")], b"a", b"c", False, True),
    ([perm(READ, b"a", b"c")], b"a", b"d", False, False),
    ([perm(READ, b"a", b"c"), perm(READ, b"c", b"e")], b"b", b"d", False, True),   # adjoining
    ([perm(READ, b"a", b"c"), perm(READ, b"d", b"e")], b"b", b"e", False, False),  # a gap
    ([perm(READ, b"a", b"c"), perm(READ, b"b", b"z")], b"a", b"y", False, True),   # overlapping
    ([perm(READ, b"m", b"\x00")], b"m", b"\x00", False, True),   # from-key covers from-key
    ([perm(READ, b"m", b"\x00")], b"zzz", b"", False, True),
    ([perm(READ, b"m", b"n")], b"m", b"\x00", False, False),
    ([perm(WRITE, b"a", b"z")], b"b", b"", False, False),
    ([], b"a", b"", False, False),
])
def test_permission_coverage(perms, key, end, write, ok):
    assert UnifiedPermissions(perms).permits(key, end, write) is ok


def test_proposal_header_roundtrip_and_old_layout():
    msg = rpc_pb2.PutRequest(key=b"k", value=b"v")
    data = rq.encode(77, rq.PUT, msg, "alice", 9)
    assert rq.decode_with_auth(data) == (77, rq.PUT, msg, "alice", 9)
    assert rq.decode(data) == (77, rq.PUT, msg)
    old = struct.pack("<QB", 78, rq.PUT) + msg.SerializeToString()   # written before auth existed
    assert rq.decode_with_auth(old) == (78, rq.PUT, msg, "", 0)


@pytest.mark.parametrize("data", [
    b"", b"\x01" * 8, struct.pack("<QB", 1, 0x81), struct.pack("<QB", 1, 0x82) + b"\x00" * 20,
    struct.pack("<QBBQH", 1, 0x81, rq.PUT, 0, 50) + b"short", struct.pack("<QBBQH", 1, 0x81, 200, 0, 0),
    struct.pack("<QBBQH", 1, 0x81, rq.PUT, 0, 2) + b"\xff\xfe", struct.pack("<QBBQH", 1, 0x81, rq.PUT, 0, 0) + b"\xff\xff\xff",
])
def test_proposal_hostile_bytes_are_value_errors(data):
    with pytest.raises(ValueError):
        rq.decode_with_auth(data)


@pytest.fixture
def store(tmp_path):
    be = LMDBBackend(str(tmp_path / "db"))
    s = AuthStore(be, SimpleTokens(), bcrypt_cost=4)
    yield s
    be.close()


def test_store_revision_rules_and_reload(store, tmp_path):
    assert store.revision == 1 and not store.enabled  # a fresh store is at 1, as etcd's
    with pytest.raises(E.ErrRootUserNotExist):
        store.auth_enable()
    store.user_add(rpc_pb2.AuthUserAddRequest(name="root", hashedPassword="$2b$04$x"))
    assert store.revision == 2
    with pytest.raises(E.ErrRootRoleNotExist):
        store.auth_enable()
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))  # root needs no role entry
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))  # no change
    assert store.revision == 3
    store.auth_enable()
    assert store.enabled and store.revision == 3  # enabling does not bump the revision
    with pytest.raises(E.ErrInvalidAuthMgmt):
        store.user_delete(rpc_pb2.AuthUserDeleteRequest(name="root"))
    store.role_add(rpc_pb2.AuthRoleAddRequest(name="r"))
    store.role_grant_permission(rpc_pb2.AuthRoleGrantPermissionRequest(name="r", perm=perm(READ, b"a", b"b")))
    store.role_grant_permission(rpc_pb2.AuthRoleGrantPermissionRequest(name="r", perm=perm(WRITE, b"a", b"b")))
    assert [p.permType for p in store.roles["r"].keyPermission] == [WRITE]  # same range: type replaced
    store.user_add(rpc_pb2.AuthUserAddRequest(name="u", hashedPassword="$2b$04$y"))
    store.user_grant_role(rpc_pb2.AuthUserGrantRoleRequest(user="u", role="r"))
    rev = store.revision
    store.check_put(AuthInfo("u", rev), b"a1")
    with pytest.raises(E.ErrPermissionDenied):
        store.check_range(AuthInfo("u", rev), b"a1")
    with pytest.raises(E.ErrAuthOldRevision):
        store.check_put(AuthInfo("u", rev - 1), b"a1")
    with pytest.raises(E.ErrUserEmpty):
        store.check_put(None, b"a1")
    store.check_put(AuthInfo("root", rev), b"anything")
    with pytest.raises(E.ErrPermissionDenied):
        store.check_admin(AuthInfo("u", rev))
    store.backend.force_commit()
    # a second store over the same backend sees exactly the same (what a restart rebuilds)
    again = AuthStore(store.backend, SimpleTokens(), bcrypt_cost=4)
    assert (again.enabled, again.revision, again.users, again.roles) == (True, rev, store.users, store.roles)
    again.check_put(AuthInfo("u", rev), b"a1")
    with store.backend.read_tx() as tx:   # etcd's encodings in etcd's buckets
        assert tx.unsafe_get(AUTH, b"authEnabled") == b"\x01"
        assert tx.unsafe_get(AUTH, b"authRevision") == struct.pack(">Q", rev)
        u = auth_pb2.User()
        u.ParseFromString(bytes(tx.unsafe_get(AUTH_USERS, b"u")))
        assert (u.name, u.password, list(u.roles)) == (b"u", b"$2b$04$y", ["r"])


def test_simple_token_lifetime_and_identity(store):
    now = [100.0]
    tokens = SimpleTokens(ttl=10, clock=lambda: now[0])
    store.tokens = tokens
    tokens.enable()
    t = tokens.assign("u", 5, prefix="abc", index=12)
    assert t == "abc.12"
    assert auth_info_from_request(store, {"token": t}) == AuthInfo("u", store.revision)
    now[0] += 9
    assert auth_info_from_request(store, {"authorization": t}) == AuthInfo("u", store.revision)  # gateway header
    now[0] += 9  # 18 s after issue, 9 s after the last use: still alive (each use restarts the TTL)
    assert tokens.info(t, 1) is not None
    now[0] += 11
    with pytest.raises(E.ErrInvalidAuthToken):
        auth_info_from_request(store, {"token": t})
    assert auth_info_from_request(store, {}) is None
    # the certificate's CN names the user only with --client-cert-auth, and never through the gateway
    assert auth_info_from_request(store, {}, "carol", client_cert_auth=True) == AuthInfo("carol", store.revision)
    assert auth_info_from_request(store, {}, "carol", client_cert_auth=False) is None
    assert auth_info_from_request(store, {"grpcgateway-accept": "x"}, "carol", client_cert_auth=True) is None
    t2 = tokens.assign("v", 5, prefix="def", index=13)
    tokens.invalidate_user("v")
    assert tokens.info(t2, 1) is None
    tokens.assign("w", 5, prefix="ghi", index=14)
    tokens.disable()
    assert tokens.info("ghi.14", 1) is None


def test_auth_token_option_parsing(tmp_path):
    assert provider_from_option("simple").kind == "simple"
    assert parse_go_duration("1h30m") == 5400 and parse_go_duration("250ms") == 0.25
    for bad in ("nope", "jwt,sign-method=RS256", "jwt,sign-method=XX1,priv-key=/x", "simple,a", "simple,a=1,a=2",
                "jwt,sign-method=RS256,priv-key=/does/not/exist", "jwt,sign-method=RS256,ttl=5 minutes"):
        with pytest.raises(InvalidAuthOptions):
            provider_from_option(bad)
    secret = tmp_path / "secret"
    secret.write_bytes(b"a shared secret of 32 bytes+++++")
    hs = provider_from_option(f"jwt,sign-method=HS256,priv-key={secret},ttl=1m")
    assert hs.info(hs.assign("u", 3), 9) == ("u", 3)
