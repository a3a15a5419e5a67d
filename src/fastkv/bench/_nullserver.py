"""A gRPC server that speaks the etcd method names but does no work (`--null-server`).

`fastkv bench put|range|txn-put|lease-keepalive --null-server` runs the workload against this
instead of a real store. Every unary call is answered at once with an empty message (a valid,
all-defaults response for every etcd RPC); LeaseGrant and LeaseKeepAlive answer with a live lease so
the keep-alive workload sees success. It runs in its own process (grpc.aio on uvloop) on loopback.

What it measures: the cheapest possible Python grpcio server, i.e. the floor cost of serving the
etcd API from Python, which is the ceiling of any `fastkv serve` built on grpcio on this machine.
What it does not measure: the generator's ceiling. On this 2-CPU machine such a server costs several
times more CPU per call than real etcd's whole Put (the run reports both), so it, not the generator,
is the limit; and the generator spends more CPU per request against a slow server than against a
fast one (fewer responses per wake-up), so compare generator CPU figures only between similar servers.
"""
from __future__ import annotations

import multiprocessing
import socket

from fastkv.api.etcdpb import rpc_pb2

_GRANT = rpc_pb2.LeaseGrantResponse(ID=1, TTL=60).SerializeToString()
_KEEPALIVE = rpc_pb2.LeaseKeepAliveResponse(ID=1, TTL=60).SerializeToString()


async def _serve(port: int, ready) -> None:
    import grpc

    async def unary_empty(request: bytes, context) -> bytes:
        return b""

    async def unary_grant(request: bytes, context) -> bytes:
        return _GRANT

    async def keepalive(request_iterator, context):
        async for _ in request_iterator:
            yield _KEEPALIVE

    class Handler(grpc.GenericRpcHandler):
        def service(self, details):
            method = details.method
            if method == "/etcdserverpb.Lease/LeaseKeepAlive":
                return grpc.stream_stream_rpc_method_handler(keepalive)
            if method == "/etcdserverpb.Lease/LeaseGrant":
                return grpc.unary_unary_rpc_method_handler(unary_grant)
            if method.startswith("/etcdserverpb.") and not method.endswith("/Watch") \
                    and not method.endswith("/Snapshot"):
                return grpc.unary_unary_rpc_method_handler(unary_empty)
            return None  # UNIMPLEMENTED

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((Handler(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    ready.set()
    await server.wait_for_termination()


def _main(port: int, ready) -> None:
    import uvloop

    uvloop.run(_serve(port, ready))


class NullServer:
    """Context manager: `with NullServer() as s: s.endpoint, s.pid` (a separate process running
    `main(port, ready)`: grpcio's null server by default)."""

    def __init__(self, main=None, label: str = "null server"):
        self.main = main or _main
        self.label = label

    def __enter__(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Event()
        self.proc = ctx.Process(target=self.main, args=(port, ready), daemon=True)
        self.proc.start()
        if not ready.wait(30):
            self.proc.terminate()
            raise RuntimeError(f"{self.label} did not start")
        self.endpoint, self.pid = f"http://127.0.0.1:{port}", self.proc.pid
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.join(5)
