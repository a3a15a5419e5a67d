"""Pure-Python twin of h2grpc.pyx: the gRPC server side of one HTTP/2 connection over the `h2`
package (python-hyper) instead of libnghttp2. Same events, same answers, same API; the protocol
tests run over both. Differences the tests allow for: h2 sends no shutdown notice (its GOAWAY closes
the connection at once, so `shutdown_notice` does nothing), and an oversized header block ends the
whole connection in h2 where nghttp2 resets only its stream."""
from __future__ import annotations

import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

EV_UNARY = 1
EV_OPEN = 2
EV_MESSAGE = 3
EV_HALF_CLOSE = 4
EV_CLOSED = 5

ST_RESOURCE_EXHAUSTED = 8
ST_UNIMPLEMENTED = 12
ST_INTERNAL = 13

DEFAULT_MAX_HEADER_BYTES = 16384
DEFAULT_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20
RESET_BURST = 1000
RESET_RATE = 33

_RESPONSE_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]


def _parse_timeout(v: bytes) -> float:
    if not 2 <= len(v) <= 9 or not v[:-1].isdigit():
        return 0.0
    scale = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}.get(v[-1:])
    return int(v[:-1]) * scale if scale else 0.0


def _percent_encode(message: bytes) -> bytes:
    return b"".join(b"%%%02X" % ch if ch < 0x20 or ch > 0x7E or ch == 0x25 else bytes((ch,)) for ch in message)


class _Stream:
    __slots__ = ("id", "method", "streaming", "timeout", "reported", "discard", "remote_closed", "done",
                 "inbuf", "nmsg", "first", "out", "resp_started", "trailers", "credentials")

    def __init__(self, sid: int):
        self.id = sid
        self.method = -2
        self.streaming = False
        self.timeout = 0.0
        self.reported = self.discard = self.remote_closed = self.done = False
        self.inbuf = bytearray()
        self.nmsg = 0
        self.first = None
        self.out = bytearray()
        self.resp_started = False
        self.trailers = None  # list of trailer headers once the server ended the call
        self.credentials = None  # (token, authorization) when the call carried either header


