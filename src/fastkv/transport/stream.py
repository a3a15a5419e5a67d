"""The stream: one long-lived outbound connection to one peer for appends, heartbeats, votes and
their answers (etcd's streamWriter).

Rules (the contract the raft side relies on):
- Messages to one peer go out in the order `send` saw them, on one connection.
- Everything queued within one loop turn is written with one `write` call.
- The queue is bounded (etcd: 4096). A message that does not fit, or arrives while the peer is
  known unreachable (backing off between dials), is dropped and the peer reported unreachable;
  raft then probes instead of streaming, and retries. While a dial is in flight, messages wait in
  the queue; if the dial fails or the connection drops, what waited is dropped and reported.
- When the kernel's send buffer and ours pass the high-water mark (`pause_writing`), we stop
  writing and let the queue absorb, then drop: a slow peer costs bounded memory (the queue, plus
  at most one high-water mark and one message in the transport's buffer).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from fastkv.transport import frame as fr
from fastkv.transport.dial import Backoff, Refused, dial

log = logging.getLogger("fastkv.transport")

CONNECTING, ACTIVE, BACKOFF, STOPPED = range(4)


def _end_wait(fut) -> None:
    if not fut.done():
        fut.set_result(None)


class PeerStream:
    def __init__(self, tr, member_id: int, urls: list[str]):
        self.tr = tr
        self.id = member_id
        self.urls = list(urls)
        self.queue: deque = deque()
        self.state = CONNECTING
        self.conn = None
        self.active_since: float | None = None
        self._url_i = 0
        self._flush_handle = None
        self._backoff = Backoff(tr.cfg.backoff_initial, tr.cfg.backoff_cap, tr.rng)
        self._retry = None  # the future a backoff waits on (retry_now ends it early)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"peer-stream-{member_id:x}")
        self._ping_task = None

    # --- sending ----------------------------------------------------------------------------
    def send(self, m) -> None:
        if self.state == ACTIVE or self.state == CONNECTING:
            if len(self.queue) < self.tr.cfg.queue_size:
                self.queue.append(m)
                if self.state == ACTIVE and self._flush_handle is None and not self.conn.paused:
                    self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
                return
        self._drop(m)

    def _drop(self, m) -> None:
        self.tr.metrics.add("etcd_network_peer_sent_failures_total", self.id)
        self.tr.report_unreachable(self.id)

    def _flush(self) -> None:
        self._flush_handle = None
        conn = self.conn
        if self.state != ACTIVE or conn is None or conn.paused or not self.queue:
            return
        encode = self.tr.pb.encode_message
        limit = self.tr.cfg.max_message_bytes
        parts = []
        add = parts.append
        pack, MSG = fr.HEADER.pack, fr.MSG
        queue = self.queue
        # one write per turn, but no more than the high-water mark of bytes in it: the rest waits
        # in the (bounded) queue for resume_writing, so what we buffer stays bounded too
        budget = self.tr.cfg.write_high_water
        while queue and budget > 0:
            m = queue.popleft()
            data = encode(m)
            n = len(data)
            if n > limit:
                log.error("dropping a %d-byte raft message to %x: over the %d-byte peer limit",
                          n, self.id, limit)
                self._drop(m)
                continue
            add(pack(n + 1, MSG))
            add(data)
            budget -= n + fr.HEADER_SIZE
        if queue and not conn.paused:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        if parts:
            buf = b"".join(parts)
            conn.transport.write(buf)
            self.tr.metrics.add("etcd_network_peer_sent_bytes_total", self.id, len(buf))
            self.tr.stats_batches += 1

    def _on_resume(self) -> None:
        if self.queue and self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _fail_queue(self) -> None:
        if self.queue:
            n = len(self.queue)
            self.queue.clear()
            self.tr.metrics.add("etcd_network_peer_sent_failures_total", self.id, n)
            self.tr.report_unreachable(self.id)

    # --- connection lifecycle ---------------------------------------------------------------
    async def _run(self) -> None:
        tr = self.tr
        hello = fr.hello(fr.CHANNEL_STREAM, tr.cluster_id, tr.member_id, self.id)
        warned = False
        while self.state != STOPPED:
            url = self.urls[self._url_i % len(self.urls)]
            try:
                conn = await dial(url, hello, client_ssl=tr.client_ssl, timeout=tr.cfg.dial_timeout,
                                  write_high_water=tr.cfg.write_high_water,
                                  on_rtt=self._on_rtt, on_resume=self._on_resume)
            except asyncio.CancelledError:
                raise
            except Refused as exc:
                if exc.code == fr.REFUSE_REMOVED:
                    self.state = STOPPED
                    self._fail_queue()
                    tr.removed_by(self.id, exc.reason)
                    return
                if not warned:
                    log.warning("peer %x at %s refused the stream: %s", self.id, url, exc.reason)
                    warned = True
                await self._back_off()
                continue
            except Exception as exc:  # OSError, ssl.SSLError, TimeoutError, ConnectionError
                if not warned:
                    log.warning("cannot reach peer %x at %s: %r (retrying with backoff)", self.id, url, exc)
                    warned = True
                await self._back_off()
                continue
            warned = False
            self._backoff.reset()
            self.conn = conn
            self.state = ACTIVE
            self.active_since = time.time()
            tr.metrics.set("etcd_network_active_peers", self.id, 1)
            log.info("stream to peer %x at %s is active", self.id, url)
            self._ping_task = asyncio.get_running_loop().create_task(self._pinger(conn))
            self._on_resume()
            try:
                await conn.closed
            finally:
                self._ping_task.cancel()
                self.conn = None
                self.active_since = None
                tr.metrics.set("etcd_network_active_peers", self.id, 0)
            if self.state == STOPPED:
                return
            tr.metrics.add("etcd_network_disconnected_peers_total", self.id)
            log.warning("lost the stream to peer %x at %s", self.id, url)
            await self._back_off()

    async def _back_off(self) -> None:
        self.state = BACKOFF
        self._fail_queue()
        self._url_i += 1
        loop = asyncio.get_running_loop()
        self._retry = loop.create_future()
        timer = loop.call_later(self._backoff.next(), _end_wait, self._retry)
        try:
            await self._retry
        finally:
            timer.cancel()
            self._retry = None
        if self.state == BACKOFF:
            self.state = CONNECTING

    def retry_now(self) -> None:
        """The peer just opened its own stream to this member, so it is up: dial it now instead
        of at the end of the backoff (a restarted follower then hears from the leader at once;
        etcd gets the same from its peers' streams being dialed by the receiving side)."""
        if self.state == BACKOFF and self._retry is not None and not self._retry.done():
            self._backoff.reset()
            self._retry.set_result(None)

    async def _pinger(self, conn) -> None:
        interval = self.tr.cfg.ping_interval
        if interval <= 0:
            return
        sent = self.tr.metrics.add
        # a peer that stops answering pings (host gone without a FIN, process stopped) is cut
        # off so the stream re-dials, like etcd's read timeout on its stream connections
        silence_limit = max(3 * interval, self.tr.cfg.dial_timeout)
        while not conn.closed.done():
            if time.perf_counter() - conn.last_pong > silence_limit:
                log.warning("peer %x has not answered pings for %.1fs; closing the stream",
                            self.id, silence_limit)
                conn.transport.abort()
                return
            sent("etcd_network_peer_sent_bytes_total", self.id, conn.ping())
            await asyncio.sleep(interval)

    def _on_rtt(self, rtt: float) -> None:
        self.tr.metrics.observe("etcd_network_peer_round_trip_time_seconds", self.id, rtt)

    def update_urls(self, urls: list[str]) -> None:
        self.urls = list(urls)
        self._url_i = 0

    def stop(self) -> None:
        self.state = STOPPED
        self.queue.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self.conn is not None:
            self.conn.close()
        self._task.cancel()

    async def wait_stopped(self) -> None:
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass
