"""PeerTransport: the cluster Transporter over asyncio TCP (uvloop in production), TLS optional.

Shape (etcd's rafthttp, one event loop instead of goroutines):
- one listener per peer URL of this member (`serve()`), answering the peer protocol and HTTP;
- per peer, one outbound stream (PeerStream) for every message but snapshots;
- per snapshot, one short-lived pipeline connection (pipeline.send_snapshot).

Usage by the server:

    tr = PeerTransport(member_id, cluster_id, snap_dir=..., server_tls=..., client_tls=...,
                       http=PeerHTTP(members=..., health=...), on_removed=server.stop_removed)
    await tr.serve(["http://127.0.0.1:2380"])       # bind early: /members answers at once
    for m in other members: tr.add_peer(m.id, m.peer_urls)
    tr.start(sink)                                  # sink: RaftSink over the RawNode
    ... tr.send(rd.messages); tr.send_snapshot(msg_snap, backend_copy_path) ...
    tr.stop(); await tr.wait_closed()
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
from dataclasses import dataclass

from fastkv._native import load
from fastkv.transport import frame as fr
from fastkv.transport.base import as_sink
from fastkv.transport.dial import is_tls, split_url, unix_path
from fastkv.transport.listener import PeerConnection
from fastkv.transport.metrics import PeerMetrics
from fastkv.transport.peerhttp import PeerHTTP
from fastkv.transport.pipeline import send_snapshot
from fastkv.transport.stream import PeerStream
from fastkv.transport.tls import TLSInfo

log = logging.getLogger("fastkv.transport")


@dataclass
class TransportConfig:
    queue_size: int = 4096                 # etcd's streamBufSize
    # raise with --max-request-bytes: an entry may be one whole request, riding in a MsgApp
    max_message_bytes: int = fr.DEFAULT_MAX_MESSAGE_BYTES
    max_snapshot_bytes: int = 8 << 30      # etcd's suggested maximum quota
    write_high_water: int = 2 << 20        # bytes buffered in the transport before pause_writing
    dial_timeout: float = 5.0
    handshake_timeout: float = 10.0
    backoff_initial: float = 0.05
    backoff_cap: float = 2.0
    ping_interval: float = 5.0             # stream RTT probes (etcd_network_peer_round_trip_time_seconds)
    snapshot_stall_timeout: float = 30.0   # no progress sending a chunk for this long: give up
    snapshot_status_timeout: float = 120.0  # follower's verify + fsync of the whole file


class PeerTransport:
    def __init__(self, member_id: int, cluster_id: int, *, snap_dir: str,
                 server_tls: TLSInfo | None = None, client_tls: TLSInfo | None = None,
                 http: PeerHTTP | None = None, on_removed=None, config: TransportConfig | None = None,
                 rng: random.Random | None = None, pb=None):
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.snap_dir = snap_dir
        self.server_tls = server_tls
        self.client_tls = client_tls
        self.client_ssl = client_tls.client_context() if client_tls is not None else None
        self.http = http
        self.on_removed = on_removed
        self.cfg = config or TransportConfig()
        self.rng = rng or random.Random()
        self.pb = pb or load("raftpb")
        self.metrics = PeerMetrics(member_id)
        self.sink = None
        self.peers: dict[int, PeerStream] = {}
        self._pending_peers: dict[int, list[str]] = {}
        self.inbound: set[PeerConnection] = set()
        self.inbound_streams: dict[int, PeerConnection] = {}
        self.addresses: list[tuple[str, int]] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._snapshots: set[asyncio.Task] = set()
        self._removed_reported = False
        self._stopped = False
        self.stats_batches = 0  # stream writes issued (tests and the benchmark read it)

    # --- listening ----------------------------------------------------------------------------
    async def serve(self, listen_urls: list[str]) -> list[tuple[str, int]]:
        """Bind the peer port(s); port 0 picks a free one. Returns the bound (host, port)s.
        https URLs need `server_tls`."""
        loop = asyncio.get_running_loop()
        for url in listen_urls:
            scheme, host, port = split_url(url)
            ssl_ctx = None
            if is_tls(scheme):
                if self.server_tls is None:
                    raise ValueError(f"listen peer URL {url} is https: give --peer-cert-file and "
                                     "--peer-key-file (or --peer-auto-tls)")
                ssl_ctx = self.server_tls.server_context()
            handshake = self.cfg.handshake_timeout if ssl_ctx else None
            path = unix_path(url)
            if path is not None:  # etcd's unix:// peer URLs: a stale socket file is removed first
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                server = await loop.create_unix_server(lambda: PeerConnection(self), path, ssl=ssl_ctx,
                                                       ssl_handshake_timeout=handshake)
                self._servers.append(server)
                self.addresses.append((path, 0))
                continue
            server = await loop.create_server(lambda: PeerConnection(self), host, port, ssl=ssl_ctx,
                                              ssl_handshake_timeout=handshake)
            self._servers.append(server)
            for sock in server.sockets:
                self.addresses.append(sock.getsockname()[:2])
        return self.addresses

    # --- Transporter --------------------------------------------------------------------------
    def start(self, sink) -> None:
        self.sink = as_sink(sink)
        pending, self._pending_peers = self._pending_peers, {}
        for mid, urls in pending.items():
            self.peers[mid] = PeerStream(self, mid, urls)

    def send(self, messages: list) -> None:
        msg_snap = self.pb.MSG_SNAP
        for m in messages:
            if m.to == 0:
                continue
            p = self.peers.get(m.to)
            if p is None:
                log.debug("dropping a message to unknown member %x", m.to)
                continue
            if m.type == msg_snap:
                log.error("MsgSnap to %x handed to send(); snapshots go through send_snapshot", m.to)
                self.report_snapshot(m.to, True)
                continue
            p.send(m)

    def send_snapshot(self, msg, source, size: int | None = None) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(send_snapshot(self, msg, source, size),
                                                      name=f"snapshot-to-{msg.to:x}")
        self._snapshots.add(task)
        task.add_done_callback(self._snapshots.discard)
        return task

    def add_peer(self, member_id: int, urls: list[str]) -> None:
        if member_id == self.member_id or member_id in self.peers:
            return
        for u in urls:
            split_url(u)
        if self.sink is None:
            self._pending_peers[member_id] = list(urls)
        else:
            self.peers[member_id] = PeerStream(self, member_id, urls)

    def update_peer(self, member_id: int, urls: list[str]) -> None:
        for u in urls:
            split_url(u)
        p = self.peers.get(member_id)
        if p is not None:
            p.update_urls(urls)
        elif member_id in self._pending_peers:
            self._pending_peers[member_id] = list(urls)

    def remove_peer(self, member_id: int) -> None:
        self._pending_peers.pop(member_id, None)
        p = self.peers.pop(member_id, None)
        if p is not None:
            p.stop()
        for c in list(self.inbound):
            if c.peer_id == member_id:
                c._close()

    def active_since(self, member_id: int) -> float | None:
        """Wall-clock time the outbound stream to `member_id` became active, None if it is not."""
        p = self.peers.get(member_id)
        return None if p is None else p.active_since

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for s in self._servers:
            s.close()
        for p in self.peers.values():
            p.stop()
        for c in list(self.inbound):
            c._close(abort=True)
        for t in self._snapshots:
            t.cancel()

    async def wait_closed(self) -> None:
        for s in self._servers:
            await s.wait_closed()
        for p in list(self.peers.values()):
            await p.wait_stopped()
        if self._snapshots:
            await asyncio.gather(*self._snapshots, return_exceptions=True)

    # --- calls into the raft side -------------------------------------------------------------
    def report_unreachable(self, member_id: int) -> None:
        if self.sink is not None:
            self._call(self.sink.report_unreachable, member_id)

    def report_snapshot(self, member_id: int, failed: bool) -> None:
        if self.sink is not None:
            self._call(self.sink.report_snapshot, member_id, failed)

    def removed_by(self, member_id: int, reason: str) -> None:
        """A peer told us this member was removed from the cluster (etcd: errMemberRemoved)."""
        log.error("peer %x says this member (%x) was removed from the cluster: %s; stopping",
                  member_id, self.member_id, reason)
        if not self._removed_reported:
            self._removed_reported = True
            if self.on_removed is not None:
                self._call(self.on_removed)

    @staticmethod
    def _call(fn, *args) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("raft side callback %r failed", fn)
