"""The peer port, inbound side: one asyncio Protocol per accepted connection.

The first bytes decide: the PREAMBLE means our peer protocol (HELLO, then a stream or a pipeline),
an HTTP method means one HTTP/1.1 request (peerhttp), anything else closes the connection. Bytes
that break the protocol (unknown frame kinds, oversize lengths, undecodable raft messages) close
that connection and count a receive failure; they never reach raft and never grow a buffer past
the cap of the frame kind allowed in the current state.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

from fastkv.transport import frame as fr
from fastkv.transport import peerhttp
from fastkv.transport.snapfile import SnapshotFile

log = logging.getLogger("fastkv.transport")

SNIFF, HTTP, HELLO, STREAM, PIPELINE, CLOSED, ANSWERING = range(7)  # ANSWERING: a forwarded keep-alive


class PeerConnection(asyncio.Protocol):
    def __init__(self, tr):
        self.tr = tr
        self.state = SNIFF
        self.transport = None
        self.peer_id = 0
        self.remote = "?"
        self._head = bytearray()
        self._decoder: fr.FrameDecoder | None = None
        self._timer = None
        self._admission: asyncio.Task | None = None
        # pipeline state
        self._snap_msg = None
        self._snap_size = 0
        self._snap_file: SnapshotFile | None = None
        self._snap_started = 0.0

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.remote = str(transport.get_extra_info("peername"))
        self.tr.inbound.add(self)
        tls = self.tr.server_tls
        ssl_object = transport.get_extra_info("ssl_object")
        if tls is not None and ssl_object is not None:
            # nothing is read until the certificate passes etcd's listener checks (matching its
            # SANs to the peer's address may take a DNS lookup)
            transport.pause_reading()
            self._admission = asyncio.get_running_loop().create_task(
                self._admit(tls, ssl_object, transport.get_extra_info("peername")))
        self._timer = asyncio.get_running_loop().call_later(
            self.tr.cfg.handshake_timeout, self._handshake_timeout)

    async def _admit(self, tls, ssl_object, peername) -> None:
        reason = await tls.listener_refusal(ssl_object, peername)
        if self.state == CLOSED:
            return
        if reason is not None:
            self._refuse_tls(reason)
        else:
            self.transport.resume_reading()

    def _refuse_tls(self, reason: str) -> None:
        log.warning("refused peer connection from %s: %s", self.remote, reason)
        self._close(abort=True)

    def data_received(self, data) -> None:
        if self.state == CLOSED:
            return
        try:
            self._on_data(data)
        except (fr.FrameError, self.tr.pb.CodecError, ValueError) as exc:
            self._bad(f"protocol error: {exc}")
        except Exception:
            log.exception("peer connection from %s: unexpected error, closing it", self.remote)
            self._bad("internal error")

    def connection_lost(self, exc) -> None:
        self.state = CLOSED
        self.tr.inbound.discard(self)
        if self.tr.inbound_streams.get(self.peer_id) is self:
            del self.tr.inbound_streams[self.peer_id]
        if self._timer is not None:
            self._timer.cancel()
        if self._admission is not None:
            self._admission.cancel()
        self._abort_snapshot("connection lost before the snapshot was complete")

    # --- state machine ------------------------------------------------------------------------
    def _on_data(self, data) -> None:
        if self.state == ANSWERING:
            return  # one request per connection: bytes after it are not read
        if self.state == STREAM:
            self._on_stream_data(data)
            return
        if self.state == SNIFF:
            self._head += data
            if len(self._head) < len(fr.PREAMBLE) and (
                    fr.PREAMBLE.startswith(bytes(self._head)) or peerhttp.could_be_http(bytes(self._head))):
                return
            head = bytes(self._head)
            if head.startswith(fr.MAGIC):
                if head[3] != fr.PROTOCOL_VERSION:
                    self._refuse(fr.REFUSE_VERSION, f"protocol version {head[3]} not supported "
                                 f"(this member speaks {fr.PROTOCOL_VERSION})")
                    return
                self.state = HELLO
                self._decoder = fr.FrameDecoder({fr.HELLO: fr.CONTROL_MAX})
                self._head = bytearray()
                data = head[len(fr.PREAMBLE):]
            elif peerhttp.could_be_http(head[:8]):
                self.state = HTTP
                data = b""
            else:
                self._bad("neither the peer protocol nor HTTP")
                return
        if self.state == HTTP:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > peerhttp.MAX_HEAD:
                    self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                         b"Connection: close\r\nContent-Length: 0\r\n\r\n")
                    self._close()
                return
            self._cancel_timer()
            head = bytes(self._head[:end])
            post = peerhttp.post_request(head)
            if post is not None:
                path, length = post
                body = bytes(self._head[end + 4:])
                if len(body) < length:
                    return  # the rest of the body is on its way (bounded: MAX_POST_BODY)
                self.state = ANSWERING
                task = asyncio.get_running_loop().create_task(
                    peerhttp.answer_post(self.tr.http, path, body[:length]))
                task.add_done_callback(self._post_answered)
                return
            self.transport.write(peerhttp.respond(head, self.tr.http, self.tr.cluster_id))
            self._close()
            return
        if not data:
            return
        dec = self._decoder
        dec.feed(data)
        while self.state in (HELLO, PIPELINE):
            f = dec.next_frame()
            if f is None:
                return
            kind, payload = f
            if self.state == HELLO:
                self._on_hello(payload)
                if self.state == STREAM:   # frames that came right behind HELLO
                    rest = dec.take_buffered()
                    if rest:
                        self._on_stream_data(rest)
                    return
            else:
                self.tr.metrics.add("etcd_network_peer_received_bytes_total", self.peer_id,
                                    len(payload) + fr.HEADER_SIZE)
                self._on_pipeline(kind, payload)

    def _on_hello(self, payload) -> None:
        tr = self.tr
        version, channel, cluster_id, frm, to = fr.parse_hello(payload)
        if version != fr.PROTOCOL_VERSION:
            return self._refuse(fr.REFUSE_VERSION, f"protocol version {version} not supported")
        if channel not in (fr.CHANNEL_STREAM, fr.CHANNEL_PIPELINE):
            return self._refuse(fr.REFUSE_BAD_CHANNEL, f"unknown channel {channel}")
        if cluster_id != tr.cluster_id:
            return self._refuse(fr.REFUSE_CLUSTER, f"cluster ID mismatch: this member is in "
                                f"cluster {tr.cluster_id:x}, the sender {frm:x} in {cluster_id:x}")
        if to != tr.member_id:
            return self._refuse(fr.REFUSE_TO, f"to field mismatch: this is member "
                                f"{tr.member_id:x}, not {to:x}")
        if tr.sink is None:
            return self._refuse(fr.REFUSE_NOT_READY, "this member is not ready for raft traffic yet")
        if tr.sink.is_id_removed(frm):
            return self._refuse(fr.REFUSE_REMOVED, f"removed member: {frm:x} was removed from "
                                f"cluster {tr.cluster_id:x}")
        if frm not in tr.peers:
            return self._refuse(fr.REFUSE_UNKNOWN, f"error sender not found: member {frm:x} is "
                                f"not in cluster {tr.cluster_id:x}")
        self._cancel_timer()
        self.peer_id = frm
        self.transport.write(fr.frame(fr.ACCEPT))
        if channel == fr.CHANNEL_STREAM:
            self.state = STREAM
            self._decoder.caps = {fr.MSG: tr.cfg.max_message_bytes, fr.PING: fr.CONTROL_MAX}
            old = tr.inbound_streams.get(frm)
            if old is not None:  # the peer re-dialed: the old connection is dead to it
                old._close()
            tr.inbound_streams[frm] = self
            out = tr.peers.get(frm)
            if out is not None:
                out.retry_now()
        else:
            self.state = PIPELINE
            self._decoder.caps = {fr.SNAP_META: tr.cfg.max_message_bytes}

    def _on_stream_data(self, data) -> None:
        """The hot path: every frame of one read, caps fixed, one metrics update per read."""
        tr = self.tr
        tr.metrics.add("etcd_network_peer_received_bytes_total", self.peer_id, len(data))
        decode, process = tr.pb.decode_message, tr.sink.process
        frm, me, msg_snap, MSG = self.peer_id, tr.member_id, tr.pb.MSG_SNAP, fr.MSG
        for kind, payload in self._decoder.feed_all(data):
            if kind != MSG:
                self.transport.write(fr.frame(fr.PONG, payload))   # PING, the only other kind
                continue
            m = decode(payload)
            if m.frm != frm or m.to != me:
                raise ValueError(f"message {m.frm:x}->{m.to:x} on the stream {frm:x}->{me:x}")
            if m.type == msg_snap:
                raise ValueError("MsgSnap on the stream; snapshots travel on the pipeline")
            process(m)
            if self.state != STREAM:   # the sink's reaction closed us (peer removed)
                return

    # --- pipeline (snapshot receive) ----------------------------------------------------------
    def _on_pipeline(self, kind, payload) -> None:
        tr = self.tr
        if kind == fr.SNAP_META:
            size, encoded = fr.parse_snap_meta(payload)
            m = tr.pb.decode_message(encoded)
            if m.type != tr.pb.MSG_SNAP or m.frm != self.peer_id or m.to != tr.member_id:
                raise ValueError("SNAP_META does not carry a MsgSnap for this member from the sender")
            if size > tr.cfg.max_snapshot_bytes:
                self._write_and_close(fr.snap_status(True, f"snapshot of {size} bytes exceeds the "
                                                     f"limit of {tr.cfg.max_snapshot_bytes}"))
                return
            self._snap_file = SnapshotFile(tr.snap_dir, f"recv-{self.peer_id:x}-", self._disk_drained)
            self._snap_msg, self._snap_size = m, size
            self._snap_started = time.perf_counter()
            tr.metrics.add("etcd_network_snapshot_receive_inflights_total", self.peer_id, 1)
            self._decoder.caps = {fr.SNAP_CHUNK: fr.SNAP_CHUNK_MAX, fr.SNAP_END: fr.CONTROL_MAX}
        elif kind == fr.SNAP_CHUNK:
            if self._snap_file.received + len(payload) > self._snap_size:
                raise ValueError(f"snapshot longer than the announced {self._snap_size} bytes")
            if self._snap_file.write(payload):
                self.transport.pause_reading()   # the disk is behind: let TCP push back
        elif kind == fr.SNAP_END:
            self._decoder.caps = {}
            self.transport.pause_reading()
            asyncio.get_running_loop().create_task(self._finish_snapshot(bytes(payload)))

    def _disk_drained(self) -> None:
        if self.state == PIPELINE and self._decoder.caps and not self.transport.is_closing():
            self.transport.resume_reading()

    async def _finish_snapshot(self, digest: bytes) -> None:
        tr, m, sf = self.tr, self._snap_msg, self._snap_file
        meta = m.snapshot.metadata if m.snapshot is not None else None
        final = os.path.join(tr.snap_dir, f"{meta.term if meta else 0:016x}-"
                                          f"{meta.index if meta else 0:016x}.snap.db")
        try:
            reason = await sf.finish(self._snap_size, digest, final)
        except Exception as exc:
            reason = f"cannot persist the snapshot: {exc!r}"
        if reason is not None:
            return self._reject_snapshot(reason)
        self._snap_file = None
        tr.metrics.add("etcd_network_snapshot_receive_inflights_total", self.peer_id, -1)
        try:
            tr.sink.snapshot_received(m, final)
        except Exception as exc:
            log.exception("the server could not take the snapshot from %x", self.peer_id)
            tr.metrics.add("etcd_network_snapshot_receive_failures", self.peer_id)
            self._write_and_close(fr.snap_status(True, f"cannot install the snapshot: {exc}"))
            return
        tr.metrics.add("etcd_network_snapshot_receive_success", self.peer_id)
        tr.metrics.observe("etcd_network_snapshot_receive_total_duration_seconds", self.peer_id,
                           time.perf_counter() - self._snap_started)
        log.info("received snapshot at index %d from %x (%d bytes) into %s",
                 meta.index if meta else 0, self.peer_id, self._snap_size, final)
        self._write_and_close(fr.snap_status(False))

    def _reject_snapshot(self, reason: str) -> None:
        log.warning("rejected the snapshot from %x: %s", self.peer_id, reason)
        self._abort_snapshot(reason)
        self._write_and_close(fr.snap_status(True, reason))

    def _abort_snapshot(self, reason: str) -> None:
        if self._snap_file is None:
            return
        self.tr.metrics.add("etcd_network_snapshot_receive_inflights_total", self.peer_id, -1)
        self.tr.metrics.add("etcd_network_snapshot_receive_failures", self.peer_id)
        self._snap_file.abort()
        self._snap_file = None

    # --- closing ------------------------------------------------------------------------------
    def _refuse(self, code: int, reason: str) -> None:
        log.warning("refused peer connection from %s: %s", self.remote, reason)
        self._write_and_close(fr.refuse(code, reason))

    def _bad(self, reason: str) -> None:
        log.warning("closing peer connection from %s: %s", self.remote, reason)
        if self.peer_id:
            self.tr.metrics.add("etcd_network_peer_received_failures_total", self.peer_id)
        self._abort_snapshot(reason)
        self._close(abort=True)

    def _write_and_close(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        self._close()

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.state in (SNIFF, HELLO, HTTP):
            self._bad("no handshake within the timeout")

    def _post_answered(self, task) -> None:
        if not task.cancelled() and task.exception() is None and self.transport is not None \
                and not self.transport.is_closing():
            self.transport.write(task.result())
        self._close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self, abort: bool = False) -> None:
        self.state = CLOSED
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort() if abort else self.transport.close()
