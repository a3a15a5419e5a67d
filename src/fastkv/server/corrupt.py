"""Data corruption detection between members, as etcd 3.4 does it (its corrupt.go).

Every member applies the same entries, so at the same revision and compaction every member's
HashKV must be equal. Two checks compare them over the peer port (POST /members/hashkv):
- the initial check (--experimental-initial-corrupt-check): before a member serves clients, it
  asks each peer for the hash at its own revision; a peer with the same compaction and another
  hash means this member's data (or the peer's) is not what raft says it is, and the member
  refuses to start;
- the periodic check (--experimental-corrupt-check-time): the leader compares its hash with every
  follower's; a follower ahead of it, or with the leader's compaction and another hash, gets the
  CORRUPT alarm raised through raft, after which every member refuses writes ("etcdserver:
  corrupt cluster") until an operator disarms it.
A peer that cannot answer (down, behind the revision, compacted past it) is logged and skipped,
never taken for a mismatch.
"""
from __future__ import annotations

import asyncio
import logging

from fastkv.api.etcdpb import rpc_pb2
from fastkv.errors import EtcdError
from fastkv.server import request as rq

log = logging.getLogger("fastkv.server")


class DataInconsistency(RuntimeError):
    """The initial check found a peer whose data differs from this member's."""


async def hash_kv_for_peer(server, req) -> rpc_pb2.HashKVResponse:
    """POST /members/hashkv: this member's HashKV at req.revision (0: its current revision)."""
    h, crev, rev = await server.hash_kv(req.revision)
    return rpc_pb2.HashKVResponse(header=rpc_pb2.ResponseHeader(
        cluster_id=server.cluster_id, member_id=server.member_id, revision=rev, raft_term=server.raft.term),
        hash=h, compact_revision=crev)


async def peer_hashes(server, revision: int) -> list:
    """[(member id, HashKVResponse or None, why not)] for every other member, asked concurrently."""
    from fastkv.transport.peerrequests import ForwardRefused, PeerRequestError, hash_kv_of_peer

    tls = server.cfg.peer_tls
    ssl = tls.client_context() if tls is not None else None
    peers = [m for m in server.membership.sorted_members() if m.id != server.member_id and m.peer_urls]

    async def ask(m):
        try:
            return m.id, await hash_kv_of_peer(m.peer_urls, revision, client_ssl=ssl,
                                               timeout=server.request_timeout), ""
        except (PeerRequestError, ForwardRefused) as exc:  # down, behind, compacted, or no such route
            return m.id, None, str(exc)

    return list(await asyncio.gather(*(ask(m) for m in peers)))


async def initial_check(server) -> None:
    """Raises DataInconsistency when a peer at this member's revision and compaction has another hash."""
    log.info("%x starting initial corruption check with timeout %.0fs...", server.member_id,
             server.request_timeout)
    h, crev, rev = await server.hash_kv(0)
    mismatches = 0
    for member_id, resp, why in await peer_hashes(server, rev):
        if resp is None:
            if "future revision" in why:
                log.warning("%x cannot fetch hash from slow remote peer %x: %s", server.member_id, member_id, why)
            elif "compacted" in why:
                log.warning("%x cannot fetch hash from remote peer %x; local member is behind: %s",
                            server.member_id, member_id, why)
            else:
                log.warning("%x cannot fetch hash from remote peer %x: %s", server.member_id, member_id, why)
            continue
        if resp.compact_revision == crev and resp.hash != h:
            log.error("%x's hash %d != %x's hash %d (revision %d, peer revision %d, compact revision %d)",
                      server.member_id, h, member_id, resp.hash, rev, resp.header.revision, crev)
            mismatches += 1
    if mismatches:
        raise DataInconsistency(f"{server.member_id:x} found data inconsistency with peers")
    log.info("%x succeeded on initial corruption checking: no corruption", server.member_id)


async def leader_check(server) -> list:
    """One round of the leader's periodic check. Returns the member ids it raised CORRUPT for."""
    h, crev, rev = await server.hash_kv(0)
    peers = await peer_hashes(server, rev)
    await server.linearizable_barrier()
    h2, crev2, rev2 = await server.hash_kv(0)
    suspects: list = []
    if h2 != h and rev2 == rev and crev2 == crev:
        log.error("%x: hash %d != computed hash %d (revision %d, compact revision %d)",
                  server.member_id, h, h2, rev, crev)
        suspects.append(server.member_id)
    for member_id, resp, _why in peers:
        if resp is None:
            continue
        if resp.header.revision > rev2:
            log.error("revision %d from member %x must be <= the leader's %d", resp.header.revision,
                      member_id, rev2)
            suspects.append(member_id)
        elif resp.compact_revision > crev2:
            log.error("compact revision %d from member %x must be <= the leader's %d",
                      resp.compact_revision, member_id, crev2)
            suspects.append(member_id)
        elif resp.compact_revision == crev and resp.hash != h:
            log.error("hash %d at revision %d from member %x differs from the leader's %d (compact revision %d)",
                      resp.hash, rev, member_id, h, crev)
            suspects.append(member_id)
    if suspects:  # as etcd, one alarm per round is enough: writes stop either way
        await server.propose(rq.ALARM, rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=suspects[0], alarm=rpc_pb2.CORRUPT))
    return suspects


async def check_loop(server, interval: float) -> None:
    """--experimental-corrupt-check-time: the leader's periodic check, every `interval` seconds."""
    log.info("enabled corruption checking with %gs interval", interval)
    while True:
        await asyncio.sleep(interval)
        if not server.raft.is_leader:
            continue
        try:
            await leader_check(server)
        except EtcdError as exc:   # no leader any more, a timeout: try again next round
            log.warning("corruption check round failed: %s", exc.message)
