"""etcd's v3 RPCs as a transport-neutral table: gRPC path -> request type, handler, kind.

A unary handler is `async def handler(server, request, auth=None) -> response message` (auth: who
makes the request, from the front end's token or certificate; None = anonymous; the front end works
it out only for methods marked `authenticated`, as etcd looks at the token only there); it raises EtcdError
for anything a client should see (status.of_error maps it). The handlers carry the few answers
etcd shapes at its gRPC layer rather than in the server (MemberList's header without a revision,
Alarm/Defragment/MoveLeader without a header); everything else is the EtcdServer method itself.
Nothing here imports grpc: the native front end serves this table, and the grpcio reference front
end (api/services.py) calls the same handlers for the answers shaped here, so both say the same.
"""
from __future__ import annotations

from dataclasses import dataclass

from fastkv.api.etcdpb import rpc_pb2
from fastkv.auth.errors import unmapped
from fastkv.errors import EtcdError
from fastkv.server.streams import root_only  # noqa: F401 - the maintenance handlers' check, shared

UNARY = 0
BIDI_STREAM = 1
SERVER_STREAM = 2



@dataclass(frozen=True)
class Method:
    path: bytes
    request: type
    handler: object  # async (server, request, auth) -> message; for streams see frontend/streams.py
    kind: int = UNARY
    # the call's token is looked at (and an invalid one refused) before the handler runs; etcd 3.4
    # ignores the token of Status, MemberList, MoveLeader, LeaseTimeToLive and LeaseLeases
    authenticated: bool = True
    # a refused token is answered with auth's own text and code UNKNOWN: etcd 3.4's maintenance
    # service hands auth's errors on without its gRPC error mapping (fastkv.auth.errors.unmapped)
    auth_errors_unmapped: bool = False

    def auth_refusal(self, err: EtcdError) -> EtcdError:
        """The error a call of this method gets when its token is refused."""
        return unmapped(err) if self.auth_errors_unmapped else err


async def _range(s, req, auth=None):
    return await s.range(req, auth)


async def _put(s, req, auth=None):
    return await s.put(req, auth)


async def _delete_range(s, req, auth=None):
    return await s.delete_range(req, auth)


async def _txn(s, req, auth=None):
    return await s.txn(req, auth)


async def _compact(s, req, auth=None):
    return await s.compact(req, auth)


async def _lease_grant(s, req, auth=None):
    return await s.lease_grant(req, auth)


async def _lease_revoke(s, req, auth=None):
    return await s.lease_revoke(req, auth)


async def _lease_time_to_live(s, req, auth=None):
    return await s.lease_time_to_live(req)


async def _lease_leases(s, req, auth=None):
    return await s.lease_leases()


def _membership_header(s):
    # etcd's cluster service answers with a header that has no revision (cluster, member, term only)
    header = s.header()
    header.revision = 0
    return header


async def member_list(s, req, auth=None):
    return rpc_pb2.MemberListResponse(header=_membership_header(s), members=s.members())


async def member_add(s, req, auth=None):
    s.check_admin(auth)  # membership changes are root's once auth is on
    m, members = await s.member_add(list(req.peerURLs), req.isLearner)
    added = rpc_pb2.Member(ID=m.id, peerURLs=m.peer_urls, isLearner=m.is_learner)
    return rpc_pb2.MemberAddResponse(header=_membership_header(s), member=added, members=members)


async def member_remove(s, req, auth=None):
    s.check_admin(auth)
    members = await s.member_remove(req.ID)
    return rpc_pb2.MemberRemoveResponse(header=_membership_header(s), members=members)


async def member_update(s, req, auth=None):
    s.check_admin(auth)
    members = await s.member_update(req.ID, list(req.peerURLs))
    return rpc_pb2.MemberUpdateResponse(header=_membership_header(s), members=members)


async def member_promote(s, req, auth=None):
    s.check_admin(auth)
    members = await s.member_promote(req.ID)
    return rpc_pb2.MemberPromoteResponse(header=_membership_header(s), members=members)


async def alarm(s, req, auth=None):
    resp = await s.alarm(req, auth)
    # etcd 3.4 answers Alarm (GET, ACTIVATE, DEACTIVATE) without a response header at all
    resp.ClearField("header")
    return resp


async def status(s, req, auth=None):
    return s.status()


async def defragment(s, req, auth=None):
    root_only(s, auth)
    await s.defragment()
    return rpc_pb2.DefragmentResponse()  # etcd 3.4 answers without a header


async def hash_(s, req, auth=None):
    root_only(s, auth)
    h, _crev, _rev = await s.hash_kv(0)
    return rpc_pb2.HashResponse(header=s.header(), hash=h)


async def hash_kv(s, req, auth=None):
    root_only(s, auth)
    h, crev, _rev = await s.hash_kv(req.revision)
    # etcd's header carries the current revision, not the one hashed up to
    return rpc_pb2.HashKVResponse(header=s.header(), hash=h, compact_revision=crev)


async def move_leader(s, req, auth=None):
    await s.move_leader(req.targetID)
    return rpc_pb2.MoveLeaderResponse()  # etcd 3.4 answers without a header


