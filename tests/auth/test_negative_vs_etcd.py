"""Refused requests over gRPC, against real etcd and fastkv alike: no token, garbage, expired,
tampered and wrongly signed tokens (simple and JWT), a wrong role, a revoked permission, a deleted
user, a changed password, a token from before a permission change. Each scenario returns a list
of observations (gRPC code + text, or the parts of a response that must match); both servers must
give the same list, and each refusal must leave the store as it was (checked by reading as root).
"""
from __future__ import annotations

import base64
import json
import time

import grpc
import pytest

from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from fastkv.api.etcdpb.authpb import auth_pb2
from tests.auth.conftest import both

pytestmark = [pytest.mark.etcd, pytest.mark.usefixtures("client_frontend")]


class Client:
    def __init__(self, endpoint: str):
        self.ch = grpc.insecure_channel(endpoint.replace("http://", ""))
        self.kv = rpc_pb2_grpc.KVStub(self.ch)
        self.auth = rpc_pb2_grpc.AuthStub(self.ch)
        self.lease = rpc_pb2_grpc.LeaseStub(self.ch)
        self.watch = rpc_pb2_grpc.WatchStub(self.ch)
        self.maint = rpc_pb2_grpc.MaintenanceStub(self.ch)

    def close(self):
        self.ch.close()

    def call(self, method, req, token=None):
        """-> ("OK", response) or (code name, details)."""
        md = [("token", token)] if token else None
        try:
            return "OK", method(req, metadata=md, timeout=15)
        except grpc.RpcError as exc:
            return exc.code().name, exc.details()

    def token(self, name, password):
        code, resp = self.call(self.auth.Authenticate, rpc_pb2.AuthenticateRequest(name=name, password=password))
        assert code == "OK", resp
        return resp.token

    def snapshot_of_store(self, root_token):
        """(revision, [(key, value, version)]) of everything, read as root."""
        code, r = self.call(self.kv.Range, rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0"), root_token)
        assert code == "OK", r
        return r.header.revision, [(kv.key, kv.value, kv.version) for kv in r.kvs]


def setup_auth(c: Client):
    """root (root role), user u with readwrite on prefix k/ through role r, auth on."""
    a = c.auth
    for method, req in [
        (a.UserAdd, rpc_pb2.AuthUserAddRequest(name="root", password="rootpw")),
        (a.RoleAdd, rpc_pb2.AuthRoleAddRequest(name="root")),
        (a.UserGrantRole, rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root")),
        (a.RoleAdd, rpc_pb2.AuthRoleAddRequest(name="r")),
        (a.RoleGrantPermission, rpc_pb2.AuthRoleGrantPermissionRequest(name="r", perm=auth_pb2.Permission(
            permType=auth_pb2.Permission.READWRITE, key=b"k/", range_end=b"k0"))),
        (a.UserAdd, rpc_pb2.AuthUserAddRequest(name="u", password="upw")),
        (a.UserGrantRole, rpc_pb2.AuthUserGrantRoleRequest(user="u", role="r")),
        (a.AuthEnable, rpc_pb2.AuthEnableRequest()),
    ]:
        code, resp = c.call(method, req)
        assert code == "OK", (method, resp)


def refused(c: Client, root, method, req, token):
    """Make a request that must be refused; -> (code, text); asserts the store did not change."""
    before = c.snapshot_of_store(root)
    code, detail = c.call(method, req, token)
    assert code != "OK", f"{req} was allowed"
    assert c.snapshot_of_store(root) == before, f"refused {type(req).__name__} changed the store"
    return code, detail


def run_both(tmp_path, scenario, *flags):
    with both(tmp_path, *flags) as (e, f):
        results = []
        for ep in (e, f):
            c = Client(ep)
            try:
                results.append(scenario(c))
            finally:
                c.close()
    want, got = results
    diffs = [f"observation {i}\n  etcd:   {w}\n  fastkv: {g}" for i, (w, g) in enumerate(zip(want, got)) if g != w]
    assert not diffs, "\n".join(diffs)
    assert len(got) == len(want)
    return want


def put(key, value=b"v", **kw):
    return rpc_pb2.PutRequest(key=key, value=value, **kw)


def test_simple_token_refusals(tmp_path):
    def scenario(c: Client):
        setup_auth(c)
        root, u = c.token("root", "rootpw"), c.token("u", "upw")
        obs = []
        code, resp = c.call(c.kv.Put, put(b"k/1", b"one"), u)
        obs.append((code, resp.header.revision))
        obs.append(refused(c, root, c.kv.Put, put(b"k/2"), None))                  # no token
        obs.append(refused(c, root, c.kv.Put, put(b"k/2"), "NotAToken.1"))         # garbage token
        obs.append(refused(c, root, c.kv.Put, put(b"k/2"), u + "x"))               # tampered token
        obs.append(refused(c, root, c.kv.Put, put(b"x"), u))                       # outside its role
        obs.append(refused(c, root, c.kv.DeleteRange, rpc_pb2.DeleteRangeRequest(key=b"k/", range_end=b"k1"), u))
        obs.append(refused(c, root, c.kv.Txn, rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=b"x", target=rpc_pb2.Compare.VERSION, result=rpc_pb2.Compare.EQUAL)],
            success=[rpc_pb2.RequestOp(request_put=put(b"k/3"))]), u))
        obs.append(refused(c, root, c.kv.Txn, rpc_pb2.TxnRequest(
            success=[rpc_pb2.RequestOp(request_put=put(b"k/3"))],
            failure=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"y"))]), u))
        code, _ = c.call(c.kv.Range, rpc_pb2.RangeRequest(key=b"x"), u)
        obs.append(code)
        code, r = c.call(c.kv.Range, rpc_pb2.RangeRequest(key=b"k/", range_end=b"k0", serializable=True), u)
        obs.append((code, [kv.key for kv in r.kvs]))
        # lease revoke needs write permission on every key attached to the lease
        code, lease = c.call(c.lease.LeaseGrant, rpc_pb2.LeaseGrantRequest(TTL=600), root)
        assert code == "OK"
        assert c.call(c.kv.Put, put(b"z", lease=lease.ID), root)[0] == "OK"
        obs.append(refused(c, root, c.lease.LeaseRevoke, rpc_pb2.LeaseRevokeRequest(ID=lease.ID), u))
        obs.append(refused(c, root, c.kv.Put, put(b"k/4", lease=lease.ID), u))  # writing under it, too
        code, ttl = c.call(c.lease.LeaseTimeToLive, rpc_pb2.LeaseTimeToLiveRequest(ID=lease.ID, keys=True), root)
        obs.append((code, list(ttl.keys)))
        # root-only maintenance
        obs.append(c.call(c.maint.Defragment, rpc_pb2.DefragmentRequest(), u))
        obs.append(c.call(c.maint.HashKV, rpc_pb2.HashKVRequest(), u))
        obs.append(c.call(c.maint.Defragment, rpc_pb2.DefragmentRequest(), None))
        obs.append(c.call(c.maint.Defragment, rpc_pb2.DefragmentRequest(), root)[0])
        # a revoked permission applies to the token already held
        assert c.call(c.auth.RoleRevokePermission, rpc_pb2.AuthRoleRevokePermissionRequest(
            role="r", key=b"k/", range_end=b"k0"), root)[0] == "OK"
        obs.append(refused(c, root, c.kv.Put, put(b"k/5"), u))
        # a changed password drops the user's tokens, and the old password stops working
        assert c.call(c.auth.UserChangePassword, rpc_pb2.AuthUserChangePasswordRequest(
            name="u", password="new"), root)[0] == "OK"
        obs.append(refused(c, root, c.kv.Range, rpc_pb2.RangeRequest(key=b"k/1"), u))
        obs.append(c.call(c.auth.Authenticate, rpc_pb2.AuthenticateRequest(name="u", password="upw")))
        u = c.token("u", "new")
        obs.append(c.call(c.auth.UserGet, rpc_pb2.AuthUserGetRequest(name="u"), u)[0])
        # a deleted user's token is refused
        assert c.call(c.auth.UserDelete, rpc_pb2.AuthUserDeleteRequest(name="u"), root)[0] == "OK"
        obs.append(refused(c, root, c.kv.Put, put(b"k/6"), u))
        obs.append(c.call(c.auth.Authenticate, rpc_pb2.AuthenticateRequest(name="u", password="new")))
        obs.append(c.call(c.auth.AuthStatus, rpc_pb2.AuthStatusRequest(), root)[0])   # 3.5+: not in 3.4
        return obs

    run_both(tmp_path, scenario)


