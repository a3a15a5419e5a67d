"""Dialing a peer: the outbound side of a stream or pipeline connection, up to and through the
handshake, plus the capped exponential backoff used between attempts."""
from __future__ import annotations

import asyncio
import random
import ssl
import struct
import time
from functools import partial
from urllib.parse import urlsplit

from fastkv.transport import frame as fr
from fastkv.transport.tls import server_refusal

_PING = struct.Struct("<d")


class Refused(ConnectionError):
    """The peer answered HELLO with REFUSE."""

    def __init__(self, code: int, reason: str):
        super().__init__(f"refused by peer: {reason}")
        self.code = code
        self.reason = reason


class Backoff:
    """Capped exponential backoff with equal jitter: the n-th delay is uniform in
    [d/2, d] with d = min(cap, initial * 2**n). `rng` is injectable so tests replay exactly."""

    def __init__(self, initial: float = 0.05, cap: float = 2.0, rng: random.Random | None = None):
        self.initial, self.cap = initial, cap
        self.rng = rng or random.Random()
        self.attempt = 0

    def next(self) -> float:
        d = min(self.cap, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        return d / 2 + self.rng.random() * d / 2

    def reset(self) -> None:
        self.attempt = 0


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a peer URL; ValueError says what is wrong with it. etcd's unix://
    and unixs:// URLs are accepted too: their host:port names a socket file (unix_path)."""
    u = urlsplit(url)
    if u.scheme not in ("http", "https", "unix", "unixs"):
        raise ValueError(f"peer URL {url!r} must start with http://, https://, unix:// or unixs://")
    if not u.hostname or u.port is None:
        raise ValueError(f"peer URL {url!r} needs a host and a port (like http://10.0.0.1:2380)")
    return u.scheme, u.hostname, u.port


def is_tls(scheme: str) -> bool:
    return scheme in ("https", "unixs")


def unix_path(url: str) -> str | None:
    """The socket file of a unix:// or unixs:// URL ("unix://localhost:2380" -> "localhost:2380",
    relative to the working directory, as etcd takes it); None for a TCP URL."""
    if url.startswith(("unix://", "unixs://")):
        return url.split("://", 1)[1].rstrip("/")
    return None


async def open_connection(url: str, protocol_factory, *, ssl_context=None, server_hostname=None,
                          ssl_handshake_timeout=None):
    """loop.create_connection to a peer URL, over TCP or to a unix socket."""
    loop = asyncio.get_running_loop()
    kwargs = {}
    if ssl_context is not None:
        kwargs = dict(ssl=ssl_context, server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout)
    path = unix_path(url)
    if path is not None:
        return await loop.create_unix_connection(protocol_factory, path, **kwargs)
    _scheme, host, port = split_url(url)
    return await loop.create_connection(protocol_factory, host, port, **kwargs)


class Outbound(asyncio.Protocol):
    """One dialed connection. `accepted` resolves after ACCEPT (or fails with Refused /
    ConnectionError); `closed` resolves when the connection is gone. Writers honour flow control
    through `paused` and `drain()`; `on_resume` lets the stream flush its queue again."""

    def __init__(self, hello: bytes, on_bytes_sent=None, on_rtt=None, on_resume=None, server_check=None):
        loop = asyncio.get_running_loop()
        self.accepted: asyncio.Future = loop.create_future()
        self.closed: asyncio.Future = loop.create_future()
        self.status: asyncio.Future = loop.create_future()   # pipeline: (failed, reason)
        self.transport = None
        self.paused = False
        self._drain: asyncio.Future | None = None
        self._hello = hello
        self._decoder = fr.FrameDecoder({fr.ACCEPT: fr.CONTROL_MAX, fr.REFUSE: fr.CONTROL_MAX,
                                         fr.PONG: fr.CONTROL_MAX, fr.SNAP_STATUS: fr.CONTROL_MAX})
        self.on_rtt = on_rtt
        self.on_resume = on_resume
        self.last_pong = time.perf_counter()
        # fn(ssl_object) -> why the server reached may not be talked to, or None: etcd's allowed
        # CN or hostname (TLSInfo.check_server), checked before a byte of ours goes out
        self._server_check = server_check

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        if self._server_check is not None:
            reason = self._server_check(transport.get_extra_info("ssl_object"))
            if reason is not None:
                self._fail(ConnectionError(f"refused to talk to {transport.get_extra_info('peername')}: {reason}"))
                return
        transport.write(fr.PREAMBLE + self._hello)

    def data_received(self, data) -> None:
        try:
            self._on_frames(data)
        except fr.FrameError as exc:
            self._fail(ConnectionError(f"bad frame from peer: {exc}"))

    def _on_frames(self, data) -> None:
        for kind, payload in self._decoder.feed_all(data):
            if kind == fr.ACCEPT:
                if not self.accepted.done():
                    self.accepted.set_result(True)
            elif kind == fr.REFUSE:
                code, reason = fr.parse_refuse(payload)
                self._fail(Refused(code, reason))
                return
            elif kind == fr.PONG and len(payload) == _PING.size:
                self.last_pong = time.perf_counter()
                if self.on_rtt is not None:
                    self.on_rtt(self.last_pong - _PING.unpack(payload)[0])
            elif kind == fr.SNAP_STATUS and not self.status.done():
                self.status.set_result(fr.parse_snap_status(payload))

    def _fail(self, exc: Exception) -> None:
        for f in (self.accepted, self.status):
            if not f.done():
                f.set_exception(exc)
                f.exception()  # mark retrieved: a caller may be waiting on only one of them
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        err = ConnectionError(f"connection to peer lost: {exc or 'closed by peer'}")
        for f in (self.accepted, self.status):
            if not f.done():
                f.set_exception(err)
                f.exception()
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake_drain()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake_drain()
        if self.on_resume is not None:
            self.on_resume()

    def _wake_drain(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    async def drain(self) -> None:
        if self.closed.done():
            raise ConnectionError("connection to peer lost")
        if self.paused:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain
            if self.closed.done():
                raise ConnectionError("connection to peer lost")

    def ping(self) -> int:
        data = fr.frame(fr.PING, _PING.pack(time.perf_counter()))
        self.transport.write(data)
        return len(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def dial(url: str, hello: bytes, *, client_ssl: ssl.SSLContext | None, timeout: float,
               write_high_water: int = 2 << 20, **kw) -> Outbound:
    """Connect to `url`, say `hello`, and return the Outbound once the peer accepted (Outbound's
    keywords pass through).
    Raises Refused, OSError, ConnectionError, ssl.SSLError or asyncio.TimeoutError."""
    scheme, host, port = split_url(url)
    if is_tls(scheme) and client_ssl is None:
        raise ConnectionError(f"peer URL {url} is https but this member has no peer TLS settings "
                              "(give --peer-trusted-ca-file or --peer-auto-tls)")
    tls = is_tls(scheme)
    proto = Outbound(hello, server_check=partial(server_refusal, client_ssl) if tls else None, **kw)
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await open_connection(
                url, lambda: proto, ssl_context=client_ssl if tls else None,
                server_hostname=host if tls and client_ssl.check_hostname else None,
                ssl_handshake_timeout=timeout if tls else None)
            transport.set_write_buffer_limits(high=write_high_water)
            await proto.accepted
    except BaseException:
        proto.close()
        raise
    return proto
