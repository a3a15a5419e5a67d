"""One client connection on the client port: HTTP/2 (gRPC) or HTTP/1.1, told apart by its first
bytes, served by one asyncio Protocol.

gRPC: received bytes go to the protocol core (fastkv._native.h2grpc), whose events start calls;
everything the core has to write is flushed once per batch (once per data_received, and once per
loop turn for calls that finish later). Unary calls run step-wise (frontend/calls.py), without a
Task each; streaming calls run as Tasks (frontend/streams.py). Backpressure: when the transport's
write buffer is full, the connection stops reading (no new calls) until it drains.

Who makes a call: the protocol core hands up the call's `token` / `authorization` header values
(None when it has neither); `call_auth` turns them, with the client certificate's common name, into
the server's AuthInfo. A call without either costs one comparison here.
"""
from __future__ import annotations

import asyncio
import logging

from fastkv._native import load
from fastkv.errors import EtcdError
from fastkv.frontend import status
from fastkv.frontend.calls import UnaryCall

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_HTTP_REQUEST = 64 * 1024
CONTROL_FRAME_DELAY = 0.002  # s: the longest control frames wait for an answer to go out with


def call_auth(server, headers, common_name):
    """Who makes a call: an AuthInfo, or None for an anonymous one. Raises EtcdError
    (ErrInvalidAuthToken) for a token the server does not know.

    `headers`: None, or (token, authorization) as the protocol core hands them up (bytes or None
    each); `common_name`: the verified client certificate's CN, or None. The one place the native
    front end asks the server (EtcdServer.auth_info, fastkv.auth.identity) who a caller is."""
    metadata = None
    if headers is not None:
        token, authorization = headers
        metadata = {}
        if token:
            metadata["token"] = token
        if authorization:
            metadata["authorization"] = authorization
    return server.auth_info(metadata, common_name)


class FrontEnd:
    """What every connection of one listener shares: the server, the method table, the limits,
    and the set of live connections (for graceful shutdown)."""

    def __init__(self, server, methods, paths, *, max_message_bytes: int, max_concurrent_streams: int,
                 http_handler, core=None, stream_runner=None, cert_identity: bool = False, tls_check=None):
        self.server = server
        self.methods = methods
        self.paths = paths
        self.max_message_bytes = max_message_bytes
        self.max_concurrent_streams = max_concurrent_streams
        self.http_handler = http_handler  # answers HTTP/1.1: data_received(conn, data), connection_lost(conn)
        self.core = core or load("h2grpc")
        self.stream_runner = stream_runner  # (protocol, method, stream id, timeout, credentials) -> handle, or None
        self.connections: set = set()
        self.closing = False
        # --client-cert-auth: a call without a token is made as the client certificate's CN
        self.cert_identity = cert_identity
        # fn(ssl_object) -> why a TLS client may not stay, or None (TLSInfo.check_peer: etcd's
        # --client-crl-file and --client-cert-allowed-hostname); None when there is nothing to check
        self.tls_check = tls_check


