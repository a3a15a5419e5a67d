"""A lean gRPC-over-HTTP/2 client for benchmarks that hold many streams or many connections.

grpcio's client spends tens of microseconds of Python per streamed message, and each of its
channels carries threads and buffers of its own; `fastkv bench watchers` needs one connection that
receives millions of watch events and a thousand connections that only sit idle. This client is one
plain socket per connection driven by the h2 library (framing, HPACK, flow control), without
threads or an event loop: the caller polls all its connections with `pump()`.

Contract: gRPC messages are sent and received as raw bytes (the caller serializes and parses);
received messages are handed to the stream's `on_message(bytes)` callback in order, and a stream
that ends records its gRPC status (`grpc-status`, `grpc-message`). Windows are opened wide at the
start (stream and connection) and replenished in bulk, once per received chunk, so flow control
never throttles the measurement.
"""
from __future__ import annotations

import selectors
import socket
import struct
import time
import urllib.parse

import h2.config
import h2.connection
import h2.events
import h2.settings

_WINDOW = 2**31 - 1
_PREFIX = struct.Struct(">BI")


class StreamEnded(Exception):
    pass


class GrpcStream:
    """One HTTP/2 stream carrying one gRPC call (unary or streaming)."""

    __slots__ = ("conn", "id", "on_message", "buf", "status", "message", "ended", "messages")

    def __init__(self, conn: "H2GrpcConnection", stream_id: int, on_message):
        self.conn, self.id, self.on_message = conn, stream_id, on_message
        self.buf = bytearray()
        self.status: int | None = None
        self.message = ""
        self.ended = False
        self.messages = 0

    def send(self, message: bytes, end: bool = False) -> None:
        data = _PREFIX.pack(0, len(message)) + message
        conn = self.conn
        while conn.h2.local_flow_control_window(self.id) < len(data):  # the server's window is shut
            conn.flush()
            conn.wait_readable(5.0)
            if conn.closed:
                raise ConnectionError(f"{conn.authority} closed the connection")
        conn.h2.send_data(self.id, data, end_stream=end)

    def _feed(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, n = 0, len(buf)
        while n - pos >= 5:
            length = _PREFIX.unpack_from(buf, pos)[1]
            if n - pos - 5 < length:
                break
            self.messages += 1
            self.on_message(bytes(buf[pos + 5: pos + 5 + length]))
            pos += 5 + length
        if pos:
            del buf[:pos]


class H2GrpcConnection:
    """One client connection to an etcd-compatible endpoint (http://host:port, plaintext h2c)."""

    def __init__(self, endpoint: str, timeout: float = 30.0):
        u = urllib.parse.urlsplit(endpoint if "://" in endpoint else "http://" + endpoint)
        if u.scheme not in ("http", ""):
            raise ValueError(f"only plaintext http:// endpoints are supported here, got {endpoint!r}")
        self.authority = f"{u.hostname}:{u.port}"
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: 2**24 - 1,
            h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_WINDOW - 65535)
        self.streams: dict[int, GrpcStream] = {}
        self.closed = False
        self.bytes_received = 0
        self.flush()

    def call(self, path: str, on_message, first_message: bytes | None = None, end: bool = False) -> GrpcStream:
        """Open a call on `path` (e.g. /etcdserverpb.Watch/Watch); send `first_message` if given,
        and half-close when `end` (a unary call sends its one request with end=True)."""
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
                                   (b":authority", self.authority.encode()), (b"content-type", b"application/grpc"),
                                   (b"te", b"trailers")])
        stream = self.streams[sid] = GrpcStream(self, sid, on_message)
        if first_message is not None:
            stream.send(first_message, end=end)
        return stream

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if not data:
            return
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                sel = selectors.DefaultSelector()
                sel.register(self.sock, selectors.EVENT_WRITE)
                sel.select(1.0)
                sel.close()
                continue
            view = view[sent:]

    def wait_readable(self, timeout: float) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        try:
            if sel.select(timeout):
                self.on_readable()
        finally:
            sel.close()

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            data = b""
        if not data:
            self.closed = True
            for s in self.streams.values():
                if not s.ended:
                    s.ended, s.status, s.message = True, 14, s.message or "connection closed by the server"
            return
        self.bytes_received += len(data)
        acks: dict[int, int] = {}
        for ev in self.h2.receive_data(data):
            t = type(ev)
            if t is h2.events.DataReceived:
                s = self.streams.get(ev.stream_id)
                if s is not None:
                    s._feed(ev.data)
                acks[ev.stream_id] = acks.get(ev.stream_id, 0) + ev.flow_controlled_length
            elif t is h2.events.TrailersReceived or t is h2.events.ResponseReceived:
                s = self.streams.get(ev.stream_id)
                if s is not None:
                    for k, v in ev.headers:
                        if k == b"grpc-status":
                            s.status = int(v)
                        elif k == b"grpc-message":
                            s.message = urllib.parse.unquote(v.decode(errors="replace"))
            elif t is h2.events.StreamEnded or t is h2.events.StreamReset:
                s = self.streams.get(ev.stream_id)
                if s is not None:
                    s.ended = True
                    if s.status is None:
                        s.status = 14 if t is h2.events.StreamReset else 2
            elif t is h2.events.ConnectionTerminated:
                self.closed = True
        for sid, n in acks.items():
            if n:
                if sid in self.h2.streams:
                    self.h2.acknowledge_received_data(n, sid)
                else:  # the stream is gone: give the bytes back to the connection window only
                    self.h2.increment_flow_control_window(n)
        self.flush()

    def close(self) -> None:
        try:
            self.h2.close_connection()
            self.flush()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self.sock.close()
        self.closed = True


class Pump:
    """Poll many connections on one selector; `until(cond, timeout)` serves them until cond()."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()

    def add(self, conn: H2GrpcConnection) -> None:
        self.sel.register(conn.sock, selectors.EVENT_READ, conn)

    def remove(self, conn: H2GrpcConnection) -> None:
        self.sel.unregister(conn.sock)

    def once(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout):
            key.data.on_readable()

    def until(self, cond, timeout: float, tick=None) -> bool:
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.once(min(left, 0.05))
            if tick is not None:
                tick()
        return True

    def close(self) -> None:
        self.sel.close()


def unary(pump: Pump, conn: H2GrpcConnection, path: str, request: bytes, timeout: float = 30.0) -> bytes:
    """One unary call on `conn`: the response bytes, or RuntimeError with the gRPC status."""
    got: list[bytes] = []
    stream = conn.call(path, got.append, request, end=True)
    conn.flush()
    if not pump.until(lambda: stream.ended or conn.closed, timeout):
        raise RuntimeError(f"{path}: no answer within {timeout:g} s")
    if stream.status != 0 or not got:
        raise RuntimeError(f"{path}: gRPC status {stream.status} {stream.message}".rstrip())
    del conn.streams[stream.id]
    return got[0]
