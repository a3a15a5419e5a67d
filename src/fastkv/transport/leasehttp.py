"""A follower's keep-alive, forwarded to the leader's peer port (etcd's leasehttp): only the leader
keeps lease deadlines, so a client renewing through a follower is renewed there.

POST /leases with a LeaseKeepAliveRequest (protobuf) -> 200 with a LeaseKeepAliveResponse, or 404
when the lease does not exist; the answering side is peerhttp.answer_lease.
"""
from __future__ import annotations

import asyncio

from fastkv.transport.dial import split_url


class LeaseForwardError(ConnectionError):
    """The leader could not be asked (unreachable, not the leader any more, bad answer)."""


async def renew_on_leader(peer_urls: list, lease_id: int, *, client_ssl=None, timeout: float = 5.0) -> int:
    """The lease's TTL after the leader renewed it, or 0 when the leader has no such lease."""
    from fastkv.api.etcdpb import rpc_pb2

    body = rpc_pb2.LeaseKeepAliveRequest(ID=lease_id).SerializeToString()
    errors = []
    for url in peer_urls:
        scheme, host, port = split_url(url)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=client_ssl if scheme == "https" else None)
                try:
                    writer.write(b"POST /leases HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/protobuf\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                                 % (host.encode(), port, len(body), body))
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
            return rpc_pb2.LeaseKeepAliveResponse.FromString(payload).TTL
        if status == b"404":
            return 0
        errors.append(f"{url}: {head.splitlines()[0].decode('latin-1', 'replace') if head else 'no answer'}")
    raise LeaseForwardError("; ".join(errors) or "the leader has no peer URLs")


def _complete(raw: bytes) -> bool:
    head, _, payload = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(payload) >= int(value.strip() or 0)
    return False
