"""The HTTP/2 gRPC protocol core (fastkv._native.h2grpc over libnghttp2, and its twin over h2),
driven in memory by an independent HTTP/2 client (python-hyper's h2, client side)."""
from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest

from tests.conftest import native_and_twin

core = native_and_twin("h2grpc")

UNARY_PATH = b"/etcdserverpb.KV/Put"
STREAM_PATH = b"/etcdserverpb.Watch/Watch"
METHODS = {UNARY_PATH: (0, False), STREAM_PATH: (1, True)}
LIMIT = 1000


def frame(msg: bytes) -> bytes:
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


class Pair:
    """A client h2 connection wired to a server core; bytes move when pump() is called."""

    def __init__(self, core, chunk=None, **kw):
        self.server = core.ServerConnection(METHODS, LIMIT, **kw)
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.client.initiate_connection()
        self.chunk = chunk
        self.events = []         # server events
        self.client_events = []  # h2 events seen by the client

    def pump(self):
        for _ in range(20):
            moved = False
            out = self.client.data_to_send()
            if out:
                moved = True
                pieces = [out] if not self.chunk else [out[i:i + self.chunk] for i in range(0, len(out), self.chunk)]
                for p in pieces:
                    self.events += self.server.receive(p)
            back = self.server.data_to_send()
            if back:
                moved = True
                for ev in self.client.receive_data(back):
                    self.client_events.append(ev)
                    if isinstance(ev, h2.events.DataReceived):
                        self.client.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if not moved:
                return

    def call(self, path=UNARY_PATH, messages=(b"hello",), end=True, headers=()):
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
                                       (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
                                       (b"te", b"trailers"), *headers])
        for i, m in enumerate(messages):
            self.client.send_data(sid, frame(m), end_stream=end and i == len(messages) - 1)
        if end and not messages:
            self.client.end_stream(sid)
        return sid

    def response(self, sid):
        """(headers, body, trailers, ended, reset) the client saw on stream sid."""
        headers, body, trailers, ended, reset = None, b"", None, False, None
        for ev in self.client_events:
            if getattr(ev, "stream_id", None) != sid:
                continue
            if isinstance(ev, h2.events.ResponseReceived):
                headers = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
            elif isinstance(ev, h2.events.TrailersReceived):
                trailers = dict(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                ended = True
            elif isinstance(ev, h2.events.StreamReset):
                reset = ev.error_code
        return headers, body, trailers, ended, reset


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_unary_call_whole_and_answered_with_headers_data_trailers(core, chunk):
    p = Pair(core, chunk=chunk)
    sid = p.call(messages=[b"x" * 300], headers=[(b"grpc-timeout", b"250m")])
    p.pump()
    assert p.events == [(core.EV_UNARY, sid, 0, pytest.approx(0.25), b"x" * 300, None)]
    assert p.server.send_unary(sid, b"answer")
    p.pump()
    headers, body, trailers, ended, reset = p.response(sid)
    assert headers[b":status"] == b"200" and headers[b"content-type"] == b"application/grpc"
    assert body == frame(b"answer")
    assert trailers == {b"grpc-status": b"0"} and ended and reset is None
    assert p.server.open_streams() == 0


def test_empty_messages_both_ways(core):
    p = Pair(core)
    sid = p.call(messages=[b""])
    p.pump()
    assert p.events == [(core.EV_UNARY, sid, 0, 0, b"", None)]
    p.server.send_unary(sid, b"")
    p.pump()
    assert p.response(sid)[1] == frame(b"")


def test_many_calls_in_one_batch(core):
    p = Pair(core)
    sids = [p.call(messages=[b"m%d" % i]) for i in range(50)]
    p.pump()
    assert [e[1] for e in p.events] == sids
    assert [e[4] for e in p.events] == [b"m%d" % i for i in range(50)]
    for sid in reversed(sids):
        p.server.send_unary(sid, b"r%d" % sid)
    p.pump()
    for sid in sids:
        assert p.response(sid)[1] == frame(b"r%d" % sid)


def test_error_is_trailers_only_with_percent_encoded_message(core):
    p = Pair(core)
    sid = p.call()
    p.pump()
    p.server.send_status(sid, 11, "etcdserver: mvcc: required revision has been compacted 100%\n")
    p.pump()
    headers, body, trailers, ended, _ = p.response(sid)
    assert trailers is None and body == b"" and ended
    assert headers[b":status"] == b"200" and headers[b"grpc-status"] == b"11"
    assert headers[b"grpc-message"] == b"etcdserver: mvcc: required revision has been compacted 100%25%0A"


def test_unknown_method_is_unimplemented_without_an_event(core):
    p = Pair(core)
    sid = p.call(path=b"/etcdserverpb.KV/Nope")
    p.pump()
    assert p.events == []
    headers = p.response(sid)[0]
    assert headers[b"grpc-status"] == b"12"


def test_oversized_message_is_resource_exhausted_and_connection_goes_on(core):
    p = Pair(core)
    big = p.call(messages=[b"y" * (LIMIT + 1)])
    p.pump()
    assert p.events == []
    headers = p.response(big)[0]
    assert headers[b"grpc-status"] == b"8"
    assert headers[b"grpc-message"] == b"grpc: received message larger than max (%d vs. %d)" % (LIMIT + 1, LIMIT)
    ok = p.call(messages=[b"z" * LIMIT])
    p.pump()
    assert p.events == [(core.EV_UNARY, ok, 0, 0, b"z" * LIMIT, None)]


def test_unary_with_two_messages_or_none_is_internal(core):
    p = Pair(core)
    two = p.call(messages=[b"a", b"b"])
    none = p.call(messages=[])
    p.pump()
    assert p.events == []
    assert p.response(two)[0][b"grpc-status"] == b"13"
    assert p.response(none)[0][b"grpc-status"] == b"13"


def test_client_reset_of_a_pending_call_is_reported_and_late_answer_ignored(core):
    p = Pair(core)
    sid = p.call()
    p.pump()
    p.client.reset_stream(sid)
    p.pump()
    assert p.events[-1][:2] == (core.EV_CLOSED, sid)
    assert p.server.send_unary(sid, b"late") is False
    assert p.server.open_streams() == 0


def test_streaming_call_events_and_messages_each_way(core):
    p = Pair(core)
    sid = p.call(path=STREAM_PATH, messages=[b"one", b"two"], end=False)
    p.pump()
    assert p.events == [(core.EV_OPEN, sid, 1, 0, None, None), (core.EV_MESSAGE, sid, 1, 0, b"one", None),
                        (core.EV_MESSAGE, sid, 1, 0, b"two", None)]
    p.events.clear()
    p.server.send_headers(sid)
    for i in range(3):
        p.server.send_message(sid, b"r%d" % i)
    p.pump()
    assert p.response(sid)[1] == frame(b"r0") + frame(b"r1") + frame(b"r2")
    p.client.end_stream(sid)
    p.pump()
    assert p.events == [(core.EV_HALF_CLOSE, sid, 1, 0, None, None)]
    p.server.send_status(sid, 0)
    p.pump()
    _h, _b, trailers, ended, _r = p.response(sid)
    assert trailers == {b"grpc-status": b"0"} and ended


def test_stream_that_client_does_not_read_buffers_in_the_core_not_nghttp2(core):
    """Flow control: once the client's window is used up, messages wait in the core, where the
    front end can see them (buffered) and stop producing."""
    p = Pair(core)
    sid = p.call(path=STREAM_PATH, messages=[b"w"], end=False)
    p.pump()
    p.server.send_headers(sid)
    payload = b"e" * 16384
    for _ in range(200):  # 3.2 MB, more than the client's 64 KiB default window
        p.server.send_message(sid, payload)
    out = p.server.data_to_send()
    # the client never acknowledges: feed it the bytes without window updates
    p.client.receive_data(out)
    assert 0 < len(out) < 200 * 16389
    assert p.server.buffered(sid) >= 200 * 16389 - len(out) - 16389


def test_goaway_carries_last_stream_id_and_session_ends(core):
    p = Pair(core)
    sid = p.call()
    p.pump()
    p.server.send_unary(sid, b"ok")
    p.pump()
    p.server.goaway()
    p.pump()
    gone = [e for e in p.client_events if isinstance(e, h2.events.ConnectionTerminated)]
    assert gone and gone[0].last_stream_id == sid and gone[0].error_code == 0
    assert p.response(sid)[1] == frame(b"ok")


def test_garbage_instead_of_preface_fails_the_connection(core):
    s = core.ServerConnection(METHODS, LIMIT)
    s.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\x00" * 64)
    assert s.failure is not None
    s.data_to_send()  # whatever it says (a GOAWAY), it must not raise
    assert s.receive(b"more") == []


def test_max_concurrent_streams_setting_is_advertised(core):
    p = Pair(core, max_concurrent_streams=7)
    p.pump()
    assert p.client.remote_settings.max_concurrent_streams == 7


def test_authority_with_a_scheme_is_accepted(core):
    """etcd 3.4's clients send `:authority: http://host:port` for endpoints given with a scheme
    (etcdctl endpoint status --cluster); grpcio and grpc-go servers serve such calls."""
    p = Pair(core)
    sid = p.client.get_next_available_stream_id()
    p.client.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", UNARY_PATH),
                                (b":authority", b"http://127.0.0.1:2379"), (b"content-type", b"application/grpc")])
    p.client.send_data(sid, frame(b"q"), end_stream=True)
    p.pump()
    assert p.events == [(core.EV_UNARY, sid, 0, 0, b"q", None)]


