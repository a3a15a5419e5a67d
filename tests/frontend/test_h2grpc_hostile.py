"""Hostile input to the HTTP/2 gRPC protocol core (nghttp2 and the h2 twin): any chunking of a
recorded client byte stream gives the same calls; random bytes, rapid resets and oversized headers
never raise, never grow without bound, and end the connection or the stream as HTTP/2 says."""
from __future__ import annotations

import h2.config
import h2.connection
import h2.events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import native_and_twin
from tests.frontend.test_h2grpc_core import LIMIT, METHODS, STREAM_PATH, UNARY_PATH, frame

core = native_and_twin("h2grpc")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    c.initiate_connection()
    return c


def _headers(path, extra=()):
    return [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path), (b":authority", b"x"),
            (b"content-type", b"application/grpc"), *extra]


def recorded_client_bytes() -> bytes:
    """What a client sends for: 5 unary calls (one split over two DATA frames), a streaming call
    with 3 messages and a half-close, a call to an unknown method, and an oversized message."""
    c = _client()
    for i in range(5):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, _headers(UNARY_PATH, [(b"grpc-timeout", b"%dm" % (100 + i))]))
        body = frame(b"u%d" % i * (i * 40 + 1))
        if i == 2:
            c.send_data(sid, body[:3])
            c.send_data(sid, body[3:], end_stream=True)
        else:
            c.send_data(sid, body, end_stream=True)
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, _headers(STREAM_PATH))
    for m in (b"a", b"bb" * 100, b""):
        c.send_data(sid, frame(m))
    c.end_stream(sid)
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, _headers(b"/nope/Nope"), end_stream=True)
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, _headers(UNARY_PATH))
    c.send_data(sid, frame(b"z" * (LIMIT + 10)), end_stream=True)
    return c.data_to_send()


RECORDED = recorded_client_bytes()


def _events_of(impl, chunks):
    s = impl.ServerConnection(METHODS, LIMIT)
    events = []
    for ch in chunks:
        events += s.receive(ch)
        s.data_to_send()
    assert s.failure is None
    return events


def test_recorded_stream_gives_the_expected_calls(core):
    events = _events_of(core, [RECORDED])
    kinds = [e[0] for e in events]
    assert kinds == [core.EV_UNARY] * 5 + [core.EV_OPEN, core.EV_MESSAGE, core.EV_MESSAGE, core.EV_MESSAGE,
                                           core.EV_HALF_CLOSE]
    assert [e[4] for e in events[6:9]] == [b"a", b"bb" * 100, b""]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(RECORDED) - 1), max_size=40, unique=True))
def test_any_chunking_gives_the_same_calls(core, cuts):
    cuts = sorted(cuts)
    chunks = [RECORDED[a:b] for a, b in zip([0] + cuts, cuts + [len(RECORDED)])]
    assert _events_of(core, chunks) == _events_of(core, [RECORDED])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.binary(max_size=2000), after_preface=st.booleans(), split=st.integers(min_value=1, max_value=64))
def test_random_bytes_never_raise_and_stay_bounded(core, junk, after_preface, split):
    s = core.ServerConnection(METHODS, LIMIT)
    data = (PREFACE + junk) if after_preface else junk
    for i in range(0, len(data), split):
        for ev in s.receive(data[i:i + split]):
            assert len(ev) == 5 and ev[0] in (1, 2, 3, 4, 5)
        assert len(s.data_to_send()) < 1 << 20
    assert s.open_streams() <= 2000  # at most one per HEADERS frame that fits in the input


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(min_value=0, max_value=len(RECORDED) - 1), byte=st.integers(min_value=0, max_value=255))
def test_a_corrupted_byte_in_a_real_stream_never_raises(core, pos, byte):
    data = bytearray(PREFACE + RECORDED[len(PREFACE):]) if RECORDED.startswith(PREFACE) else bytearray(RECORDED)
    data[pos] = byte
    s = core.ServerConnection(METHODS, LIMIT)
    s.receive(bytes(data))
    s.data_to_send()


def test_rapid_resets_end_the_connection(core):
    """CVE-2023-44487: a client opening and resetting streams as fast as it can gets a GOAWAY once
    past the reset burst, instead of costing the server a call per reset forever."""
    s = core.ServerConnection(METHODS, LIMIT)
    c = _client()
    terminated = None
    for _ in range(core.RESET_BURST * 3):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, _headers(UNARY_PATH))
        c.reset_stream(sid)
        s.receive(c.data_to_send())
        out = s.data_to_send()
        if out:
            try:
                for ev in c.receive_data(out):
                    if isinstance(ev, h2.events.ConnectionTerminated):
                        terminated = ev
            except Exception:
                pass
        if terminated is not None or s.want_close() or s.failure is not None:
            break
    assert terminated is not None or s.failure is not None or s.want_close()


def test_oversized_header_block_never_reaches_the_front_end(core):
    s = core.ServerConnection(METHODS, LIMIT, max_header_bytes=4096)
    c = _client()
    c.local_settings.max_header_list_size  # noqa: B018 (the client itself does not limit what it sends)
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, _headers(UNARY_PATH, [(b"x-big", b"v" * 8000)]))
    c.send_data(sid, frame(b"q"), end_stream=True)
    events = s.receive(c.data_to_send())
    assert [e for e in events if e[0] == core.EV_UNARY] == []
    out = s.data_to_send()
    reset_or_gone = False
    try:
        for ev in c.receive_data(out):
            if isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                reset_or_gone = True
    except Exception:
        reset_or_gone = True
    assert reset_or_gone


def test_memory_of_a_stalled_reader_is_what_the_front_end_queued(core):
    """Messages the client's window does not admit stay in the core's per-stream buffer (reported by
    buffered()); nghttp2 itself holds at most about one window."""
    s = core.ServerConnection(METHODS, LIMIT)
    c = _client()
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, _headers(STREAM_PATH))
    s.receive(c.data_to_send())
    s.send_headers(sid)
    written = 0
    for _ in range(50):
        s.send_message(sid, b"p" * 10000)
        written += len(s.data_to_send())
    assert written < 65535 + 16384  # the client's default window plus frame overhead
    assert s.buffered(sid) > 50 * 10005 - written - 10005
