"""The HTTP/1.1 side of the peer port: what a joining member or an operator asks a peer.

GET /members  the member list as JSON, like etcd's peer /members (with X-Etcd-Cluster-ID)
GET /version  {"etcdserver": ..., "etcdcluster": ...}
GET /health   {"health": "true"} or "false" (503 when unhealthy); etcd serves this on the client
              port only, fastkv also on the peer port
Other paths get etcd's "404 page not found", other methods its 405 "Method Not Allowed".

Answers come from callables the server provides; one request per connection (we answer with
`Connection: close`), heads capped at MAX_HEAD bytes.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("fastkv.transport")

MAX_HEAD = 16 << 10
HTTP_METHOD_PREFIXES = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ")

ETCD_VERSION = {"etcdserver": "3.4.23", "etcdcluster": "3.4.0"}


@dataclass
class PeerHTTP:
    """The server's answers. `members()` returns etcd's member JSON objects:
    {"id": int, "name": str, "peerURLs": [...], "clientURLs": [...]} (isLearner when true).
    `health()` returns True when the member is healthy (has a leader, no alarm)."""
    members: Callable[[], list] | None = None
    version: Callable[[], dict] | None = None
    health: Callable[[], bool] | None = None
    # POST /leases (etcd's leasehttp): a follower forwards a client's keep-alive to the leader.
    # async fn(lease id) -> TTL (0: no such lease); raises when this member cannot renew (not leader)
    lease_renew: Callable | None = None


LEASES_PATH = b"/leases"
MAX_LEASE_BODY = 64  # a LeaseKeepAliveRequest is one varint field


def lease_request(head: bytes) -> int | None:
    """For `POST /leases` with a body length: that length (what the listener must still read);
    None for every other request."""
    line, _, rest = head.partition(b"\r\n")
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] != b"POST" or parts[1].split(b"?", 1)[0] != LEASES_PATH:
        return None
    for h in rest.split(b"\r\n"):
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                n = int(value.strip())
            except ValueError:
                return None
            return n if 0 <= n <= MAX_LEASE_BODY else None
    return None


async def answer_lease(info: "PeerHTTP | None", body: bytes) -> bytes:
    """The response to a forwarded keep-alive: 200 with a LeaseKeepAliveResponse, 404 when the
    lease does not exist, 503 when this member is not the one to ask (not the leader)."""
    from fastkv.api.etcdpb import rpc_pb2

    if info is None or info.lease_renew is None:
        return _response("404 Not Found", b"404 page not found\n", "text/plain; charset=utf-8")
    try:
        req = rpc_pb2.LeaseKeepAliveRequest.FromString(body)
        ttl = await info.lease_renew(req.ID)
    except Exception as exc:  # noqa: BLE001 - the follower retries with the next leader
        return _response("503 Service Unavailable", str(exc).encode() + b"\n", "text/plain; charset=utf-8")
    if ttl <= 0:
        return _response("404 Not Found", b"lease not found\n", "text/plain; charset=utf-8")
    resp = rpc_pb2.LeaseKeepAliveResponse(ID=req.ID, TTL=ttl)
    return _response("200 OK", resp.SerializeToString(), "application/protobuf")


def could_be_http(prefix: bytes) -> bool:
    """True while `prefix` (the first bytes of a connection) may still be an HTTP request line."""
    return any(p.startswith(prefix[:len(p)]) for p in HTTP_METHOD_PREFIXES)


def _response(status: str, body: bytes, ctype: str = "application/json",
              extra: tuple = ()) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
            "Connection: close", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def respond(head: bytes, info: PeerHTTP | None, cluster_id: int) -> bytes:
    """The full response to one request head (bytes up to the blank line)."""
    line = head.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return _response("400 Bad Request", b"400 Bad Request", "text/plain; charset=utf-8")
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    info = info or PeerHTTP()
    cid = (f"X-Etcd-Cluster-ID: {cluster_id:x}",) if target == b"/members" else ()
    handlers = {b"/members": info.members, b"/version": info.version or (lambda: ETCD_VERSION),
                b"/health": info.health}
    if target not in handlers or handlers[target] is None:
        return _response("404 Not Found", b"404 page not found\n", "text/plain; charset=utf-8")
    if method != b"GET":
        return _response("405 Method Not Allowed", b"Method Not Allowed\n",
                         "text/plain; charset=utf-8", ("Allow: GET",))
    try:
        value = handlers[target]()
    except Exception:
        log.exception("peer HTTP handler for %s failed", target.decode("latin-1"))
        return _response("500 Internal Server Error", b"internal error\n", "text/plain; charset=utf-8")
    status = "200 OK"
    if target == b"/health":
        status = "200 OK" if value else "503 Service Unavailable"
        value = {"health": "true" if value else "false"}
    body = json.dumps(value, separators=(",", ":")).encode()
    if target == b"/members":
        body += b"\n"   # etcd writes this one with a JSON encoder, which ends the line
    return _response(status, body, extra=cid)
