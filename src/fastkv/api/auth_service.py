"""etcd's Auth gRPC service over grpcio, and how a grpcio call says who makes it.

Handlers are thin: the token (or certificate CN) is turned into an AuthInfo by the
front-end-neutral fastkv.auth.identity (through EtcdServer.auth_info), the operation runs in the
server (server/auth_ops.py), EtcdErrors become gRPC statuses with etcd's text and code. AuthStatus
is 3.5+: etcd 3.4 answers it "unimplemented", and so does this service.
"""
from __future__ import annotations

import grpc

from fastkv.api.etcdpb import rpc_pb2_grpc
from fastkv.errors import EtcdError


def request_metadata(context) -> dict:
    """A grpcio call's metadata as lower-case header name -> value (the first of repeated ones)."""
    out: dict = {}
    for key, value in context.invocation_metadata() or ():
        out.setdefault(key.lower(), value)
    return out


def certificate_common_name(context) -> str | None:
    """The common name of the client's certificate on this grpcio call, None without one.

    grpcio puts the peer's certificate in the auth context only once it has verified it (the
    https:// listener requires and checks client certificates when --client-cert-auth or
    --trusted-ca-file is given), so this is a verified name, as etcd's AuthInfoFromTLS takes it."""
    names = context.auth_context().get("x509_common_name")
    if not names:
        return None
    cn = names[0]
    return cn.decode("utf-8", "replace") if isinstance(cn, bytes) else cn


def request_auth(server, context):
    """Who makes this grpcio call (None = anonymous): its token, else (with --client-cert-auth) its
    client certificate's common name. Raises ErrInvalidAuthToken."""
    md = context.invocation_metadata()
    cn = certificate_common_name(context) if server.cfg.client_cert_auth else None
    if not md and cn is None:
        return None
    return server.auth_info(request_metadata(context) if md else None, cn)


async def _abort(context, exc: EtcdError):
    await context.abort(getattr(grpc.StatusCode, exc.code, grpc.StatusCode.UNKNOWN), exc.message)


def _op(name: str):
    async def handler(self, request, context):
        try:
            ai = request_auth(self.s, context)
            return await getattr(self.s.auth_ops, name)(request, ai)
        except EtcdError as exc:
            await _abort(context, exc)

    handler.__name__ = name
    return handler


class AuthService(rpc_pb2_grpc.AuthServicer):
    def __init__(self, server):
        self.s = server

    AuthEnable = _op("auth_enable")
    AuthDisable = _op("auth_disable")
    Authenticate = _op("authenticate")
    UserAdd = _op("user_add")
    UserGet = _op("user_get")
    UserList = _op("user_list")
    UserDelete = _op("user_delete")
    UserChangePassword = _op("user_change_password")
    UserGrantRole = _op("user_grant_role")
    UserRevokeRole = _op("user_revoke_role")
    RoleAdd = _op("role_add")
    RoleGet = _op("role_get")
    RoleList = _op("role_list")
    RoleDelete = _op("role_delete")
    RoleGrantPermission = _op("role_grant_permission")
    RoleRevokePermission = _op("role_revoke_permission")

    async def AuthStatus(self, request, context):  # 3.5+: not in etcd 3.4
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown method AuthStatus for service etcdserverpb.Auth")
