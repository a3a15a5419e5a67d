"""The snapshot pipeline, sender side (etcd's snapshotSender): a connection of its own per snapshot,
so a large backend transfer never sits in front of heartbeats on the stream.

On the wire: SNAP_META (total size, the encoded MsgSnap), SNAP_CHUNK frames carrying the backend
file in order, SNAP_END with the XXH3-128 digest of the whole file; the follower answers one SNAP_STATUS
after it verified, fsynced and handed the file to its server. Reading and hashing run in the
loop's executor (a busy disk must not stall heartbeats), each chunk is a loop turn of its own,
and pause_writing is honoured, so a transfer shares the loop fairly with the stream.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time

from fastkv.transport import frame as fr
from fastkv.transport.dial import Refused, dial

log = logging.getLogger("fastkv.transport")

SEND_CHUNK = fr.SNAP_CHUNK_MAX


async def send_snapshot(tr, msg, source, size: int | None) -> bool:
    """Stream one snapshot to msg.to; reports the outcome to the sink and returns True on success."""
    to = msg.to
    m = tr.metrics
    started = time.perf_counter()
    m.add("etcd_network_snapshot_send_inflights_total", to, 1)
    f = None
    own = False
    conn = None
    failed, reason = True, ""
    try:
        peer = tr.peers.get(to)
        if peer is None:
            raise ConnectionError(f"member {to:x} is not a peer of this member")
        if isinstance(source, (str, os.PathLike)):
            f = open(source, "rb")
            own = True
        else:
            f = source
        if size is None:
            size = os.fstat(f.fileno()).st_size
        encoded = tr.pb.encode_message(msg)
        if len(encoded) > tr.cfg.max_message_bytes:
            raise ValueError(f"MsgSnap of {len(encoded)} bytes exceeds the peer message limit")
        hello = fr.hello(fr.CHANNEL_PIPELINE, tr.cluster_id, tr.member_id, to)
        last_exc = None
        for url in peer.urls:
            try:
                conn = await dial(url, hello, client_ssl=tr.client_ssl, timeout=tr.cfg.dial_timeout,
                                  write_high_water=tr.cfg.write_high_water)
                break
            except Refused as exc:
                if exc.code == fr.REFUSE_REMOVED:
                    tr.removed_by(to, exc.reason)
                raise
            except Exception as exc:
                last_exc = exc
        if conn is None:
            raise last_exc or ConnectionError("no URL for peer")
        w = conn.transport.write
        w(fr.snap_meta(size, encoded))
        digest = fr.snapshot_digest()
        sent = 0
        stall = tr.cfg.snapshot_stall_timeout
        loop = asyncio.get_running_loop()
        while sent < size:
            # disk reads and hashing run off the loop: on a busy disk a read can block for long
            chunk = await loop.run_in_executor(None, _read_and_hash, f, digest,
                                               min(SEND_CHUNK, size - sent))
            if not chunk:
                raise EOFError(f"snapshot source ended after {sent} of {size} bytes")
            w(fr.frame_header(fr.SNAP_CHUNK, len(chunk)))
            w(chunk)
            sent += len(chunk)
            m.add("etcd_network_peer_sent_bytes_total", to, len(chunk) + fr.HEADER_SIZE)
            async with asyncio.timeout(stall):
                await conn.drain()
        w(fr.frame(fr.SNAP_END, digest.digest()))
        async with asyncio.timeout(tr.cfg.snapshot_status_timeout):
            failed, reason = await conn.status
        if failed:
            log.warning("peer %x rejected the snapshot at index %d: %s", to,
                        msg.snapshot.metadata.index if msg.snapshot else 0, reason)
    except asyncio.CancelledError:
        failed, reason = True, "cancelled"
        raise
    except Exception as exc:
        failed, reason = True, repr(exc)
        log.warning("sending the snapshot to peer %x failed: %r", to, exc)
    finally:
        if conn is not None:
            conn.close()
        if own and f is not None:
            f.close()
        m.add("etcd_network_snapshot_send_inflights_total", to, -1)
        if failed:
            m.add("etcd_network_snapshot_send_failures", to)
            m.add("etcd_network_peer_sent_failures_total", to)
        else:
            m.add("etcd_network_snapshot_send_success", to)
            m.observe("etcd_network_snapshot_send_total_duration_seconds", to,
                      time.perf_counter() - started)
        tr.report_snapshot(to, failed)
    return not failed


def _read_and_hash(f, digest, n: int) -> bytes:
    chunk = f.read(n)
    digest.update(chunk)
    return chunk