class ServerConnection:
    def __init__(self, methods: dict, max_message_bytes: int, max_concurrent_streams: int = 0xFFFFFFFF,
                 max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES):
        self.methods = methods
        self.max_message_bytes = max_message_bytes
        self.max_header_bytes = max_header_bytes
        self.events: list = []
        self.failure = None
        self._streams: dict = {}
        self._resets: list = []  # (monotonic time) of client resets, for the rapid-reset limit
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self._h2 = h2.connection.H2Connection(config=cfg)
        self._h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: min(max_concurrent_streams, 2**31 - 1),
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: DEFAULT_WINDOW,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_bytes,
        })
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self._closed = False

    # --- input ----------------------------------------------------------------------------------
    def receive(self, data) -> list:
        if self.failure is not None or self._closed:
            return []
        try:
            for ev in self._h2.receive_data(bytes(data)):
                self._handle(ev)
        except h2.exceptions.ProtocolError as exc:
            self.failure = f"protocol error: {exc}"
            code = getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR)
            self._terminate(code)
        events, self.events = self.events, []
        return events

    def _terminate(self, code) -> None:
        if not self._closed:
            try:
                self._h2.close_connection(error_code=code)
            except h2.exceptions.ProtocolError:
                pass
            self._closed = True
        for s in list(self._streams.values()):
            if s.reported and not s.done:
                self.events.append((EV_CLOSED, s.id, s.method, int(code), None, None))
        self._streams.clear()

    def _handle(self, ev) -> None:
        if isinstance(ev, h2.events.RequestReceived):
            self._on_request(ev)
        elif isinstance(ev, h2.events.DataReceived):
            if ev.flow_controlled_length:
                self._h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            s = self._streams.get(ev.stream_id)
            if s is not None and not s.discard:
                self._on_data(s, ev.data)
        elif isinstance(ev, h2.events.StreamEnded):
            self._on_end(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            self._on_reset(ev.stream_id, int(ev.error_code))
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self._closed = True
            for s in list(self._streams.values()):
                if s.reported and not s.done:
                    self.events.append((EV_CLOSED, s.id, s.method, int(ev.error_code or 0), None, None))
            self._streams.clear()

    def _on_request(self, ev) -> None:
        s = _Stream(ev.stream_id)
        self._streams[ev.stream_id] = s
        size = 0
        for name, value in ev.headers:
            size += len(name) + len(value) + 32
            if name == b":path":
                entry = self.methods.get(value)
                if entry is None:
                    s.method = -1
                else:
                    s.method, s.streaming = entry[0], bool(entry[1])
            elif name == b"grpc-timeout":
                s.timeout = _parse_timeout(value)
            elif value and (name == b"token" or name == b"authorization"):
                # the first non-empty value of each, as the compiled core keeps them
                token, authorization = s.credentials or (None, None)
                if name == b"token" and token is None:
                    s.credentials = (bytes(value), authorization)
                elif name == b"authorization" and authorization is None:
                    s.credentials = (token, bytes(value))
        if size > self.max_header_bytes:
            self._streams.pop(ev.stream_id, None)
            self._h2.reset_stream(ev.stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            return
        if s.method == -2:
            self._fail_call(s, ST_INTERNAL, b"malformed gRPC request: no :path")
        elif s.method == -1:
            self._fail_call(s, ST_UNIMPLEMENTED, b"unknown method")
        elif s.streaming:
            s.reported = True
            self.events.append((EV_OPEN, s.id, s.method, s.timeout, None, s.credentials))
        # the end of the stream, if it came with the headers, follows as its own StreamEnded event

    def _on_data(self, s: _Stream, data: bytes) -> None:
        s.inbuf += data
        buf = s.inbuf
        while len(buf) >= 5:
            if buf[0] != 0:
                self._fail_call(s, ST_INTERNAL, b"grpc: compressed messages are not supported")
                return
            length = int.from_bytes(buf[1:5], "big")
            if length > self.max_message_bytes:
                self._fail_call(s, ST_RESOURCE_EXHAUSTED, b"grpc: received message larger than max (%d vs. %d)"
                                % (length, self.max_message_bytes))
                return
            if len(buf) < 5 + length:
                return
            msg = bytes(buf[5:5 + length])
            del buf[:5 + length]
            s.nmsg += 1
            if s.streaming:
                self.events.append((EV_MESSAGE, s.id, s.method, 0, msg, None))
            elif s.nmsg > 1:
                self._fail_call(s, ST_INTERNAL, b"grpc: a unary call needs exactly one request message, got more")
                return
            else:
                s.first = msg

    def _on_end(self, sid: int) -> None:
        s = self._streams.get(sid)
        if s is None:
            return
        s.remote_closed = True
        if not s.discard:
            if s.inbuf:
                self._fail_call(s, ST_INTERNAL, b"grpc: request ended inside a message")
            elif s.streaming:
                self.events.append((EV_HALF_CLOSE, sid, s.method, 0, None, None))
            elif s.nmsg != 1:
                self._fail_call(s, ST_INTERNAL,
                                b"grpc: a unary call needs exactly one request message, got %d" % s.nmsg)
            else:
                s.reported = True
                msg, s.first = s.first, None
                self.events.append((EV_UNARY, sid, s.method, s.timeout, msg, s.credentials))
        self._maybe_forget(s)

    def _on_reset(self, sid: int, code: int) -> None:
        now = time.monotonic()
        self._resets.append(now)
        if len(self._resets) > RESET_BURST:
            # rapid reset (CVE-2023-44487): more than the burst within burst/rate seconds
            if now - self._resets[0] < RESET_BURST / RESET_RATE:
                self.failure = "too many stream resets"
                self._streams.pop(sid, None)
                self._terminate(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
                return
            del self._resets[:len(self._resets) - RESET_BURST]
        s = self._streams.pop(sid, None)
        if s is not None and s.reported and not s.done:
            self.events.append((EV_CLOSED, sid, s.method, code, None, None))

    def _maybe_forget(self, s: _Stream) -> None:
        if s.remote_closed and s.done and s.trailers is None and not s.out:
            self._streams.pop(s.id, None)

    def _fail_call(self, s: _Stream, status: int, message: bytes) -> None:
        s.discard = True
        s.inbuf.clear()
        if s.reported:
            self.events.append((EV_CLOSED, s.id, s.method, 0, None, None))
        self._finish(s, status, message)

    def _finish(self, s: _Stream, status: int, message: bytes) -> None:
        if s.done:
            return
        s.done = True
        trailers = [(b"grpc-status", b"%d" % status)]
        if message:
            trailers.append((b"grpc-message", _percent_encode(message)))
        if not s.resp_started:
            s.resp_started = True
            self._safe(lambda: self._h2.send_headers(s.id, _RESPONSE_HEADERS + trailers, end_stream=True))
            self._maybe_forget(s)
            return
        s.trailers = trailers
        self._pump(s)

    def _safe(self, fn) -> bool:
        try:
            fn()
            return True
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return False

    def _pump(self, s: _Stream) -> None:
        """Hand queued bytes to h2 as far as flow control allows, then the trailers."""
        h = self._h2
        while s.out:
            try:
                window = min(h.local_flow_control_window(s.id), h.max_outbound_frame_size)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                s.out.clear()
                s.trailers = None
                return
            if window <= 0:
                return
            chunk = bytes(s.out[:window])
            if not self._safe(lambda: h.send_data(s.id, chunk)):
                s.out.clear()
                s.trailers = None
                return
            del s.out[:len(chunk)]
        if s.trailers is not None:
            trailers, s.trailers = s.trailers, None
            self._safe(lambda: h.send_headers(s.id, trailers, end_stream=True))
            self._maybe_forget(s)

    def _stream(self, sid: int):
        s = self._streams.get(sid)
        if s is None or s.done or self._closed:
            return None
        return s

    # --- output ---------------------------------------------------------------------------------
    def send_unary(self, sid: int, payload) -> bool:
        s = self._stream(sid)
        if s is None:
            return False
        s.out += len(payload).to_bytes(5, "big")
        s.out += payload
        self._start_response(s)
        self._finish(s, 0, b"")
        return True

    def _start_response(self, s: _Stream) -> None:
        if not s.resp_started:
            s.resp_started = True
            self._safe(lambda: self._h2.send_headers(s.id, _RESPONSE_HEADERS))

    def send_headers(self, sid: int) -> bool:
        s = self._stream(sid)
        if s is None:
            return False
        self._start_response(s)
        return True

    def send_message(self, sid: int, payload) -> bool:
        s = self._stream(sid)
        if s is None:
            return False
        s.out += len(payload).to_bytes(5, "big")
        s.out += payload
        self._start_response(s)
        self._pump(s)
        return True

    def send_status(self, sid: int, status: int, message=b"") -> bool:
        s = self._stream(sid)
        if s is None:
            return False
        if isinstance(message, str):
            message = message.encode()
        self._finish(s, status, message)
        return True

    def reset_stream(self, sid: int, error_code: int = 8) -> bool:
        s = self._streams.pop(sid, None)
        if s is None:
            return False
        s.done = True
        self._safe(lambda: self._h2.reset_stream(sid, error_code))
        return True

    def buffered(self, sid: int) -> int:
        s = self._streams.get(sid)
        return -1 if s is None else len(s.out)

    def data_to_send(self) -> bytes:
        # window updates from the client may have opened room for queued responses
        for s in list(self._streams.values()):
            if s.out or s.trailers is not None:
                self._pump(s)
        return self._h2.data_to_send()

    # --- lifecycle ------------------------------------------------------------------------------
    def shutdown_notice(self) -> None:
        pass

    def goaway(self, error_code: int = 0) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._h2.close_connection(error_code=error_code)
            except h2.exceptions.ProtocolError:
                pass

    def want_close(self) -> bool:
        # h2 keeps its unsent bytes in a private buffer; peeking at it is the only way to know
        return (self._closed or self.failure is not None) and not self._h2._data_to_send

    def open_streams(self) -> int:
        return len(self._streams)
