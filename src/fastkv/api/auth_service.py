"""etcd's Auth gRPC service over grpcio, and how a grpcio call says who makes it.

Handlers are thin: the token (or certificate CN) is turned into an AuthInfo by the
front-end-neutral fastkv.auth.identity (through EtcdServer.auth_info), the operation runs in the
server (server/auth_ops.py) through the handlers both front ends share (frontend/methods.py's
AUTH_OPERATIONS), EtcdErrors become gRPC statuses with etcd's text and code. AuthStatus
is 3.5+: etcd 3.4 answers it "unimplemented", and so does this service.
"""
from __future__ import annotations

import grpc

from fastkv.api.etcdpb import rpc_pb2_grpc
from fastkv.errors import EtcdError
from fastkv.frontend import methods


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


def _op(rpc: str):
    handler = methods.AUTH_HANDLERS[rpc]  # shared with the native front end (frontend/methods.py)

    async def servicer_method(self, request, context):
        try:
            return await handler(self.s, request, request_auth(self.s, context))
        except EtcdError as exc:
            await _abort(context, exc)

    servicer_method.__name__ = rpc
    return servicer_method


class AuthService(rpc_pb2_grpc.AuthServicer):
    def __init__(self, server):
        self.s = server

    async def AuthStatus(self, request, context):  # 3.5+: not in etcd 3.4
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, methods.AUTH_STATUS_UNKNOWN)


for _rpc in methods.AUTH_OPERATIONS:
    setattr(AuthService, _rpc, _op(_rpc))