def test_watch_refused_at_create(tmp_path):
    def scenario(c: Client):
        setup_auth(c)
        u = c.token("u", "upw")
        out = []
        for key, end, token in [(b"x", b"", u), (b"k/", b"k0", u), (b"k/", b"", "bogus.1"), (b"a", b"", None)]:
            reqs = iter([rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key, range_end=end))])
            stream = c.watch.Watch(reqs, metadata=[("token", token)] if token else None, timeout=10)
            try:
                r = next(stream)
                out.append((r.watch_id, r.created, r.canceled, r.cancel_reason))
            except grpc.RpcError as exc:
                out.append((exc.code().name, exc.details()))
            finally:
                stream.cancel()
        return out

    run_both(tmp_path, scenario)


def test_simple_token_expires(tmp_path):
    def scenario(c: Client):
        setup_auth(c)
        u = c.token("u", "upw")
        obs = [c.call(c.kv.Put, put(b"k/1"), u)[0]]
        deadline = time.monotonic() + 30
        while True:  # both servers drop an unused token after --auth-token-ttl (1 s, 1 s resolution)
            time.sleep(0.5)
            code, detail = c.call(c.kv.Range, rpc_pb2.RangeRequest(key=b"k/1"), u)
            if code != "OK" or time.monotonic() > deadline:
                break
        obs.append((code, detail))
        return obs

    # not used for 3 s: expired on both (a use restarts the clock, so poll slowly)
    def slow(c: Client):
        setup_auth(c)
        u = c.token("u", "upw")
        obs = [c.call(c.kv.Put, put(b"k/1"), u)[0]]
        time.sleep(3.5)
        obs.append(c.call(c.kv.Range, rpc_pb2.RangeRequest(key=b"k/1"), u))
        return obs

    obs = run_both(tmp_path, slow, "--auth-token-ttl", "1")
    assert obs[-1] == ("UNAUTHENTICATED", "etcdserver: invalid auth token")


