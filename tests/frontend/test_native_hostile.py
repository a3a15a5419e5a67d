"""Hostile clients against `fastkv serve --client-frontend native` over real sockets: a client that
sends one byte at a time, garbage, idle connections, a rapid-reset flood; the server answers or
closes that connection and keeps serving everyone else. Plus graceful shutdown: SIGTERM sends
GOAWAY with the last stream id."""
from __future__ import annotations

import os
import signal
import socket
import time

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc
from tests.conftest import start_fastkv, stop_process

PUT = b"/etcdserverpb.KV/Put"


@pytest.fixture
def native(tmp_path):
    proc, endpoint = start_fastkv(tmp_path / "data", "--client-frontend", "native")
    try:
        yield proc, endpoint
    finally:
        stop_process(proc)


def addr(endpoint):
    host, port = endpoint.replace("http://", "").rsplit(":", 1)
    return host, int(port)


def still_serves(endpoint, key=b"alive"):
    with grpc.insecure_channel(endpoint.replace("http://", "")) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        return kv.Put(rpc_pb2.PutRequest(key=key, value=b"1"), timeout=15).header.revision > 0


def client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    c.initiate_connection()
    return c


def put_call(c, key=b"k"):
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", PUT), (b":authority", b"x"),
                         (b"content-type", b"application/grpc"), (b"te", b"trailers")])
    msg = rpc_pb2.PutRequest(key=key, value=b"v").SerializeToString()
    c.send_data(sid, b"\x00" + len(msg).to_bytes(4, "big") + msg, end_stream=True)
    return sid


def read_events(sock, c, until, timeout=15.0):
    """Feed what the server sends to client `c` until `until(events)` or EOF/timeout."""
    events = []
    deadline = time.monotonic() + timeout
    sock.settimeout(0.5)
    while time.monotonic() < deadline and not until(events):
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not data:
            break
        try:
            events += c.receive_data(data)
        except h2.exceptions.ProtocolError:
            break
        out = c.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                pass
    return events


def trailers_status(events, sid):
    for ev in events:
        if isinstance(ev, (h2.events.TrailersReceived, h2.events.ResponseReceived)) and ev.stream_id == sid:
            d = dict(ev.headers)
            if b"grpc-status" in d:
                return d[b"grpc-status"]
    return None


def test_client_sending_one_byte_at_a_time_is_served(native):
    _proc, endpoint = native
    c = client()
    sid = put_call(c, b"slow")
    data = c.data_to_send()
    with socket.create_connection(addr(endpoint)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            s.sendall(data[i:i + 1])
        events = read_events(s, c, lambda evs: trailers_status(evs, sid) is not None)
    assert trailers_status(events, sid) == b"0"


def test_garbage_closes_that_connection_only(native):
    _proc, endpoint = native
    idle = [socket.create_connection(addr(endpoint)) for _ in range(20)]  # idle, never send a byte
    try:
        for junk in (os.urandom(4096), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(4096)):
            with socket.create_connection(addr(endpoint)) as s:
                s.sendall(junk)
                s.settimeout(15)
                got = b""
                try:
                    while chunk := s.recv(65536):
                        got += chunk
                except (ConnectionResetError, socket.timeout):
                    pass
                # closed by the server (EOF), after a GOAWAY if it got as far as HTTP/2
        assert still_serves(endpoint)
    finally:
        for s in idle:
            s.close()


def test_rapid_reset_flood_gets_goaway_and_others_are_served(native):
    _proc, endpoint = native
    c = client()
    with socket.create_connection(addr(endpoint)) as s:
        s.sendall(c.data_to_send())
        for _ in range(3000):
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", PUT),
                                 (b":authority", b"x"), (b"content-type", b"application/grpc")])
            c.reset_stream(sid)
        try:
            s.sendall(c.data_to_send())
        except OSError:
            pass
        events = read_events(s, c, lambda evs: any(isinstance(e, h2.events.ConnectionTerminated) for e in evs))
    gone = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert gone and gone[0].error_code != 0
    assert still_serves(endpoint)


def test_sigterm_sends_goaway_with_last_stream_id(native):
    proc, endpoint = native
    c = client()
    with socket.create_connection(addr(endpoint)) as s:
        sid = put_call(c, b"before-stop")
        s.sendall(c.data_to_send())
        events = read_events(s, c, lambda evs: trailers_status(evs, sid) is not None)
        assert trailers_status(events, sid) == b"0"
        proc.send_signal(signal.SIGTERM)
        events = read_events(s, c, lambda evs: any(
            isinstance(e, h2.events.ConnectionTerminated) and e.last_stream_id != 2**31 - 1 for e in evs))
    final = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert final and final[-1].last_stream_id == sid and final[-1].error_code == 0
    assert proc.wait(20) == 0


def test_max_concurrent_streams_flag_is_the_http2_setting(tmp_path):
    proc, endpoint = start_fastkv(tmp_path / "data", "--client-frontend", "native", "--max-concurrent-streams", "3")
    try:
        c = client()
        with socket.create_connection(addr(endpoint)) as s:
            s.sendall(c.data_to_send())
            read_events(s, c, lambda evs: any(isinstance(e, h2.events.RemoteSettingsChanged) for e in evs))
        assert c.remote_settings.max_concurrent_streams == 3
        # a client with more calls in flight than that queues them; all are answered
        with grpc.insecure_channel(endpoint.replace("http://", "")) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            futures = [kv.Put.future(rpc_pb2.PutRequest(key=b"m%d" % i, value=b"v"), timeout=30) for i in range(40)]
            assert len({f.result().header.revision for f in futures}) == 40
    finally:
        stop_process(proc)


def test_watch_client_that_stops_reading_does_not_stall_others(native):
    """A watcher with a tiny flow-control window that never reads: the server keeps serving writes
    and other watchers; what it sent that client stays within the window; resetting the stream
    (RST_STREAM) ends the watch and the connection stays usable."""
    _proc, endpoint = native
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    c.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1024})
    c.initiate_connection()
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/etcdserverpb.Watch/Watch"),
                         (b":authority", b"x"), (b"content-type", b"application/grpc"), (b"te", b"trailers")])
    req = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"s/", range_end=b"s0"))
    raw = req.SerializeToString()
    c.send_data(sid, b"\x00" + len(raw).to_bytes(4, "big") + raw)
    with socket.create_connection(addr(endpoint)) as s:
        s.sendall(c.data_to_send())
        created = read_events(s, c, lambda evs: any(isinstance(e, h2.events.DataReceived) for e in evs))
        assert any(isinstance(e, h2.events.DataReceived) for e in created)
        # the client now stops acknowledging data: 2 MB of events are written under its watch
        t0 = time.monotonic()
        with grpc.insecure_channel(endpoint.replace("http://", "")) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            futures = [kv.Put.future(rpc_pb2.PutRequest(key=b"s/%d" % i, value=b"x" * 4096), timeout=60)
                       for i in range(500)]
            assert all(f.result().header.revision for f in futures)
        assert time.monotonic() - t0 < 60
        s.settimeout(2)
        got = 0
        try:
            while chunk := s.recv(1 << 20):
                got += len(chunk)
        except socket.timeout:
            pass
        assert got < 64 * 1024  # the window (1 KiB) plus frame headers and control frames, far below 2 MB
        # RST_STREAM ends the watch; the same connection still serves a new call
        c.reset_stream(sid)
        sid2 = put_call(c, b"after-reset")
        s.sendall(c.data_to_send())
        events = read_events(s, c, lambda evs: trailers_status(evs, sid2) is not None)
        assert trailers_status(events, sid2) == b"0"
    assert still_serves(endpoint)
