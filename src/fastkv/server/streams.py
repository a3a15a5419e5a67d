"""etcd's streaming calls as server-level async iterators, one implementation that every front end
drives: Watch and LeaseKeepAlive (bidirectional), Snapshot (server streaming).

Each is `async def stream(server, requests, who)`: an async generator reading request messages from
`requests` (an async iterator ending when the client half-closes) and yielding response messages.
`who()` says who makes the call (an AuthInfo, or None for anonymous; it raises EtcdError for an
invalid token), asked only where etcd 3.4 asks: at each watch create and before a snapshot. Errors
a client should see are EtcdErrors; the front end turns them into its own statuses. Nothing here
imports grpc or knows about HTTP/2: the native front end (frontend/streams.py) adds flow control
and backpressure, the grpcio reference (api/services.py) its servicer methods.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import tempfile

from fastkv.api import convert
from fastkv.api.etcdpb import kv_pb2, rpc_pb2
from fastkv.auth.errors import unmapped
from fastkv.errors import EtcdError
from fastkv.server.snapshot_export import export_etcd_snapshot

SNAPSHOT_CHUNK = 32 * 1024


class Encoded:
    """A response message already in its wire form (what a front end would get from
    SerializeToString); message() decodes it for a front end that needs the object (the JSON
    gateway, grpcio). The watch stream sends these: see watch()."""

    __slots__ = ("data", "message_type")

    def __init__(self, data: bytes, message_type):
        self.data = data
        self.message_type = message_type

    def SerializeToString(self) -> bytes:
        return self.data

    def message(self):
        return self.message_type.FromString(self.data)


def decoded(resp):
    """A stream's response as a message object (Encoded ones decoded)."""
    return resp.message() if type(resp) is Encoded else resp


def root_only(server, auth) -> None:
    """Defragment, Snapshot, Hash and HashKV are root's once auth is on (etcd 3.4's rule; its
    maintenance service sends these refusals unmapped: code UNKNOWN, auth's own text)."""
    try:
        server.check_admin(auth)
    except EtcdError as exc:
        raise unmapped(exc) from None


def watch_create_refusal(server, who, create) -> str:
    """Why a watch create is refused under auth ("" = allowed): etcd checks read permission when a
    watch is created, and a refusal cancels that watch only, with the text of Go's gRPC status error
    as its cancel reason."""
    if not server.auth_store.enabled:
        return ""
    # etcd turns range_end "\0" (every key >= key) into an empty one before its check, which then
    # looks at `key` alone: kept, so the same watches pass and fail
    range_end = b"" if create.range_end == b"\x00" else create.range_end
    try:
        server.check_watch(who(), create.key, range_end)
    except EtcdError as exc:
        for code, text in (("Unauthenticated", "etcdserver: invalid auth token"),
                           ("InvalidArgument", "etcdserver: revision of auth store is old"),
                           ("InvalidArgument", "etcdserver: user name is empty")):
            if exc.message == text:
                return f"rpc error: code = {code} desc = {text}"
        return "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    return ""


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
            # Many watchers of one stream get the same events (a key or prefix watched many times):
            # each run of events is converted and encoded once per batch, not per watcher. A
            # response goes out as its own fields (watch id, flags, header) followed by the shared
            # encoding of its events: protobuf reads concatenated encodings of one message type
            # as one message, with the repeated events field appended, so each watcher costs a
            # small encode and a join instead of copying and encoding every event again.
            converted: dict = {}
            encoded: dict = {}
            headers: dict = {}
            for r in responses:
                if r.compact_revision:
                    # etcd cancels a compacted watcher with a header revision of 0 (the watchable
                    # store's response carries none); clients see exactly that
                    header = server.header(r.revision)
                    header.revision = 0
                else:
                    header = headers.get(r.revision)
                    if header is None:
                        header = headers[r.revision] = server.header(r.revision)
                own = rpc_pb2.WatchResponse(
                    header=header, watch_id=r.watch_id, created=r.created, canceled=r.canceled,
                    compact_revision=r.compact_revision, cancel_reason=r.cancel_reason,
                    fragment=r.fragment).SerializeToString()
                if not r.events:
                    yield Encoded(own, rpc_pb2.WatchResponse)
                    continue
                run = tuple(map(id, r.events))  # the events are alive for the batch: ids are stable
                body = encoded.get(run)
                if body is None:
                    events = []
                    for ev in r.events:
                        e = converted.get(id(ev))
                        if e is None:
                            e = converted[id(ev)] = _event_pb(ev)
                        events.append(e)
                    body = encoded[run] = rpc_pb2.WatchResponse(events=events).SerializeToString()
                yield Encoded(own + body, rpc_pb2.WatchResponse)
    finally:
        reader.cancel()
        stream.close()


async def lease_keep_alive(server, requests, who):
    # etcd 3.4 renews a lease for anyone who knows its id: the token is not looked at
    async for req in requests:
        ttl = await server.lease_renew(req.ID)
        yield rpc_pb2.LeaseKeepAliveResponse(header=server.header(), ID=req.ID, TTL=ttl)


async def snapshot(server, requests, who):
    """One consistent state as etcd's own backend file (bbolt, see server/snapshot_export.py), in
    chunks, followed by its SHA-256, as etcd sends it: `etcdctl snapshot status/restore` and real
    etcd read the result. Root's only once auth is on."""
    try:
        auth = who()
    except EtcdError as exc:  # the maintenance service's refusals are unmapped (root_only)
        raise unmapped(exc) from None
    root_only(server, auth)
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