def _keys(tmp_path, kind="rsa"):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else \
        ec.generate_private_key(ec.SECP256R1())
    priv = tmp_path / f"{kind}.key"
    pub = tmp_path / f"{kind}.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, priv, pub


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("method,kind", [("RS256", "rsa"), ("ES256", "ec")])
def test_jwt_refusals(tmp_path, method, kind):
    import jwt

    _key, priv, pub = _keys(tmp_path, kind)
    other, _p, _q = _keys(tmp_path / "..", kind)
    flag = f"jwt,pub-key={pub},priv-key={priv},sign-method={method},ttl=1h"

    def scenario(c: Client):
        setup_auth(c)
        root, u = c.token("root", "rootpw"), c.token("u", "upw")
        claims = jwt.decode(u, options={"verify_signature": False})
        obs = [sorted(claims), claims["username"], c.call(c.kv.Put, put(b"k/1"), u)[0]]
        head, body, sig = u.split(".")
        as_root = _b64(json.dumps({**claims, "username": "root"}).encode())
        obs.append(refused(c, root, c.kv.Put, put(b"x"), f"{head}.{as_root}.{sig}"))       # tampered
        obs.append(refused(c, root, c.kv.Put, put(b"x"), jwt.encode({**claims, "username": "root"}, other,
                                                                     algorithm=method)))  # wrong key
        none = f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{as_root}."
        obs.append(refused(c, root, c.kv.Put, put(b"x"), none))                            # alg none
        obs.append(refused(c, root, c.kv.Put, put(b"k/2"), f"{head}.{body}.{sig[:-4]}AAAA"))
        # a JWT names the auth revision it was issued at: any later user/role change makes it old
        assert c.call(c.auth.RoleAdd, rpc_pb2.AuthRoleAddRequest(name="other"), root)[0] == "OK"
        obs.append(c.call(c.kv.Range, rpc_pb2.RangeRequest(key=b"k/1"), root))  # root's is old too
        root = c.token("root", "rootpw")
        obs.append(refused(c, root, c.kv.Put, put(b"k/2"), u))
        obs.append(c.call(c.kv.Range, rpc_pb2.RangeRequest(key=b"k/1"), u))
        u = c.token("u", "upw")
        obs.append(c.call(c.kv.Put, put(b"k/2"), u)[0])
        return obs

    run_both(tmp_path, scenario, "--auth-token", flag)


