"""Streaming calls on the native front end: Watch and LeaseKeepAlive (bidirectional), Snapshot
(server streaming).

A stream handler is transport-neutral: `async def handler(server, requests, who)`, an async
generator of response messages over the request messages (server/streams.py has etcd's three; the
grpcio reference front end drives the same ones); `who()` says who makes the call. It runs as one asyncio Task per stream (streams are long-lived; unary
calls, the hot path, have no Task). Backpressure: after each response the task waits while the
stream's queued bytes (what the client's flow-control window has not let out yet) exceed
HIGH_WATER or the transport's write buffer is full; a watch client that stops reading therefore
stops its own producer, costs at most about HIGH_WATER plus one response here, and holds up no
other stream. A client reset (RST_STREAM) or a lost connection cancels the task.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque

from fastkv.api.etcdpb import rpc_pb2
from fastkv.errors import EtcdError
from fastkv.frontend import status
from fastkv.frontend.methods import BIDI_STREAM, SERVER_STREAM, Method
from fastkv.server import streams as server_streams

log = logging.getLogger(__name__)

HIGH_WATER = 256 * 1024


class _Requests:
    """The client's messages of one stream, as an async iterator; ends at the client's half-close."""

    def __init__(self, loop, request_type):
        self.loop = loop
        self.request_type = request_type
        self.queue: deque = deque()
        self.ended = False
        self.waiter = None

    def push(self, message) -> None:
        if message is None:
            self.ended = True
        else:
            req = self.request_type()
            req.ParseFromString(message)
            self.queue.append(req)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self.queue:
            if self.ended:
                raise StopAsyncIteration
            self.waiter = self.loop.create_future()
            await self.waiter
            self.waiter = None
        return self.queue.popleft()


class StreamCall:
    """One streaming call in flight on a ClientConnection."""

    def __init__(self, conn, method: Method, sid: int, credentials=None):
        self.conn = conn
        self.method = method
        self.sid = sid
        self.credentials = credentials
        self.requests = _Requests(conn.loop, method.request)
        self.drained = None
        self.task = conn.loop.create_task(self._run())

    # called by the connection
    def received(self, message) -> None:
        try:
            self.requests.push(message)
        except Exception:  # undecodable request message
            self.conn.h2.send_status(self.sid, status.INTERNAL, "grpc: error unmarshalling request")
            self.conn.schedule_flush()
            self.cancel()

    def cancel(self) -> None:
        self.task.cancel()

    def writable(self) -> None:
        if self.drained is not None and not self.drained.done() and not self.conn.paused \
                and self.conn.h2.buffered(self.sid) <= HIGH_WATER:
            self.drained.set_result(None)

    def who(self):
        return self.conn.auth_info(self.credentials)

    async def _run(self) -> None:
        conn, h2, sid = self.conn, self.conn.h2, self.sid
        code, message = status.OK, ""
        responses = self.method.handler(conn.fe.server, self.requests, self.who)
        try:
            h2.send_headers(sid)
            conn.schedule_flush()
            async for resp in responses:
                if not h2.send_message(sid, resp.SerializeToString()):
                    return  # the stream is gone
                conn.schedule_flush()
                while conn.paused or h2.buffered(sid) > HIGH_WATER:
                    self.drained = conn.loop.create_future()
                    conn.drain_waiters.add(self)
                    try:
                        await self.drained
                    finally:
                        conn.drain_waiters.discard(self)
                        self.drained = None
                    if h2.buffered(sid) < 0:
                        return
        except asyncio.CancelledError:
            return
        except EtcdError as exc:
            code, message = status.of_error(exc), exc.message
        except Exception as exc:
            log.exception("stream handler failed")
            code, message = status.INTERNAL, f"fastkv: internal error: {type(exc).__name__}"
        finally:
            conn.stream_finished(sid)
            # a handler left suspended at a yield (cancelled while waiting for the client's window)
            # releases what it holds (a watch stream's watchers) now, not whenever it is collected
            try:
                await responses.aclose()
            except BaseException:  # noqa: BLE001 - cleanup of a dead call must not fail the task
                pass
        h2.send_status(sid, code, message)
        conn.schedule_flush()


def run_stream(conn, method: Method, sid: int, timeout: float, credentials=None) -> StreamCall:
    return StreamCall(conn, method, sid, credentials)


# --- the handlers: the server's own stream iterators (server/streams.py), shared with grpcio -------
STREAM_METHODS = [
    Method(b"/etcdserverpb.Watch/Watch", rpc_pb2.WatchRequest, server_streams.watch, BIDI_STREAM),
    Method(b"/etcdserverpb.Lease/LeaseKeepAlive", rpc_pb2.LeaseKeepAliveRequest, server_streams.lease_keep_alive,
           BIDI_STREAM),
    Method(b"/etcdserverpb.Maintenance/Snapshot", rpc_pb2.SnapshotRequest, server_streams.snapshot, SERVER_STREAM),
]