def test_token_and_authorization_headers_ride_on_the_call(core):
    """Who makes a call (etcd's `token` metadata, or `authorization`) comes up with EV_UNARY and
    EV_OPEN: the first non-empty value of each; None when the call carries neither."""
    p = Pair(core)
    plain = p.call(messages=[b"a"])
    tok = p.call(messages=[b"b"], headers=[(b"token", b"tok.1"), (b"token", b"second")])
    both = p.call(messages=[b"c"], headers=[(b"authorization", b"gw-tok"), (b"token", b""), (b"token", b"t2")])
    empty = p.call(messages=[b"d"], headers=[(b"token", b""), (b"x-token", b"no")])
    streamed = p.call(STREAM_PATH, messages=[b"w"], end=False, headers=[(b"token", b"s" * 300)])
    p.pump()
    by_sid = {e[1]: e for e in p.events if e[0] in (core.EV_UNARY, core.EV_OPEN)}
    assert by_sid[plain][5] is None
    assert by_sid[tok][5] == (b"tok.1", None)
    assert by_sid[both][5] == (b"t2", b"gw-tok")
    assert by_sid[empty][5] is None
    assert by_sid[streamed][:2] == (core.EV_OPEN, streamed) and by_sid[streamed][5] == (b"s" * 300, None)
    # the stream's later events carry no credentials: the call's identity was given at its start
    assert [e[5] for e in p.events if e[1] == streamed and e[0] != core.EV_OPEN] == [None]
    for sid in (plain, tok, both, empty):
        assert p.server.send_unary(sid, b"ok")
    p.pump()
    assert p.response(tok)[2] == {b"grpc-status": b"0"}