def test_jwt_expires(tmp_path):
    _key, priv, pub = _keys(tmp_path)
    flag = f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=1s"

    def scenario(c: Client):
        setup_auth(c)
        u = c.token("u", "upw")
        time.sleep(2.5)  # JWT exp has 1 s resolution
        return [c.call(c.kv.Put, put(b"k/1"), u)]

    obs = run_both(tmp_path, scenario, "--auth-token", flag)
    assert obs == [("UNAUTHENTICATED", "etcdserver: invalid auth token")]


def test_expired_lease_is_revoked_with_auth_on(tmp_path):
    """The member revokes an expired lease itself, as root: its keys go, auth on or not."""
    def scenario(c: Client):
        setup_auth(c)
        root = c.token("root", "rootpw")
        code, lease = c.call(c.lease.LeaseGrant, rpc_pb2.LeaseGrantRequest(TTL=2), root)
        assert code == "OK"
        assert c.call(c.kv.Put, put(b"k/leased", lease=lease.ID), root)[0] == "OK"
        obs = [c.call(c.kv.Range, rpc_pb2.RangeRequest(key=b"k/leased"), root)[1].count]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = c.call(c.kv.Range, rpc_pb2.RangeRequest(key=b"k/leased"), root)[1]
            if r.count == 0:
                break
            time.sleep(0.25)
        obs.append(r.count)
        return obs

    assert run_both(tmp_path, scenario) == [1, 0]


def test_token_is_looked_at_where_etcd_looks(tmp_path):
    """A garbage token refuses the calls etcd 3.4 authenticates, with its error, and is ignored by
    the ones it does not (Status, MemberList, LeaseTimeToLive, LeaseLeases, LeaseKeepAlive)."""
    def scenario(c: Client):
        setup_auth(c)
        root = c.token("root", "rootpw")
        code, lease = c.call(c.lease.LeaseGrant, rpc_pb2.LeaseGrantRequest(TTL=600), root)
        assert code == "OK"
        bogus = "bogus.1"
        cluster = rpc_pb2_grpc.ClusterStub(c.ch)
        obs = []
        for method, req in [(c.maint.Status, rpc_pb2.StatusRequest()),
                            (cluster.MemberList, rpc_pb2.MemberListRequest()),
                            (c.lease.LeaseTimeToLive, rpc_pb2.LeaseTimeToLiveRequest(ID=lease.ID)),
                            (c.lease.LeaseLeases, rpc_pb2.LeaseLeasesRequest()),
                            (c.kv.Range, rpc_pb2.RangeRequest(key=b"k/1")),
                            (c.kv.Compact, rpc_pb2.CompactionRequest(revision=1)),
                            (c.lease.LeaseGrant, rpc_pb2.LeaseGrantRequest(TTL=600)),
                            (c.maint.Alarm, rpc_pb2.AlarmRequest()),
                            (c.maint.Defragment, rpc_pb2.DefragmentRequest()),
                            (c.maint.HashKV, rpc_pb2.HashKVRequest()),
                            (c.auth.Authenticate, rpc_pb2.AuthenticateRequest(name="u", password="upw")),
                            (c.auth.UserList, rpc_pb2.AuthUserListRequest()),
                            (c.auth.AuthStatus, rpc_pb2.AuthStatusRequest())]:
            code, resp = c.call(method, req, bogus)
            obs.append((type(req).__name__, code, "" if code == "OK" else resp))
        keepalive = c.lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease.ID)]),
                                           metadata=[("token", bogus)], timeout=10)
        r = next(keepalive)
        obs.append(("LeaseKeepAlive", r.ID == lease.ID, r.TTL > 0))
        keepalive.cancel()
        try:
            next(c.maint.Snapshot(rpc_pb2.SnapshotRequest(), metadata=[("token", bogus)], timeout=10))
            obs.append(("SnapshotRequest", "OK"))
        except grpc.RpcError as exc:
            obs.append(("SnapshotRequest", exc.code().name, exc.details()))
        return obs

    run_both(tmp_path, scenario)
