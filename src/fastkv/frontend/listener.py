"""Start and stop the native front end's listeners (`fastkv serve --client-frontend native`)."""
from __future__ import annotations

import asyncio

from fastkv.frontend.connection import ClientConnection, FrontEnd
from fastkv.frontend.http1 import Http1Handler
from fastkv.frontend.methods import UNARY_METHODS, build_table

GRPC_OVERHEAD_BYTES = 512 * 1024  # etcd accepts requests up to max-request-bytes plus this


def all_methods():
    from fastkv.frontend.streams import STREAM_METHODS

    return UNARY_METHODS + STREAM_METHODS


def make_frontend(server, *, max_request_bytes: int, max_concurrent_streams: int = 0xFFFFFFFF,
                  methods=None, core=None) -> FrontEnd:
    from fastkv.frontend.gateway import handle as gateway
    from fastkv.frontend.streams import run_stream

    by_index, paths = build_table(methods if methods is not None else all_methods())
    limit = max_request_bytes + GRPC_OVERHEAD_BYTES
    cfg = getattr(server, "cfg", None)
    cert_identity = bool(getattr(cfg, "client_cert_auth", False))
    client_tls = getattr(cfg, "client_tls", None)
    return FrontEnd(server, by_index, paths, max_message_bytes=limit, max_concurrent_streams=max_concurrent_streams,
                    http_handler=Http1Handler(server, limit, gateway), core=core, stream_runner=run_stream,
                    cert_identity=cert_identity,
                    tls_check=client_tls.check_peer if client_tls is not None and client_tls.checks_peers() else None)


class NativeListeners:
    """The client listeners of one member: one asyncio server per client URL, one FrontEnd."""

    def __init__(self, frontend: FrontEnd):
        self.fe = frontend
        self.servers: list = []

    async def listen(self, host: str, port: int, ssl_context=None) -> int:
        """Serve host:port (0: any free port); returns the port. With `ssl_context` (an
        ssl.SSLContext the caller built from its certificate flags), the listener is TLS: ALPN offers
        http/1.1 and h2, and after the handshake the same sniffing applies. Whether a client
        certificate is required is the context's verify_mode.

        ALPN order: the server's preference wins, and HTTP/2 here serves gRPC only. gRPC clients
        offer h2 alone (grpc-go, grpc-js; grpcio adds grpc-exp) and get it; general HTTP clients
        (curl, browsers) offer both and get HTTP/1.1, which serves the gateway, /health, /metrics."""
        loop = asyncio.get_running_loop()
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["http/1.1", "h2"])
        srv = await loop.create_server(lambda: ClientConnection(self.fe), host, port, reuse_address=True,
                                       ssl=ssl_context)
        self.servers.append(srv)
        return srv.sockets[0].getsockname()[1]

    async def listen_unix(self, path: str, ssl_context=None) -> None:
        """Serve a unix socket at `path` (etcd's unix:// and unixs:// client URLs, whose
        host:port names the socket file), removing a stale socket file first as etcd does."""
        import os

        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["http/1.1", "h2"])
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        srv = await asyncio.get_running_loop().create_unix_server(lambda: ClientConnection(self.fe), path,
                                                                  ssl=ssl_context)
        self.servers.append(srv)

    async def stop(self, grace: float = 1.0) -> None:
        """Graceful: stop accepting, tell every HTTP/2 client no new calls (GOAWAY), give calls in
        flight `grace` seconds, then GOAWAY with the last stream id and close."""
        fe = self.fe
        fe.closing = True
        for srv in self.servers:
            srv.close()
        for conn in list(fe.connections):
            conn.begin_shutdown()
        deadline = asyncio.get_running_loop().time() + grace
        while any(c.calls or c.streams for c in fe.connections) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(fe.connections):
            conn.finish_shutdown()
        for srv in self.servers:
            try:
                await asyncio.wait_for(srv.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass
