"""Streaming calls on the native front end: Watch and LeaseKeepAlive (bidirectional), Snapshot
(server streaming).

A stream handler is transport-neutral: `async def handler(server, requests, who)` is an async
generator that reads request messages from `requests` (an async iterator ending when the client
half-closes) and yields response messages; `who()` says who makes the call (an AuthInfo or None;
it raises EtcdError for an invalid token), asked only where etcd asks: at each watch create and
before a snapshot. It runs as one asyncio Task per stream (streams are long-lived; unary
calls, the hot path, have no Task). Backpressure: after each response the task waits while the
stream's queued bytes (what the client's flow-control window has not let out yet) exceed
HIGH_WATER or the transport's write buffer is full; a watch client that stops reading therefore
stops its own producer, costs at most about HIGH_WATER plus one response here, and holds up no
other stream. A client reset (RST_STREAM) or a lost connection cancels the task.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import tempfile
from collections import deque

from fastkv.api import convert
from fastkv.api.etcdpb import kv_pb2, rpc_pb2
from fastkv.errors import EtcdError
from fastkv.frontend import status
from fastkv.frontend.methods import BIDI_STREAM, SERVER_STREAM, Method, root_only, watch_create_refusal
from fastkv.server.snapshot_export import export_etcd_snapshot

log = logging.getLogger(__name__)

HIGH_WATER = 256 * 1024
SNAPSHOT_CHUNK = 32 * 1024


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


# --- the handlers ---------------------------------------------------------------------------------
def _event_pb(ev) -> kv_pb2.Event:
    e = kv_pb2.Event(type=ev.type, kv=convert.kv(ev.kv))
    if ev.prev_kv is not None:
        e.prev_kv.CopyFrom(convert.kv(ev.prev_kv))
    return e


async def watch(server, requests, who):
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()

    def wake():
        loop.call_soon_threadsafe(ready.set)

    stream = server.watchable.new_stream(on_ready=wake)
    refused: list = []  # watch creates auth refused: answered as etcd does, on this stream

    async def read_requests():
        async for req in requests:
            which = req.WhichOneof("request_union")
            if which == "create_request":
                c = req.create_request
                reason = watch_create_refusal(server, who, c)
                if reason:
                    refused.append(rpc_pb2.WatchResponse(header=server.header(), watch_id=-1, created=True,
                                                         canceled=True, cancel_reason=reason))
                    ready.set()
                    continue
                await loop.run_in_executor(None, lambda c=c: stream.watch(
                    c.key, c.range_end, c.start_revision, c.prev_kv, tuple(c.filters), c.progress_notify,
                    c.fragment, c.watch_id))
            elif which == "cancel_request":
                stream.cancel(req.cancel_request.watch_id)
            elif which == "progress_request":
                stream.request_progress()

    reader = loop.create_task(read_requests())
    try:
        while True:
            if reader.done() and reader.exception() is not None:
                break
            await ready.wait()
            ready.clear()
            while refused:
                yield refused.pop(0)
            responses = await loop.run_in_executor(None, stream.take)
            for r in responses:
                header = server.header(r.revision)
                if r.compact_revision:
                    header.revision = 0  # etcd cancels a compacted watcher with a header revision of 0
                yield rpc_pb2.WatchResponse(
                    header=header, watch_id=r.watch_id, created=r.created, canceled=r.canceled,
                    compact_revision=r.compact_revision, cancel_reason=r.cancel_reason, fragment=r.fragment,
                    events=[_event_pb(ev) for ev in r.events])
    finally:
        reader.cancel()
        stream.close()


async def lease_keep_alive(server, requests, who):
    # etcd 3.4 renews a lease for anyone who knows its id: the token is not looked at
    async for req in requests:
        ttl = await server.lease_renew(req.ID)
        yield rpc_pb2.LeaseKeepAliveResponse(header=server.header(), ID=req.ID, TTL=ttl)


async def snapshot(server, requests, who):
    """etcd's backend file (server/snapshot_export.py) in chunks, then its SHA-256, as etcd sends it.
    Root's only once auth is on."""
    root_only(server, who())
    async for _ in requests:
        break
    loop = asyncio.get_running_loop()
    members = server.members()
    fd, path = tempfile.mkstemp(prefix="fastkv-snapshot-", dir=server.member_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            await loop.run_in_executor(None, functools.partial(export_etcd_snapshot, server.backend, f,
                                                               members=members))
        size = os.path.getsize(path)
        digest = hashlib.sha256()
        sent = 0
        with open(path, "rb") as f:
            while chunk := f.read(SNAPSHOT_CHUNK):
                digest.update(chunk)
                sent += len(chunk)
                yield rpc_pb2.SnapshotResponse(remaining_bytes=size - sent, blob=chunk)  # no header, as etcd 3.4
        yield rpc_pb2.SnapshotResponse(remaining_bytes=0, blob=digest.digest())
    finally:
        os.unlink(path)


STREAM_METHODS = [
    Method(b"/etcdserverpb.Watch/Watch", rpc_pb2.WatchRequest, watch, BIDI_STREAM),
    Method(b"/etcdserverpb.Lease/LeaseKeepAlive", rpc_pb2.LeaseKeepAliveRequest, lease_keep_alive, BIDI_STREAM),
    Method(b"/etcdserverpb.Maintenance/Snapshot", rpc_pb2.SnapshotRequest, snapshot, SERVER_STREAM),
]
