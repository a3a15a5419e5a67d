"""The proposal codec: what a raft entry of a client request carries (etcd's InternalRaftRequest).

Layout (format 1): request id u64 LE | format u8 = 0x81 | kind u8 | auth revision u64 LE |
username length u16 LE | username (UTF-8) | the request's protobuf bytes.

The id is the key of the wait registry on the member that proposed it (0 = nobody waits, e.g. a
lease expiry). Username and auth revision are who made the request and the auth revision its
credentials were checked at (etcd's RequestHeader.username/auth_revision); the applier checks
permissions against them and refuses a revision older than its store's. Every member decodes and
applies the same bytes, so applying stays deterministic.

The first layout (before auth) was request id u64 | kind u8 | protobuf, with kinds 1..8. The byte
after the id tells them apart: a kind of the old layout is < 0x80, a format byte has the top bit
set. WALs written before auth therefore still replay (as anonymous requests).
"""
from __future__ import annotations

import struct

from fastkv.api.etcdpb import rpc_pb2

_HDR = struct.Struct("<QB")
HEADER_SIZE = _HDR.size  # the old layout's header; also the prefix every layout shares
_AUTH_HDR = struct.Struct("<BQH")  # kind, auth revision, username length (after the format byte)
FORMAT_V1 = 0x81

PUT, DELETE_RANGE, TXN, COMPACT, LEASE_GRANT, LEASE_REVOKE, LEASE_CHECKPOINT, ALARM = range(1, 9)
MEMBER_ATTRIBUTES = 32  # a member publishes its name and client URLs (etcd's publish)
CLUSTER_VERSION_SET = 33  # the leader decided the cluster version (only StatusResponse.version is set)
# auth: store changes and reads go through raft, as in etcd (UserAdd/ChangePassword carry the
# bcrypt hash in hashedPassword, never the password; AUTHENTICATE carries the user name and the
# simple-token prefix in AuthenticateRequest.password, the token's index is the entry's)
(AUTH_ENABLE, AUTH_DISABLE, AUTHENTICATE, USER_ADD, USER_DELETE, USER_CHANGE_PASSWORD, USER_GRANT_ROLE,
 USER_REVOKE_ROLE, USER_GET, USER_LIST, ROLE_ADD, ROLE_DELETE, ROLE_GRANT_PERMISSION, ROLE_REVOKE_PERMISSION,
 ROLE_GET, ROLE_LIST) = range(9, 25)

MESSAGES = {
    PUT: rpc_pb2.PutRequest,
    DELETE_RANGE: rpc_pb2.DeleteRangeRequest,
    TXN: rpc_pb2.TxnRequest,
    COMPACT: rpc_pb2.CompactionRequest,
    LEASE_GRANT: rpc_pb2.LeaseGrantRequest,
    LEASE_REVOKE: rpc_pb2.LeaseRevokeRequest,
    LEASE_CHECKPOINT: rpc_pb2.LeaseCheckpointRequest,
    ALARM: rpc_pb2.AlarmRequest,
    MEMBER_ATTRIBUTES: rpc_pb2.Member,
    CLUSTER_VERSION_SET: rpc_pb2.StatusResponse,
    AUTH_ENABLE: rpc_pb2.AuthEnableRequest,
    AUTH_DISABLE: rpc_pb2.AuthDisableRequest,
    AUTHENTICATE: rpc_pb2.AuthenticateRequest,
    USER_ADD: rpc_pb2.AuthUserAddRequest,
    USER_DELETE: rpc_pb2.AuthUserDeleteRequest,
    USER_CHANGE_PASSWORD: rpc_pb2.AuthUserChangePasswordRequest,
    USER_GRANT_ROLE: rpc_pb2.AuthUserGrantRoleRequest,
    USER_REVOKE_ROLE: rpc_pb2.AuthUserRevokeRoleRequest,
    USER_GET: rpc_pb2.AuthUserGetRequest,
    USER_LIST: rpc_pb2.AuthUserListRequest,
    ROLE_ADD: rpc_pb2.AuthRoleAddRequest,
    ROLE_DELETE: rpc_pb2.AuthRoleDeleteRequest,
    ROLE_GRANT_PERMISSION: rpc_pb2.AuthRoleGrantPermissionRequest,
    ROLE_REVOKE_PERMISSION: rpc_pb2.AuthRoleRevokePermissionRequest,
    ROLE_GET: rpc_pb2.AuthRoleGetRequest,
    ROLE_LIST: rpc_pb2.AuthRoleListRequest,
}


def encode(request_id: int, kind: int, message, username: str = "", auth_revision: int = 0) -> bytes:
    user = username.encode()
    return (_HDR.pack(request_id, FORMAT_V1) + _AUTH_HDR.pack(kind, auth_revision, len(user)) + user
            + message.SerializeToString())


def decode(data: bytes):
    """-> (request_id, kind, message). Raises ValueError on bytes that are not a request."""
    request_id, kind, msg, _user, _rev = decode_with_auth(data)
    return request_id, kind, msg


def decode_with_auth(data: bytes):
    """-> (request_id, kind, message, username, auth revision); username "" and revision 0 for an
    anonymous request. Raises ValueError on bytes that are not a request."""
    if len(data) < HEADER_SIZE:
        raise ValueError("proposal shorter than its header")
    request_id, kind = _HDR.unpack_from(data, 0)
    username, auth_revision, body = "", 0, HEADER_SIZE
    if kind == FORMAT_V1:
        if len(data) < HEADER_SIZE + _AUTH_HDR.size:
            raise ValueError("proposal shorter than its header")
        kind, auth_revision, ulen = _AUTH_HDR.unpack_from(data, HEADER_SIZE)
        body = HEADER_SIZE + _AUTH_HDR.size + ulen
        if len(data) < body:
            raise ValueError("proposal's username runs past its end")
        try:
            username = bytes(data[HEADER_SIZE + _AUTH_HDR.size:body]).decode()
        except UnicodeDecodeError:
            raise ValueError("proposal's username is not UTF-8") from None
    elif kind >= 0x80:
        raise ValueError(f"unknown proposal format {kind:#x}")
    cls = MESSAGES.get(kind)
    if cls is None:
        raise ValueError(f"unknown proposal kind {kind}")
    msg = cls()
    try:
        msg.ParseFromString(bytes(data[body:]))
    except Exception as exc:  # protobuf's DecodeError: hostile bytes are refused, never a crash
        raise ValueError(f"proposal body is not a {cls.__name__}: {exc}") from None
    return request_id, kind, msg, username, auth_revision
