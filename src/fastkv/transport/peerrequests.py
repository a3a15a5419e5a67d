"""Requests a member makes of another over its peer port. Most go to the leader, as etcd's do:
only the leader keeps lease deadlines and knows whether a learner is in sync; the corruption check
asks every peer for its HashKV.

POST /leases              LeaseKeepAliveRequest  -> 200 LeaseKeepAliveResponse, 404 no such lease
POST /leases/internal     LeaseTimeToLiveRequest -> 200 LeaseTimeToLiveResponse (TTL -1: no lease)
POST /members/promote/ID  (no body)              -> 200 the member list as JSON; 404 no such member,
                                                    412 not a learner / not in sync (etcd's text)
POST /members/hashkv      HashKVRequest          -> 200 HashKVResponse (etcd 3.5's peer path)
The answering side is peerhttp.answer_post; any other answer (503: not the leader) means "ask again".
"""
from __future__ import annotations

import asyncio
import json

from fastkv.transport.dial import is_tls, split_url, unix_path
from fastkv.transport.tls import server_refusal


class PeerRequestError(ConnectionError):
    """The peer could not be asked (unreachable, not the leader any more, an error answer)."""


class ForwardRefused(Exception):
    """The leader answered and refused: `status` (404, 412) and etcd's error text."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status, self.text = status, text


async def _ask(peer_urls: list, path: str, body: bytes, *, client_ssl, timeout: float,
                method: bytes = b"POST", with_head: bool = False):
    """`method` `path` on the first of `peer_urls` that answers 200; returns the body. A 404 or 412 answer
    raises ForwardRefused; when none answers, PeerRequestError says why for each URL."""
    errors = []
    for url in peer_urls:
        scheme, host, port = split_url(url)
        path_ = unix_path(url)
        tls = client_ssl if is_tls(scheme) else None
        try:
            async with asyncio.timeout(timeout):
                if path_ is not None:
                    reader, writer = await asyncio.open_unix_connection(
                        path_, ssl=tls, server_hostname=host if tls is not None else None)
                else:
                    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
                try:
                    refusal = server_refusal(tls, writer.get_extra_info("ssl_object"))
                    if refusal is not None:
                        raise ConnectionError(f"refused to talk to the peer: {refusal}")
                    writer.write(b"%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/protobuf\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                                 % (method, path.encode(), host.encode(), port, len(body), body))
                    raw = await reader.read(64 * 1024)
                    while raw.count(b"\r\n\r\n") == 0 or not _complete(raw):
                        more = await reader.read(64 * 1024)
                        if not more:
                            break
                        raw += more
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            errors.append(f"{url}: {exc!r}")
            continue
        head, _, payload = raw.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
        if status == b"200":
            return (head, payload) if with_head else payload
        if status in (b"404", b"412"):
            raise ForwardRefused(int(status), payload.decode("utf-8", "replace").strip())
        line = head.splitlines()[0].decode("latin-1", "replace") if head else "no answer"
        text = payload[:200].decode("utf-8", "replace").strip()
        errors.append(f"{url}: {line}" + (f" ({text})" if text else ""))
    raise PeerRequestError("; ".join(errors) or "the leader has no peer URLs")


async def renew_on_leader(peer_urls: list, lease_id: int, *, client_ssl=None, timeout: float = 5.0) -> int:
    """The lease's TTL after the leader renewed it, or 0 when the leader has no such lease."""
    from fastkv.api.etcdpb import rpc_pb2

    body = rpc_pb2.LeaseKeepAliveRequest(ID=lease_id).SerializeToString()
    try:
        payload = await _ask(peer_urls, "/leases", body, client_ssl=client_ssl, timeout=timeout)
    except ForwardRefused as exc:
        if exc.status == 404:
            return 0
        raise PeerRequestError(exc.text) from None
    return rpc_pb2.LeaseKeepAliveResponse.FromString(payload).TTL


async def time_to_live_on_leader(peer_urls: list, request, *, client_ssl=None, timeout: float = 5.0):
    """The leader's LeaseTimeToLiveResponse for `request` (a LeaseTimeToLiveRequest)."""
    from fastkv.api.etcdpb import rpc_pb2

    try:
        payload = await _ask(peer_urls, "/leases/internal", request.SerializeToString(),
                              client_ssl=client_ssl, timeout=timeout)
    except ForwardRefused as exc:
        raise PeerRequestError(exc.text) from None
    return rpc_pb2.LeaseTimeToLiveResponse.FromString(payload)


async def promote_on_leader(peer_urls: list, member_id: int, *, client_ssl=None, timeout: float = 5.0) -> list:
    """The member list (etcd's JSON objects) after the leader promoted the learner. Raises
    ForwardRefused with etcd's text when the leader refuses (no such member, not a learner, not in
    sync), PeerRequestError when no leader answered."""
    payload = await _ask(peer_urls, "/members/promote/%d" % member_id, b"", client_ssl=client_ssl,
                          timeout=timeout)
    return json.loads(payload)


async def hash_kv_of_peer(peer_urls: list, revision: int, *, client_ssl=None, timeout: float = 5.0):
    """The peer's HashKVResponse at `revision` (its header names the member and its revision)."""
    from fastkv.api.etcdpb import rpc_pb2

    payload = await _ask(peer_urls, "/members/hashkv", rpc_pb2.HashKVRequest(revision=revision).SerializeToString(),
                          client_ssl=client_ssl, timeout=timeout)
    return rpc_pb2.HashKVResponse.FromString(payload)


async def version_of_peer(peer_urls: list, *, client_ssl=None, timeout: float = 5.0) -> dict:
    """GET /version of a peer: {"etcdserver": ..., "etcdcluster": ...}."""
    return json.loads(await _ask(peer_urls, "/version", b"", client_ssl=client_ssl, timeout=timeout,
                                  method=b"GET"))


async def members_of_peer(peer_urls: list, *, client_ssl=None, timeout: float = 5.0) -> tuple[int, list]:
    """GET /members of the first peer that answers: (cluster id, etcd's member JSON objects)."""
    head, payload = await _ask(peer_urls, "/members", b"", client_ssl=client_ssl, timeout=timeout,
                               method=b"GET", with_head=True)
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-etcd-cluster-id":
            return int(value.strip(), 16), json.loads(payload)
    raise PeerRequestError("the peer's /members answer has no X-Etcd-Cluster-ID")


def _complete(raw: bytes) -> bool:
    head, _, payload = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(payload) >= int(value.strip() or 0)
    return False
