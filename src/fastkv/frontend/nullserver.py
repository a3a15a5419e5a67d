"""The native front end with nothing behind it (`fastkv bench ... --null-server native`).

Same contract as fastkv/bench/_nullserver.py (grpcio's null server): every unary etcd call is
answered at once with an empty message (LeaseGrant with a live lease), requests are not decoded.
The call still takes the real path: protocol core, one event per call, the handler coroutine run
step-wise, the response framed and flushed once per batch. Comparing the two prices the front end
alone; the store is not involved. LeaseKeepAlive is served as a stream; Watch and Snapshot are not.
"""
from __future__ import annotations

from fastkv.api.etcdpb import rpc_pb2
from fastkv.frontend.methods import BIDI_STREAM, UNARY, UNARY_METHODS, Method


class _Raw:
    """A request left undecoded (the grpcio null server gets raw bytes too)."""

    __slots__ = ()

    def ParseFromString(self, data) -> None:
        pass


class _Bytes:
    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data


_EMPTY = _Bytes(b"")
_GRANT = _Bytes(rpc_pb2.LeaseGrantResponse(ID=1, TTL=60).SerializeToString())
_KEEPALIVE = _Bytes(rpc_pb2.LeaseKeepAliveResponse(ID=1, TTL=60).SerializeToString())


async def _empty(server, req, auth=None):
    return _EMPTY


async def _grant(server, req, auth=None):
    return _GRANT


async def _keepalive(server, requests, who):
    async for _ in requests:
        yield _KEEPALIVE


def null_methods() -> list:
    out = []
    for m in UNARY_METHODS:
        out.append(Method(m.path, _Raw, _grant if m.path.endswith(b"/LeaseGrant") else _empty, UNARY,
                          authenticated=False))
    out.append(Method(b"/etcdserverpb.Lease/LeaseKeepAlive", _Raw, _keepalive, BIDI_STREAM))
    return out


async def _serve(port: int, ready) -> None:
    import asyncio

    from fastkv.frontend.listener import NativeListeners, make_frontend

    listeners = NativeListeners(make_frontend(None, max_request_bytes=1572864, methods=null_methods()))
    await listeners.listen("127.0.0.1", port)
    ready.set()
    await asyncio.Event().wait()


def serve_forever(port: int, ready) -> None:
    """Process entry point: serve the null methods on 127.0.0.1:`port`, set `ready` once listening
    (fastkv.bench._nullserver starts it in a process of its own)."""
    import uvloop

    uvloop.run(_serve(port, ready))