class ClientConnection(asyncio.Protocol):
    def __init__(self, frontend: FrontEnd):
        self.fe = frontend
        self.loop = asyncio.get_running_loop()
        self.transport = None
        self.h2 = None
        self.mode = 0  # 0 sniffing, 1 gRPC, 2 HTTP/1.1
        self.pending = bytearray()
        self.calls: dict = {}     # stream id -> UnaryCall in flight
        self.streams: dict = {}   # stream id -> streaming call handle
        self.drain_waiters: set = set()  # streaming calls waiting for their queued bytes to go out
        self._flush_scheduled = False
        self._in_batch = False
        self._answered = False    # the batch being fed produced an answer (or an error frame)
        self._control_timer = None  # the deferred flush of control frames (see _feed)
        self.paused = False
        # the CN of the client's verified certificate (set in connection_made when --client-cert-auth
        # makes it the user), handed to call_auth with every call's headers; None on plaintext,
        # where a call without a token is anonymous at no cost
        self.common_name = None

    # --- asyncio.Protocol -----------------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        if self.fe.tls_check is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            reason = self.fe.tls_check(ssl_object) if ssl_object is not None else None
            if reason is not None:
                log.warning("refused client connection from %s: %s", transport.get_extra_info("peername"), reason)
                transport.abort()
                return
        self.fe.connections.add(self)
        if self.fe.cert_identity:  # a TLS transport is made once the handshake has verified the client
            self.common_name = self.peer_common_name()

    def data_received(self, data):
        if self.mode == 1:
            self._feed(data)
            return
        if self.mode == 2:
            self.fe.http_handler.data_received(self, data)
            return
        self.pending += data
        n = min(len(self.pending), len(PREFACE))
        if self.pending[:n] == PREFACE[:n]:
            if n < len(PREFACE):
                return  # could still be HTTP/2: wait for more bytes
            self.mode = 1
            fe = self.fe
            self.h2 = fe.core.ServerConnection(fe.paths, fe.max_message_bytes, fe.max_concurrent_streams)
            if fe.closing:
                self.h2.shutdown_notice()
            data, self.pending = bytes(self.pending), bytearray()
            self._feed(data)
            return
        self.mode = 2
        data, self.pending = bytes(self.pending), bytearray()
        self.fe.http_handler.data_received(self, data)

    def connection_lost(self, exc):
        self.fe.connections.discard(self)
        if self._control_timer is not None:
            self._control_timer.cancel()
            self._control_timer = None
        for call in list(self.calls.values()):
            call.abandon()
        self.calls.clear()
        for handle in list(self.streams.values()):
            handle.cancel()
        self.streams.clear()
        if self.mode == 2:
            self.fe.http_handler.connection_lost(self)

    def pause_writing(self):
        self.paused = True
        self.transport.pause_reading()

    def resume_writing(self):
        self.paused = False
        if not self.transport.is_closing():
            self.transport.resume_reading()
        for handle in list(self.streams.values()):
            handle.writable()

    def peer_common_name(self) -> str | None:
        """The common name of the client's verified TLS certificate (etcd's auth takes it as the
        user name), or None on plaintext or without a client certificate."""
        cert = self.transport.get_extra_info("peercert") if self.transport is not None else None
        for rdn in (cert or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return None

    # --- gRPC -----------------------------------------------------------------------------------
    def _feed(self, data) -> None:
        h2 = self.h2
        self._in_batch = True
        self._answered = False
        only_calls = True
        try:
            events = h2.receive(data)
            for kind, sid, method, value, message, credentials in events:
                if kind == 1:  # EV_UNARY
                    self._start_unary(sid, method, value, message, credentials)
                    continue
                only_calls = False
                if kind == 5:  # EV_CLOSED
                    call = self.calls.pop(sid, None)
                    if call is not None:
                        call.abandon()
                    handle = self.streams.pop(sid, None)
                    if handle is not None:
                        handle.cancel()
                elif kind == 2:  # EV_OPEN
                    self._start_stream(sid, method, value, credentials)
                else:  # EV_MESSAGE, EV_HALF_CLOSE
                    handle = self.streams.get(sid)
                    if handle is not None:
                        handle.received(message if kind == 3 else None)
        finally:
            self._in_batch = False
        if only_calls and self.calls and not self._answered and h2.failure is None:
            # All this batch did was start calls that are still running: what the session queued
            # meanwhile are control frames (acks of the client's PINGs and SETTINGS, window
            # updates). They go out with the first answer instead of in a send of their own ahead
            # of the call's work (on loopback a send costs about a tenth of a put's latency), or
            # CONTROL_FRAME_DELAY later at most.
            if self._control_timer is None:
                self._control_timer = self.loop.call_later(CONTROL_FRAME_DELAY, self._control_flush)
        else:
            self.flush()

    def _control_flush(self) -> None:
        self._control_timer = None
        self.flush()

    def auth_info(self, headers):
        """Who makes a call on this connection (see call_auth)."""
        return call_auth(self.fe.server, headers, self.common_name)

    def _start_unary(self, sid: int, index: int, timeout: float, message: bytes, credentials) -> None:
        m = self.fe.methods[index]
        req = m.request()
        try:
            req.ParseFromString(message)
        except Exception:
            self._answered = True
            self.h2.send_status(sid, status.INTERNAL, "grpc: error unmarshalling request")
            return
        auth = None
        if (credentials is not None or self.common_name is not None) and m.authenticated:
            try:
                auth = self.auth_info(credentials)
            except EtcdError as err:
                err = m.auth_refusal(err)
                self._answered = True
                self.h2.send_status(sid, status.of_error(err), err.message)
                return
        call = UnaryCall(self.loop, m.handler(self.fe.server, req, auth), self._unary_done, sid, timeout)
        self.calls[sid] = call
        call.start()

    def _unary_done(self, call: UnaryCall, response, code: int, message: str) -> None:
        sid = call.stream_id
        if self.calls.pop(sid, None) is None:
            return
        if code == 0:
            self.h2.send_unary(sid, response.SerializeToString())
        else:
            self.h2.send_status(sid, code, message)
        if self._in_batch:
            self._answered = True
        elif not self.calls:
            self.flush()  # the last call in flight here: no other answer to wait for and bundle
        else:
            self.schedule_flush()

    def _start_stream(self, sid: int, index: int, timeout: float, credentials) -> None:
        runner = self.fe.stream_runner
        if runner is None:
            self.h2.send_status(sid, status.UNIMPLEMENTED, "fastkv: this stream is not served here yet")
            return
        self.streams[sid] = runner(self, self.fe.methods[index], sid, timeout, credentials)

    def stream_finished(self, sid: int) -> None:
        self.streams.pop(sid, None)

    def schedule_flush(self) -> None:
        if self._in_batch or self._flush_scheduled:
            return
        self._flush_scheduled = True
        self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def flush(self) -> None:
        h2, transport = self.h2, self.transport
        if h2 is None or transport is None or transport.is_closing():
            return
        out = h2.data_to_send()
        if out:
            transport.write(out)
        if self.drain_waiters:
            for handle in list(self.drain_waiters):
                handle.writable()
        if h2.want_close() or h2.failure is not None:
            if h2.failure is not None:
                log.debug("closing client connection: %s", h2.failure)
            transport.close()

    # --- shutdown -------------------------------------------------------------------------------
    def begin_shutdown(self) -> None:
        """Graceful shutdown, first step: no new calls on this connection."""
        if self.h2 is not None:
            self.h2.shutdown_notice()
            self.flush()
        elif self.mode == 0 and self.transport is not None:
            self.transport.close()

    def finish_shutdown(self) -> None:
        """Last step: GOAWAY with the last stream id processed, then close once written."""
        if self.h2 is not None:
            for call in list(self.calls.values()):
                call.abandon()
            self.calls.clear()
            for handle in list(self.streams.values()):
                handle.cancel()
            self.h2.goaway()
            self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
