"""The client port: gRPC and plain HTTP (/metrics, /health, /version) on one address, as etcd does.

grpcio owns the sockets it listens on and cannot share a port with an HTTP/1.1 server, so the
client URL is served by this front listener and gRPC listens on internal loopback ports. Each new
connection is classified by its first bytes: the HTTP/2 client preface ("PRI * HTTP/2.0") is
relayed byte for byte to one of the internal gRPC servers, with backpressure in both directions;
anything else is answered as an HTTP/1.1 request by fastkv.server.http.route. The relay is
protocol-level (no stream objects, no parsing after the first bytes), so it adds one buffer
hand-off per chunk.
"""
from __future__ import annotations

import asyncio

from fastkv.server.http import respond

PREFACE = b"PRI * HTTP/2.0"
MAX_HTTP_REQUEST = 64 * 1024


class _Upstreams:
    """The internal gRPC servers (api/grpcio_frontend.GrpcServers: why there are several), each on its own
    loopback port, and how many relayed connections each carries. A connection stays on one server
    for life (HTTP/2 state is per connection); a new one goes to the least loaded."""

    def __init__(self, ports):
        self.load = {p: 0 for p in ports}
        # the live client connections: a relay that pauses reading on both sides would otherwise be
        # held only by its own reference cycle, and the garbage collector closes such a socket
        self.live: set = set()

    def acquire(self) -> int:
        port = min(self.load, key=self.load.__getitem__)
        self.load[port] += 1
        return port

    def release(self, port: int) -> None:
        self.load[port] -= 1


class _Upstream(asyncio.Protocol):
    """The connection to the internal gRPC port; relays to the client side."""

    def __init__(self, client: "_ClientSide"):
        self.client = client
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.client.transport.write(data)

    def connection_lost(self, exc):
        self.client.transport.close()

    # the client side's write buffer is full: stop reading from gRPC until it drains
    def pause_writing(self):
        self.client.transport.pause_reading()

    def resume_writing(self):
        self.client.transport.resume_reading()


class _ClientSide(asyncio.Protocol):
    def __init__(self, server, upstreams: _Upstreams):
        self.server = server
        self.upstreams = upstreams
        self.grpc_port = 0  # the internal server this connection is relayed to, once it is gRPC
        self.transport = None
        self.upstream: _Upstream | None = None
        self.pending = bytearray()
        self.mode = "sniff"  # -> "grpc" | "http"

    def connection_made(self, transport):
        self.transport = transport
        self.upstreams.live.add(self)

    def data_received(self, data):
        if self.mode == "grpc":
            if self.upstream is not None and self.upstream.transport is not None:
                self.upstream.transport.write(data)
            else:
                self.pending += data
            return
        self.pending += data
        if self.mode == "sniff":
            if len(self.pending) < len(PREFACE) and PREFACE.startswith(bytes(self.pending)):
                return  # not enough bytes to tell yet
            if self.pending.startswith(PREFACE):
                self.mode = "grpc"
                asyncio.get_running_loop().create_task(self._connect_upstream())
                return
            self.mode = "http"
        if b"\r\n\r\n" in self.pending or b"\n\n" in self.pending:
            self._answer_http()
        elif len(self.pending) > MAX_HTTP_REQUEST:
            self.transport.close()

    async def _connect_upstream(self):
        loop = asyncio.get_running_loop()
        self.transport.pause_reading()
        self.grpc_port = self.upstreams.acquire()
        try:
            _t, up = await loop.create_connection(lambda: _Upstream(self), "127.0.0.1", self.grpc_port)
        except OSError:
            self.transport.close()
            return
        self.upstream = up
        if self.pending:
            up.transport.write(bytes(self.pending))
            self.pending.clear()
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def _answer_http(self):
        self.transport.write(respond(self.server, bytes(self.pending).split(b"\n", 1)[0]))
        self.transport.close()

    def connection_lost(self, exc):
        self.upstreams.live.discard(self)
        if self.grpc_port:
            self.upstreams.release(self.grpc_port)
            self.grpc_port = 0
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.close()

    # gRPC's side is not taking data: stop reading from the client until it drains
    def pause_writing(self):
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self):
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()


async def serve_client_port(server, host: str, port: int, grpc_ports: list) -> asyncio.AbstractServer:
    """Serve the client URL host:port, relaying gRPC connections to the internal `grpc_ports`."""
    loop = asyncio.get_running_loop()
    upstreams = _Upstreams(grpc_ports)
    return await loop.create_server(lambda: _ClientSide(server, upstreams), host, port,
                                    reuse_address=True)