# --- Auth: one handler per operation (server/auth_ops.py), served by both front ends -----------------
# gRPC method name -> (AuthOperations method, request type); api/auth_service.py builds the grpcio
# Auth service from the same table and the same handlers
AUTH_OPERATIONS = {
    "AuthEnable": ("auth_enable", rpc_pb2.AuthEnableRequest),
    "AuthDisable": ("auth_disable", rpc_pb2.AuthDisableRequest),
    "Authenticate": ("authenticate", rpc_pb2.AuthenticateRequest),
    "UserAdd": ("user_add", rpc_pb2.AuthUserAddRequest),
    "UserGet": ("user_get", rpc_pb2.AuthUserGetRequest),
    "UserList": ("user_list", rpc_pb2.AuthUserListRequest),
    "UserDelete": ("user_delete", rpc_pb2.AuthUserDeleteRequest),
    "UserChangePassword": ("user_change_password", rpc_pb2.AuthUserChangePasswordRequest),
    "UserGrantRole": ("user_grant_role", rpc_pb2.AuthUserGrantRoleRequest),
    "UserRevokeRole": ("user_revoke_role", rpc_pb2.AuthUserRevokeRoleRequest),
    "RoleAdd": ("role_add", rpc_pb2.AuthRoleAddRequest),
    "RoleGet": ("role_get", rpc_pb2.AuthRoleGetRequest),
    "RoleList": ("role_list", rpc_pb2.AuthRoleListRequest),
    "RoleDelete": ("role_delete", rpc_pb2.AuthRoleDeleteRequest),
    "RoleGrantPermission": ("role_grant_permission", rpc_pb2.AuthRoleGrantPermissionRequest),
    "RoleRevokePermission": ("role_revoke_permission", rpc_pb2.AuthRoleRevokePermissionRequest),
}


def auth_operation(name: str):
    """The handler of one Auth RPC: the server's AuthOperations method of that name."""

    async def handler(s, req, auth=None):
        return await getattr(s.auth_ops, name)(req, auth)

    handler.__name__ = name
    return handler


AUTH_HANDLERS = {rpc: auth_operation(op) for rpc, (op, _req) in AUTH_OPERATIONS.items()}

# AuthStatus is etcd 3.5's: a 3.4 server does not know the method, and says so as grpc-go does
AUTH_STATUS_UNKNOWN = "unknown method AuthStatus for service etcdserverpb.Auth"


async def auth_status(s, req, auth=None):
    raise EtcdError(AUTH_STATUS_UNKNOWN, "UNIMPLEMENTED")


def _m(service: str, name: str, request: type, handler, kind: int = UNARY, authenticated: bool = True) -> Method:
    return Method(f"/etcdserverpb.{service}/{name}".encode(), request, handler, kind, authenticated,
                  auth_errors_unmapped=service == "Maintenance")


UNARY_METHODS = [
    _m("KV", "Range", rpc_pb2.RangeRequest, _range),
    _m("KV", "Put", rpc_pb2.PutRequest, _put),
    _m("KV", "DeleteRange", rpc_pb2.DeleteRangeRequest, _delete_range),
    _m("KV", "Txn", rpc_pb2.TxnRequest, _txn),
    _m("KV", "Compact", rpc_pb2.CompactionRequest, _compact),
    _m("Lease", "LeaseGrant", rpc_pb2.LeaseGrantRequest, _lease_grant),
    _m("Lease", "LeaseRevoke", rpc_pb2.LeaseRevokeRequest, _lease_revoke),
    _m("Lease", "LeaseTimeToLive", rpc_pb2.LeaseTimeToLiveRequest, _lease_time_to_live, authenticated=False),
    _m("Lease", "LeaseLeases", rpc_pb2.LeaseLeasesRequest, _lease_leases, authenticated=False),
    _m("Cluster", "MemberList", rpc_pb2.MemberListRequest, member_list, authenticated=False),
    _m("Cluster", "MemberAdd", rpc_pb2.MemberAddRequest, member_add),
    _m("Cluster", "MemberRemove", rpc_pb2.MemberRemoveRequest, member_remove),
    _m("Cluster", "MemberUpdate", rpc_pb2.MemberUpdateRequest, member_update),
    _m("Cluster", "MemberPromote", rpc_pb2.MemberPromoteRequest, member_promote),
    _m("Maintenance", "Alarm", rpc_pb2.AlarmRequest, alarm),
    _m("Maintenance", "Status", rpc_pb2.StatusRequest, status, authenticated=False),
    _m("Maintenance", "Defragment", rpc_pb2.DefragmentRequest, defragment),
    _m("Maintenance", "Hash", rpc_pb2.HashRequest, hash_),
    _m("Maintenance", "HashKV", rpc_pb2.HashKVRequest, hash_kv),
    _m("Maintenance", "MoveLeader", rpc_pb2.MoveLeaderRequest, move_leader, authenticated=False),
    *(_m("Auth", rpc, req, AUTH_HANDLERS[rpc]) for rpc, (_op, req) in AUTH_OPERATIONS.items()),
    _m("Auth", "AuthStatus", rpc_pb2.AuthStatusRequest, auth_status, authenticated=False),
]


def build_table(methods) -> tuple[list, dict]:
    """-> (methods by index, {path: (index, streaming?)}) as the protocol core takes it."""
    by_index = list(methods)
    paths = {m.path: (i, m.kind != UNARY) for i, m in enumerate(by_index)}
    return by_index, paths
